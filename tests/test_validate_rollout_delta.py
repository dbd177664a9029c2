"""A commit of releases and rollouts is rechecked from the kept index, with a full check's verdict.

:func:`fleetcd.validation.incremental.recheck_content` takes :attr:`Reuse.DOCUMENTS` when the changed
documents are releases added or edited and rollouts added, edited or removed (maybe robot files and
signatures too), each loading cleanly before and after: the affected rollouts are selected again
from the :class:`~fleetcd.validation.delta.RobotIndex` and only the parts of the checks they feed
run again (:mod:`fleetcd.validation.rollout_delta`). Every recheck here is compared with a fresh
full :func:`~fleetcd.validation.pipeline.check_content` of the same bytes (every part, the spec, the
judged report in every format: ``recheck`` of :mod:`tests.test_validate_robot_delta`); the random
sequences there mix these commits with every other kind. Here, by name: the attacks (a second
rollout of an app put on a robot, a rollout of a release that does not exist or is withdrawn, a
release edited in place), what falls back to the full check, and that the index's selections are
planning's own. The gpg cases judge with real gpg.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import fleetgen
from fleetcd.layout import cohort_path, config_path, device_path, release_path, rollout_path
from fleetcd.loading.memo import DocumentMemo
from fleetcd.models import parse_version
from fleetcd.reasons import Reason
from fleetcd.validation import apps, validate_snapshot
from fleetcd.validation.context import Context
from fleetcd.validation.incremental import Reuse, recheck_content
from fleetcd.validation.pipeline import (
    CONFIGS_ROBOTS,
    IMMUTABILITY,
    OVERLAP,
    REFERENCES_DOCUMENTS,
    REQUIRES_CYCLES,
    ContentCheck,
    check_content,
    judge,
)
from fleetcd.validation.report import Format, render
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.test_validate_robot_delta import SCHEMA, assert_same_content, base_fleet, errors, kept, recheck

TIGHT = {**SCHEMA, "properties": {**SCHEMA["properties"], "max_speed": {"type": "number", "maximum": 1.0}}}


def documents(
    content: ContentCheck, fleet: FleetRepoBuilder, memo: DocumentMemo | None = None
) -> ContentCheck:
    """``fleet``'s commit rechecked from the index (as a full check would judge it)."""
    again, reuse = recheck(content, fleet, memo)
    assert reuse is Reuse.DOCUMENTS
    return again


def all_errors(content: ContentCheck) -> list[tuple[str, Reason]]:
    """The content errors (the fleet here is unsigned: gpg's findings are left out)."""
    return sorted((d.file, d.reason) for d in (*content.documents, *content.checks) if d.severity == "error")


# --- attacks -----------------------------------------------------------------------------------------


def test_a_rollout_edit_that_puts_a_second_rollout_of_an_app_on_a_robot_is_refused_as_in_full(
    tmp_path: Path,
) -> None:
    """nav-extra targets two spare robots only; retargeted to berlin it meets nav-1-0-0's robots
    amr-001 and amr-003 (in berlin): two rollouts of nav on them. Refused on both rollouts, exactly
    as a full check words it; retargeted away, accepted again."""
    fleet = base_fleet(tmp_path)
    fleet.cohort("spare", ["amr-006", "amr-008"], stage="production")
    fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["spare"])
    fleet.write()
    content = kept(fleet)
    assert not content.parts[OVERLAP]
    fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["berlin"])
    again = documents(content, fleet)
    assert again.index is not None and again.index.fallbacks == [OVERLAP]
    assert errors(again) == [
        ("rollouts/nav-1-0-0.yaml", Reason.ROLLOUT_OVERLAP),
        ("rollouts/nav-extra.yaml", Reason.ROLLOUT_OVERLAP),
    ]
    assert (
        "robots amr-001, amr-003 are also targeted by rollout 'nav-extra'" in again.parts[OVERLAP][0].message
    )
    fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["spare"])
    back = documents(again, fleet)
    assert errors(back) == [] and back.parts[OVERLAP] == ()


