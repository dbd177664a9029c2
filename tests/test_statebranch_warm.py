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

from dataclasses import replace
from pathlib import Path

import pygit2

from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, dump, load_state, write_state
from controller.state.layout import device_file
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.trees import changed_blobs, commit_tree_id
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

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


def equal_snapshots(cached: StateSnapshot, cold: StateSnapshot) -> None:
    assert cached.commit == cold.commit
    assert cached.meta == cold.meta
    assert cached.rollouts == cold.rollouts and list(cached.rollouts) == list(cold.rollouts)
    assert cached.devices == cold.devices
    assert cached.audit == cold.audit and list(cached.audit) == list(cold.audit)
    assert cached.files == cold.files


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
    assert files == len(load_state(server).files)  # the bootstrap's files, parsed once, by the write

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
    # The load parsed the one file the other writer changed; the write parsed what it committed.
    written_files = [p for p, data in by_write.items() if data is not None and not p.startswith("audit/")]
    assert written_files and cache.state.parsed - files == 1 + len(written_files)
    assert load_state(server).devices[PRODUCTION[0]].last_report_seq == 7
    assert len(changed_blobs(server, base_tree, commit_tree_id(server, written)) or {}) == 1
