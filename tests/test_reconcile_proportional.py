"""A reconcile costs what changed (issue 12): reports read, files parsed and files written.

Counted, never timed: the real ``reconcile_once`` over a real bare server with real gpg
(:mod:`tests.sim.world`), with a counting wrapper around the function that reads one robot's
status ref (it still does the real read). What must hold:

* only status refs that moved since their robot's device file was written are read;
* a changing reconcile rewrites only the device files that changed (the other entries of the
  state tree keep their blob ids);
* the cache ``controller run`` keeps between reconciles (:mod:`controller.reconcile.cache`) gives
  exactly what a cold read of the same commits gives, reconcile after reconcile;
* a hostile status ref is still refused by name, once, and heard again when it moves.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from controller.ingest import reports
from controller.ingest.reports import read_moved_reports
from controller.reconcile import source
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateCache, StateSnapshot, load_state
from controller.state.layout import device_file
from controller.state.model import WavePhase
from fleetcd.git import localpush
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import STATE_BRANCH, status_ref
from fleetcd.git.repo import Oid, Repository
from fleetcd.validation import validate_snapshot
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world, pass_all_waves, roll_out

ALL = STAGING + CANARY + PRODUCTION


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every robot whose status ref the reconcile reads, in order (the real read still runs)."""
    seen: list[str] = []
    real = reports._read_one

    def counted(repo: Repository, device: str, ref: str, target: Oid) -> reports.ReadResult:
        seen.append(device)
        return real(repo, device, ref, target)

    monkeypatch.setattr(reports, "_read_one", counted)
    yield seen


def commit_to_main(world: ControllerWorld, message: str) -> None:
    """A new main commit: the idle fast path cannot skip the next reconcile."""
    world.fleet.git("commit", "--allow-empty", "-qm", message)
    world.fleet.git("push", "-q", str(world.server), "main")


def state_tree(world: ControllerWorld) -> dict[str, str]:
    """path → blob id of every file on the server's state branch."""
    server = pygit2.Repository(str(world.server))
    target = ref_target(server, STATE_BRANCH)
    assert target is not None
    out: dict[str, str] = {}
    stack = [(server[target].peel(pygit2.Commit).tree, "")]
    while stack:
        tree, prefix = stack.pop()
        for entry in tree:
            if entry.type_str == "tree":
                stack.append((server[entry.id], f"{prefix}{entry.name}/"))
            else:
                out[f"{prefix}{entry.name}"] = str(entry.id)
    return out


def plant_blob(world: ControllerWorld, device: str, data: bytes) -> None:
    server = pygit2.Repository(str(world.server))
    server.references.create(status_ref(device), server.create_blob(data), force=True)


# --- ingest reads what moved ---------------------------------------------------------------------