def test_a_new_rollout_whose_robots_another_rollout_of_its_app_already_has_is_refused(tmp_path: Path) -> None:
    """The commonest commit, done wrong: a new release and a new rollout of it over the production
    cohort, while nav-1-0-0 still delivers nav there."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.release("nav", "1.1.0", config_schema=SCHEMA)
    fleet.rollout("nav-1-1-0", app="nav", release="1.1.0", cohorts=["production"])
    again = documents(content, fleet)
    assert errors(again) == [
        ("rollouts/nav-1-0-0.yaml", Reason.ROLLOUT_OVERLAP),
        ("rollouts/nav-1-1-0.yaml", Reason.ROLLOUT_OVERLAP),
    ]
    fleet.remove(rollout_path("nav-1-0-0"))  # done right: the old rollout goes in the same commit
    fixed = documents(again, fleet)
    assert errors(fixed) == []


def test_pausing_a_rollout_keeps_its_robots_so_an_overlap_stays_refused_and_aborting_clears_it(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["canary"])
    fleet.write()
    content = kept(fleet)
    assert len(content.parts[OVERLAP]) == 2
    fleet.docs[rollout_path("nav-extra")]["paused"] = True
    paused = documents(content, fleet)
    assert [r for _, r in errors(paused)] == [Reason.ROLLOUT_OVERLAP] * 2
    fleet.docs[rollout_path("nav-extra")]["aborted"] = True
    aborted = documents(paused, fleet)
    assert errors(aborted) == []


def test_a_rollout_pointing_at_a_release_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.rollout("nav-1-0-0", app="nav", release="1.2.0", cohorts=["canary", "production"])
    again = documents(content, fleet)
    assert ("rollouts/nav-1-0-0.yaml", Reason.UNKNOWN_REFERENCE) in all_errors(again)
    missing = [d for d in judge(again).errors if d.reason is Reason.UNKNOWN_REFERENCE]
    assert "release nav 1.2.0 does not exist" in missing[0].message
    fleet.release("nav", "1.2.0", config_schema=SCHEMA)  # published in the next commit: accepted
    published = documents(again, fleet)
    assert all_errors(published) == []


def test_a_release_added_in_place_of_a_missing_one_makes_an_unchanged_rollout_deliver(tmp_path: Path) -> None:
    """arm-1-0-0 names arm 2.0.0, which is not on main: it delivers nothing, so its robots get no
    arm config check. Publishing 2.0.0 (a schema their config fails) changes no rollout file, yet
    the rollout now delivers, and the robots' merged configs are refused."""
    fleet = base_fleet(tmp_path)
    fleet.rollout("arm-1-0-0", app="arm", release="2.0.0", cohorts=["berlin"])
    fleet.config("arm", "default", {"gripper": "soft"})
    fleet.write()
    content = kept(fleet)
    assert not content.parts[CONFIGS_ROBOTS]
    fleet.release("arm", "2.0.0", config_schema={"type": "object", "additionalProperties": False})
    again = documents(content, fleet)
    assert ("configs/arm/default.yaml", Reason.CONFIG_INVALID) in all_errors(again)
    assert again.index is not None and CONFIGS_ROBOTS in again.index.fallbacks


