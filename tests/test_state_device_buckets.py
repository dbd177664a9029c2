"""Robots' files on the state branch live in 256 buckets (``devices/<2 hex>/<id>.json``).

One flat ``devices/`` tree of N entries was rewritten by every reconcile that changed any robot:
4.5 MB at 100,000 robots, each time. With buckets a reconcile that changes one robot writes a
bucket of about N/256 entries and the 256-entry ``devices/`` tree. State branches written before the
buckets are read as they are (a robot's history and ``history --at`` look at both places) and
moved into the buckets by the first reconcile that writes, with nothing lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.statebranch import flat_device_paths, load_state
from controller.state.layout import device_bucket, device_file, legacy_device_file, legacy_device_of
from fleetcd.git.objects import commit, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world, pass_wave
from tests.test_ops_read import TAMPERER
from tests.test_reconcile_proportional import state_tree

ROBOTS = STAGING + CANARY + PRODUCTION


def as_an_older_controller_wrote_it(world: ControllerWorld) -> None:
    """Every robot's file moved back to the flat ``devices/<id>.json``, in one state commit."""
    server = pygit2.Repository(str(world.server))
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    tree = server[head].peel(pygit2.Commit).tree
    changes: dict[str, bytes | None] = {}
    for device in ROBOTS:
        blob = tree[device_file(device)]
        changes[device_file(device)] = None
        changes[legacy_device_file(device)] = server[blob.id].data
    moved = write_tree(server, changes, tree)
    commit(server, STATE_BRANCH, moved, "as an older controller wrote it", [head], TAMPERER, world.clock.now)


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    made = make_world(tmp_path, keys)
    made.reconcile()
    return made


def test_every_robots_file_is_in_its_bucket_and_nothing_is_flat(world: ControllerWorld) -> None:
    paths = state_tree(world)
    for device in ROBOTS:
        assert device_file(device) == f"devices/{device_bucket(device)}/{device}.json"
        assert device_file(device) in paths
    assert not [p for p in paths if legacy_device_of(p) is not None]


def test_a_reconcile_that_changes_one_robot_rewrites_only_its_bucket(world: ControllerWorld) -> None:
    before = state_tree(world)
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    after = state_tree(world)
    changed_devices = {p for p in after if p.startswith("devices/") and after[p] != before.get(p)}
    assert changed_devices == {device_file("stg-1")}
    server = pygit2.Repository(str(world.server))
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    devices = server[head].peel(pygit2.Commit).tree["devices"]
    assert all(entry.type_str == "tree" and len(entry.name) == 2 for entry in server[devices.id])


def test_a_flat_state_branch_is_read_as_it_is_and_moved_into_buckets_by_the_next_write(
    world: ControllerWorld,
) -> None:
    before = world.state().devices
    as_an_older_controller_wrote_it(world)
    assert world.state().devices == before  # read as it is
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    paths = state_tree(world)
    assert not [p for p in paths if legacy_device_of(p) is not None]
    assert all(device_file(device) in paths for device in ROBOTS)
    after = world.state().devices
    assert set(after) == set(before)
    assert {d: after[d] for d in ROBOTS if d != "stg-1"} == {d: before[d] for d in ROBOTS if d != "stg-1"}
    assert after["stg-1"].last_report_seq > before["stg-1"].last_report_seq


def test_a_robots_history_reads_a_flat_state_branch_and_the_moved_one_alike(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pass_wave(world, STAGING, "staging")
    args = ["history", "stg-1", "--repo", str(world.server), "--cache", str(tmp_path / "ops"), "-o", "json"]

    def records() -> list[tuple[str, str]]:
        code, out, err = fleetcd(capsys, *args)
        assert code == 0, err
        return [(r["rollout"], r["status"]) for r in json.loads(out)["records"]]

    assert records() == [("nav", "deployed")]
    as_an_older_controller_wrote_it(world)
    assert records() == [("nav", "deployed")]  # the flat file, at the head
    world.sim.report("can-1", "nav", "deployed", world.clock.now)
    world.clock.tick(10)
    world.reconcile()  # moves every file into its bucket
    assert legacy_device_file("stg-1") not in state_tree(world)
    assert records() == [("nav", "deployed")]


def test_the_flat_files_are_found_from_the_devices_tree_alone(world: ControllerWorld) -> None:
    """The write step finds the flat files to move from the ``devices`` tree's own entries, not
    from every path of the snapshot: all of them after an older controller's commit, none once
    bucketed; a file there that is no robot's (``devices/notes.txt``) is not one."""
    server = pygit2.Repository(str(world.server))
    assert flat_device_paths(server, load_state(server)) == []
    as_an_older_controller_wrote_it(world)
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    tree = server[head].peel(pygit2.Commit).tree
    stray = write_tree(server, {"devices/notes.txt": b"not a robot"}, tree)
    commit(server, STATE_BRANCH, stray, "a note", [head], TAMPERER, world.clock.now)
    snapshot = load_state(server)
    found = flat_device_paths(server, snapshot)
    assert sorted(found) == sorted(legacy_device_file(device) for device in ROBOTS)
    assert sorted(found) == sorted(
        p for p in snapshot.files if p.count("/") == 1 and legacy_device_of(p) is not None
    )
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    moved = load_state(server)
    assert flat_device_paths(server, moved) == []
    assert "devices/notes.txt" in moved.files  # not a robot's: left where it is