def test_read_moved_reports_skips_refs_still_at_what_was_read(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()  # stg-1 is dispatched
    world.report_all(STAGING, "downloading")
    world.sim.push_report("can-1", world.clock.now)
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    at = {d: str(ref_target(repo, status_ref(d))) for d in ("stg-1", "can-1")}

    assert set(read_moved_reports(repo, {"stg-1": None, "can-1": None, "can-2": None})) == {"stg-1", "can-1"}
    moved = read_moved_reports(repo, {"stg-1": at["stg-1"], "can-1": "0" * 40, "can-2": None})
    assert set(moved) == {"can-1"}
    assert moved["can-1"].target == at["can-1"] and moved["can-1"].report is not None
    assert read_moved_reports(repo, at) == {}


def test_a_reconcile_reads_only_the_status_refs_that_moved(
    tmp_path: Path, keys: KeyFactory, reads: list[str]
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    for device in ALL:
        world.sim.push_report(device, world.clock.now)  # every robot heard once
    world.clock.tick(10)
    world.reconcile()
    assert sorted(reads) == sorted(ALL)
    state = world.state()
    assert all(state.devices[d].last_report_oid is not None for d in ALL)

    reads.clear()
    world.report_all(STAGING, "deployed")
    world.sim.push_report(PRODUCTION[1], world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    assert sorted(reads) == sorted(["stg-1", PRODUCTION[1]])
    assert world.state().devices["stg-1"].records[0].activity.value == "deployed"

    reads.clear()
    commit_to_main(world, "nothing for the robots")
    world.clock.tick(10)
    result = world.reconcile()
    assert reads == [] and not result.idle


def test_a_changing_reconcile_rewrites_only_the_device_files_that_changed(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    for device in ALL:
        world.sim.push_report(device, world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    before = state_tree(world)

    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    result = world.reconcile()
    after = state_tree(world)

    assert result.state_commit is not None
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert {p for p in changed if p.startswith("devices/")} == {device_file("stg-1")}
    assert all(before[device_file(d)] == after[device_file(d)] for d in ALL if d != "stg-1")


# --- the cache is a cold read -----------------------------------------------------------------------


def equal_snapshots(cached: StateSnapshot, cold: StateSnapshot) -> None:
    assert cached.commit == cold.commit
    assert cached.meta == cold.meta
    assert cached.rollouts == cold.rollouts and list(cached.rollouts) == list(cold.rollouts)
    assert cached.devices == cold.devices
    assert cached.audit == cold.audit and list(cached.audit) == list(cold.audit)
    assert cached.files == cold.files


def test_the_cache_gives_what_a_cold_read_gives_over_many_reconciles(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Seeded: robots report at random, waves pass, main moves; after every reconcile of the cached
    controller, the cached state and main validation equal a cold read of the same commits."""
    world = make_world(tmp_path, keys)
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    probe = StateCache()  # a second reader that only ever reads through its cache
    rng = random.Random(12)

    def heartbeats() -> None:
        for device in rng.sample(ALL, 3):
            world.sim.push_report(device, world.clock.now)

    rounds: list[tuple[Callable[[], object], float]] = [
        (heartbeats, 10),
        (lambda: world.report_all(STAGING, "downloading"), 10),
        (lambda: commit_to_main(world, "an edit"), 10),
        (lambda: world.report_all(STAGING, "deployed"), 10),  # the staging wave soaks
        (heartbeats, 61),  # and passes: the canary wave is dispatched
        (lambda: world.report_all(CANARY, rng.choice(["downloading", "deployed"])), 10),
        (heartbeats, 10),
        (lambda: (heartbeats(), commit_to_main(world, "another edit")), 10),
    ]
    world.reconcile()
    cold = load_state(open_mirror(world.settings.source))
    for act, seconds in rounds:
        act()
        world.clock.tick(seconds)
        world.reconcile()
        repo = open_mirror(world.settings.source)
        fetch_all(repo, world.settings.source)
        cold = load_state(repo)
        equal_snapshots(load_state(repo, cache=probe), cold)
        assert cache.state.snapshot is not None
        equal_snapshots(load_state(repo, cache=cache.state), cold)
        main = validate_snapshot(cache.main.files, problems=cache.main.problems)
        assert cache.main.validation is not None and cache.main.validation.diagnostics == main.diagnostics
        assert cache.main.validation.spec == main.spec
    assert cold.rollouts["nav"].waves[0].phase.value == "passed"


def test_a_cache_whose_tree_the_mirror_lost_reads_everything_again(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    cache = StateCache(tree="0" * 40, snapshot=StateSnapshot(commit=None, meta=load_state(repo).meta))
    equal_snapshots(load_state(repo, cache=cache), load_state(repo))


def test_a_state_file_that_does_not_parse_fails_through_the_cache_too(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The cache skips parsing only content it parsed before: a changed file is parsed, and a
    broken one is as loud as on a cold read (and the cache keeps the last good tree)."""
    from controller.reconcile.statebranch import write_state

    world = make_world(tmp_path, keys)
    world.reconcile()
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    cache = StateCache()
    good = load_state(repo, cache=cache)
    write_state(repo, good, {device_file("stg-1"): b"{not json"}, "broken", world.clock.now)
    with pytest.raises(ValueError):
        load_state(repo)
    with pytest.raises(ValueError):
        load_state(repo, cache=cache)
    assert cache.snapshot is not None and cache.snapshot.commit == good.commit


# --- hostile refs -----------------------------------------------------------------------------------


def test_a_hostile_status_ref_is_refused_once_and_heard_again_when_it_moves(
    tmp_path: Path, keys: KeyFactory, reads: list[str]
) -> None:
    world = make_world(tmp_path, keys)
    world.settings = replace(world.settings, cache=ReconcileCache())
    world.reconcile()
    plant_blob(world, "can-1", b'{"seq": 99}')
    world.report_all(STAGING, "downloading")
    world.clock.tick(10)
    first = world.reconcile()
    refused = [e for e in first.events if e.device == "can-1" and e.reason]
    assert len(refused) == 1 and status_ref("can-1") in str(refused[0].reason)
    assert world.state().devices["stg-1"].records[0].activity.value == "downloading"

    reads.clear()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    second = world.reconcile()
    assert reads == ["stg-1"]  # the planted blob is not read again while the ref names it
    assert not [e for e in second.events if e.device == "can-1"]
    assert world.state().devices["stg-1"].records[0].activity.value == "deployed"

    reads.clear()
    server = pygit2.Repository(str(world.server))
    server.references.delete(status_ref("can-1"))
    world.sim.push_report("can-1", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    assert reads == ["can-1"]
    assert world.state().devices["can-1"].last_report_seq == world.sim.robots["can-1"].seq


# --- the mirror's refs -------------------------------------------------------------------------------


def test_the_mirror_refs_are_packed_after_a_fetch_and_a_failed_pack_is_only_a_warning(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    monkeypatch.setattr(source, "PACK_FROM_LOOSE_REFS", 1)
    world.sim.push_report("stg-1", world.clock.now)
    with open_mirror(world.settings.source) as repo:
        fetched = fetch_all(repo, world.settings.source)
        mirror = Path(repo.path)
        assert status_ref("stg-1") in fetched.status
        assert not (mirror / status_ref("stg-1")).exists()  # packed, not a loose file
        assert status_ref("stg-1") in (mirror / "packed-refs").read_text()

        world.sim.push_report("stg-1", world.clock.now)
        (mirror / "packed-refs.lock").write_text("")  # another git process is packing
        try:
            fetched = fetch_all(repo, world.settings.source)
        finally:
            (mirror / "packed-refs.lock").unlink()
        assert fetched.status[status_ref("stg-1")] == ref_target(repo, status_ref("stg-1"))
    assert "were not packed this time" in caplog.text


def loose_ref_files(git_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(git_dir)) for p in (git_dir / "refs").rglob("*") if p.is_file())


def test_a_push_packs_the_server_refs_only_once_enough_of_them_are_loose(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packing rewrites every packed ref whatever is loose, so a few reports do not pay for it; the
    reconcile after enough loose refs piled up packs them all, the reports' included."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    server = Path(world.settings.source.url)
    monkeypatch.setattr(source, "PACK_FROM_LOOSE_REFS", 1000)
    world.sim.push_report("stg-1", world.clock.now)
    world.sim.push_report("stg-2", world.clock.now)
    world.clock.tick(1)
    assert world.reconcile().state_commit is not None
    left = loose_ref_files(server)
    assert status_ref("stg-1") in left and status_ref("stg-2") in left

    monkeypatch.setattr(source, "PACK_FROM_LOOSE_REFS", len(left) + 1)
    world.sim.push_report("can-1", world.clock.now)
    world.clock.tick(1)
    assert world.reconcile().state_commit is not None
    assert loose_ref_files(server) == []
    packed = (server / "packed-refs").read_text()
    assert all(status_ref(robot) in packed for robot in ("stg-1", "stg-2", "can-1"))


# --- publishing into a local server ---------------------------------------------------------------


def desired_refs_on(server: Path) -> dict[str, str]:
    repo = pygit2.Repository(str(server))
    return {
        ref: str(repo.references[ref].target)
        for ref in repo.references
        if ref.startswith("refs/namespaces/") and "/refs/fleetcd/desired/" in ref
    }


def test_a_fan_out_into_a_hookless_local_server_is_written_by_hand_with_no_loose_ref(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From DIRECT_FROM_REFS moved refs a local server running no hook gets one pack and one
    packed-refs rewrite (fleetcd.git.localpush): every robot verifies what it finds there, and
    the refs are the mirror's, with no loose file a later listing would walk."""
    monkeypatch.setattr(localpush, "DIRECT_FROM_REFS", 1)
    world = make_world(tmp_path, keys)
    world.reconcile()
    server = world.server
    assert [f for f in loose_ref_files(server) if "/desired/" in f or f.endswith("fleetcd/state")] == []
    with open_mirror(world.settings.source) as repo:
        mirror_refs = {
            ref: str(oid) for ref, oid in source.read_refs(Path(repo.path), ("refs/namespaces/",)).items()
        }
        assert desired_refs_on(server) == mirror_refs
        assert str(ref_target(repo, STATE_BRANCH)) == str(
            ref_target(pygit2.Repository(str(server)), STATE_BRANCH)
        )
    robots = {device: PinningRobot(world, device) for device in ALL}
    first = {device: robot.poll() for device, robot in robots.items()}
    pass_all_waves(world)
    assert all(robot.poll() >= first[device] for device, robot in robots.items())
    assert world.state().rollouts["nav"].waves[-1].phase is WavePhase.PASSED


def test_a_local_server_with_a_hook_gets_a_real_push_and_its_hook_sees_every_ref(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localpush, "DIRECT_FROM_REFS", 1)
    world = make_world(tmp_path, keys)
    seen = tmp_path / "pre-receive.log"
    hook = world.server / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ncat >> {seen}\n")
    hook.chmod(0o755)
    world.reconcile()
    pushed = {line.split(" ")[2] for line in seen.read_text().splitlines()}
    assert set(desired_refs_on(world.server)) <= pushed
    assert STATE_BRANCH in pushed


def test_a_lost_race_for_the_state_branch_when_writing_by_hand_is_retried_and_heals(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer moves the server's state branch under the reconcile: the push by hand refuses
    (as --force-with-lease would), nothing moves, and the next reconcile builds on the new tip."""
    monkeypatch.setattr(localpush, "DIRECT_FROM_REFS", 1)
    world = make_world(tmp_path, keys)
    world.reconcile()
    real = source.push_by_hand
    raced: list[str] = []

    def racing(repo: pygit2.Repository, git_dir: Path, refs: dict[str, Oid], **kwargs: object) -> int:
        if not raced:  # a second controller commits to the state branch first
            server = pygit2.Repository(str(git_dir))
            tip = ref_target(server, STATE_BRANCH)
            assert tip is not None
            moved = server.create_commit(
                None,
                server[tip].author,
                server[tip].committer,
                "another controller",
                server[tip].tree_id,
                [tip],
            )
            server.references[STATE_BRANCH].set_target(moved)
            raced.append(str(moved))
        return real(repo, git_dir, refs, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(source, "push_by_hand", racing)
    roll_out(world, "2.0.0")  # its reconcile lost the race and was retried on the new tip
    server = pygit2.Repository(str(world.server))
    tip = ref_target(server, STATE_BRANCH)
    assert tip is not None
    history = [str(c.id) for c in server.walk(tip)]
    assert raced[0] in history  # built on the other controller's commit, not over it
    assert desired_refs_on(world.server) == {
        ref: str(oid)
        for ref, oid in source.read_refs(
            Path(open_mirror(world.settings.source).path), ("refs/namespaces/",)
        ).items()
    }