def test_a_release_edited_in_place_with_a_tighter_schema_refuses_configs_that_passed_before(
    tmp_path: Path,
) -> None:
    """The kept merged-config findings are by release file and layers: the edited release's are
    dropped, so robots whose layers did not change are checked against the new schema."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    assert not content.parts[CONFIGS_ROBOTS]
    fleet.release("nav", "1.0.0", config_schema=TIGHT)
    again = documents(content, fleet)
    assert ("configs/nav/default.yaml", Reason.CONFIG_INVALID) in all_errors(again)


def test_a_new_release_no_rollout_names_runs_its_own_checks_and_changes_no_robots(tmp_path: Path) -> None:
    """A reserved artifact kind without an adapter, a broken schema and a requirement on an app
    with no release are its own errors; no selection is computed again, no grouped check runs."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    assert content.index is not None
    before = dict(content.index.targets)
    doc = fleet.release("nav", "1.1.0", config_schema={"type": "objekt"})
    firmware = {"url": "https://artifacts.example/fw.bin", "sha256": "a" * 64, "size": 1024}
    doc["artifacts"].append({"kind": "mcu_firmware", "name": "motor-fw", "target": "motor", **firmware})
    doc["requires"] = [{"app": "lidar", "version": ">=1.0.0"}]
    again = documents(content, fleet)
    assert again.index is not None and again.index.fallbacks == []
    assert all(again.index.targets[name] is targets for name, targets in before.items())
    assert all_errors(again) == [
        ("releases/nav/1.1.0.yaml", Reason.CONFIG_INVALID),
        ("releases/nav/1.1.0.yaml", Reason.REQUIRES_UNKNOWN_APP),
        ("releases/nav/1.1.0.yaml", Reason.UNSUPPORTED_ARTIFACT),
    ]


