"""Reading and writing the controller's state branch (``refs/heads/fleetcd/state``).

The controller holds no state outside git: everything it knows is read here at the start of a
reconcile and written back as one commit at the end. Only this module and the delivery writer touch
git objects for the controller, always through ``fleetcd.git``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from controller.audit.chain import AUDIT_DIR, DAY_PATH
from controller.audit.days import DayFiles
from controller.reconcile.fleetmap import Journal, Lineage
from controller.state.jsontext import dumps_indented
from controller.state.layout import DEVICES_DIR, META_FILE, legacy_device_of
from controller.state.model import ControllerMeta, DeviceFile, RolloutState
from fleetcd.errors import SetupError
from fleetcd.git.hashtree import TreeMemo, write_tree_hashed
from fleetcd.git.objects import Identity, commit, read_blob, ref_target
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import Oid, Repository, tree_of
from fleetcd.git.trees import blob_names, changed_blobs, commit_tree_id, list_blobs, read_files

CONTROLLER_IDENTITY = Identity("fleetcd controller", "controller@fleetcd.invalid")

# path -> (the device file, the bytes dumped from it that the commit holds): what a write hands
# the cache instead of bytes to parse (write_state's ``models``).
Models = Mapping[str, tuple[DeviceFile, bytes]]


@dataclass
class StateSnapshot:
    """The state branch as read at the start of a reconcile.

    ``audit`` is the audit log (``audit/``), read as :class:`~controller.audit.days.DayFiles`: the
    blob id of every day file and the bytes of the newest only (what the write step appends to);
    an older day's bytes are read from git when asked and not kept, so a year of a 100,000-robot
    log (about 16 GB) is not held by a long-running controller. ``files`` is every other file.
    """

    commit: Oid | None
    meta: ControllerMeta
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    devices: dict[str, DeviceFile] = field(default_factory=dict)
    audit: Mapping[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # Where ``devices`` stands in the state cache's journal of changed robots (a load through a
    # cache), for the ingest step's kept map (controller.reconcile.fleetmap.starting_devices).
    lineage: Lineage | None = None


@dataclass
class StateCache:
    """The state branch as last parsed, kept between reconciles by a long-running controller.

    Keyed by the tree's id: the next load diffs that tree against the new one and reads and parses
    only the files that differ, so a reconcile after one that changed K device files parses K
    files, not the fleet's. Git ids name content, so nothing here can be stale; a tree the mirror
    no longer has (a rebuilt cache) is simply read in full. Filled by :func:`load_state` and by
    :func:`write_state`, which leaves it holding the tree it wrote (the files it committed, parsed
    from the very bytes written, or, for a device file dumped from a model, that very model), so
    the reconcile after a write reads only what others changed since: after the bootstrap that is
    nothing, not the whole fleet's device files. A device file someone else changed is a new blob
    in the diff and is parsed from its bytes: a kept model only ever stands for bytes dumped from it.
    """

    tree: str | None = None
    snapshot: StateSnapshot | None = None
    keys: dict[str, str] = field(default_factory=dict)  # rollout/device file path -> its name
    # Files parsed into this cache, by loads and writes (not the device files a write kept as the
    # models it dumped); the audit log is not parsed here (tests count them).
    parsed: int = 0
    # The directories the last write left, as entries the next write splices into (fleetcd.git.hashtree).
    trees: TreeMemo = field(default_factory=TreeMemo)
    # The robots whose entry in ``snapshot.devices`` each change in place changed; a new journal
    # for every new snapshot (fleetcd.reconcile.fleetmap.Journal).
    journal: Journal = field(default_factory=Journal)


def load_state(repo: Repository, ref: str = STATE_BRANCH, cache: StateCache | None = None) -> StateSnapshot:
    """Parse every file the controller wrote; a state branch that does not parse is a loud error.

    With ``cache`` only the files that changed since the cached tree are read and parsed; the
    snapshot returned is the same as without it (its dicts are fresh copies, free to change).
    """
    head = ref_target(repo, ref)
    if head is None:
        return StateSnapshot(commit=None, meta=ControllerMeta())
    if cache is None:
        return _copy(_parse(head, _read_all(repo, head), _days(repo, head, {}, None))[0])
    tree = commit_tree_id(repo, head)
    changed = changed_blobs(repo, cache.tree, tree) if cache.tree is not None else None
    updated = False
    if changed is not None and cache.snapshot is not None:
        days = _days(repo, head, changed, cache.snapshot.audit)
        # In place (a file that does not parse raises before anything changed: loud, cache kept).
        updated = _update(cache.snapshot, cache.keys, head, changed, days, cache.journal)
        cache.parsed += _parsed(changed)
    if not updated:
        cache.tree, cache.snapshot, cache.keys = None, None, {}  # dropped before the full read
        cache.journal = Journal()
        files = _read_all(repo, head)
        cache.snapshot, cache.keys = _parse(head, files, _days(repo, head, {}, None))
        cache.parsed += len(files)
    cache.tree = tree
    assert cache.snapshot is not None
    return _copy(cache.snapshot, (cache.journal, cache.journal.serial))


def _read_all(repo: Repository, head: Oid) -> dict[str, bytes]:
    """Every file but the audit log's, which :func:`_days` lists without reading."""
    return read_files(repo, head, skip=(AUDIT_DIR.rstrip("/"),))


