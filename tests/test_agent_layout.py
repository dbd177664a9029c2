"""Stale or planted desired-state refs of the other layout must not freeze a robot (issue 10).

A plain git server (here a bare repository reached by path, as in every agent world) applies no
namespace, so a robot sees its desired state under both names when both exist:
``refs/namespaces/<id>/refs/fleetcd/desired/<id>`` (namespaced layout) and
``refs/fleetcd/desired/<id>`` (flat layout). Real controller reconciles, real gpg, real agent
cycles installing a real app (tests/sim/agent.py): the robot follows the name with the higher
verified serial and reports the conflict (agent.sync.layout), the controller removes the refs it
no longer owns (controller.delivery.prune), and ``fleetcd get devices`` shows a robot that refuses
its bundles.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from agent.sync.desired import DesiredFiles
from agent.sync.layout import Candidate, Judge, LayoutConflict, choose
from controller.cli import build
from controller.delivery.write import delivery_ref
from fleetcd.cli.main import run
from fleetcd.compat import UTC
from fleetcd.desired import BundleExpired, BundleRejected
from fleetcd.git.objects import list_refs, ref_target, update_refs
from fleetcd.git.refs import DESIRED_PREFIX, NAMESPACES_PREFIX, desired_ref, physical_desired_ref
from fleetcd.reasons import Reason
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import DEVICE, AgentWorld


def set_layout(world: AgentWorld, *, namespaces: bool) -> None:
    """The controller restarted with (``namespaces``) or without (``--flat-refs``) per-robot namespaces."""
    controller = world.controller
    controller.settings = replace(controller.settings, namespaces=namespaces)
    controller.sim.namespaces = namespaces


def server_refs(world: AgentWorld, prefix: str) -> dict[str, str]:
    return {
        ref: str(oid)
        for ref, oid in list_refs(pygit2.Repository(str(world.controller.server)), prefix).items()
    }


def point(world: AgentWorld, ref: str, target: str) -> None:
    """Someone with write access to the server points ``ref`` at the existing commit ``target``."""
    repo = pygit2.Repository(str(world.controller.server))
    update_refs(repo, {ref: (ref_target(repo, ref), pygit2.Oid(hex=target))})


def installed(world: AgentWorld, version: str) -> None:
    """One agent cycle installs ``version`` and the app answers with it."""
    result = world.once()
    assert not [e for e in result.errors if not isinstance(e, LayoutConflict)], result.errors
    assert world.answer(version) == version


@pytest.mark.parametrize("to_namespaces", [True, False], ids=["flat-to-namespaced", "namespaced-to-flat"])
def test_switch_from_flat_to_namespaced_refs_robots_follow_and_old_refs_are_removed(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer, to_namespaces: bool
) -> None:
    world = AgentWorld.create(tmp_path, keys, artifacts)
    try:
        set_layout(world, namespaces=not to_namespaces)
        world.publish("1.0.0")
        installed(world, "1.0.0")
        world.reconcile()
        old_ref = delivery_ref(DEVICE, namespaces=not to_namespaces)
        assert old_ref in server_refs(world, "refs/")

        set_layout(world, namespaces=to_namespaces)
        world.publish("1.1.0")

        new_ref = delivery_ref(DEVICE, namespaces=to_namespaces)
        listed = {**server_refs(world, NAMESPACES_PREFIX), **server_refs(world, DESIRED_PREFIX)}
        assert sorted(listed) == [new_ref], "the old layout's desired refs must be removed"
        result = world.once()
        assert result.error is None, result.errors
        assert world.answer("1.1.0") == "1.1.0"
        world.reconcile()
        (record,) = [r for r in world.records() if r.version == "1.1.0"]
        assert record.activity.value == "deployed"
    finally:
        world.close()


def test_planted_flat_ref_with_an_old_signed_bundle_does_not_freeze_the_robot(world: AgentWorld) -> None:
    world.publish("1.0.0")
    installed(world, "1.0.0")
    old = server_refs(world, NAMESPACES_PREFIX)[physical_desired_ref(DEVICE)]  # signed, serial N
    world.reconcile()
    world.publish("1.1.0")  # serial N + 1 under the namespaced name
    point(world, desired_ref(DEVICE), old)  # the flat name, planted with the old signed commit

    result = world.once()

    assert world.answer("1.1.0") == "1.1.0", "the robot followed the planted flat ref"
    conflicts = [e for e in result.errors if isinstance(e, LayoutConflict)]
    assert len(conflicts) == 1, result.errors
    assert f"both refs {physical_desired_ref(DEVICE)} and {desired_ref(DEVICE)} exist" in str(conflicts[0])
    assert f"following {physical_desired_ref(DEVICE)}" in str(conflicts[0])
    assert result.pushed and result.report is not None
    assert result.report.last_error is not None and "layout conflict: both refs" in result.report.last_error

    world.reconcile()  # the controller removes the ref it does not own
    assert desired_ref(DEVICE) not in server_refs(world, DESIRED_PREFIX)
    again = world.once()
    assert again.error is None, again.errors
    assert world.answer() == "1.1.0"


def test_get_devices_shows_a_robot_refusing_its_bundles(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    installed(world, "1.0.0")
    old = server_refs(world, NAMESPACES_PREFIX)[physical_desired_ref(DEVICE)]
    world.reconcile()
    world.publish("1.1.0")
    installed(world, "1.1.0")
    point(world, physical_desired_ref(DEVICE), old)  # its own ref, replayed: an older serial

    result = world.once()
    assert isinstance(result.error, BundleRejected) and result.pushed, result.errors
    assert world.answer() == "1.1.0"  # it keeps its last good state

    args = ["--repo", str(world.controller.server), "--cache", str(world.root / "ops-cache")]
    assert run(build(), ["get", "devices", *args, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["desired"]["state"] == "refusing"
    assert "serial" in row["desired"]["reason"]
    assert run(build(), ["get", "devices", *args]) == 0
    table = capsys.readouterr().out
    (line,) = [line for line in table.splitlines() if line.startswith(DEVICE)]
    assert "refusing: " in line, table


def test_a_stale_namespaced_ref_that_wins_ties_is_outranked_by_the_newer_flat_serial(
    world: AgentWorld,
) -> None:
    world.publish("1.0.0")
    installed(world, "1.0.0")
    old = server_refs(world, NAMESPACES_PREFIX)[physical_desired_ref(DEVICE)]
    world.reconcile()
    set_layout(world, namespaces=False)
    world.publish("1.1.0")
    point(world, physical_desired_ref(DEVICE), old)  # as if the controller could not remove it

    result = world.once()

    assert world.answer("1.1.0") == "1.1.0"
    (conflict,) = [e for e in result.errors if isinstance(e, LayoutConflict)]
    assert f"following {desired_ref(DEVICE)}" in str(conflict)


# --- the choice itself: a decision table ----------------------------------------------------------

PHYSICAL, FLAT = physical_desired_ref("r-1"), desired_ref("r-1")


def files(commit: str) -> DesiredFiles:
    return DesiredFiles(commit=commit, bundle=b"", root=b"", root_signature=b"", proof=b"", trust=b"")


def judged(verdicts: dict[str, int | Exception]) -> Judge:
    """A judge that gives each commit its serial, or raises its refusal."""

    def judge(found: DesiredFiles) -> int:
        verdict = verdicts[found.commit]
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    return judge


REFUSED = BundleRejected(Reason.SERIAL_ROLLBACK, "serial 3 is below the serial 4 this robot holds")
EXPIRED = BundleExpired(
    "expired", expires_at=datetime(2026, 1, 1, tzinfo=UTC), judged_at=datetime(2026, 1, 2, tzinfo=UTC)
)
UNREADABLE = BundleRejected(Reason.TOO_LARGE, "too large", file="bundle.json")
BOTH = [Candidate(PHYSICAL, files("a")), Candidate(FLAT, files("b"))]  # two different commits


@pytest.mark.parametrize(
    ("candidates", "verdicts", "chosen", "conflict"),
    [
        ([Candidate(FLAT, files("a"))], {}, FLAT, False),
        ([Candidate(PHYSICAL, files("a")), Candidate(FLAT, files("a"))], {}, PHYSICAL, False),
        (BOTH, {"a": 4, "b": 5}, FLAT, True),
        (BOTH, {"a": 5, "b": 4}, PHYSICAL, True),
        (BOTH, {"a": 4, "b": 4}, PHYSICAL, True),
        (BOTH, {"a": REFUSED, "b": 3}, FLAT, True),
        (
            [Candidate(PHYSICAL, files("a")), Candidate(FLAT, files("b"))],
            {"a": EXPIRED, "b": REFUSED},
            PHYSICAL,
            True,
        ),
        ([Candidate(PHYSICAL, None, UNREADABLE), Candidate(FLAT, files("b"))], {"b": REFUSED}, FLAT, True),
        (
            [Candidate(PHYSICAL, files("a")), Candidate(FLAT, files("b"))],
            {"a": REFUSED, "b": REFUSED},
            PHYSICAL,
            True,
        ),
    ],
    ids=[
        "one-name",
        "same-commit-is-no-conflict",
        "higher-serial-wins-flat",
        "higher-serial-wins-namespaced",
        "tie-goes-to-namespaced",
        "verified-beats-refused",
        "expired-beats-refused",
        "refused-beats-unreadable",
        "both-refused-namespaced-reported",
    ],
)
def test_which_name_a_robot_follows(
    candidates: list[Candidate], verdicts: dict[str, int | Exception], chosen: str, conflict: bool
) -> None:
    choice = choose(candidates, judged(verdicts))
    assert choice is not None and choice.chosen.ref == chosen
    assert (choice.conflict is not None) is conflict
    if choice.conflict is not None:
        assert str(choice.conflict).startswith(f"layout conflict: both refs {PHYSICAL} and {FLAT} exist")


def test_without_a_judge_the_namespaced_name_wins_and_the_conflict_is_reported() -> None:
    choice = choose([Candidate(PHYSICAL, files("a")), Candidate(FLAT, files("b"))], None)
    assert choice is not None and choice.chosen.ref == PHYSICAL and choice.conflict is not None


def test_no_name_means_no_desired_state() -> None:
    assert choose([], None) is None