def test_a_version_equal_but_for_build_metadata_is_refused(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.release("nav", "1.0.0+rebuild", config_schema=SCHEMA)
    again = documents(content, fleet)
    assert all_errors(again) == [("releases/nav/1.0.0+rebuild.yaml", Reason.DUPLICATE_ID)]


def test_a_rollout_pointed_at_a_release_that_requires_the_other_delivered_app_closes_a_cycle(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.docs[release_path("arm", "1.0.0")]["requires"] = [{"app": "nav", "version": ">=1.0.0"}]
    fleet.write()
    content = kept(fleet)
    assert content.parts[REQUIRES_CYCLES] == ()
    fleet.release("nav", "1.1.0", config_schema=SCHEMA, requires=[{"app": "arm", "version": ">=1.0.0"}])
    fleet.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production"])
    again = documents(content, fleet)
    assert [d.reason for d in again.parts[REQUIRES_CYCLES]] == [Reason.REQUIRES_CYCLE] * 2
    fleet.docs[rollout_path("nav-1-0-0")]["aborted"] = True  # delivers to nobody: no cycle
    aborted = documents(again, fleet)
    assert aborted.parts[REQUIRES_CYCLES] == ()


# --- what takes the full check -------------------------------------------------------------------------


FULL: dict[str, Callable[[FleetRepoBuilder], object]] = {
    "a rollout that fails to load": lambda f: (
        f.docs.pop(rollout_path("nav-1-0-0")),
        f.file(rollout_path("nav-1-0-0"), "kind: [unclosed\n"),
    ),
    "a release naming another version than its path": lambda f: f.file(
        release_path("nav", "1.1.0"), f.read(release_path("nav", "1.0.0"))
    ),
    "a rollout naming another rollout": lambda f: f.file(
        rollout_path("nav-copy"), f.read(rollout_path("nav-1-0-0"))
    ),
    "a cohort that fails to load": lambda f: (
        f.docs.pop(cohort_path("canary")),
        f.file(cohort_path("canary"), "kind: [unclosed\n"),
    ),
    "a cohort naming another cohort": lambda f: f.file(cohort_path("copy"), f.read(cohort_path("canary"))),
    "a config that fails to load": lambda f: f.file(config_path("nav", "cohort-canary"), "values: [1\n"),
    "a config naming another scope than its file": lambda f: f.config(
        "nav", "cohort-canary", {"max_speed": 1.0}, scope="device"
    ),
    "a rollout and a withdrawal": lambda f: (
        f.rollout("arm-1-0-0", app="arm", release="1.0.0", cohorts=["berlin"]),
        f.withdrawal("arm", "1.0.0", "bad build"),
    ),
}


@pytest.mark.parametrize("change", list(FULL.values()), ids=list(FULL))
def test_what_the_index_cannot_follow_takes_the_full_check(
    tmp_path: Path, change: Callable[[FleetRepoBuilder], object]
) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    change(fleet)
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.NONE and again.index is not None


def test_a_rollout_that_failed_to_load_is_fixed_through_the_full_check(tmp_path: Path) -> None:
    """The loader's finding on the broken file is the previous check's; only a full load drops it."""
    fleet = base_fleet(tmp_path)
    fleet.docs.pop(rollout_path("nav-1-0-0"))
    fleet.file(rollout_path("nav-1-0-0"), "kind: [unclosed\n")
    fleet.write()
    content = kept(fleet)
    assert content.documents
    fleet.raw.pop(rollout_path("nav-1-0-0"))
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary"])
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.NONE and again.documents == ()


def test_a_removed_rollout_is_rechecked_from_the_index_and_its_document_dropped_from_the_memo(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    memo = DocumentMemo()
    content = kept(fleet, memo)
    fleet.remove(rollout_path("arm-1-0-0"))
    gone = documents(content, fleet, memo)
    assert rollout_path("arm-1-0-0") not in memo.paths() and memo.last.parsed == []
    assert gone.index is not None and "arm-1-0-0" not in gone.index.targets
    assert not any(name.endswith("arm-1-0-0") for name in gone.parts)
    fleet.rollout("arm-1-0-0", app="arm", release="1.0.0", cohorts=["berlin"])
    back = documents(gone, fleet, memo)
    assert memo.last.parsed == [rollout_path("arm-1-0-0")]
    assert back.index is not None and "arm-1-0-0" in back.index.targets


def test_only_the_changed_release_and_rollout_files_are_parsed(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    memo = DocumentMemo()
    content = kept(fleet, memo)
    parsed = memo.parsed
    fleet.release("nav", "1.1.0", config_schema=SCHEMA)
    fleet.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production"])
    fleet.device("amr-005", site="osaka")
    again = documents(content, fleet, memo)
    assert memo.parsed == parsed + 3
    assert sorted(memo.last.parsed) == [
        device_path("amr-005"),
        release_path("nav", "1.1.0"),
        rollout_path("nav-1-0-0"),
    ]
    assert memo.paths() == frozenset(p for p in again.files if p.endswith(".yaml"))


def test_a_kept_check_whose_index_moved_on_through_a_rollout_commit_is_checked_in_full(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    first = kept(fleet)
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary"])
    second = documents(first, fleet)
    assert second.index is first.index
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"])
    _, reuse = recheck(first, fleet)
    assert reuse is Reuse.NONE


# --- the index's selections are planning's own ---------------------------------------------------------


ROLLOUT_CHANGES: dict[str, Callable[[FleetRepoBuilder], object]] = {
    "retargeted to a selector cohort": lambda f: f.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["berlin"]
    ),
    "robots listed, one unknown": lambda f: f.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", devices=["amr-003", "amr-008", "ghost"]
    ),
    "a cohort listing an unknown robot": lambda f: f.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["orphans", "canary"]
    ),
    "paused": lambda f: f.rollout("arm-1-0-0", app="arm", release="1.0.0", cohorts=["line-1"], paused=True),
    "aborted": lambda f: f.rollout("arm-1-0-0", app="arm", release="1.0.0", cohorts=["line-1"], aborted=True),
    "a new release for arm robots only": lambda f: (
        f.release("nav", "1.1.0", config_schema=SCHEMA, compatibility={"families": ["arm"]}),
        f.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production", "berlin"]),
    ),
    "its release edited to exclude robots": lambda f: f.release(
        "arm", "1.0.0", config_schema={"type": "object"}, compatibility={"hardware_revision": {"min": 3}}
    ),
    "a new rollout named before the others": lambda f: f.rollout(
        "a-arm", app="arm", release="1.0.0", cohorts=["canary"]
    ),
    "a rollout removed": lambda f: f.remove(rollout_path("arm-1-0-0")),
    "with robots in the same commit": lambda f: (
        f.device("amr-002", site="berlin", labels={"line": "1"}),
        f.device("amr-050", site="berlin", labels={"line": "1"}),
        f.rollout("arm-1-0-0", app="arm", release="1.0.0", cohorts=["berlin", "canary"]),
    ),
    "its release removed": lambda f: f.remove(release_path("arm", "1.0.0")),
    "a release removed that no rollout names": lambda f: (
        f.remove(release_path("arm", "1.0.0")),
        f.rollout("arm-1-0-0", app="arm", release="2.0.0", cohorts=["berlin"]),
        f.release("arm", "2.0.0", config_schema={"type": "object"}),
    ),
    "a rollout and its cohort": lambda f: (
        f.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary"]),
        f.cohort("canary", ["amr-002"], stage="canary"),
    ),
    "a cohort's robots listed again": lambda f: f.cohort(
        "production", ["amr-004", "amr-005", "amr-006", "ghost-3"], stage="production"
    ),
    "a cohort's stage changed, its robots kept": lambda f: f.cohort(
        "production", ["amr-002", "amr-003", "amr-004"], stage="canary"
    ),
    "a selector cohort taking other robots": lambda f: f.cohort(
        "berlin", selector={"sites": ["osaka"]}, stage="staging", devices=["amr-001"]
    ),
    "a cohort's maintenance windows": lambda f: f.docs[cohort_path("line-1")].update(
        maintenance_windows=[{"days": ["mon"], "start": "01:00", "end": "03:00"}]
    ),
    "a cohort removed that rollouts and a config name": lambda f: f.remove(cohort_path("berlin")),
    "a new cohort a wave names": lambda f: (
        f.cohort("night", selector={"labels": {"line": "2"}}, stage="canary", devices=[]),
        f.rollout(
            "arm-1-0-0",
            app="arm",
            release="1.0.0",
            cohorts=["berlin"],
            strategy={
                "type": "waves",
                "waves": [{"name": "n", "cohort": "night"}, {"name": "r", "percent": 100}],
            },
        ),
    ),
    "a cohort and a robot moving into it": lambda f: (
        f.cohort("canary", ["amr-001", "amr-007"], stage="canary"),
        f.device("amr-007", site="osaka", labels={"line": "1"}),
        f.device("amr-009", site="berlin", labels={"line": "1"}),
    ),
}


@pytest.mark.parametrize("change", list(ROLLOUT_CHANGES.values()), ids=list(ROLLOUT_CHANGES))
def test_a_rollout_or_release_change_selects_as_planning_resolves_targets(
    tmp_path: Path, change: Callable[[FleetRepoBuilder], object]
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.cohort("orphans", ["amr-002", "ghost-2"], stage="staging")
    fleet.device("amr-003", hardware={"model": "mk2", "revision": 4})
    fleet.write()
    content = kept(fleet)
    change(fleet)
    again = documents(content, fleet)
    assert again.index is not None
    fresh = Context(again.spec)
    mine = again.index.context(again.spec)
    assert list(mine.selections) == list(fresh.selections)  # by name: the first delivery is the first
    assert {name: (s.eligible, s.skipped, dict(s.cohorts_of)) for name, s in mine.selections.items()} == {
        name: (s.eligible, s.skipped, dict(s.cohorts_of)) for name, s in fresh.selections.items()
    }
    assert mine.deliveries == fresh.deliveries
    assert (mine.members, mine.memberships, mine.stages) == (fresh.members, fresh.memberships, fresh.stages)
    assert list(again.spec.releases) == list(fresh.spec.releases)
    assert list(again.spec.rollouts) == list(check_content(again.files).spec.rollouts)  # the loader's order


# --- with real gpg: what judge refuses -----------------------------------------------------------------


def signed_fleet(root: Path, keys: KeyFactory) -> tuple[FleetRepoBuilder, DocumentMemo, ContentCheck]:
    fleet = FleetRepoBuilder(root, keys=keys).standard()
    fleet.release("nav", "1.1.0", config_schema=SCHEMA)
    fleet.write()
    memo = DocumentMemo()
    content, _ = recheck_content(None, fleet.snapshot(), memo=memo)
    assert judge(content).ok
    return fleet, memo, content


def judged_as_in_full(content: ContentCheck, fleet: FleetRepoBuilder, memo: DocumentMemo) -> ContentCheck:
    fleet.write()
    files = fleet.snapshot()
    again, reuse = recheck_content(content, files, memo=memo)
    assert reuse is Reuse.DOCUMENTS
    for strict in (False, True):
        mine, theirs = judge(again, strict=strict), validate_snapshot(files, strict=strict)
        for fmt in Format:
            assert render(mine, fmt) == render(theirs, fmt), fmt
        assert mine.spec == theirs.spec
    return again


def test_a_release_edited_in_place_is_refused_by_its_signature_and_its_rollouts_approvals(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Its bytes change under the signatures and approvals made over the old ones: the release's
    signatures no longer verify and the rollout delivering it loses its approvals. Against the
    last processed commit (``--base``) it is also refused as modified, through the full check."""
    fleet, memo, content = signed_fleet(tmp_path, keys)
    old = content.files
    path = release_path("nav", "1.0.0")
    fleet.docs.pop(path)  # written by hand below: nobody signs it again
    fleet.approvers_of[rollout_path("nav-1-0-0")] = []  # nor approves its rollout again
    fleet.file(path, fleet.read(path).replace(b"registry.fleet.test", b"evil.example"))
    again = judged_as_in_full(content, fleet, memo)
    refused = {(d.file, d.reason) for d in judge(again).errors}
    assert (path, Reason.BELOW_THRESHOLD) in refused
    assert ("rollouts/nav-1-0-0.yaml", Reason.APPROVAL_MISSING) in refused
    against_base = check_content(again.files, base=old)
    assert [d.reason for d in against_base.parts[IMMUTABILITY]] == [Reason.RELEASE_MODIFIED]
    assert recheck_content(against_base, again.files)[1] is Reuse.NONE


def test_a_rollout_pointed_at_a_withdrawn_release_is_stalled_and_refused_under_strict(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """nav 1.1.0 is withdrawn (approved); a rollout moved onto it is warned about as a full check
    warns (the controller stalls it) and refused under --strict; an unapproved rollout edit is
    refused for its approvals."""
    fleet, memo, content = signed_fleet(tmp_path, keys)
    fleet.withdrawal("nav", "1.1.0", "crashes on start")
    fleet.write()
    content, reuse = recheck_content(content, fleet.snapshot(), memo=memo)
    assert reuse is Reuse.NONE and judge(content).ok  # a withdrawal is a document: the full check
    fleet.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production"])
    again = judged_as_in_full(content, fleet, memo)
    warned = [d for d in judge(again).warnings if d.reason is Reason.RELEASE_WITHDRAWN]
    assert [d.file for d in warned] == ["rollouts/nav-1-0-0.yaml"]
    assert not judge(again, strict=True).ok
    fleet.approvers_of["rollouts/nav-1-1-0.yaml"] = []
    fleet.rollout("nav-1-1-0", app="nav", release="1.1.0", cohorts=["canary"], approvers=[])
    unapproved = judged_as_in_full(again, fleet, memo)
    assert ("rollouts/nav-1-1-0.yaml", Reason.APPROVAL_MISSING) in {
        (d.file, d.reason) for d in judge(unapproved).errors
    }


# --- the checks the release path runs on every such commit, made cheap -----------------------------------


def equal_versions_pairwise(versions: list[str]) -> dict[str, str]:
    """The rule as it was first written: each version against every earlier one (sorted order)."""
    found: dict[str, str] = {}
    ordered = sorted(versions)
    for index, version in enumerate(ordered):
        for earlier in ordered[:index]:
            if parse_version(version).compare(parse_version(earlier)) == 0:
                found[version] = earlier
                break
    return found


VERSION_SETS = {
    "build metadata twice": ["1.0.0", "1.0.0+a", "1.0.0+b", "1.1.0"],
    "only builds": ["2.0.0+x", "2.0.0+y", "2.0.1+x"],
    "prereleases differ": ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.1+b", "1.0.0"],
    "numeric prerelease parts": ["1.0.0-rc.10", "1.0.0-rc.9", "1.0.0-rc.9+z"],
    "none equal": ["1.0.0", "1.0.1", "1.1.0", "10.0.0"],
}


@pytest.mark.parametrize("versions", list(VERSION_SETS.values()), ids=list(VERSION_SETS))
def test_equal_versions_are_found_as_the_pairwise_rule_finds_them(
    tmp_path: Path, versions: list[str]
) -> None:
    """Grouped by major.minor.patch and parsed once, the check names the same versions and the
    same earlier version for each as comparing every pair."""
    fleet = base_fleet(tmp_path)
    for version in versions:
        fleet.release("lidar", version)
    fleet.write()
    found = {
        d.file.removeprefix("releases/lidar/").removesuffix(".yaml"): d.message.split(" equals ")[1].split(
            " "
        )[0]
        for d in check_content(fleet.snapshot()).parts[REFERENCES_DOCUMENTS]
        if d.reason is Reason.DUPLICATE_ID and d.file.startswith("releases/lidar/")
    }
    assert found == equal_versions_pairwise(versions)


@pytest.mark.parametrize(
    ("path", "written"),
    [
        ("/etc/nav/config.yaml", "/etc/nav/config.yaml"),
        ("/etc//nav/./config.yaml", "/etc/nav/config.yaml"),
        ("config.yaml", None),
        ("conf/nav.yaml", None),
    ],
)
def test_only_absolute_config_paths_can_meet_and_are_compared_normalised(
    path: str, written: str | None
) -> None:
    assert apps.absolute(path) == written


def test_release_and_rollout_commits_on_a_generated_fleet_recheck_as_a_full_check() -> None:
    """bench.fleetgen's fleet (selector cohorts, a waves and a canary rollout, configs): releases
    added and rollouts pointed at them, paused, resumed, aborted, retargeted, removed and added
    back, cohorts' selectors, lists and stages changed, some with robot edits in the same commit,
    each against a fresh full check."""
    files = dict(fleetgen.generate(240, 12).files)
    memo = DocumentMemo()
    content, _ = recheck_content(None, files, memo=memo)
    rng = random.Random(11)
    rollouts = {
        "navigator": "rollouts/navigator-rollout.yaml",
        "arm-control": "rollouts/arm-control-rollout.yaml",
    }
    original = {path: files[path] for path in rollouts.values()}
    taken: dict[Reuse, int] = {}
    for serial in range(30):
        files = dict(files)
        app = rng.choice(sorted(rollouts))
        path = rollouts[app]
        choice = rng.randrange(7)
        if choice == 0 or path not in files:
            files[path] = original[path]
        if choice == 1:
            version = f"50.{serial}.0"
            files[f"releases/{app}/{version}.yaml"] = fleetgen.release_yaml(app, version)
            files[path] = re.sub(rb"\nrelease: [^\n]*\n", f"\nrelease: {version}\n".encode(), files[path])
        elif choice == 2:
            flag = rng.choice([b"paused", b"aborted"])
            files[path] = files[path].replace(b"\nname:", b"\n" + flag + b": true\nname:", 1)
        elif choice == 3:
            cohorts = rng.sample(["staging", "canary", "production-osaka", "arms"], k=rng.randint(1, 3))
            files[path] = re.sub(
                rb"cohorts: \[[^\]]*\]", f"cohorts: [{', '.join(cohorts)}]".encode(), files[path]
            )
        elif choice == 4:
            del files[path]
        elif choice == 5:
            cohort = rng.choice(
                ["cohorts/canary.yaml", "cohorts/production-osaka.yaml", "cohorts/staging.yaml"]
            )
            files[cohort] = re.sub(
                rb"stage: \w+\n",
                b"stage: " + rng.choice([b"canary", b"staging", b"production"]) + b"\n",
                files[cohort],
            )
            site = rng.choice([b"munich-2", b"osaka-1", b"nowhere"])
            files[cohort] = re.sub(rb"sites: \[[^\]]*\]", b"sites: [" + site + b"]", files[cohort])
            listed = ", ".join(fleetgen.device_id(rng.randrange(240)) for _ in range(rng.randint(1, 4)))
            files[cohort] = re.sub(rb"devices: \[[^\]]*\]", f"devices: [{listed}]".encode(), files[cohort])
        if rng.random() < 0.3:
            index = rng.randrange(240)
            shape = rng.randrange(12) * 1000 + index % 1000
            text = fleetgen.device_yaml(shape)
            files[f"devices/{fleetgen.device_id(index)}.yaml"] = text.replace(
                fleetgen.device_id(shape).encode(), fleetgen.device_id(index).encode()
            )
        content, reuse = recheck_content(content, files, memo=memo)
        taken[reuse] = taken.get(reuse, 0) + 1
        assert_same_content(content, check_content(files))
    assert taken.get(Reuse.DOCUMENTS, 0) >= 20, taken


# --- config instances: the robots they are a layer of ----------------------------------------------------


def test_a_cohort_config_edit_that_breaks_its_members_merged_config_is_refused_as_in_full(
    tmp_path: Path,
) -> None:
    """Only the production robots' merged nav config takes the new layer; refused on the layer,
    naming them, exactly as a full check; fixed, accepted again."""
    fleet = base_fleet(tmp_path)
    fleet.config("nav", "cohort-production", {"max_speed": 1.2})
    fleet.write()
    content = kept(fleet)
    fleet.config("nav", "cohort-production", {"max_speed": 9.0})
    again = documents(content, fleet)
    assert again.index is not None and again.index.fallbacks == [CONFIGS_ROBOTS]
    assert all_errors(again) == [("configs/nav/cohort-production.yaml", Reason.CONFIG_INVALID)]
    assert again.parts[CONFIGS_ROBOTS][0].message.startswith("robots amr-002, amr-003, amr-004:")
    fleet.config("nav", "cohort-production", {"max_speed": 1.9})
    fixed = documents(again, fleet)
    assert all_errors(fixed) == []


def test_a_default_config_edited_under_a_kept_finding_is_checked_again(tmp_path: Path) -> None:
    """The merged-config findings are kept by release and layer paths: an edited layer's are
    dropped, so the same paths with other values are judged anew (both ways)."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.config("nav", "default", {"max_speed": 3.0, "map": "hall-a"})
    bad = documents(content, fleet)
    assert all_errors(bad) == [("configs/nav/default.yaml", Reason.CONFIG_INVALID)]
    fleet.config("nav", "default", {"max_speed": 1.0, "map": "hall-a"})
    good = documents(bad, fleet)
    assert all_errors(good) == []


def test_a_robot_config_added_and_removed_and_a_config_of_an_app_without_releases(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    memo = DocumentMemo()
    content = kept(fleet, memo)
    fleet.config("nav", "device-amr-003", {"colour": "red"})  # not in nav's schema
    fleet.config("lidar", "default", {"range": 30})
    again = documents(content, fleet, memo)
    assert all_errors(again) == [
        ("configs/lidar/default.yaml", Reason.UNKNOWN_REFERENCE),
        ("configs/nav/device-amr-003.yaml", Reason.CONFIG_INVALID),
    ]
    fleet.remove(config_path("nav", "device-amr-003"))
    fleet.remove(config_path("lidar", "default"))
    gone = documents(again, fleet, memo)
    assert all_errors(gone) == [] and "lidar" not in gone.spec.configs
    assert config_path("nav", "device-amr-003") not in memo.paths()


def test_an_oversized_config_file_is_refused_as_in_full(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.config("nav", "cohort-canary", {"map": "x" * 70_000})
    again = documents(content, fleet)
    assert ("configs/nav/cohort-canary.yaml", Reason.TOO_LARGE) in all_errors(again)
