"""A robot retired with ``fleetcd robot retire`` mid-rollout, through the real controller (real git, gpg).

Retirement is fully enforced: the robot leaves the wave it was in (not waited for, not counted, not
a failure), it is skipped as ``decommissioned``, its desired-state ref is removed from the server
(a retired or stolen robot switched on again finds nothing to install), and its history stays: its
records, its status ref and its place in ``get devices``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from controller.delivery.write import delivery_ref
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import status_ref
from fleetcd.reasons import RecordReason
from fleetcd.vocabulary import Activity
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, STAGING, ControllerWorld, make_world, pass_wave
from tests.test_ops_read import remote, state_of
from tests.test_ops_switches import AUTHOR


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    return make_world(tmp_path, keys, name="retire")


def _retire(world: ControllerWorld, capsys: pytest.CaptureFixture[str], robot: str) -> None:
    code, _, err = fleetcd(capsys, "robot", "retire", robot, "--repo", str(world.fleet.root), *AUTHOR)
    assert code == 0, err


def test_a_robot_retired_mid_rollout_leaves_its_wave_loses_its_desired_ref_and_keeps_its_history(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    pass_wave(world, STAGING, "staging")  # stg-1 deployed nav 1.0.0 and reported it
    world.report_all(CANARY[:2], "deployed")  # can-3 never reports: it is being retired
    server = pygit2.Repository(str(world.server))
    namespaces = world.settings.namespaces
    assert ref_target(server, delivery_ref("can-3", namespaces=namespaces)) is not None
    status_before = ref_target(server, status_ref("stg-1"))
    assert status_before is not None

    _retire(world, capsys, "can-3")
    _retire(world, capsys, "stg-1")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)
    world.reconcile()

    state = state_of(world)
    rollout = state.rollouts["nav"]
    canary = next(w for w in rollout.waves if w.name == "canary")
    assert canary.devices == ("can-1", "can-2") and canary.phase.value == "passed"
    assert ("can-3", "decommissioned") in rollout.skipped and ("stg-1", "decommissioned") in rollout.skipped
    (dropped,) = [r for r in state.devices["can-3"].records if r.rollout == "nav"]
    assert (dropped.activity, dropped.reason) == (Activity.ARCHIVED, RecordReason.DECOMMISSIONED.value)
    (kept,) = [r for r in state.devices["stg-1"].records if r.rollout == "nav"]
    assert kept.activity is Activity.DEPLOYED, "what the robot did stays on record"

    server = pygit2.Repository(str(world.server))
    for robot in ("can-3", "stg-1"):
        assert ref_target(server, delivery_ref(robot, namespaces=namespaces)) is None
    assert ref_target(server, delivery_ref("can-1", namespaces=namespaces)) is not None
    assert ref_target(server, status_ref("stg-1")) == status_before, "its status history is kept"

    code, out, _ = fleetcd(capsys, "get", "devices", *remote(world, tmp_path), "-o", "json")
    rows = {row["id"]: row for row in json.loads(out)}
    assert code == 0 and rows["stg-1"]["decommissioned"] and rows["can-3"]["decommissioned"]
    assert rows["stg-1"]["apps"]["nav"]["current"] == "1.0.0"
    code, table, _ = fleetcd(capsys, "get", "devices", *remote(world, tmp_path))
    assert "(decommissioned)" in next(line for line in table.splitlines() if line.startswith("can-3 "))
