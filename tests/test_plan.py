"""``fleetcd plan``: changed-rollout detection against a base, skips, totals, rendering and exit codes.

The planner is pure over snapshots, so most tests build path → bytes maps in memory with the
fleet repository builder; the CLI tests run on real git repositories with real gpg keys.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.rollout import FailureThreshold, Rolling
from fleetcd.planning.plan import (
    UNSET,
    ApprovalStatus,
    Change,
    KeyChange,
    Plan,
    RolloutPlan,
    SignatureStatus,
    TrustFacts,
    attach_schedule,
    attach_trust,
    build_plan,
    diff_values,
)
from fleetcd.planning.render import (
    MARKDOWN_LIMIT_CHARS,
    TRUNCATED_NOTE,
    render_json,
    render_markdown,
    render_text,
    summary_line,
)
from fleetcd.planning.waves import PlannedWave
from fleetcd.planning.windows import next_open
from fleetcd.reasons import SkipReason
from tests.fleetrepo import FleetRepoBuilder, render
from tests.gpgkeys import KeyFactory


def fleet(tmp_path: Path) -> FleetRepoBuilder:
    """The builder's standard fleet: amr-001 (canary), amr-002..004 (production), nav 1.0.0 to both."""
    return FleetRepoBuilder(tmp_path).standard()


def spec_of(builder: FleetRepoBuilder) -> FleetSpec:
    files = {path: render(doc) for path, doc in builder.docs.items()} | builder.raw
    spec, problems = load_spec(files)
    assert problems == [], problems
    return spec


def plan_between(base: FleetSpec | None, head: FleetSpec) -> Plan:
    return build_plan(head, base, "main" if base is not None else None)


# --- which rollouts are in the plan ----------------------------------------------------------------


def test_without_base_every_rollout_is_planned(tmp_path: Path) -> None:
    plan = plan_between(None, spec_of(fleet(tmp_path)))
    (rollout,) = plan.rollouts
    assert (rollout.name, rollout.change, rollout.version) == ("nav-1-0-0", Change.PLANNED, "1.0.0")
    assert rollout.to_update == ("amr-001", "amr-002", "amr-003", "amr-004")
    assert rollout.stage == "production" and rollout.approvals_required == 2
    assert [w.name for w in rollout.waves] == ["batch-1"]  # the safe default: rolling, 10 a batch


def test_unchanged_fleet_plans_nothing(tmp_path: Path) -> None:
    spec = spec_of(fleet(tmp_path))
    plan = plan_between(spec, spec)
    assert not plan.has_changes
    assert summary_line(plan) == "No changes. Fleet is up to date with main."


