"""Reading and writing the controller's state branch (``refs/heads/fleetcd/state``).

The controller holds no state outside git: everything it knows is read here at the start of a
reconcile and written back as one commit at the end. Only this module and the delivery writer touch
git objects for the controller, always through ``fleetcd.git``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.state.jsontext import dumps_indented
from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta, DeviceFile, RolloutState
from fleetcd.git.objects import Identity, commit, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import Oid, Repository, tree_of
from fleetcd.git.trees import changed_blobs, commit_tree_id, read_files

CONTROLLER_IDENTITY = Identity("fleetcd controller", "controller@fleetcd.invalid")


@dataclass
class StateSnapshot:
    """The state branch as read at the start of a reconcile."""

    commit: Oid | None
    meta: ControllerMeta
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    devices: dict[str, DeviceFile] = field(default_factory=dict)
    audit: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class StateCache:
    """The state branch as last parsed, kept between reconciles by a long-running controller.

    Keyed by the tree's id: the next load diffs that tree against the new one and reads and parses
    only the files that differ, so a reconcile after one that changed K device files parses K
    files, not the fleet's. Git ids name content, so nothing here can be stale; a tree the mirror
    no longer has (a rebuilt cache) is simply read in full. Filled by :func:`load_state` and by
    :func:`write_state`, which leaves it holding the tree it wrote (the files it committed, parsed
    from the very bytes written), so the reconcile after a write reads only what others changed
    since: after the bootstrap that is nothing, not the whole fleet's device files.
    """

    tree: str | None = None
    snapshot: StateSnapshot | None = None
    keys: dict[str, str] = field(default_factory=dict)  # rollout/device file path -> its name
    parsed: int = 0  # files parsed into this cache, by loads and writes (tests count them)


def load_state(repo: Repository, ref: str = STATE_BRANCH, cache: StateCache | None = None) -> StateSnapshot:
    """Parse every file the controller wrote; a state branch that does not parse is a loud error.

    With ``cache`` only the files that changed since the cached tree are read and parsed; the
    snapshot returned is the same as without it (its dicts are fresh copies, free to change).
    """
    head = ref_target(repo, ref)
    if head is None:
        return StateSnapshot(commit=None, meta=ControllerMeta())
    if cache is None:
        return _copy(_parse(head, read_files(repo, head))[0])
    tree = commit_tree_id(repo, head)
    changed = changed_blobs(repo, cache.tree, tree) if cache.tree is not None else None
    updated = None
    if changed is not None and cache.snapshot is not None:
        updated = _update(cache.snapshot, cache.keys, head, changed)
        cache.parsed += sum(data is not None for data in changed.values())
    if updated is None:
        files = read_files(repo, head)
        updated = _parse(head, files)
        cache.parsed += len(files)
    cache.tree, (cache.snapshot, cache.keys) = tree, updated
    return _copy(cache.snapshot)


def _parse(head: Oid, files: dict[str, bytes]) -> tuple[StateSnapshot, dict[str, str]]:
    snapshot = StateSnapshot(commit=head, meta=ControllerMeta(), files=files)
    keys: dict[str, str] = {}
    for path, data in files.items():
        _add(snapshot, keys, path, data)
    return snapshot, keys


def _add(snapshot: StateSnapshot, keys: dict[str, str], path: str, data: bytes) -> None:
    if path == META_FILE:
        snapshot.meta = ControllerMeta.model_validate_json(data)
    elif path.startswith("rollouts/") and path.endswith(".json"):
        state = RolloutState.model_validate_json(data)
        snapshot.rollouts[state.name] = state
        keys[path] = state.name
    elif path.startswith("devices/") and path.endswith(".json"):
        device = DeviceFile.model_validate_json(data)
        snapshot.devices[device.state.device] = device
        keys[path] = device.state.device
    elif path.startswith("audit/"):
        snapshot.audit[path] = data


def _update(
    cached: StateSnapshot, cached_keys: dict[str, str], head: Oid, changed: Mapping[str, bytes | None]
) -> tuple[StateSnapshot, dict[str, str]] | None:
    """``cached`` with the ``changed`` files applied (None: deleted), as :func:`_parse` would read it."""
    snapshot, keys = _copy(cached), dict(cached_keys)
    snapshot.commit = head
    for path in changed:
        snapshot.files.pop(path, None)
        snapshot.audit.pop(path, None)
        name = keys.pop(path, None)
        if name is not None and path.startswith("rollouts/"):
            snapshot.rollouts.pop(name, None)
        elif name is not None:
            snapshot.devices.pop(name, None)
        if path == META_FILE:
            snapshot.meta = ControllerMeta()
    for path, data in changed.items():
        if data is not None:
            snapshot.files[path] = data
            _add(snapshot, keys, path, data)
    if len(snapshot.rollouts) + len(snapshot.devices) != len(keys):
        return None  # two files name one rollout or robot: a full read in tree order says which wins
    return snapshot, keys


def _copy(snapshot: StateSnapshot) -> StateSnapshot:
    """Fresh dicts; rollouts and audit files in name order, however they were read (what is done
    for each rollout in turn never depends on whether a file came from the cache)."""
    return StateSnapshot(
        commit=snapshot.commit,
        meta=snapshot.meta,
        rollouts=dict(sorted(snapshot.rollouts.items())),
        devices=dict(snapshot.devices),
        audit=dict(sorted(snapshot.audit.items())),
        files=dict(snapshot.files),
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
) -> Oid | None:
    """Commit ``changes`` on top of the snapshot's commit and move the ref (compare-and-swap).

    Returns the new commit, or None when nothing changed (a no-op reconcile writes no commit).
    With ``cache`` (holding the snapshot's commit, as :func:`load_state` left it, or nothing when
    the branch was empty) the cache then holds the new commit's tree: the next :func:`load_state`
    diffs from what was written instead of reading every file again.
    """
    delta = changed_files(snapshot.files, changes)
    if not delta and snapshot.commit is not None:
        return None
    base = tree_of(repo, snapshot.commit) if snapshot.commit is not None else None
    tree = write_tree(repo, delta, base)
    parents = [snapshot.commit] if snapshot.commit is not None else []
    written = commit(repo, ref, tree, message, parents, CONTROLLER_IDENTITY, when)
    if cache is not None:
        _warm(cache, snapshot.commit, written, str(tree), delta)
    return written


def _warm(
    cache: StateCache, base: Oid | None, written: Oid, tree: str, delta: Mapping[str, bytes | None]
) -> None:
    """Leave ``cache`` holding ``written`` (whose tree is ``base``'s with ``delta`` applied), its
    files parsed from the bytes just committed, exactly as :func:`load_state` would parse them.

    Anything else (the cache holds another commit, or a written file does not parse) leaves the
    cache as it was: keyed by a tree id, it is then merely older, and the next load diffs from it
    (and fails loudly on a file that does not parse, as a cold read would).
    """
    if base is None:
        cached, keys = StateSnapshot(commit=None, meta=ControllerMeta()), {}
    elif cache.snapshot is not None and cache.snapshot.commit == base:
        cached, keys = cache.snapshot, cache.keys
    else:
        return
    try:
        updated = _update(cached, keys, written, delta)
    except ValueError:  # pydantic's ValidationError: the next load reports it, naming the file
        return
    if updated is not None:
        cache.parsed += sum(data is not None for data in delta.values())
        cache.tree, (cache.snapshot, cache.keys) = tree, updated