def _days(
    repo: Repository, head: Oid, fresh: Mapping[str, bytes | None], previous: Mapping[str, bytes] | None
) -> DayFiles:
    """The audit log of ``head`` by blob id (tree objects only), its newest day's bytes kept when
    ``fresh`` (bytes just read or written for ``head``) or ``previous`` (the last snapshot's log)
    already holds them under the same blob id; any other day is read from git when asked."""
    ids = list_blobs(repo, head, AUDIT_DIR)
    newest = max((path for path in ids if DAY_PATH.fullmatch(path)), default=None)
    held: dict[str, bytes] = {}
    if newest is not None:
        blob, data = ids[newest], fresh.get(newest)
        if data is None and isinstance(previous, DayFiles):
            data = previous.held.get(blob)
        if data is not None:
            held[blob] = data

    def read(path: str) -> bytes:
        data = read_blob(repo, head, path)
        if data is None:
            raise SetupError(f"{path}: not in state commit {head} of {repo.path}")
        return data

    return DayFiles(ids, read, newest, held)


def _parsed(changed: Mapping[str, bytes | None], models: Models | None = None) -> int:
    return sum(
        data is not None and not path.startswith(AUDIT_DIR) and _kept(models, path, data) is None
        for path, data in changed.items()
    )


def _kept(models: Models | None, path: str, data: bytes) -> DeviceFile | None:
    """The model ``data`` was dumped from, when ``models`` holds it for ``path`` (a device file's)
    with these very bytes (the same object: bytes from anywhere else are parsed, never matched by
    value)."""
    found = models.get(path) if models is not None and path.startswith("devices/") else None
    return found[0] if found is not None and found[1] is data and path.endswith(".json") else None


