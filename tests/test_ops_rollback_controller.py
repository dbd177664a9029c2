"""``fleetcd rollback``, ``pause``, ``resume`` and a ``promote:`` bump as an operator makes them on a
real fleet, followed through the real controller to the robots' desired state.

The commands only commit to the work tree; what counts is what the controller then does with the
commit: a rollback is a new generation that deploys the earlier release to the rollout's robots
(with the approvals restored from history, so nothing waits for reviewers), a paused rollout hands
nobody anything new until it is resumed, and a wave waiting for manual promotion shows in ``get
rollouts`` and goes on when ``promote:`` is bumped, with no new approvals. The world is the
controller scenario's (real bare server, real gpg, simulated robots reading their real
desired-state refs: tests/sim/world.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.state.model import RolloutPhase, WavePhase
from fleetcd.layout import rollout_path
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import (
    CANARY,
    PRODUCTION,
    STAGING,
    WAVES,
    ControllerWorld,
    make_world,
    pass_all_waves,
    pass_wave,
    roll_out,
)
from tests.test_ops_switches import AUTHOR, flat

ALL = STAGING + CANARY + PRODUCTION


def one_one_zero_on_staging(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    """nav 1.0.0 everywhere (generation 1), then 1.1.0 (generation 2) past staging: stg-1 runs it."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    pass_all_waves(world)
    world.reconcile()
    roll_out(world, "1.1.0")
    pass_wave(world, STAGING, "staging")
    return world


def operator(world: ControllerWorld, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``fleetcd ARGS`` on the fleet's work tree, push main, let the clock move; its stdout."""
    code, out, err = fleetcd(capsys, *args, "--repo", str(world.fleet.root), *AUTHOR)
    assert code == 0, err
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(10)
    return out


def handed(world: ControllerWorld, device: str) -> list[tuple[str, str]]:
    return [(d.action, d.version) for d in world.sim.bundle(device, world.clock.now).deployments]


def test_an_operator_rollback_becomes_a_new_generation_deploying_the_earlier_release(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = one_one_zero_on_staging(tmp_path, keys)
    assert handed(world, "stg-1") == [("deploy", "1.1.0")]

    out = operator(world, capsys, "rollback", "nav")
    assert "nav 1.1.0 -> 1.0.0" in out and "Restored 2 earlier approval(s)" in flat(out)
    result = world.reconcile()

    rollout = world.state().rollouts["nav"]
    assert (rollout.generation, rollout.version) == (3, "1.0.0")
    assert rollout.commit == world.fleet.git("rev-parse", "HEAD")
    assert result.desired_refs >= 1
    assert handed(world, "stg-1") == [("deploy", "1.0.0")], "the robot that ran 1.1.0 goes back first"
    for device in CANARY + PRODUCTION:
        assert all(version == "1.0.0" for _, version in handed(world, device)), device


def test_a_paused_rollback_hands_nobody_anything_new_until_resumed(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator pauses the bad release, then rolls back. While paused no robot gets a deployment
    of the new generation; the canary robots' queued, never-started 1.1.0 deployments are withdrawn
    (they keep the 1.0.0 they run); stg-1, which runs 1.1.0, is left alone. Resume, and the rollback
    goes out."""
    world = one_one_zero_on_staging(tmp_path, keys)
    operator(world, capsys, "pause", "nav")
    world.reconcile()
    assert world.state().rollouts["nav"].phase is RolloutPhase.PAUSED
    assert handed(world, "can-1") == [("deploy", "1.1.0")], "queued before the pause"

    out = operator(world, capsys, "rollback", "nav")
    assert "the rollback starts after `fleetcd resume nav`" in flat(out)
    world.reconcile()
    rollout = world.state().rollouts["nav"]
    assert (rollout.phase, rollout.generation) == (RolloutPhase.PAUSED, 3)
    assert max(generations(world)) < 3, "paused: no deployment of the new generation"
    assert handed(world, "stg-1") == [("deploy", "1.1.0")]
    for device in CANARY:
        assert handed(world, device) == [("deploy", "1.0.0")], device
        (queued,) = [r for r in world.state().devices[device].records if r.version == "1.1.0"]
        assert queued.target_status.value == "archived"

    operator(world, capsys, "resume", "nav")
    world.reconcile()
    rollout = world.state().rollouts["nav"]
    assert rollout.version == "1.0.0" and rollout.phase is not RolloutPhase.PAUSED
    assert handed(world, "stg-1") == [("deploy", "1.0.0")]
    assert 3 in generations(world)


def generations(world: ControllerWorld) -> list[int]:
    """The rollout generation of every deployment any robot is handed now."""
    return [d.generation for device in ALL for d in world.sim.bundle(device, world.clock.now).deployments]


def test_a_wave_awaiting_promotion_is_shown_and_goes_on_when_promote_is_bumped_without_new_approvals(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    waves = [{**WAVES[0], "manual_promotion": True}, *WAVES[1:]]
    world = make_world(tmp_path, keys, waves=waves)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)
    world.reconcile()
    assert world.wave("staging") is WavePhase.AWAITING_PROMOTION
    assert handed(world, "can-1") == [], "the canary waits for a person"
    remote = ["--repo", str(world.server), "--cache", str(tmp_path / "ops")]
    code, table, err = fleetcd(capsys, "get", "rollouts", *remote)
    assert code == 0, err
    assert "staging 1/1 (promote)" in table

    path = world.fleet.root / rollout_path("nav")
    path.write_text(path.read_text() + "promote: 1\n")  # by hand, as docs/operating.md says
    world.fleet.git("commit", "-qam", "promote staging")  # no new approvals: an operational switch
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("staging") is WavePhase.PASSED
    assert handed(world, "can-1") == [("deploy", "1.0.0")]
    assert world.state().rollouts["nav"].generation == 1, "the bump is no new generation"
