"""Housekeeping and ref pruning at the reconcile level, on real git and real gpg.

The real ``reconcile_once`` repacks its mirror once git's thresholds are passed, says so in its
result, its log and its metrics; a kill -9 in the middle of that repack leaves a mirror the next
reconcile works from; a fan-out pushed by hand into a local server housekeeps that server too; and
a robot's status ref deleted on the server disappears from the mirror and from what the controller
reads (fleetcd.git.remote.fetch_moved used to keep it for ever). By default the repack runs in the
background: reconciles go on beside it and a later one reports it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from controller.ingest.reports import read_reports
from controller.metrics.exposition import ControllerMetrics
from controller.reconcile.result import Repack
from controller.reconcile.source import Source, fetch_all, open_mirror, publish
from fleetcd.git import refs
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.housekeeping import Policy, count, running
from fleetcd.git.localpush import DIRECT_FROM_REFS
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import commit, update_refs, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.git.remote import SshKey
from tests.conftest import require_service
from tests.gitolite import CONTROLLER, Gitolite, GitoliteUnavailable
from tests.gitrepos import git
from tests.gpgkeys import KeyFactory
from tests.promtext import samples, value
from tests.sim.world import STAGING, ControllerWorld, make_world
from tests.test_git_housekeeping import AUTHOR, WHEN, add_packs, fsck, kill_9, refs_of, start_housekeeping


def with_policy(world: ControllerWorld, policy: Policy | None) -> None:
    world.settings = replace(world.settings, source=replace(world.settings.source, housekeeping=policy))


def test_a_reconcile_repacks_its_mirror_past_the_limit_and_says_so(
    tmp_path: Path, keys: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    mirror = world.settings.source.mirror
    add_packs(mirror, 4)
    with_policy(world, Policy(background=False, pack_limit=3))
    metrics = ControllerMetrics(push_attempts=5)
    world.clock.tick(60)
    with caplog.at_level(logging.INFO, logger="fleetcd.controller"):
        result = world.reconcile()
    metrics.observe(result, 1.0)
    (repack,) = result.repacks
    assert repack.repository == "mirror" and repack.ok
    assert "repacked" in repack.message and "into 1 packs" in repack.message
    assert any("housekeeping of the mirror" in r.getMessage() for r in caplog.records)
    assert count(mirror).packs == 1
    assert fsck(mirror) == ""
    found = samples(metrics.render().decode())
    assert value(found, "fleetcd_repacks_total", repository="mirror", result="done") == 1
    assert value(found, "fleetcd_repacks_total", repository="server", result="failed") == 0
    world.clock.tick(60)
    assert world.reconcile().repacks == []  # nothing due again


def test_no_policy_never_repacks(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    with_policy(world, None)
    world.reconcile()
    add_packs(world.settings.source.mirror, 4)
    world.clock.tick(60)
    packs = count(world.settings.source.mirror).packs
    assert world.reconcile().repacks == []
    assert count(world.settings.source.mirror).packs == packs


def test_kill_9_during_the_mirrors_repack_then_the_next_reconcile_works_and_finishes_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    mirror = world.settings.source.mirror
    add_packs(mirror, 6, blobs=1000, size=1024)
    refs_before = refs_of(mirror)
    for delay in (0.2, 0.6, 1.2):
        child = start_housekeeping(mirror)  # what the end of a reconcile runs, under the lock
        time.sleep(delay)
        kill_9(child)
        assert refs_of(mirror) == refs_before
    with_policy(world, Policy(background=False, pack_limit=2))
    left = count(mirror).packs  # more than 2 unless the last kill came after the repack was done
    world.report_all(STAGING, "deployed")
    world.clock.tick(60)
    result = world.reconcile()
    assert result.reports_ingested == len(STAGING)
    assert all(r.ok for r in result.repacks)
    assert [r.repository for r in result.repacks] == (["mirror"] if left > 2 else [])
    assert count(mirror).packs <= 2
    assert fsck(mirror) == ""
    assert not [p for p in (mirror / "objects" / "pack").iterdir() if p.name.startswith(".tmp")]


def test_a_status_ref_deleted_on_the_server_is_no_longer_in_the_mirror_nor_read(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(60)
    world.reconcile()
    gone = status_ref(STAGING[0])
    git("update-ref", "-d", gone, cwd=world.server)
    world.clock.tick(60)
    world.reconcile()
    with open_mirror(world.settings.source) as repo:
        assert repo.references.get(gone) is None
        assert read_reports(repo, [STAGING[0]]) == {STAGING[0]: (None, None)}
        fetched = fetch_all(repo, world.settings.source)
        assert gone not in fetched.status
    assert gone not in refs_of(world.settings.source.mirror)


def namespaced(n: int) -> str:
    device = f"amr-{n:05d}"
    return f"refs/namespaces/{device}/{refs.desired_ref(device)}"


def test_a_fan_out_pushed_by_hand_housekeeps_the_server_and_leaves_no_keep_file(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git("init", "-q", "--bare", str(server), cwd=tmp_path)
    source = Source(str(server), tmp_path / "mirror.git", housekeeping=Policy(background=False, pack_limit=3))
    state: pygit2.Oid | None = None
    repacks: list[Repack] = []
    with open_locked_mirror(source.mirror, wait_seconds=5) as repo:
        for version in range(6):
            moved = {}
            for n in range(DIRECT_FROM_REFS + 6):
                tree = write_tree(repo, {"bundle.json": f'{{"robot": {n}, "v": {version}}}'.encode()})
                moved[namespaced(n)] = commit(repo, None, tree, f"robot {n}", [], AUTHOR, WHEN)
            tree = write_tree(repo, {"state.json": str(version).encode()})
            new = commit(repo, None, tree, "state", [state] if state else [], AUTHOR, WHEN)
            current = {ref: repo.references[ref].target for ref in moved if ref in repo.references}
            updates = {ref: (current.get(ref), oid) for ref, oid in moved.items()}
            update_refs(repo, {**updates, refs.STATE_BRANCH: (state, new)})  # type: ignore[dict-item]
            repack = publish(repo, source, state_base=state, desired=moved)
            repacks += [repack] if repack is not None else []
            state = new
            assert count(server).packs <= 4
            assert not list((server / "objects" / "pack").glob("*.keep"))
    # 6 packs pushed, one each, limit 3: repacked at the 4th, and again once past it (the old
    # bundles, unreachable now, sit in a cruft pack that counts as one of the packs)
    assert [r.repository for r in repacks] == ["server", "server"] and all(r.ok for r in repacks)
    assert refs_of(server)[refs.STATE_BRANCH] == str(state)
    assert loose_refs(server) == []  # pushed by hand, not through receive-pack
    assert fsck(server) == ""


def loose_refs(git_dir: Path) -> list[Path]:
    return [p for p in (git_dir / "refs").rglob("*") if p.is_file()]


def test_a_status_ref_deleted_on_an_ssh_server_is_deleted_from_the_mirror_too(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Over SSH (libgit2, which fetches without pruning) the same as from a local server."""
    world = make_world(tmp_path / "world", keys)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    try:
        server = Gitolite(tmp_path / "gitolite", []).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        server.load(world.server)
        source = Source(
            server.url(),
            tmp_path / "mirror.git",
            SshKey(CONTROLLER, server.key(CONTROLLER)),
            HostKeyPolicy(pinned_sha256=(server.host_fingerprint,)),
        )
        gone = status_ref(STAGING[0])
        with open_mirror(source) as repo:
            assert gone in fetch_all(repo, source).status
            assert repo.references.get(gone) is not None
        git("update-ref", "-d", gone, cwd=server.repo_path())
        with open_mirror(source) as repo:
            fetched = fetch_all(repo, source)
            assert gone not in fetched.status
            assert repo.references.get(gone) is None
            assert read_reports(repo, [STAGING[0]]) == {STAGING[0]: (None, None)}
            assert set(fetched.status) == {status_ref(d) for d in STAGING[1:]}
    finally:
        server.__exit__(None, None, None)


