"""The controller issue's scripted scenario, end to end on real git and real gpg.

A merged rollout goes through staging, canary and production waves with simulated robots verifying
their desired state and reporting through real status refs; the next release fails on the canary,
the controller halts the rollout and rolls every robot that got it back (staging and canary); the
audit chain verifies and the receipt names the approvers and the gate numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml

from controller.audit.chain import verify
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.reports import DeploymentReport
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, WAVES, ControllerWorld, make_world, pass_all_waves, pass_wave, roll_out


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    return make_world(tmp_path, keys, name="scenario")


def late_success(world: ControllerWorld, device: str, deployment_id: str, version: str) -> None:
    """A robot's report of a deployment it finished although its newer bundle no longer names it."""
    world.sim.robots[device].reports["nav"] = DeploymentReport(
        deployment_id=deployment_id,
        app="nav",
        version=version,
        activity="deployed",
        updated_at=world.clock.now,
    )
    world.sim.push_report(device, world.clock.now)


def assert_gate_numbers(receipt: dict[str, Any], page: str) -> None:
    """Every wave of the receipt quotes its gate settings next to the observed numbers."""
    gates = {w["name"]: w for w in receipt["waves"]}
    assert [gates[w["name"]]["soak_seconds"] for w in WAVES] == [60, 60, 60]
    assert gates["canary"]["failure_threshold"]["count"] == 0
    for gate in gates.values():
        assert gate["min_reported_percent"] is not None and gate["failure_threshold"] is not None
    canary = next(line for line in page.splitlines() if line.startswith("| 1 | canary |"))
    cells = [c.strip() for c in canary.strip("|").split("|")]
    assert cells[9:12] == [f"{gates['canary']['min_reported_percent']:g}%", "> 0 robots", "60"]


def test_rollout_goes_through_three_waves_then_a_failing_canary_halts_and_rolls_back(
    world: ControllerWorld,
) -> None:
    first = world.reconcile()
    assert (first.signatures, first.head_signatures) == (2, 1)  # the desired-state root, the audit head
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.0.0"]
    assert world.sim.bundle("can-1", world.clock.now).deployments == []  # canary waits for staging
    pass_all_waves(world)
    world.reconcile()
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.COMPLETED
    receipt = yaml.safe_load(state.files["receipts/nav/1.yaml"])
    approvers = {a["name"] for a in receipt["approvals"]}
    assert approvers == {"alice", "bob"}
    assert "receipts/nav/1.yaml.asc" in state.files
    assert_gate_numbers(receipt, state.files["receipts/nav/1.md"].decode())

    # A second release whose canary fails: halt and roll the canary back to 1.0.0.
    roll_out(world, "1.1.0")
    assert world.state().rollouts["nav"].generation == 2
    pass_wave(world, STAGING, "staging")
    # can-3 fetched its bundle and is installing 1.1.0; its report is not in when the canary fails.
    (picked_up,) = world.sim.bundle("can-3", world.clock.now).deployments
    world.sim.report("can-1", "nav", "failed", world.clock.now, error="failed", message="health probe failed")
    world.report_all(["can-2"], "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("canary") is WavePhase.FAILED
    assert world.state().rollouts["nav"].phase in (RolloutPhase.ROLLING_BACK, RolloutPhase.HALTED)
    for device in ("can-2", "can-3"):
        (deployment,) = world.sim.bundle(device, world.clock.now).deployments
        assert (device, deployment.action, deployment.version) == (device, "rollback", "1.0.0")
    assert world.sim.bundle("prod-1", world.clock.now).deployments[0].version == "1.0.0"

    # can-3's late report of what it did before it saw the rollback still reaches its record.
    late_success(world, "can-3", picked_up.deployment_id, "1.1.0")
    world.clock.tick(10)
    world.reconcile()
    (record,) = [r for r in world.state().devices["can-3"].records if r.id == picked_up.deployment_id]
    assert (record.activity.value, record.target_status.value) == ("deployed", "archived")

    # on_halt: rollback_all (the default): stg-1 passed staging on 1.1.0 and goes back as well.
    assert world.sim.bundle("stg-1", world.clock.now).deployments[0].action == "rollback"
    world.report_all(["stg-1", "can-2", "can-3"], "deployed")
    world.clock.tick(10)
    world.reconcile()
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.HALTED
    kinds = [line for path in sorted(state.audit) for line in state.audit[path].decode().splitlines()]
    assert any('"rollout_halted"' in line for line in kinds)
    assert any('"rollback"' in line for line in kinds)
    assert verify(state.audit).lines == len(kinds)
    receipt = yaml.safe_load(state.files["receipts/nav/2.yaml"])
    assert_gate_numbers(receipt, state.files["receipts/nav/2.md"].decode())
    robots = {d["device"]: d for d in receipt["devices"]}
    assert (robots["can-3"]["outcome"], robots["can-3"]["rollback"]["outcome"]) == ("succeeded", "succeeded")
    assert robots["can-3"]["running_version"] == "1.0.0"


def test_a_replayed_reconcile_writes_nothing_new(world: ControllerWorld) -> None:
    world.reconcile()
    again = world.reconcile()
    assert again.state_commit is None
    assert again.signatures == 0 and again.desired_refs == 0
    assert again.events == []


def test_status_pages_are_written_to_the_state_branch(world: ControllerWorld) -> None:
    world.reconcile()
    files = world.state().files
    assert b"```mermaid" in files["STATUS.md"]
    assert b"<script" not in files["status.html"]
    assert pygit2  # the server repository is real git
