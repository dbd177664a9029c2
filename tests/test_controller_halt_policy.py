"""What a halt does, through the real reconcile on real git and gpg (``on_halt`` in the rollout).

The scenario fleet (1 staging, 3 canary, 4 production robots) runs nav 1.0.0; nav 1.1.0 passes
staging and fails on the canary. Which robots' signed bundles then order the rollback to 1.0.0,
and what the receipt and the status pages say, depends on the rollout's ``on_halt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.cli import build
from controller.state.model import RolloutPhase
from fleetcd.cli.main import run
from tests.gpgkeys import KeyFactory
from tests.sim.world import (
    STAGING,
    ControllerWorld,
    audit_lines,
    fail_the_canary,
    make_world,
    pass_all_waves,
    pass_wave,
    roll_out,
)


def _halt_on_canary(tmp_path: Path, keys: KeyFactory, on_halt: str | None) -> ControllerWorld:
    """1.0.0 everywhere; 1.1.0 (with ``on_halt``) passes staging and fails on can-1."""
    world = make_world(tmp_path, keys, name="halt")
    world.reconcile()
    pass_all_waves(world)
    roll_out(world, "1.1.0", **({} if on_halt is None else {"on_halt": on_halt}))
    pass_wave(world, STAGING, "staging")
    fail_the_canary(world)
    return world


def _ordered(world: ControllerWorld, device: str) -> tuple[str, str]:
    (deployment,) = world.sim.bundle(device, world.clock.now).deployments
    return deployment.action, deployment.version


def _finish_rollbacks(world: ControllerWorld, devices: list[str]) -> None:
    for device in devices:
        world.sim.report(device, "nav", "deployed", world.clock.now)
    world.clock.tick(10)
    world.reconcile()


def test_default_halt_sends_the_passed_staging_robot_back_to_stable(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _halt_on_canary(tmp_path, keys, None)
    assert _ordered(world, "stg-1") == ("rollback", "1.0.0"), "staging passed on 1.1.0 and goes back too"
    for device in ("can-2", "can-3"):
        assert _ordered(world, device) == ("rollback", "1.0.0")
    assert _ordered(world, "prod-1") == ("deploy", "1.0.0"), "production never got 1.1.0"
    _finish_rollbacks(world, ["stg-1", "can-1", "can-2", "can-3"])
    state = world.state()
    rollout = state.rollouts["nav"]
    assert rollout.phase is RolloutPhase.HALTED
    assert rollout.halt_policy == "rollback_all"
    assert "stg-1" in rollout.rolled_back_devices
    receipt = yaml.safe_load(state.files["receipts/nav/2.yaml"])
    assert receipt["halt_policy"] == "rollback_all"
    assert "stg-1" in receipt["rolled_back"]
    staging = next(d for d in receipt["devices"] if d["device"] == "stg-1")
    assert (staging["rollback"]["outcome"], staging["running_version"]) == ("succeeded", "1.0.0")
    assert "**On halt:** `rollback_all`" in state.files["receipts/nav/2.md"].decode()
    assert "on halt: rollback_all" in state.files["STATUS.md"].decode()
    assert "on halt: rollback_all" in state.files["status.html"].decode()
    halted = next(line["event"] for line in audit_lines(state) if line["event"]["kind"] == "rollout_halted")
    assert halted["data"]["on_halt"] == "rollback_all"
    remote = ["--repo", str(world.server), "--cache", str(tmp_path / "ops-cache")]
    assert run(build(), ["get", "rollouts", *remote, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["halt_policy"] == "rollback_all"
    assert row["rolled_back"] == ["can-2", "can-3", "stg-1"], "can-1 failed before it switched"


def test_rollback_wave_leaves_the_staging_robot_on_the_release(tmp_path: Path, keys: KeyFactory) -> None:
    world = _halt_on_canary(tmp_path, keys, "rollback_wave")
    assert _ordered(world, "stg-1") == ("deploy", "1.1.0")
    assert _ordered(world, "can-2") == ("rollback", "1.0.0")
    _finish_rollbacks(world, ["can-1", "can-2", "can-3"])
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.HALTED
    assert "stg-1" not in state.rollouts["nav"].rolled_back_devices
    receipt = yaml.safe_load(state.files["receipts/nav/2.yaml"])
    assert receipt["halt_policy"] == "rollback_wave"
    assert "on halt: rollback_wave" in state.files["STATUS.md"].decode()


def test_pause_sends_no_robot_a_rollback_and_writes_the_receipt(tmp_path: Path, keys: KeyFactory) -> None:
    world = _halt_on_canary(tmp_path, keys, "pause")
    for device in ("stg-1", "can-2", "can-3"):
        assert _ordered(world, device) == ("deploy", "1.1.0"), "robots keep what they run"
    assert _ordered(world, "prod-1") == ("deploy", "1.0.0"), "and nothing new is dispatched"
    world.clock.tick(3600)
    world.reconcile()
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.HALTED
    assert state.rollouts["nav"].rolled_back_devices == ()
    receipt = yaml.safe_load(state.files["receipts/nav/2.yaml"])
    assert (receipt["halt_policy"], receipt["rolled_back"]) == ("pause", [])
    assert "nothing rolls back" in state.files["STATUS.md"].decode()
