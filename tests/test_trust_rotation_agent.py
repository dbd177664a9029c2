"""A controller-key rotation seen from the real agent (issue 11, point 2): real agent cycles
(``agent.loop.run_once`` through tests/sim/agent.py), a real controller reconciling over a real git
server, real gpg. The robot reports the trust-root version it holds, the controller ingests it, and
``fleetcd get devices`` shows which robots still hold the old one.
"""

from __future__ import annotations

import json
from typing import Any

import pygit2
import pytest

from agent.trustcheck import load_trust_state
from controller.cli import build
from fleetcd.cli.main import run
from fleetcd.desired import BundleRejected
from fleetcd.git.objects import ref_target, update_refs
from fleetcd.git.refs import physical_desired_ref
from fleetcd.reasons import Reason
from tests.gpgkeys import KeyFactory
from tests.sim.agent import DEVICE, AgentWorld
from tests.sim.world import audit_lines


def devices(world: AgentWorld, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """``fleetcd get devices`` as an operator runs it: (the robot's JSON row, its table line)."""
    args = ["--repo", str(world.controller.server), "--cache", str(world.root / "ops-cache")]
    assert run(build(), ["get", "devices", *args, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert run(build(), ["get", "devices", *args]) == 0
    table = capsys.readouterr().out
    header, *lines = table.splitlines()
    (line,) = [line for line in lines if line.startswith(DEVICE)]
    assert "TRUST" in header
    return row, line


def rotate_controller_key(world: AgentWorld, keys: KeyFactory) -> None:
    """Trust root 2: the controller key is replaced (the old one leaked), merged and reconciled."""
    fleet = world.controller.fleet
    k2 = keys.key("controller-2")
    fleet.add_key_file(k2)
    fleet.rotate(controller=fleet.key_refs(k2))
    world.controller.merge("Trust root 2: controller key rotated")
    world.reconcile()


def test_get_devices_shows_a_robot_still_holding_the_old_trust_root(
    world: AgentWorld, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    world.reconcile()  # ingests the report: trust root 1
    row, line = devices(world, capsys)
    assert row["trust"] == {"version": 1, "behind": False}
    assert " v1 " in line and "(old)" not in line

    rotate_controller_key(world, keys)  # the robot has not polled since

    row, line = devices(world, capsys)
    assert row["trust"] == {"version": 1, "behind": True}
    assert "v1 (old)" in line

    moved = world.once()
    assert moved.error is None, moved.errors
    assert moved.report is not None and moved.report.trust_version == 2
    world.reconcile()
    row, line = devices(world, capsys)
    assert row["trust"] == {"version": 2, "behind": False}
    assert " v2 " in line and "(old)" not in line
    state = world.controller.state()
    assert state.devices[DEVICE].state.trust_version == 2
    mine = [line["event"]["data"] for line in audit_lines(state) if line["event"]["device"] == DEVICE]
    moves = [data["trust_version"] for data in mine if "trust_version" in data]
    assert moves == [{"from": None, "to": 1}, {"from": 1, "to": 2}]  # each move audited once


def test_agent_cycles_install_a_release_signed_after_a_controller_key_rotation(
    world: AgentWorld, keys: KeyFactory
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    assert load_trust_state(world.paths.trust_file).trust_version == 1

    rotate_controller_key(world, keys)
    world.publish("1.1.0")  # signed by the new controller key only
    result = world.once()

    assert result.error is None, result.errors
    assert world.answer("1.1.0") == "1.1.0"
    held = load_trust_state(world.paths.trust_file)
    assert (held.trust_version, result.report and result.report.trust_version) == (2, 2)
    world.controller.clock.tick(10)
    again = world.once()  # the next cycle, from the held version 2: nothing to walk, nothing refused
    assert again.error is None, again.errors
    assert load_trust_state(world.paths.trust_file).last_serial == held.last_serial


def test_pre_rotation_commit_replayed_to_the_robot_is_refused_by_its_cycle(
    world: AgentWorld, keys: KeyFactory
) -> None:
    """Someone with write access to the git server points the robot's desired ref back at the commit
    the leaked (rotated-out) controller key signed: the real cycle refuses it as a trust-root replay
    and keeps running what it runs."""
    world.publish("1.0.0")
    assert world.once().error is None
    server = pygit2.Repository(str(world.controller.server))
    ref = physical_desired_ref(DEVICE)
    before_rotation = ref_target(server, ref)
    assert before_rotation is not None
    rotate_controller_key(world, keys)
    world.publish("1.1.0")
    assert world.once().error is None and world.answer("1.1.0") == "1.1.0"

    update_refs(server, {ref: (ref_target(server, ref), before_rotation)})
    world.controller.clock.tick(10)
    replayed = world.once()

    assert isinstance(replayed.error, BundleRejected), replayed.errors
    assert replayed.error.reason is Reason.TRUST_ROOT_ROLLBACK
    assert world.answer() == "1.1.0"  # its last good state
    held = load_trust_state(world.paths.trust_file)
    assert held.trust_version == 2 and replayed.report is not None and replayed.report.trust_version == 2
