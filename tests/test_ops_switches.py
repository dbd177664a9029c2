"""``fleetcd pause``, ``resume`` and ``rollback``: the commits they write, on real git with real gpg.

Pause/resume must keep the approvals valid (they flip an operational switch) and keep the file's
comments; rollback must set the previous release, say loudly that approvals are needed again,
restore earlier approvals of exactly the same content, and never commit someone else's edits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.test_ops_read as shared
from controller.state.model import RolloutPhase
from fleetcd.layout import approval_path, rollout_path
from fleetcd.reasons import Reason
from fleetcd.validation.worktree import validate_work_tree
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import ControllerWorld
from tests.test_ops_read import state_of

world = shared.world  # fixture: the controller scenario (the shared gpg keys come from conftest)

AUTHOR = ["--author", "Ops Person <ops@fleet.test>"]
COMMENTED_ROLLOUT = """\
# nav to both cohorts; reviewers: check the canary first.
apiVersion: fleetcd.dev/v1
kind: Rollout
name: nav
app: nav
release: "{version}"  # bump in a PR
targets:
  cohorts: [canary, production]
paused: false  # flip with `fleetcd pause nav`
"""


def small_fleet(root: Path, keys: KeyFactory, *, rollout_version: str = "1.0.0") -> FleetRepoBuilder:
    """Four robots in canary + production, nav 1.0.0, and an approved, commented rollout."""
    fleet = FleetRepoBuilder(root, keys=keys)
    for index in range(1, 5):
        fleet.device(f"amr-00{index}")
    fleet.cohort("canary", ["amr-001"], stage="canary")
    fleet.cohort("production", ["amr-002", "amr-003", "amr-004"], stage="production")
    fleet.release("nav", "1.0.0")
    if rollout_version != "1.0.0":
        fleet.release("nav", rollout_version)
    fleet.rollout("nav", app="nav", release=rollout_version, cohorts=["canary", "production"])
    fleet.file(rollout_path("nav"), COMMENTED_ROLLOUT.format(version=rollout_version))
    fleet.git_init()
    fleet.commit("nav to the fleet")
    return fleet


def bump(fleet: FleetRepoBuilder, version: str) -> None:
    """Publish ``version`` and move the rollout to it, re-approved, in one commit."""
    fleet.release("nav", version)
    fleet.file(rollout_path("nav"), COMMENTED_ROLLOUT.format(version=version))
    fleet.commit(f"nav {version}")


def flat(text: str) -> str:
    """Text with its line wrapping undone (commit messages are folded at 72 columns)."""
    return " ".join(text.split())


def commits(fleet: FleetRepoBuilder) -> int:
    return int(fleet.git("rev-list", "--count", "HEAD"))


def test_pause_commits_one_line_and_keeps_the_approvals_valid(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    before = fleet.read(rollout_path("nav")).decode()
    approvals = {p: fleet.read(p) for p in (approval_path("nav", k.fingerprint) for k in fleet.approver_keys)}

    code, out, err = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    head = fleet.git("rev-parse", "HEAD")
    assert out.splitlines()[:2] == [f"committed {head}", "    Pause rollout nav"]
    assert fleet.git("log", "-1", "--format=%an <%ae>") == "Ops Person <ops@fleet.test>"
    assert fleet.git("status", "--porcelain") == ""
    assert fleet.git("diff", "--name-only", "HEAD~1") == rollout_path("nav")
    after = fleet.read(rollout_path("nav")).decode()
    assert after == before.replace("paused: false  # flip", "paused: true  # flip")
    assert {p: fleet.read(p) for p in approvals} == approvals
    assert validate_work_tree(fleet.root).ok

    code, out, _ = fleetcd(capsys, "resume", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0 and "Resume rollout nav" in out
    assert fleet.read(rollout_path("nav")).decode() == before
    assert validate_work_tree(fleet.root).ok
    assert commits(fleet) == 3


def test_pause_inserts_the_switch_when_the_file_has_none(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    without = COMMENTED_ROLLOUT.format(version="1.0.0").replace(
        "paused: false  # flip with `fleetcd pause nav`\n", ""
    )
    fleet.file(rollout_path("nav"), without)
    fleet.commit("no switch")  # re-approved: same approval content, the switch is not covered
    code, _, err = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    text = fleet.read(rollout_path("nav")).decode()
    assert text.startswith(without) and text.endswith("paused: true\n")
    assert validate_work_tree(fleet.root).ok


def test_pausing_a_paused_rollout_writes_nothing(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    assert fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)[0] == 0
    code, out, _ = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert (code, out.strip()) == (0, "nothing to do: nav is already paused")
    assert commits(fleet) == 2


def test_pause_refuses_to_commit_over_other_uncommitted_edits(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    (fleet.root / "devices" / "README.md").write_text("work in progress\n")
    code, _, err = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 4 and "devices/README.md" in err and "--no-commit" in err
    assert b"paused: false" in fleet.read(rollout_path("nav"))

    code, out, _ = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), "--no-commit")
    assert code == 0 and "not committed" in out
    assert b"paused: true" in fleet.read(rollout_path("nav")) and commits(fleet) == 1


def test_a_paused_rollout_is_paused_by_the_controller(
    world: ControllerWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    code, _, err = fleetcd(capsys, "pause", "nav", "--repo", str(world.fleet.root), *AUTHOR)
    assert code == 0, err
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(10)
    world.reconcile()
    state = state_of(world)
    assert state.rollouts["nav"].phase is RolloutPhase.PAUSED
    assert any(b'"rollout_paused"' in data for data in state.audit.values())


def test_rollback_restores_the_approvals_of_the_content_it_returns_to(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    before = fleet.read(rollout_path("nav")).decode()

    code, out, err = fleetcd(capsys, "rollback", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    assert "Roll back rollout nav: nav 1.1.0 -> 1.0.0" in out
    assert "rolling back changes what approvers signed" in flat(out)
    assert "Restored 2 earlier approval(s)" in flat(out)
    assert "APPROVALS NEEDED" not in out + err
    assert fleet.read(rollout_path("nav")).decode() == before.replace('"1.1.0"', '"1.0.0"')
    assert validate_work_tree(fleet.root).ok
    assert fleet.git("status", "--porcelain") == ""


def test_rollback_of_content_nobody_approved_says_approvals_are_needed(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys, rollout_version="1.1.0")  # 1.0.0 never rolled out here

    code, _out, err = fleetcd(capsys, "rollback", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    assert b'release: "1.0.0"  # bump in a PR' in fleet.read(rollout_path("nav"))
    assert "warning: APPROVALS NEEDED: 0 of 2 approvals for stage production verified" in err
    assert "fleetcd approve rollouts/nav.yaml" in err
    assert not (fleet.root / "approvals" / "nav").exists()  # stale approvals removed
    result = validate_work_tree(fleet.root)
    assert {d.reason for d in result.errors} == {Reason.APPROVAL_MISSING}
    assert "APPROVALS NEEDED: 0 of 2" in flat(fleet.git("log", "-1", "--format=%B"))


def test_rollback_with_approve_signs_new_approvals(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys, rollout_version="1.1.0")
    code, out, err = fleetcd(
        capsys,
        "rollback",
        "nav",
        "--approve",
        "--gnupghome",
        str(keys.home),
        "--repo",
        str(fleet.root),
        *AUTHOR,
    )
    assert code == 0, err
    assert "2 of 2 approvals for stage production verified (alice, bob)" in flat(out)
    assert validate_work_tree(fleet.root).ok
    assert fleet.git("status", "--porcelain") == ""  # the approvals are in the commit


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--to", "0.9.0"], 1, "nav 0.9.0 is not published"),
        (["--to", "1.1.0"], 0, "already has nav 1.1.0"),
        ([], 0, "Roll back rollout nav"),
    ],
    ids=["unpublished", "same-version", "default-previous"],
)
def test_rollback_target_decision_table(
    tmp_path: Path,
    keys: KeyFactory,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    says: str,
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    got, out, err = fleetcd(capsys, "rollback", "nav", *args, "--repo", str(fleet.root), *AUTHOR)
    assert (got, says in out + err) == (code, True), out + err
    assert commits(fleet) == (3 if says.startswith("Roll back") else 2)


def test_a_bad_author_is_refused_before_anything_is_written(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    code, _, err = fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), "--author", "nobody")
    assert code == 4 and "not of the form 'Name <email>'" in err
    assert fleet.git("status", "--porcelain") == ""


def test_rolling_back_a_paused_rollout_says_it_starts_only_after_resume(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rollback keeps the switch as it is: an operator who paused a bad release and rolls back must
    hear that nothing moves until they resume."""
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    assert fleetcd(capsys, "pause", "nav", "--repo", str(fleet.root), *AUTHOR)[0] == 0
    code, out, err = fleetcd(capsys, "rollback", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    assert "The rollout is paused: the rollback starts after `fleetcd resume nav`" in flat(out)
    text = fleet.read(rollout_path("nav")).decode()
    assert 'release: "1.0.0"' in text and "paused: true" in text


def test_a_release_file_whose_version_is_no_semver_is_never_a_rollback_target(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """``releases/nav/latest.yaml`` sorts nowhere: the previous version is still 1.0.0, and the
    file stays validation's to report."""
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    fleet.file("releases/nav/latest.yaml", fleet.read("releases/nav/1.1.0.yaml"))
    fleet.commit("someone's shortcut")
    code, out, err = fleetcd(capsys, "rollback", "nav", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    assert "nav 1.1.0 -> 1.0.0" in out
    code, _, err = fleetcd(capsys, "rollback", "nav", "--to", "latest", "--repo", str(fleet.root), *AUTHOR)
    assert code == 1, err
    assert "published: 1.0.0, 1.1.0" in err
