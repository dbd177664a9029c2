"""The device files a write dumped, kept by the state cache as the very models they came from.

``write_state(..., models=...)`` hands the state cache (:class:`~controller.reconcile.statebranch.StateCache`)
each device file it commits together with the model it was dumped from, and the cache keeps that
model instead of parsing the bytes: the next reconcile's ``load_state`` hands back the very
object the pages, the due memo and the ingest map were built from (identity holds, nothing to
adopt, no JSON parsed). What must hold:

* a kept model stands only for the bytes dumped from it (the same bytes object the commit
  holds): anything else for that path, by value or by another writer, is parsed;
* after every reconcile of a random history the cache equals a cold read of the state branch,
  model by model down to the type of every part (a str where a parse holds an enum, a list
  where it holds a tuple would be told apart), and the status pages built with the kept objects
  equal the pages built from device files parsed from the branch;
* another writer moving the state branch with other bytes for a robot the controller wrote has
  that robot parsed from those bytes (the kept model is not used); the same bytes written by
  another writer may keep the model, which equals a cold parse;
* a reconcile that stops mid-write (before, at and after the commit, or raising) keeps nothing
  of what it did not commit and push, and the next one equals a cold read.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest
from pydantic import BaseModel

from controller.reconcile import write as write_module
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import Models, StateCache, StateSnapshot, dump, load_state, write_state
from controller.reconcile.steps import reconcile_once
from controller.records.model import Connectivity, DeviceState
from controller.state.layout import STATUS_HTML, STATUS_MD, device_file
from controller.state.model import DeviceFile
from fleetcd.errors import RefConflict
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, START, ControllerWorld, make_world
from tests.test_reconcile_proportional import equal_snapshots

ALL = STAGING + CANARY + PRODUCTION


def same(a: object, b: object, where: str = "") -> None:
    """``a`` and ``b`` hold the same value down to the type of every part (``==`` alone takes a
    StrEnum for its str, 1 for True and 1.0, and says nothing of a time zone's offset)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, BaseModel):
        assert isinstance(b, BaseModel) and a.__dict__.keys() == b.__dict__.keys(), where
        for key, value in a.__dict__.items():
            same(value, b.__dict__[key], f"{where}.{key}")
    elif isinstance(a, tuple | list):
        assert isinstance(b, tuple | list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, datetime):
        assert isinstance(b, datetime) and a == b and a.utcoffset() == b.utcoffset(), where
    else:
        assert a == b, where


def same_devices(kept: Mapping[str, DeviceFile], cold: Mapping[str, DeviceFile]) -> None:
    assert kept.keys() == cold.keys()  # the order is the cache's own (as before: not compared)
    for device, data in kept.items():
        same(data, cold[device], device)


# --- write_state's models, on a bare repository (no reconcile) ------------------------------------

WHEN = START


def robot(device: str, seq: int, link: Connectivity = Connectivity.ONLINE) -> DeviceFile:
    state = DeviceState(device=device, connectivity=link, last_seen=WHEN + timedelta(seconds=seq))
    return DeviceFile(state=state, last_report_seq=seq)


def dumped(*files: DeviceFile) -> dict[str, tuple[DeviceFile, bytes]]:
    return {device_file(f.state.device): (f, dump(f)) for f in files}


def commit_models(
    repo: pygit2.Repository, cache: StateCache, models: Mapping[str, tuple[DeviceFile, bytes]]
) -> None:
    changes = {path: data for path, (_, data) in models.items()}
    write_state(repo, load_state(repo, cache=cache), changes, "ours", WHEN, cache=cache, models=models)


def theirs(repo: pygit2.Repository, changes: dict[str, bytes | None]) -> None:
    """Another writer's commit on the branch (another process: no cache, nothing kept)."""
    write_state(repo, load_state(repo), changes, "theirs", WHEN)


def test_a_written_model_is_the_object_the_next_load_hands_back_and_equals_a_cold_parse(
    tmp_path: Path,
) -> None:
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    first = dumped(robot("amr-1", 1), robot("amr-2", 2, Connectivity.OFFLINE))
    commit_models(repo, cache, first)
    assert cache.parsed == 0  # nothing parsed: both files are the models they were dumped from
    loaded = load_state(repo, cache=cache)
    for path, (model, _) in first.items():
        assert loaded.devices[model.state.device] is model, path
    same_devices(loaded.devices, load_state(repo).devices)
    second = dumped(robot("amr-2", 3))
    commit_models(repo, cache, second)
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is first[device_file("amr-1")][0]
    assert loaded.devices["amr-2"] is second[device_file("amr-2")][0]
    same_devices(loaded.devices, load_state(repo).devices)
    assert cache.parsed == 0


def test_attack_bytes_equal_to_a_models_dump_but_not_its_very_bytes_are_parsed(tmp_path: Path) -> None:
    """The cache matches a model to bytes by identity, never by value: an equal copy of the bytes
    (what another path could carry), a model handed for another path than its own, one for a path
    that is no device file, and bytes dumped from another model are all parsed."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    one, two, three = robot("amr-1", 1), robot("amr-2", 2), robot("amr-3", 3)
    copy = bytes(bytearray(dump(one)))
    assert copy == dump(one)
    models: Models = {
        device_file("amr-1"): (one, dump(one)),  # the commit holds ``copy``: equal, another object
        device_file("amr-2"): (three, dump(three)),  # another model's bytes than the commit's
        "state.json": (one, dump(one)),  # no device file
    }
    changes: dict[str, bytes | None] = {device_file("amr-1"): copy, device_file("amr-2"): dump(two)}
    changes[device_file("amr-3")] = dump(three)
    write_state(repo, load_state(repo, cache=cache), changes, "ours", WHEN, cache=cache, models=models)
    assert cache.parsed == 3
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is not one and loaded.devices["amr-2"] is not three
    assert loaded.devices["amr-3"] is not three and loaded.devices["amr-2"].last_report_seq == 2
    same_devices(loaded.devices, load_state(repo).devices)


def test_attack_another_writer_with_other_bytes_for_a_robot_we_wrote_is_parsed_not_kept(
    tmp_path: Path,
) -> None:
    """Between two loads another writer commits other bytes for a robot whose model the cache
    keeps: the load parses them (the kept model is not handed back); the robots it left alone
    still are."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    ours = dumped(robot("amr-1", 1), robot("amr-2", 2))
    commit_models(repo, cache, ours)
    forged = robot("amr-1", 99, Connectivity.OFFLINE)
    theirs(repo, {device_file("amr-1"): dump(forged)})
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is not ours[device_file("amr-1")][0]
    assert loaded.devices["amr-1"] == forged and loaded.devices["amr-1"].last_report_seq == 99
    assert loaded.devices["amr-2"] is ours[device_file("amr-2")][0]
    assert cache.parsed == 1
    same_devices(loaded.devices, load_state(repo).devices)


def test_the_same_bytes_written_by_another_writer_may_keep_the_model_which_equals_a_cold_parse(
    tmp_path: Path,
) -> None:
    """Another writer commits, for a robot we wrote, bytes equal to ours: once directly (the blob
    is ours, nothing to read), once after changing them and changing them back (two commits, the
    same blob in the end). Either way the load may hand back the kept model, and it equals a
    cold parse of the branch."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    ours = dumped(robot("amr-1", 1), robot("amr-2", 2))
    commit_models(repo, cache, ours)
    model, data = ours[device_file("amr-1")]
    theirs(
        repo, {device_file("amr-1"): bytes(bytearray(data)), device_file("amr-3"): dump(robot("amr-3", 3))}
    )
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is model
    same_devices(loaded.devices, load_state(repo).devices)
    theirs(repo, {device_file("amr-1"): dump(robot("amr-1", 50))})
    theirs(repo, {device_file("amr-1"): bytes(bytearray(data))})
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is model
    same_devices(loaded.devices, load_state(repo).devices)


def test_a_write_that_loses_the_race_keeps_none_of_its_models(tmp_path: Path) -> None:
    """Our write raises (another writer moved the branch since our load: the compare-and-swap
    fails) after its tree and commit objects were made: the cache stays on the tree before, the
    next load parses the winner's bytes, and our models are never handed out."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    commit_models(repo, cache, dumped(robot("amr-1", 1)))
    tree, snapshot = cache.tree, load_state(repo, cache=cache)
    theirs(repo, {device_file("amr-1"): dump(robot("amr-1", 7))})
    lost = dumped(robot("amr-1", 8), robot("amr-2", 8))
    changes = {path: data for path, (_, data) in lost.items()}
    with pytest.raises(RefConflict):
        write_state(repo, snapshot, changes, "ours", WHEN, cache=cache, models=lost)
    assert cache.tree == tree
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"].last_report_seq == 7 and "amr-2" not in loaded.devices
    assert all(data is not model for model, _ in lost.values() for data in loaded.devices.values())
    same_devices(loaded.devices, load_state(repo).devices)


def test_a_cache_holding_another_commit_keeps_nothing_of_a_write_and_reads_it_back(tmp_path: Path) -> None:
    """A write on top of a commit the cache does not hold (its snapshot is older) leaves the
    cache as it was: the next load diffs to the written commit and parses what was written."""
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    cache = StateCache()
    commit_models(repo, cache, dumped(robot("amr-1", 1)))
    theirs(repo, {device_file("amr-2"): dump(robot("amr-2", 2))})
    ours = dumped(robot("amr-1", 3))
    changes = {path: data for path, (_, data) in ours.items()}
    write_state(repo, load_state(repo), changes, "ours", WHEN, cache=cache, models=ours)
    loaded = load_state(repo, cache=cache)
    assert loaded.devices["amr-1"] is not ours[device_file("amr-1")][0]
    assert loaded.devices["amr-1"].last_report_seq == 3
    same_devices(loaded.devices, load_state(repo).devices)


# --- real reconciles (tests.sim.world: a bare server, real gpg), one ReconcileCache ----------------


class Crash(BaseException):
    """A stop at a checkpoint that nothing in the controller catches (a kill, as far as the
    process's memory is concerned: what it kept is what the next reconcile starts from)."""


class Bug(Exception):
    """A stop at a checkpoint the controller takes for a bug (recorded as a failure, raised)."""


@dataclass
class Watch:
    """What each reconcile handed the state cache and what its pages were compared with."""

    models: list[Models] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pages: int = 0  # pages built and compared with a build from parsed files


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    """The write step's write_state and pages, the real ones, watched: the models handed over are
    kept, and the status pages built with the reconcile's (kept) device objects are compared with
    a build from device files parsed from the branch's bytes (the robots this reconcile did not
    change) or from their dump (the ones it did), with no memo: what a cold process builds. Each
    unchanged robot's object is compared with the parse of its bytes on the branch, too."""
    seen = Watch()
    real_write, real_pages = write_module.write_state, write_module.pages_and_receipts

    def write_state_watched(*args: Any, **kwargs: Any) -> Any:
        seen.models.append(dict(kwargs.get("models") or {}))
        return real_write(*args, **kwargs)

    def pages_watched(
        ctx: Any, snapshot: StateSnapshot, rollouts: Any, devices: Any, settings: Any, *rest: Any
    ) -> Any:
        out = real_pages(ctx, snapshot, rollouts, devices, settings, *rest)
        cold: dict[str, DeviceFile] = {}
        for device, data in devices.items():
            branch = snapshot.files.get(device_file(device))
            if snapshot.devices.get(device) is data and branch is not None:
                cold[device] = DeviceFile.model_validate_json(branch)
                try:
                    same(data, cold[device], device)
                except AssertionError as exc:
                    seen.problems.append(f"kept {device} is not its parse: {exc}")
            else:
                cold[device] = DeviceFile.model_validate_json(dump(data))
        rebuilt = real_pages(ctx, snapshot, rollouts, cold, replace(settings, cache=None), *rest)
        seen.pages += 1
        for page in (STATUS_MD, STATUS_HTML):
            if out[page] != rebuilt[page]:
                seen.problems.append(f"{page} differs from a cold build")
        return out

    monkeypatch.setattr(write_module, "write_state", write_state_watched)
    monkeypatch.setattr(write_module, "pages_and_receipts", pages_watched)
    yield seen


def cached_world(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ReconcileCache]:
    world = make_world(tmp_path, keys)
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    return world, cache


def loads(world: ControllerWorld, cache: ReconcileCache) -> tuple[StateSnapshot, StateSnapshot]:
    """The mirror fetched from the server, then read through the controller's cache and cold."""
    with open_mirror(world.settings.source) as repo:
        fetch_all(repo, world.settings.source)
        return load_state(repo, cache=cache.state), load_state(repo)


def check(
    world: ControllerWorld, cache: ReconcileCache, watch: Watch, models: Models | None
) -> StateSnapshot:
    """The cache equals a cold read model by model; the pages matched; with ``models`` (the last
    write's, nobody else wrote since) each written robot is handed back as its very model."""
    kept, cold = loads(world, cache)
    equal_snapshots(kept, cold)
    same_devices(kept.devices, cold.devices)
    assert watch.problems == []
    for path, (model, _) in (models or {}).items():
        assert kept.devices[model.state.device] is model, path
    return kept


def operator_write(world: ControllerWorld, changes: dict[str, bytes | None]) -> None:
    server = pygit2.Repository(str(world.server))
    theirs(server, changes)


def forged(data: DeviceFile, rng: random.Random) -> DeviceFile:
    """Other bytes for a robot's file: what someone with push access to the state branch leaves."""
    edits: list[dict[str, object]] = [
        {"last_report_oid": None},
        {"state": data.state.model_copy(update={"connectivity": Connectivity.OFFLINE})},
        {"records": data.records[:-1]},
    ]
    rng.shuffle(edits)
    for edit in [*edits, {"last_report_seq": data.last_report_seq + rng.randrange(1, 5)}]:
        other = DeviceFile.model_validate(data.model_copy(update=edit).model_dump())
        if dump(other) != dump(data):
            return other
    raise AssertionError("unreachable: a new seq is other bytes")


ACTIVITIES = ("downloading", "deployed", "deployed", "failed")


def report(world: ControllerWorld, device: str, activity: str) -> None:
    """The robot reports ``activity`` for its deployment, or a heartbeat while it has none."""
    try:
        world.sim.report(
            device, "nav", activity, world.clock.now, error="failed" if activity == "failed" else "none"
        )
    except ValueError:  # nothing dispatched to it yet
        world.sim.push_report(device, world.clock.now)


@pytest.mark.parametrize("seed", range(4))
def test_a_random_history_keeps_the_written_models_and_equals_a_cold_read_after_every_reconcile(
    tmp_path: Path, keys: KeyFactory, watch: Watch, seed: int
) -> None:
    """Reports, the clock passing soaks and the offline limit, another writer's commits with
    other bytes and with our very bytes for robots we wrote, and reconciles stopped mid-write:
    after every reconcile the cache equals a cold read, the robots written are handed back as
    their models, and the pages built with them equal a cold build."""
    rng = random.Random(seed)
    world, cache = cached_world(tmp_path, keys)
    world.reconcile()
    kept = check(world, cache, watch, watch.models[-1])
    for _ in range(9):
        roll = rng.random()
        watch.models.clear()
        if roll < 0.2:  # someone else's bytes for a robot the controller wrote
            device = rng.choice(ALL)
            other = forged(kept.devices[device], rng)
            operator_write(world, {device_file(device): dump(other)})
            after, _ = loads(world, cache)
            assert after.devices[device] is not kept.devices[device] and after.devices[device] == other
        elif roll < 0.3:  # our very bytes again, by another writer (directly, or changed and back)
            device = rng.choice(ALL)
            ours = dump(kept.devices[device])
            if rng.random() < 0.5:
                operator_write(world, {device_file(device): dump(forged(kept.devices[device], rng))})
            operator_write(world, {device_file(device): ours})
            after, _ = loads(world, cache)
            assert after.devices[device] is kept.devices[device]
        for device in rng.sample(ALL, rng.randrange(0, 4)):
            report(world, device, rng.choice(ACTIVITIES))
        world.clock.tick(rng.choice((10, 61, 400)))
        if rng.random() < 0.25:
            stop: BaseException = Crash() if rng.random() < 0.7 else Bug()
            at = rng.choice(("desired-written", "state-committed", "state-pushed"))

            def halt(name: str, at: str = at, stop: BaseException = stop) -> None:
                if name == at:
                    raise stop

            with contextlib.suppress(Crash, Bug):  # an idle reconcile reaches no checkpoint
                reconcile_once(replace(world.settings, checkpoint=halt))
            kept = check(world, cache, watch, None)
            continue
        result = world.reconcile()
        models = watch.models[-1] if result.state_commit is not None and watch.models else None
        kept = check(world, cache, watch, models)
    assert watch.pages > 0 and watch.problems == []


@pytest.mark.parametrize("stop", [Crash, Bug])
@pytest.mark.parametrize("at", ["desired-written", "state-committed", "state-pushed"])
def test_a_reconcile_stopped_mid_write_keeps_nothing_stale_and_the_next_one_keeps_its_models(
    tmp_path: Path, keys: KeyFactory, watch: Watch, at: str, stop: type[BaseException]
) -> None:
    """Reports dispatch and move robots, and the reconcile writing them stops before the state
    commit, after it (not pushed: the server's branch stays behind), or after its push, by a
    stop nothing catches or by one taken for a bug (a failure recorded on top, if it can be):
    the cache then equals a cold read of the server's branch (a model of a commit the server
    never got is not handed out), and the next reconcile writes and keeps its own models."""
    world, cache = cached_world(tmp_path, keys)
    world.reconcile()
    check(world, cache, watch, watch.models[-1])
    world.report_all(STAGING, "downloading")
    world.clock.tick(10)
    watch.models.clear()

    def halt(name: str) -> None:
        if name == at:
            raise stop()

    with pytest.raises(stop):
        reconcile_once(replace(world.settings, checkpoint=halt))
    kept = check(world, cache, watch, None)
    tried = watch.models[0] if watch.models else {}
    if at == "desired-written":
        assert tried == {}  # stopped before the state commit: nothing handed over
    else:
        assert tried  # the robots written, handed over with their models
    pushed = at == "state-pushed"
    for model, _ in tried.values():
        assert (kept.devices[model.state.device] is model) is pushed
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    watch.models.clear()
    result = world.reconcile()
    assert result.state_commit is not None and watch.models[-1]
    check(world, cache, watch, watch.models[-1])
    assert watch.problems == []
