"""``fleetcd plan --base``: why each rollout is in the plan (fleetcd/planning/plan.py, pure).

A reviewer reads the plan on a pull request to learn what the merge will do. Every edit of a rollout
file must be named in the words an operator uses (not the catch-all "rollout file changed" when a
field is known), and a rollout whose own file did not change must say which other file moved it
(a cohort's stage, the approvals the trust root asks for, the release's signatures, an approval).
A rollout that nothing touched is not in the plan at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetcd.layout import release_path, rollout_path
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.planning.plan import Change, RolloutPlan, build_plan
from tests.fleetrepo import FleetRepoBuilder, render

ROLLOUT = rollout_path("nav-1-0-0")
SIG = "A" * 40
SIG_B = "B" * 40


def spec_of(builder: FleetRepoBuilder) -> FleetSpec:
    files = {path: render(doc) for path, doc in builder.docs.items()} | builder.raw
    files |= {f"trust/root/{d['version']}.yaml": render(d) for d in builder.trust_versions}
    spec, problems = load_spec(files)
    assert problems == [], problems
    return spec


def planned(
    tmp_path: Path, edit: Callable[[FleetRepoBuilder], Any], *, base: Callable[..., Any] | None = None
) -> tuple[RolloutPlan, ...]:
    b = FleetRepoBuilder(tmp_path).standard()
    if base is not None:
        base(b)
    before = spec_of(b)
    edit(b)
    return build_plan(spec_of(b), before, "main").rollouts


def rollout(b: FleetRepoBuilder) -> dict[str, Any]:
    return b.docs[ROLLOUT]


def _set(**fields: Any) -> Callable[[FleetRepoBuilder], None]:
    return lambda b: rollout(b).update(fields)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda b: rollout(b)["targets"].update(devices=["amr-001"]), ("targets changed",)),
        (_set(strategy={"type": "all_at_once"}), ("strategy changed",)),
        (_set(schedule={"not_before": "2031-01-01T06:00:00Z"}), ("schedule changed",)),
        (_set(schedule={"respect_maintenance_windows": False}), ("schedule changed",)),
        (_set(gates=["docked"]), ("gates changed",)),
        (_set(download_rate_per_minute=20), ("download rate default → 20",)),
        (_set(device_timeout_seconds=600), ("device timeout default → 600",)),
        (_set(on_halt="rollback_wave"), ("on_halt rollback_all → rollback_wave",)),
        (_set(paused=True), ("paused",)),
        (_set(aborted=True), ("aborted",)),
        (_set(promote=2), ("promote 0 → 2",)),
        (_set(paused=True, promote=1), ("paused", "promote 0 → 1")),
    ],
    ids=[
        "targets", "strategy", "not-before", "windows-ignored", "gates", "download-rate", "device-timeout",
        "on-halt", "paused", "aborted", "promote", "two-fields-in-field-order",
    ],
)  # fmt: skip
def test_each_rollout_field_edit_is_named_in_the_plan(
    tmp_path: Path, edit: Callable[[FleetRepoBuilder], None], why: tuple[str, ...]
) -> None:
    (plan,) = planned(tmp_path, edit)
    assert (plan.change, plan.why) == (Change.MODIFIED, why)


def test_lowering_a_bound_back_to_the_default_says_so(tmp_path: Path) -> None:
    (plan,) = planned(
        tmp_path, lambda b: rollout(b).pop("download_rate_per_minute"), base=_set(download_rate_per_minute=5)
    )
    assert plan.why == ("download rate 5 → default",)


def test_un_aborting_a_rollout_is_named(tmp_path: Path) -> None:
    (plan,) = planned(tmp_path, _set(aborted=False), base=_set(aborted=True))
    assert plan.why == ("un-aborted",)


def test_an_edit_no_field_explains_falls_back_to_the_file(tmp_path: Path) -> None:
    """A comment or reordering changes the bytes (and voids approvals) but no field: say the file."""

    def comment(b: FleetRepoBuilder) -> None:
        b.raw[ROLLOUT] = b"# reviewed by the night shift\n" + render(b.docs.pop(ROLLOUT))

    (plan,) = planned(tmp_path, comment)
    assert (plan.change, plan.why) == (Change.MODIFIED, ("rollout file changed",))


# --- a rollout moved by another file -------------------------------------------------------------------


def _stage_down(b: FleetRepoBuilder) -> None:
    """The rollout's stage is its highest cohort's: production becomes canary, one approval fewer."""
    b.docs["cohorts/production.yaml"]["stage"] = "canary"


def _more_approvals(b: FleetRepoBuilder) -> None:
    b.trust["approvals"]["production"] = 3


def _resign(b: FleetRepoBuilder) -> None:
    b.raw[f"{release_path('nav', '1.0.0')}.d/{SIG_B}.asc"] = b"-----BEGIN PGP SIGNATURE-----\nB\n"


def _approve(b: FleetRepoBuilder) -> None:
    b.raw[f"approvals/nav-1-0-0/{SIG}.asc"] = b"-----BEGIN PGP SIGNATURE-----\nA\n"


def _retire(b: FleetRepoBuilder) -> None:
    b.docs["devices/amr-004.yaml"]["decommissioned"] = True


def _release_edited(b: FleetRepoBuilder) -> None:
    b.docs[release_path("nav", "1.0.0")]["notes"] = "rebuilt"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_stage_down, {"stage production → canary", "approvals required 2 → 1"}),
        (_more_approvals, {"approvals required 2 → 3"}),
        (_resign, {"release signatures changed"}),
        (_approve, {"approvals changed"}),
        (_retire, {"targeted robots changed"}),
        (_release_edited, {"release file changed"}),
    ],
    ids=[
        "cohort-stage",
        "trust-approvals",
        "release-resigned",
        "new-approval",
        "robot-retired",
        "release-edited",
    ],
)
def test_a_rollout_moved_by_another_file_names_that_file(
    tmp_path: Path, edit: Callable[[FleetRepoBuilder], None], expected: set[str]
) -> None:
    (plan,) = planned(tmp_path, edit)
    assert plan.change is Change.AFFECTED
    assert expected <= set(plan.why), plan.why


def test_a_rollout_nothing_touched_is_left_out_of_the_plan(tmp_path: Path) -> None:
    def unrelated(b: FleetRepoBuilder) -> None:
        b.device("amr-099")  # in no cohort
        b.release("nav", "2.0.0")  # published, not rolled out

    assert planned(tmp_path, unrelated) == ()