def _parse(head: Oid, files: dict[str, bytes], audit: DayFiles) -> tuple[StateSnapshot, dict[str, str]]:
    snapshot = StateSnapshot(commit=head, meta=ControllerMeta(), audit=audit, files=files)
    keys: dict[str, str] = {}
    with collector_paused():
        for path, data in files.items():
            _add(snapshot, keys, path, data)
    return snapshot, keys


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector held off while state files are parsed into models.

    Parsed models hold no reference cycles, so a collection finds nothing to free, but the
    allocations of 100,000 of them set off full collections that walk every object the controller
    holds: parsing 10,000 device files took 0.29 s with the collector off and 0.37-1.97 s with it
    on, beside 100,000 parsed earlier (a long-running controller's heap). The collector runs again
    as before once the block ends (and stays off if the caller had turned it off).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_Model = ControllerMeta | RolloutState | DeviceFile


def _add(snapshot: StateSnapshot, keys: dict[str, str], path: str, data: bytes) -> None:
    _put(snapshot, keys, path, _model_of(path, data))


def _model_of(path: str, data: bytes) -> _Model | None:
    """The model a state file parses to (None: a file the snapshot keeps as bytes only)."""
    if path == META_FILE:
        return ControllerMeta.model_validate_json(data)
    if path.startswith("rollouts/") and path.endswith(".json"):
        return RolloutState.model_validate_json(data)
    if path.startswith("devices/") and path.endswith(".json"):
        return DeviceFile.model_validate_json(data)
    return None


def _put(snapshot: StateSnapshot, keys: dict[str, str], path: str, model: _Model | None) -> None:
    if isinstance(model, ControllerMeta):
        snapshot.meta = model
    elif isinstance(model, RolloutState):
        snapshot.rollouts[model.name] = model
        keys[path] = model.name
    elif isinstance(model, DeviceFile):
        snapshot.devices[model.state.device] = model
        keys[path] = model.state.device


def _update(
    snapshot: StateSnapshot,
    keys: dict[str, str],
    head: Oid,
    changed: Mapping[str, bytes | None],
    audit: DayFiles,
    journal: Journal | None = None,
    models: Models | None = None,
) -> bool:
    """``snapshot`` (and its ``keys``) with the ``changed`` files applied (None: deleted), in place,
    as :func:`_parse` would read it; ``audit`` is ``head``'s log (:func:`_days`). The work is the
    changed files: at 100,000 robots copying the snapshot's four maps first cost ~15 ms a time.

    Every changed file is parsed before anything is changed, so a file that does not parse (a
    ValueError) leaves the snapshot as it was. False: two files name one rollout or robot, and a
    full read in tree order must say which wins (the snapshot is then to be dropped). ``journal``
    records the robots whose entry may change, before anything is changed. ``models``: the device
    files a write dumped, taken as they are for their very bytes (:func:`_kept`)."""
    changed = {path: data for path, data in changed.items() if not path.startswith(AUDIT_DIR)}
    with collector_paused():
        parsed = [
            (path, data, _kept(models, path, data) or _model_of(path, data))
            for path, data in changed.items()
            if data is not None
        ]
    if journal is not None:
        robots = [keys[path] for path in changed if path in keys and not path.startswith("rollouts/")]
        robots += [model.state.device for _, _, model in parsed if isinstance(model, DeviceFile)]
        journal.record(robots)
    snapshot.commit, snapshot.audit = head, audit
    for path in changed:
        snapshot.files.pop(path, None)
        name = keys.pop(path, None)
        if name is not None and path.startswith("rollouts/"):
            snapshot.rollouts.pop(name, None)
        elif name is not None:
            snapshot.devices.pop(name, None)
        if path == META_FILE:
            snapshot.meta = ControllerMeta()
    for path, data, model in parsed:
        snapshot.files[path] = data
        _put(snapshot, keys, path, model)
    return len(snapshot.rollouts) + len(snapshot.devices) == len(keys)


def _copy(snapshot: StateSnapshot, lineage: Lineage | None = None) -> StateSnapshot:
    """Fresh dicts; rollouts and audit files in name order, however they were read (what is done
    for each rollout in turn never depends on whether a file came from the cache). The log is
    shared: a :class:`DayFiles` is read-only (and already in name order)."""
    audit = snapshot.audit
    return StateSnapshot(
        commit=snapshot.commit,
        meta=snapshot.meta,
        rollouts=dict(sorted(snapshot.rollouts.items())),
        devices=dict(snapshot.devices),
        audit=audit if isinstance(audit, DayFiles) else dict(sorted(audit.items())),
        files=dict(snapshot.files),
        lineage=lineage,
    )


def dump(model: RolloutState | DeviceFile | ControllerMeta) -> bytes:
    """Stable JSON for state files: sorted keys and one value per line, so git diffs stay readable
    (``json.dumps(..., indent=1, sort_keys=True)``'s text, written fast: :mod:`controller.state.jsontext`)."""
    return dumps_indented(model.model_dump(mode="json")).encode() + b"\n"


def changed_files(old: Mapping[str, bytes], new: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
    """Only the entries of ``new`` that differ from ``old`` (None deletes)."""
    return {
        path: data
        for path, data in new.items()
        if (data is None and path in old) or (data is not None and old.get(path) != data)
    }


def write_state(
    repo: Repository,
    snapshot: StateSnapshot,
    changes: Mapping[str, bytes | None],
    message: str,
    when: datetime,
    ref: str = STATE_BRANCH,
    cache: StateCache | None = None,
    models: Models | None = None,
) -> Oid | None:
    """Commit ``changes`` on top of the snapshot's commit and move the ref (compare-and-swap).

    Returns the new commit, or None when nothing changed (a no-op reconcile writes no commit).
    With ``cache`` (holding the snapshot's commit, as :func:`load_state` left it, or nothing when
    the branch was empty) the cache then holds the new commit's tree: the next :func:`load_state`
    diffs from what was written instead of reading every file again. ``models``: path -> (the
    device file, ``dump`` of it), for device files of ``changes`` whose bytes are that very object:
    the cache keeps each such model instead of parsing its bytes, so the next load hands the
    reconcile the object it wrote (memos matching robots by identity find them unchanged; parsing
    and adopting 100,000 of them cost the reconcile after a bootstrap or fan-out ~0.5 s).
    """
    delta = changed_files(snapshot.files, changes)
    if not delta and snapshot.commit is not None:
        return None
    base = tree_of(repo, snapshot.commit) if snapshot.commit is not None else None
    tree = write_tree_hashed(repo, delta, base, memo=cache.trees if cache is not None else None)
    parents = [snapshot.commit] if snapshot.commit is not None else []
    written = commit(repo, ref, tree, message, parents, CONTROLLER_IDENTITY, when)
    if cache is not None:
        _warm(repo, cache, snapshot.commit, written, str(tree), delta, models)
    return written


def _warm(
    repo: Repository,
    cache: StateCache,
    base: Oid | None,
    written: Oid,
    tree: str,
    delta: Mapping[str, bytes | None],
    models: Models | None = None,
) -> None:
    """Leave ``cache`` holding ``written`` (whose tree is ``base``'s with ``delta`` applied), its
    files parsed from the bytes just committed, exactly as :func:`load_state` would parse them
    (a device file of ``models`` is its model: what a parse of its dump equals).

    Anything else (the cache holds another commit, or a written file does not parse) leaves the
    cache as it was: keyed by a tree id, it is then merely older, and the next load diffs from it
    (and fails loudly on a file that does not parse, as a cold read would).
    """
    if base is None:
        cached, keys, journal = StateSnapshot(commit=None, meta=ControllerMeta()), {}, Journal()
    elif cache.snapshot is not None and cache.snapshot.commit == base:
        cached, keys, journal = cache.snapshot, cache.keys, cache.journal  # the cache's own: changed in place
    else:
        return
    try:
        days = _days(repo, written, delta, cached.audit)
        updated = _update(cached, keys, written, delta, days, journal, models)
    except ValueError:  # pydantic's ValidationError: the next load reports it, naming the file
        return  # nothing was changed
    if updated:
        cache.parsed += _parsed(delta, models)
        cache.tree, cache.snapshot, cache.keys, cache.journal = tree, cached, keys, journal
    else:  # changed, but not as a full read would say: dropped (the next load reads in full)
        cache.tree, cache.snapshot, cache.keys, cache.journal = None, None, {}, Journal()


def flat_device_paths(repo: Repository, snapshot: StateSnapshot) -> list[str]:
    """The paths of ``snapshot``'s device files still in the flat layout (``devices/<id>.json``,
    before the buckets), from the ``devices`` tree's own entries (its 256 bucket trees and any such
    file) instead of a test of every path of the snapshot (one a robot: 24 ms at 100,000)."""
    if snapshot.commit is None:
        return []
    paths = (f"{DEVICES_DIR}{name}" for name in blob_names(repo, snapshot.commit, DEVICES_DIR))
    return [path for path in paths if legacy_device_of(path) is not None and path in snapshot.files]
