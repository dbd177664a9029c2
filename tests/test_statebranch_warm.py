"""The state cache after a write (issue 12): the commit the controller writes leaves
``controller run``'s :class:`~controller.reconcile.statebranch.StateCache` holding that commit.

Real reconciles (:mod:`tests.sim.world`: a bare server, real gpg) with one
:class:`~controller.reconcile.cache.ReconcileCache`, as ``controller run`` keeps it. What must hold:

* after every write the cache is keyed by the written tree, and a load through it equals a cold
  read of the same commit (the contract of the cache: never stale, a full parse's snapshot);
* the reconcile after a write parses only the files someone else changed since (counted, never
  timed): none when nobody else wrote, one when one device file was changed behind its back.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.cache import ReconcileCache
from controller.reconcile.fleetmap import DevicesMemo, starting_devices
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateCache, StateSnapshot, dump, load_state, write_state
from controller.records.model import DeviceState
from controller.state.layout import META_FILE, device_file, legacy_device_file
from controller.state.model import ControllerMeta, DeviceFile
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.trees import changed_blobs, commit_tree_id
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, START, ControllerWorld, make_world
from tests.test_reconcile_proportional import equal_snapshots

ALL = STAGING + CANARY + PRODUCTION


def cached_world(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ReconcileCache]:
    world = make_world(tmp_path, keys)
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    return world, cache


def server_state(world: ControllerWorld) -> tuple[pygit2.Repository, pygit2.Oid]:
    server = pygit2.Repository(str(world.server))
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    return server, head


def test_a_written_state_commit_leaves_the_cache_equal_to_a_cold_read(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = cached_world(tmp_path, keys)
    steps = [
        lambda: None,  # the bootstrap: every robot's first device file
        lambda: [world.sim.push_report(d, world.clock.now) for d in ALL],
        lambda: world.report_all(STAGING, "downloading"),
        lambda: world.report_all(STAGING, "deployed"),
    ]
    for act in steps:
        act()
        world.clock.tick(10)
        result = world.reconcile()
        assert result.state_commit is not None
        server, head = server_state(world)
        # Held before any load: the tree just written, keyed by its id.
        assert cache.state.snapshot is not None and str(cache.state.snapshot.commit) == result.state_commit
        assert cache.state.tree == commit_tree_id(server, head)
        repo = open_mirror(world.settings.source)
        fetch_all(repo, world.settings.source)
        parsed = cache.state.parsed
        equal_snapshots(load_state(repo, cache=cache.state), load_state(repo))
        assert cache.state.parsed == parsed  # nothing read again: the cache holds what was written


def test_the_reconcile_after_a_write_parses_only_what_changed_since(tmp_path: Path, keys: KeyFactory) -> None:
    world, cache = cached_world(tmp_path, keys)
    world.reconcile()
    server, head = server_state(world)
    files = cache.state.parsed
    # The bootstrap's files, parsed once, by the write; its device files are the models it dumped.
    bootstrap = load_state(server)
    assert len(bootstrap.devices) == len(ALL) and files == len(bootstrap.files) - len(ALL)

    # Another writer (an operator's command) changes one device file on the server.
    theirs = load_state(server)
    device = theirs.devices[PRODUCTION[0]]
    edited = device.model_copy(update={"last_report_seq": 7})
    base_tree = commit_tree_id(server, head)
    written = write_state(server, theirs, {device_file(PRODUCTION[0]): dump(edited)}, "edit", world.clock.now)
    assert written is not None

    world.report_all(STAGING, "downloading")
    world.clock.tick(10)
    result = world.reconcile()
    assert result.state_commit is not None
    _, ours = server_state(world)
    by_write = changed_blobs(server, commit_tree_id(server, written), commit_tree_id(server, ours))
    assert by_write is not None and device_file(PRODUCTION[0]) not in by_write
    # The load parsed the one file the other writer changed; the write parsed what it committed
    # but the device files it dumped (kept as their models).
    written_files = [p for p, data in by_write.items() if data is not None and not p.startswith("audit/")]
    dumped = [p for p in written_files if p.startswith("devices/")]
    assert dumped and written_files and cache.state.parsed - files == 1 + len(written_files) - len(dumped)
    assert load_state(server).devices[PRODUCTION[0]].last_report_seq == 7
    assert len(changed_blobs(server, base_tree, commit_tree_id(server, written)) or {}) == 1


# --- the cache changed in place (statebranch._update) -------------------------------------------

WHEN = START


def robot_file(device: str, seq: int) -> bytes:
    return dump(DeviceFile(state=DeviceState(device=device), last_report_seq=seq))


def commit_files(repo: pygit2.Repository, cache: StateCache, changes: dict[str, bytes | None]) -> None:
    write_state(repo, load_state(repo, cache=cache), changes, "test", WHEN, cache=cache)  # None: no change


@pytest.mark.parametrize("seed", range(20))
def test_a_cache_changed_in_place_loads_what_a_cold_read_gives_and_never_changes_a_snapshot_handed_out(
    tmp_path: Path, seed: int
) -> None:
    """Random state commits (robots' files written, rewritten, deleted; the meta file; a file the
    controller keeps as bytes), each through write_state with the cache, loads through it between
    them: every load equals a cold read of the same commit, and every snapshot handed out earlier
    still equals the cold read of its own commit (the cache's maps are its own, never shared)."""
    rng = random.Random(seed)
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    handed: list[tuple[StateSnapshot, StateSnapshot]] = []
    robots = [f"amr-{n}" for n in range(30)]
    for step in range(8):
        changes: dict[str, bytes | None] = {}
        for device in rng.sample(robots, rng.randrange(1, 12)):
            changes[device_file(device)] = (
                None if rng.random() < 0.2 else robot_file(device, rng.randrange(99))
            )
        if rng.random() < 0.3:
            changes[META_FILE] = dump(ControllerMeta(serial=step))
        if rng.random() < 0.3:
            changes["STATUS.md"] = b"step %d\n" % step
        commit_files(repo, cache, changes)
        snapshot = load_state(repo, cache=cache)
        cold = load_state(repo)
        equal_snapshots(snapshot, cold)
        handed.append((snapshot, cold))
        for kept, its_cold in handed:
            equal_snapshots(kept, its_cold)


def test_a_written_file_that_does_not_parse_leaves_the_cache_on_its_tree(tmp_path: Path) -> None:
    """A device file that is not a device file, committed: the cache stays as it was (the tree
    before, equal to a cold read of it), and the load of the new commit fails loudly, naming the
    problem, without changing the cache."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    commit_files(repo, cache, {device_file("amr-1"): robot_file("amr-1", 1)})
    tree, before = cache.tree, load_state(repo)
    commit_files(repo, cache, {device_file("amr-2"): b'{"not": "a device file"}\n'})
    assert cache.tree == tree and cache.snapshot is not None
    equal_snapshots(cache.snapshot, before)
    with pytest.raises(ValueError):
        load_state(repo, cache=cache)
    assert cache.tree == tree
    equal_snapshots(cache.snapshot, before)


def test_two_files_naming_one_robot_drop_the_cache_and_the_next_load_reads_in_full(tmp_path: Path) -> None:
    """A flat-layout file and a bucket file for the same robot (an older controller's file beside
    ours): which one wins is for a full read in tree order to say, so the cache changed in place
    is dropped, and the next load through it equals a cold read."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    commit_files(repo, cache, {device_file("amr-1"): robot_file("amr-1", 1)})
    commit_files(repo, cache, {legacy_device_file("amr-1"): robot_file("amr-1", 2)})
    assert cache.tree is None and cache.snapshot is None
    parsed = cache.parsed
    equal_snapshots(load_state(repo, cache=cache), load_state(repo))
    assert cache.parsed > parsed and cache.tree is not None


# --- the journal of changed robots the ingest step's kept map reads (fleetmap.starting_devices) ---


def file_naming(device: str, named: str, seq: int) -> bytes:
    """``device``'s file whose bytes name another robot (what a report's fields could smuggle)."""
    return dump(DeviceFile(state=DeviceState(device=named), last_report_seq=seq))


@pytest.mark.parametrize("seed", range(12))
def test_the_ingest_map_from_the_state_journal_is_the_cold_one_after_every_load(
    tmp_path: Path, seed: int
) -> None:
    """Random state commits through write_state with the cache, some by another writer (no cache),
    robots' files written, rewritten, deleted, files naming another robot, a flat-layout file beside
    a bucket one (the cache dropped: a new journal), a file that does not parse (refused, the cache
    and its journal kept), loads skipped by the ingest: after every load the kept map, told apart
    by the journal where it can, equals the cold map of a cold read."""
    rng = random.Random(seed)
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache, memo = StateCache(), DevicesMemo()
    robots = [f"amr-{n}" for n in range(25)]
    members: dict[str, object] = dict.fromkeys(robots[:20])
    legacy: str | None = None
    odd: list[str] = []
    for step in range(14):
        # Last commit's odd files are rewritten as their robots' own, then new changes.
        changes: dict[str, bytes | None] = {device_file(d): robot_file(d, step) for d in odd}
        odd = []
        for device in rng.sample(robots, rng.randrange(1, 8)):
            roll = rng.random()
            if device_file(device) in changes:
                continue
            if roll < 0.15:
                changes[device_file(device)] = None
            elif roll < 0.25:  # naming another robot, until the next commit
                changes[device_file(device)] = file_naming(device, rng.choice(robots), step)
                odd.append(device)
            else:
                changes[device_file(device)] = robot_file(device, step)
        if legacy is not None:  # removed again by the next commit (an older controller's leftover)
            changes[legacy], legacy = None, None
        elif rng.random() < 0.1:
            legacy = legacy_device_file(rng.choice(robots))
            changes[legacy] = robot_file("amr-0", step)
        if rng.random() < 0.2:  # another writer: the next load finds it by diffing
            write_state(repo, load_state(repo), changes, "other", WHEN)
        else:
            commit_files(repo, cache, changes)
        if rng.random() < 0.1:
            victim = rng.choice(robots)
            bad = {device_file(victim): b'{"not": "a device file"}\n'}
            broken = write_state(repo, load_state(repo), bad, "broken", WHEN)
            with pytest.raises(ValueError):
                load_state(repo, cache=cache)
            write_state(
                repo,
                StateSnapshot(commit=broken, meta=ControllerMeta()),
                {device_file(victim): robot_file(victim, step)},
                "fixed",
                WHEN,
            )
        snapshot = load_state(repo, cache=cache)
        if rng.random() < 0.15:
            continue  # loaded, and the reconcile stopped before the ingest
        cold = load_state(repo)
        assert snapshot.lineage is not None and cold.lineage is None
        devices = starting_devices(members, snapshot.devices, memo, snapshot.lineage)
        assert devices == starting_devices(members, cold.devices, None)
        for device, data in devices.items():
            assert (
                data is snapshot.devices[device]
                if device in snapshot.devices
                else data == DeviceFile(state=DeviceState(device=device))
            )
    assert memo.journaled > 0
