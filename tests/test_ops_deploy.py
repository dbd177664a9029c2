"""``fleetcd deploy APP@VERSION --to TARGET --idempotency-key K``: one commit per key, ever.

Retries of the same request write nothing; the same key for another request is refused; a deploy
that would not validate (unknown release or target, overlap) is refused with the diagnostic and
leaves the tree untouched; one that lacks only approvals is committed and says so. The last test
runs the written rollout through a real reconcile.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import tests.test_ops_read as shared
from controller.ops.deploy import rollout_name
from fleetcd.models.base import SAFE_NAME_MAX, SAFE_NAME_PATTERN
from fleetcd.validation.worktree import validate_work_tree
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import ControllerWorld
from tests.test_ops_read import state_of
from tests.test_ops_switches import AUTHOR, commits

world = shared.world  # fixture: the controller scenario (the shared gpg keys come from conftest)


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """Robots in staging (no approvals needed) and canary (one), nav 1.0.0 and 1.1.0, no rollouts."""
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys)
    for device in ("stg-1", "can-1", "can-2"):
        fleet.device(device)
    fleet.cohort("staging", ["stg-1"], stage="staging")
    fleet.cohort("canary", ["can-1", "can-2"], stage="canary")
    fleet.release("nav", "1.0.0")
    fleet.release("nav", "1.1.0")
    fleet.fleet["defaults"] = {"strategy": {"type": "canary", "percent": 50, "soak_seconds": 600}}
    fleet.git_init()
    fleet.commit("a fleet with nothing rolling out")
    return fleet


def deploy(capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, *args: str) -> tuple[int, str, str]:
    return fleetcd(capsys, "deploy", *args, "--repo", str(fleet.root), *AUTHOR)


def test_the_same_key_twice_writes_one_commit(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    request = ["nav@1.1.0", "--to", "staging", "--idempotency-key", "ci-42"]
    code, out, err = deploy(capsys, fleet, *request)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"committed {fleet.git('rev-parse', 'HEAD')}",
        "    Deploy nav 1.1.0 to staging",
    ]
    text = fleet.read("rollouts/nav-ci-42.yaml").decode()
    assert text.startswith("# fleetcd-idempotency-key: ci-42\n")
    doc = yaml.safe_load(text)
    assert (doc["name"], doc["app"], doc["release"], doc["targets"]) == (
        "nav-ci-42",
        "nav",
        "1.1.0",
        {"cohorts": ["staging"]},
    )
    assert doc["strategy"]["type"] == "canary" and doc["strategy"]["percent"] == 50  # the fleet default
    assert validate_work_tree(fleet.root).ok

    code, out, _ = deploy(capsys, fleet, *request)
    assert code == 0
    assert out.startswith("nothing to do: idempotency key 'ci-42' already deployed nav@1.1.0 --to staging")
    assert commits(fleet) == 2


@pytest.mark.parametrize(
    "request_args",
    [
        ["nav@1.0.0", "--to", "staging"],
        ["nav@1.1.0", "--to", "canary"],
        ["nav@1.1.0", "--to", "staging", "--to", "canary"],
    ],
    ids=["other-version", "other-target", "extra-target"],
)
def test_a_key_reused_for_another_request_exits_1(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str], request_args: list[str]
) -> None:
    assert deploy(capsys, fleet, "nav@1.1.0", "--to", "staging", "--idempotency-key", "ci-42")[0] == 0
    code, out, err = deploy(capsys, fleet, *request_args, "--idempotency-key", "ci-42")
    assert (code, out) == (1, "")
    assert "rollouts/nav-ci-42.yaml:1:" in err and "was used for nav@1.1.0 --to staging" in err
    assert commits(fleet) == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nav@9.9.9", "--to", "staging"], "release nav 9.9.9 does not exist"),
        (["nav@1.1.0", "--to", "mars"], "target 'mars' is neither a cohort"),
        (["perception@1.0.0", "--to", "staging"], "does not exist"),
    ],
    ids=["unknown-release", "unknown-target", "unknown-app"],
)
def test_a_deploy_that_would_not_validate_is_refused_with_the_diagnostic(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, _, err = deploy(capsys, fleet, *args, "--idempotency-key", "k1")
    assert code == 1 and says in err, err
    assert "rollouts/" in err
    assert not (fleet.root / "rollouts").exists() and commits(fleet) == 1


def test_a_second_rollout_of_the_app_to_the_same_robots_is_refused(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(capsys, fleet, "nav@1.0.0", "--to", "staging", "--idempotency-key", "first")[0] == 0
    code, _, err = deploy(capsys, fleet, "nav@1.1.0", "--to", "stg-1", "--idempotency-key", "second")
    assert code == 1 and "also targeted by rollout 'nav-first'" in err, err
    assert commits(fleet) == 2


def test_a_deploy_needing_approvals_is_committed_and_says_so(
    fleet: FleetRepoBuilder, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = deploy(capsys, fleet, "nav@1.1.0", "--to", "canary", "--idempotency-key", "pr-7")
    assert code == 0
    assert "warning: APPROVALS NEEDED: 0 of 1 approvals for stage canary verified" in err
    assert not validate_work_tree(fleet.root).ok

    code, _out, err = deploy(
        capsys, fleet, "nav@1.0.0", "--to", "staging", "--idempotency-key", "pr-8", "--approve",
        "--gnupghome", str(keys.home),
    )  # fmt: skip
    assert code == 0 and "APPROVALS NEEDED" not in err


def test_rollout_names_are_safe_and_distinct() -> None:
    assert rollout_name("nav", "ci-42") == "nav-ci-42"
    lossy = rollout_name("nav", "CI run #42")
    assert re.fullmatch(r"nav-CI-run-42-[0-9a-f]{8}", lossy)
    assert lossy != rollout_name("nav", "CI-run-42")  # safe as typed, so no hash: the two never collide
    long = rollout_name("nav", "x" * 120)
    assert len(long) == SAFE_NAME_MAX and re.fullmatch(SAFE_NAME_PATTERN, long)


def test_a_bad_idempotency_key_is_a_usage_error(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = deploy(capsys, fleet, "nav@1.1.0", "--to", "staging", "--idempotency-key", " ")
    assert code == 2 and "idempotency-key" in err


def test_a_deployed_rollout_is_picked_up_by_the_controller(
    world: ControllerWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.fleet.release("perception", "2.0.0")
    world.merge("perception 2.0.0")
    code, _, err = fleetcd(
        capsys, "deploy", "perception@2.0.0", "--to", "staging", "--idempotency-key", "run-1",
        "--repo", str(world.fleet.root), *AUTHOR,
    )  # fmt: skip
    assert code == 0, err
    world.fleet.git("push", "-q", str(world.server), "main")
    world.reconcile()
    state = state_of(world).rollouts["perception-run-1"]
    assert (state.app, state.version, state.generation) == ("perception", "2.0.0", 1)
    assert [
        d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments if d.app == "perception"
    ] == ["2.0.0"]


def test_approve_without_an_approver_key_is_refused_before_writing(
    fleet: FleetRepoBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "gnupg-empty"
    empty.mkdir(mode=0o700)
    code, _, err = deploy(
        capsys,
        fleet,
        "nav@1.1.0",
        "--to",
        "canary",
        "--idempotency-key",
        "k",
        "--approve",
        "--gnupghome",
        str(empty),
    )
    assert code == 4 and "no secret key of an approver" in err
    assert fleet.git("status", "--porcelain") == "" and commits(fleet) == 1