def test_release_bump_updates_every_eligible_robot_and_names_the_previous_version(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.release("nav", "1.1.0")
    b.docs["rollouts/nav-1-0-0.yaml"]["release"] = "1.1.0"
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    assert rollout.change is Change.MODIFIED
    assert (rollout.version, rollout.previous_version) == ("1.1.0", "1.0.0")
    assert rollout.why == ("release 1.0.0 → 1.1.0",)
    assert len(rollout.to_update) == 4


def test_a_release_bump_to_a_withdrawn_release_updates_no_robot_and_says_why(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.release("nav", "1.1.0")
    b.docs["rollouts/nav-1-0-0.yaml"]["release"] = "1.1.0"
    withdrawal = {"apiVersion": "fleetcd.dev/v1", "kind": "Withdrawal", "app": "nav", "version": "1.1.0"}
    b.docs["withdrawals/nav/1.1.0.yaml"] = {**withdrawal, "reason": "bricks the lidar"}
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    assert rollout.to_update == ()
    assert {reason for _, reason in rollout.skipped} == {SkipReason.RELEASE_WITHDRAWN}
    assert len(rollout.skipped) == 4


def test_withdrawing_the_running_release_says_so_and_lifting_it_updates_the_robots(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    running = spec_of(b)
    withdrawal = {"apiVersion": "fleetcd.dev/v1", "kind": "Withdrawal", "app": "nav", "version": "1.0.0"}
    b.docs["withdrawals/nav/1.0.0.yaml"] = {**withdrawal, "reason": "leaks credentials"}
    withdrawn = spec_of(b)
    (rollout,) = plan_between(running, withdrawn).rollouts
    assert "release 1.0.0 withdrawn" in rollout.why and rollout.to_update == ()
    (lifted,) = plan_between(withdrawn, running).rollouts
    assert "withdrawal of 1.0.0 lifted" in lifted.why and len(lifted.to_update) == 4


def test_a_halt_policy_edit_is_named_in_the_plan(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.docs["rollouts/nav-1-0-0.yaml"]["on_halt"] = "pause"
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    assert rollout.why == ("on_halt rollback_all → pause",)


def test_robot_added_to_a_cohort_is_the_only_robot_to_update(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.device("amr-005")
    b.docs["cohorts/production.yaml"]["devices"].append("amr-005")
    plan = plan_between(base, spec_of(b))
    (rollout,) = plan.rollouts
    assert rollout.change is Change.AFFECTED
    assert "targeted robots changed" in rollout.why
    assert rollout.previous_version is None
    assert rollout.to_update == ("amr-005",)
    assert len(rollout.eligible) == 5
    assert plan.robots_to_update == ("amr-005",)


def test_new_robot_outside_every_target_changes_nothing(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.device("amr-777")
    assert not plan_between(base, spec_of(b)).has_changes


def test_deleted_rollout_is_removed_and_robots_keep_what_they_run(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    del b.docs["rollouts/nav-1-0-0.yaml"]
    plan = plan_between(base, spec_of(b))
    (rollout,) = plan.rollouts
    assert rollout.change is Change.REMOVED
    assert rollout.to_update == () and rollout.approvals_missing == 0
    assert plan.has_changes
    assert "robots keep what they run" in render_text(plan)


def test_new_rollout_is_new(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.release("arm", "2.0.0")
    b.rollout("arm-2", app="arm", release="2.0.0", cohorts=["canary"])
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    assert (rollout.name, rollout.change, rollout.to_update) == ("arm-2", Change.NEW, ("amr-001",))
    assert rollout.stage == "canary" and rollout.approvals_required == 1


def test_config_change_is_a_rollout_listing_each_robots_changed_keys(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.config("nav", "default", {"max_speed": 1.0, "map": "hall-a"})
    plan = plan_between(base, spec_of(b))
    (rollout,) = plan.rollouts
    assert rollout.change is Change.AFFECTED
    assert rollout.why == ("configs/nav/ changed",)
    robots = ("amr-001", "amr-002", "amr-003", "amr-004")
    assert rollout.to_update == robots, "a new config is a new deployment, wave by wave"
    assert [(c.device, c.keys) for c in rollout.config_changes] == [
        (d, (KeyChange("max_speed", 1.5, 1.0),)) for d in robots
    ]
    assert summary_line(plan).startswith("Plan: 4 robots to update in 1 wave (4 with new config),")
    assert "    amr-003: max_speed 1.5 → 1.0" in render_text(plan)
    assert "| amr-003 | max_speed 1.5 → 1.0 |" in render_markdown(plan)
    data = json.loads(render_json(plan))
    assert data["totals"]["robots_with_config_changes"] == 4
    assert data["rollouts"][0]["config_changes"][0] == {
        "device": "amr-001",
        "keys": [{"key": "max_speed", "old": 1.5, "new": 1.0}],
    }


def test_only_robots_whose_merged_config_changes_are_updated(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    b.config("nav", "device-amr-002", {"max_speed": 0.5})
    base = spec_of(b)
    b.config("nav", "default", {"max_speed": 1.0, "map": "hall-a", "limits": {"turn": 2}})
    b.config("nav", "device-amr-002", {"max_speed": 0.5, "limits": {"turn": 1}})
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    changes = {c.device: c.keys for c in rollout.config_changes}
    assert changes["amr-002"] == (KeyChange("limits", UNSET, {"turn": 1}),)
    assert changes["amr-001"] == (KeyChange("limits", UNSET, {"turn": 2}), KeyChange("max_speed", 1.5, 1.0))
    assert 'amr-002: limits (unset) → {"turn": 1}' in render_text(plan_between(base, spec_of(b)))


def test_diff_values_compares_nested_keys_and_types() -> None:
    old = {"a": {"b": 1, "c": True}, "d": [1, 2], "e": 1}
    new = {"a": {"b": 2, "c": True}, "d": [1, 2], "e": True}
    assert diff_values(old, new) == (KeyChange("a.b", 1, 2), KeyChange("e", 1, True))


def test_unchanged_config_bytes_list_no_config_change(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.release("nav", "1.1.0", config_schema={"type": "object"})
    b.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production"])
    plan = plan_between(base, spec_of(b))
    assert all(r.config_changes == () for r in plan.rollouts)
    assert "with new config" not in summary_line(plan)


def test_fleet_default_strategy_reaches_rollouts_without_their_own(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    base = spec_of(b)
    b.fleet["defaults"] = {"strategy": {"type": "canary", "percent": 25}}
    (rollout,) = plan_between(base, spec_of(b)).rollouts
    assert rollout.change is Change.AFFECTED
    assert "strategy changed (fleet default)" in rollout.why
    assert [len(w.devices) for w in rollout.waves] == [1, 3]


def test_robots_no_explicit_wave_picks_are_shown_but_not_updated(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    only_canary = {"type": "waves", "waves": [{"name": "first", "cohort": "canary"}]}
    b.docs["rollouts/nav-1-0-0.yaml"]["strategy"] = only_canary
    plan = plan_between(None, spec_of(b))
    (rollout,) = plan.rollouts
    assert rollout.to_update == ("amr-001",)
    assert rollout.unplaced == ("amr-002", "amr-003", "amr-004")
    assert "in no wave (never updated): 3" in render_text(plan)


def test_pausing_skips_everyone_and_resuming_updates_them(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    running = spec_of(b)
    b.docs["rollouts/nav-1-0-0.yaml"]["paused"] = True
    paused = spec_of(b)
    (rollout,) = plan_between(running, paused).rollouts
    assert rollout.why == ("paused",)
    assert {reason for _, reason in rollout.skipped} == {SkipReason.PAUSED}
    assert rollout.to_update == ()
    (resumed,) = plan_between(paused, running).rollouts
    assert resumed.why == ("resumed",)
    assert len(resumed.to_update) == 4


# --- skips ----------------------------------------------------------------------------------------


def _decommission(b: FleetRepoBuilder) -> None:
    b.device("amr-002", decommissioned=True)


def _old_hardware(b: FleetRepoBuilder) -> None:
    b.device("amr-002", hardware={"model": "mk1", "revision": 1})
    b.docs["releases/nav/1.0.0.yaml"]["compatibility"] = {"models": ["mk2"]}


def _other_family(b: FleetRepoBuilder) -> None:
    b.device("amr-002", family="arm")
    b.docs["releases/nav/1.0.0.yaml"]["compatibility"] = {"families": ["amr"]}


def _unknown(b: FleetRepoBuilder) -> None:
    b.docs["cohorts/production.yaml"]["devices"][0] = "ghost-1"


def _paused(b: FleetRepoBuilder) -> None:
    b.docs["rollouts/nav-1-0-0.yaml"]["paused"] = True


def _aborted(b: FleetRepoBuilder) -> None:
    b.docs["rollouts/nav-1-0-0.yaml"]["aborted"] = True


@pytest.mark.parametrize(
    ("change", "robot", "reason"),
    [
        pytest.param(_decommission, "amr-002", SkipReason.DECOMMISSIONED, id="decommissioned"),
        pytest.param(_old_hardware, "amr-002", SkipReason.INCOMPATIBLE_HARDWARE, id="incompatible-hardware"),
        pytest.param(_other_family, "amr-002", SkipReason.INCOMPATIBLE_FAMILY, id="incompatible-family"),
        pytest.param(_unknown, "ghost-1", SkipReason.UNKNOWN, id="unknown-robot"),
        pytest.param(_paused, "amr-003", SkipReason.PAUSED, id="paused"),
        pytest.param(_aborted, "amr-003", SkipReason.ABORTED, id="aborted"),
    ],
)
def test_skipped_robots_carry_their_reason(
    tmp_path: Path, change: Callable[[FleetRepoBuilder], None], robot: str, reason: SkipReason
) -> None:
    b = fleet(tmp_path)
    change(b)
    plan = plan_between(None, spec_of(b))
    (rollout,) = plan.rollouts
    assert (robot, reason) in rollout.skipped
    assert robot not in rollout.to_update
    assert robot in plan.skipped_robots
    assert f"{reason}: " in render_text(plan)


def test_aborted_rollout_needs_no_approvals(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    _aborted(b)
    plan = attach_trust(plan_between(None, spec_of(b)), TrustFacts())
    assert plan.approvals_missing == 0


# --- stage, approvals, totals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cohorts", "stage", "required"),
    [
        pytest.param(["canary"], "canary", 1, id="canary-only"),
        pytest.param(["canary", "production"], "production", 2, id="highest-stage-wins"),
        pytest.param(["lab"], "staging", 0, id="staging-needs-none"),
    ],
)
def test_stage_and_required_approvals_follow_the_highest_cohort(
    tmp_path: Path, cohorts: list[str], stage: str, required: int
) -> None:
    b = fleet(tmp_path)
    b.cohort("lab", ["amr-004"], stage="staging")
    b.docs["rollouts/nav-1-0-0.yaml"]["targets"] = {"cohorts": cohorts}
    (rollout,) = plan_between(None, spec_of(b)).rollouts
    assert (rollout.stage, rollout.approvals_required) == (stage, required)


def test_trust_facts_fill_in_approvals_and_signatures(tmp_path: Path) -> None:
    plan = plan_between(None, spec_of(fleet(tmp_path)))
    trust = TrustFacts(
        approvals={"nav-1-0-0": ApprovalStatus(1, ("alice",))},
        signatures={("nav", "1.0.0"): SignatureStatus(2, 2)},
    )
    plan = attach_trust(plan, trust)
    assert plan.approvals_missing == 1
    text = render_text(plan)
    assert "approvals 1/2 (alice); missing 1" in text
    assert "signatures 2/2 verified" in text


def test_a_robot_updated_by_two_apps_counts_once(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    b.release("arm", "2.0.0")
    b.rollout("arm-2", app="arm", release="2.0.0", cohorts=["canary", "production"])
    plan = plan_between(None, spec_of(b))
    assert len(plan.robots_to_update) == 4
    assert plan.wave_count == 2


# --- rendering ------------------------------------------------------------------------------------


def synthetic(
    name: str = "nav",
    robots: int = 3,
    waves: int = 1,
    skipped: int = 0,
    required: int = 0,
    present: int = 0,
    prefix: str = "amr",
) -> RolloutPlan:
    ids = [f"{prefix}-{i:05d}" for i in range(robots)]
    size = -(-robots // waves) if robots else 0
    gate = FailureThreshold(percent=20)
    planned = tuple(
        PlannedWave(i, f"batch-{i + 1}", tuple(ids[i * size : (i + 1) * size]), 60, gate, 100.0, False)
        for i in range(waves)
    )
    return RolloutPlan(
        name=name,
        change=Change.NEW,
        why=("new rollout",),
        app="nav",
        version="1.1.0",
        previous_version=None,
        release_found=True,
        stage=None,
        strategy=Rolling(type="rolling", batch_size=max(size, 1)),
        waves=planned,
        unplaced=(),
        skipped=tuple((f"old-{i}", SkipReason.DECOMMISSIONED) for i in range(skipped)),
        to_update=tuple(ids),
        approvals_required=required,
        approvals=ApprovalStatus(present),
        signatures=SignatureStatus(1, 1),
    )


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        pytest.param(
            synthetic(robots=1, waves=1),
            "Plan: 1 robot to update in 1 wave, 0 skipped, 0 approvals missing.",
            id="singular",
        ),
        pytest.param(
            synthetic(robots=12, waves=3, skipped=2, required=2, present=1),
            "Plan: 12 robots to update in 3 waves, 2 skipped, 1 approval missing.",
            id="plural-mixed",
        ),
        pytest.param(
            synthetic(robots=0, waves=1, required=2),
            "Plan: 0 robots to update in 0 waves, 0 skipped, 2 approvals missing.",
            id="zero-is-plural",
        ),
    ],
)
def test_summary_line_wording(rollout: RolloutPlan, expected: str) -> None:
    plan = Plan(base="main", rollouts=(rollout,))
    assert summary_line(plan) == expected
    for text in (render_text(plan), render_markdown(plan)):
        assert text.splitlines()[0] == expected
    assert json.loads(render_json(plan))["summary"] == expected


def test_text_abbreviates_long_wave_lists(tmp_path: Path) -> None:
    text = render_text(Plan(base=None, rollouts=(synthetic(robots=25),)))
    assert "amr-00009 … and 15 more" in text
    assert "amr-00010" not in text


def test_json_lists_every_robot_and_reason() -> None:
    data = json.loads(render_json(Plan(base="main", rollouts=(synthetic(robots=25, waves=2, skipped=1),))))
    assert data["totals"] == {
        "robots_to_update": 25,
        "robots_with_config_changes": 0,
        "waves": 2,
        "skipped": 1,
        "approvals_missing": 0,
    }
    (rollout,) = data["rollouts"]
    assert sum(len(w["devices"]) for w in rollout["waves"]) == 25
    assert rollout["skipped"] == [{"device": "old-0", "reason": "decommissioned"}]


def _balanced(markdown: str) -> bool:
    depth = 0
    for tag in re.findall(r"</?details>|</?summary>", markdown):
        depth += -1 if tag.startswith("</") else 1
        if depth < 0:
            return False
    return depth == 0 and markdown.count("<details>") == markdown.count("</details>")


@pytest.mark.parametrize(
    "rollouts",
    [
        pytest.param(
            (synthetic(robots=5000, waves=5, prefix="warehouse-berlin-amr"),), id="one-rollout-5000-robots"
        ),
        pytest.param(
            tuple(synthetic(f"r{i}", robots=5000, waves=50, skipped=30) for i in range(40)),
            id="40-rollouts-of-5000-robots",
        ),
    ],
)
def test_markdown_stays_under_the_comment_limit_with_balanced_details(
    rollouts: tuple[RolloutPlan, ...],
) -> None:
    plan = Plan(base="main", rollouts=rollouts)
    markdown = render_markdown(plan)
    assert len(markdown) <= MARKDOWN_LIMIT_CHARS
    assert _balanced(markdown)
    assert markdown.splitlines()[0] == summary_line(plan)
    assert TRUNCATED_NOTE in markdown


def test_small_markdown_lists_every_robot_untruncated() -> None:
    plan = Plan(base="main", rollouts=(synthetic(robots=40, waves=2),))
    markdown = render_markdown(plan)
    assert TRUNCATED_NOTE not in markdown
    assert all(f"amr-{i:05d}" in markdown for i in range(40))
    assert _balanced(markdown)


# --- the command ----------------------------------------------------------------------------------


FLEETCD = Path(sys.executable).parent / "fleetcd"


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script: exit codes go through the one central error handler."""
    return subprocess.run([str(FLEETCD), "plan", *args], capture_output=True, text=True, timeout=120)


def test_plan_of_a_new_fleet_exits_3_and_shows_trust(tmp_path: Path, keys: KeyFactory) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.rollout(
        "nav-1-0-0",
        app="nav",
        release="1.0.0",
        cohorts=["canary", "production"],
        approvers=[keys.key("alice")],
    )
    b.write()
    result = run_plan("--repo", str(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "Plan: 4 robots to update in 1 wave, 0 skipped, 1 approval missing." in result.stdout
    assert "approvals 1/2 (alice); missing 1" in result.stdout
    assert "signatures 1/1 verified" in result.stdout


def test_plan_against_an_unchanged_base_exits_0(tmp_path: Path, keys: KeyFactory) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.git_init()
    b.commit("base")
    result = run_plan("--repo", str(tmp_path), "--base", "HEAD")
    assert result.returncode == 0, result.stdout
    assert "No changes. Fleet is up to date with HEAD (" in result.stdout


def test_plan_of_a_pull_request_shows_only_what_changed(tmp_path: Path, keys: KeyFactory) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.git_init()
    b.commit("base")
    b.release("arm", "2.0.0")
    b.rollout("arm-2", app="arm", release="2.0.0", cohorts=["canary"])
    b.write()
    result = run_plan("--repo", str(tmp_path), "--base", "HEAD", "--format", "json")
    assert result.returncode == 3, result.stdout
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["rollouts"]] == ["arm-2"]
    approvals = data["rollouts"][0]["approvals"]
    assert (approvals["required"], approvals["present"], approvals["missing"]) == (1, 2, 0)
    assert sorted(approvals["approvers"]) == ["alice", "bob"]


def test_plan_of_a_committed_config_edit_lists_the_keys_per_robot(tmp_path: Path, keys: KeyFactory) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.git_init()
    b.commit("base")
    b.config("nav", "default", {"max_speed": 0.9, "map": "hall-a"})
    b.commit("nav: max_speed 1.5 -> 0.9")  # re-approved: approvals cover the config set
    result = run_plan("--repo", str(tmp_path), "--base", "HEAD~1")
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith(
        "Plan: 4 robots to update in 1 wave (4 with new config), 0 skipped, 0 approvals"
    )
    assert "  config changes: 4 robots\n    amr-001: max_speed 1.5 → 0.9\n" in result.stdout


def test_invalid_head_exits_1_with_file_and_line(tmp_path: Path, keys: KeyFactory) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.docs["cohorts/production.yaml"]["devices"].append("ghost-1")
    b.write()
    result = run_plan("--repo", str(tmp_path))
    assert result.returncode == 1
    assert "error: cohorts/production.yaml:" in result.stderr and "ghost-1" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "git",
    [pytest.param(True, id="unknown-ref"), pytest.param(False, id="not-a-git-repository")],
)
def test_bad_base_is_a_setup_problem(tmp_path: Path, git: bool) -> None:
    b = fleet(tmp_path)
    if git:
        b.git_init()
        b.commit("base")
    else:
        b.write()
    result = run_plan("--repo", str(tmp_path), "--base", "no-such-ref")
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("error: ")


# --- when waves could start: maintenance windows in each robot's local time ----------------------

SUNDAY = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)  # Berlin 14:00, Chicago 07:00, Tokyo 22:00


def windowed_fleet(tmp_path: Path) -> FleetRepoBuilder:
    """Canary amr-001 in Berlin (mon-fri 02:00–04:00); production amr-002 in Chicago (mon-fri
    22:00–04:00), amr-003 in Tokyo (daily 01:00–03:00), amr-004 in Berlin with only its cohort's
    daily 03:00–05:00 window (each robot's own zone), which the other two production robots share."""
    b = fleet(tmp_path)
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    b.device("amr-001", maintenance_windows=[{"days": weekdays, "start": "02:00", "end": "04:00"}])
    b.device(
        "amr-002",
        timezone="America/Chicago",
        maintenance_windows=[{"days": weekdays, "start": "22:00", "end": "04:00"}],
    )
    b.device("amr-003", timezone="Asia/Tokyo", maintenance_windows=[{"start": "01:00", "end": "03:00"}])
    b.docs["cohorts/production.yaml"]["maintenance_windows"] = [{"start": "03:00", "end": "05:00"}]
    b.docs["rollouts/nav-1-0-0.yaml"]["strategy"] = {
        "type": "waves",
        "waves": [{"name": "canary", "cohort": "canary"}, {"name": "production", "cohort": "production"}],
    }
    return b


def test_plan_says_when_each_wave_could_start_from_the_robots_local_windows(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    (rollout,) = attach_schedule(plan_between(None, spec), spec, SUNDAY).rollouts
    canary, production = rollout.schedule
    # Berlin's Monday 02:00 (CET, UTC+1) is Monday 01:00Z.
    assert canary.earliest == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    # Tokyo's Monday 01:00 (JST, UTC+9) comes first: Sunday 16:00Z, before any other production window.
    assert production.earliest == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    opens = {r.device: r.opens_at for r in production.robots}
    assert opens == {
        "amr-002": datetime(2026, 12, 7, 9, 0, tzinfo=UTC),  # the cohort's 03:00 in Chicago (CST)
        "amr-003": datetime(2026, 12, 6, 16, 0, tzinfo=UTC),
        "amr-004": datetime(2026, 12, 7, 2, 0, tzinfo=UTC),  # the cohort's 03:00 in Berlin
    }
    chicago = next(r for r in production.robots if r.device == "amr-002")
    assert chicago.windows == ("mon-fri 22:00–04:00 America/Chicago", "daily 03:00–05:00 America/Chicago")
    assert chicago.local_now.strftime("%a %H:%M") == "Sun 07:00"

    text = render_text(attach_schedule(plan_between(None, spec), spec, SUNDAY))
    assert "    could start: 2026-12-07 01:00Z, in the first robot's maintenance window\n" in text
    assert "    could start: 2026-12-06 16:00Z once the earlier waves pass, in the first robot's" in text
    assert (
        "      amr-002 (local time Sun 07:00 America/Chicago): window mon-fri 22:00–04:00 America/Chicago; "
        "daily 03:00–05:00 America/Chicago; next open Mon 03:00 local (2026-12-07 09:00Z)\n"
    ) in text


def test_a_wave_inside_a_window_could_start_now_and_json_carries_it(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    at = datetime(2026, 12, 6, 16, 30, tzinfo=UTC)  # Tokyo Monday 01:30: amr-003's window is open
    plan = attach_schedule(plan_between(None, spec), spec, at)
    assert plan.rollouts[0].schedule[1].earliest == at
    (data,) = json.loads(render_json(plan))["rollouts"]
    production = data["waves"][1]
    assert production["could_start"] == "2026-12-06T16:30:00+00:00"
    tokyo = next(r for r in production["maintenance_windows"] if r["device"] == "amr-003")
    assert tokyo["local_now"].startswith("2026-12-07T01:30:00+09:00")


def test_ignored_windows_let_every_wave_start_now_and_the_plan_says_why(tmp_path: Path) -> None:
    b = windowed_fleet(tmp_path)
    b.docs["rollouts/nav-1-0-0.yaml"]["schedule"] = {"respect_maintenance_windows": False}
    spec = spec_of(b)
    plan = attach_schedule(plan_between(None, spec), spec, SUNDAY)
    assert [w.earliest for w in plan.rollouts[0].schedule] == [SUNDAY, SUNDAY]
    assert "could start: 2026-12-06 13:00Z (maintenance windows ignored" in render_text(plan)


def test_not_before_holds_each_wave_until_the_first_window_after_it(tmp_path: Path) -> None:
    b = windowed_fleet(tmp_path)
    b.docs["rollouts/nav-1-0-0.yaml"]["schedule"] = {"not_before": "2026-12-08T00:00:00Z"}
    spec = spec_of(b)
    canary, production = attach_schedule(plan_between(None, spec), spec, SUNDAY).rollouts[0].schedule
    assert canary.earliest == datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # Tuesday 02:00 Berlin
    # Tokyo is at 09:00 then; amr-004's cohort window (03:00 Berlin) opens first.
    assert production.earliest == datetime(2026, 12, 8, 2, 0, tzinfo=UTC)


def test_a_window_on_the_spring_forward_night_opens_the_night_after() -> None:
    window = MaintenanceWindow.model_validate({"start": "02:30", "end": "02:45"})
    saturday = datetime(2027, 3, 27, 12, 0, tzinfo=UTC)  # Berlin skips 02:00–03:00 on Sunday 28 March
    assert next_open([window], saturday, "Europe/Berlin") == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    assert next_open([], saturday, "Europe/Berlin") == saturday


def test_plan_at_a_time_without_a_zone_is_refused(tmp_path: Path) -> None:
    fleet(tmp_path).write()
    result = run_plan("--repo", str(tmp_path), "--at", "2026-12-06T13:00")
    assert result.returncode != 0 and result.returncode != 3
    assert "names no zone" in result.stderr
    shown = run_plan("--repo", str(tmp_path), "--at", "2026-12-06T13:00Z")
    assert "could start: 2026-12-06 13:00Z, no robot has a window" in shown.stdout, shown.stderr


def test_plan_of_the_pull_request_approving_a_withdrawal_says_it_is_withdrawn(
    tmp_path: Path, keys: KeyFactory
) -> None:
    b = FleetRepoBuilder(tmp_path, keys=keys).standard()
    b.withdrawal("nav", "1.0.0", "leaks credentials", approvers=[])
    b.git_init()
    b.commit("withdraw nav 1.0.0 (not approved: withdraws nothing)")
    b.approvers_of.pop("withdrawals/nav/1.0.0.yaml")
    b.commit("approve withdrawing nav 1.0.0")
    result = run_plan("--repo", str(tmp_path), "--base", "HEAD~1")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "release 1.0.0 withdrawn" in result.stdout
    assert run_plan("--repo", str(tmp_path), "--base", "HEAD").returncode == 0


def test_markdown_plan_has_a_could_start_table_per_wave(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    markdown = render_markdown(attach_schedule(plan_between(None, spec), spec, SUNDAY))
    assert _balanced(markdown)
    assert "| wave | could start | robots' maintenance windows (local time) |" in markdown
    assert (
        "| 1 canary | 2026-12-07 01:00Z, in the first robot's maintenance window "
        "| amr-001 (local time Sun 14:00" in markdown
    )
    row = next(
        line for line in markdown.splitlines() if line.startswith("| 2 production | 2026-12-06 16:00Z")
    )
    assert row.count("<br>") == 2 and "amr-003 (local time Sun 22:00 Asia/Tokyo)" in row