def test_a_reconcile_does_not_wait_for_its_mirrors_repack_and_a_later_one_reports_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The controller's default: the repack runs in the background while reconciles go on (robots
    report meanwhile and are ingested); the first reconcile after it ended reports it, once."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    mirror = world.settings.source.mirror
    add_packs(mirror, 8, blobs=1000, size=1024)  # seconds to repack
    with_policy(world, Policy(pack_limit=3))
    world.clock.tick(60)
    started = world.reconcile()
    assert started.repacks == []  # started, not waited for
    world.report_all(STAGING, "deployed")
    world.clock.tick(60)
    beside = world.reconcile()  # whether or not the repack still runs
    assert beside.reports_ingested == len(STAGING)
    deadline = time.monotonic() + 300
    while running(mirror):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reporting = beside
    if not reporting.repacks:  # it ended after that reconcile: the next one reaps it
        world.clock.tick(60)
        reporting = world.reconcile()
    (repack,) = reporting.repacks
    assert repack.repository == "mirror" and repack.ok and "repacked 1" in repack.message
    assert count(mirror).packs <= 3 and fsck(mirror) == ""  # one more per reconcile beside it
    metrics = ControllerMetrics(push_attempts=5)
    metrics.observe(reporting, 1.0)
    found = samples(metrics.render().decode())
    assert value(found, "fleetcd_repacks_total", repository="mirror", result="done") == 1
    world.clock.tick(60)
    assert world.reconcile().repacks == []
    assert world.state().devices[STAGING[0]].state.last_seen is not None  # the reports beside it kept
