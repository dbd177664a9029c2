"""Writing trees, commits and refs straight into a repository's object database (no index, no checkout).

Both roles commit this way: the controller writes the state branch and one desired-state commit per
robot, the agent writes its status report. Nothing here touches HEAD, an index or a work tree, so it
works the same on a bare repository and cannot disturb an operator's checkout.

Commits are deterministic: the same tree, parents, message, author and time give the same commit id,
so a controller that crashed after writing objects and re-runs the reconcile produces identical
objects, and :func:`update_refs` treats "already at the new value" as done.

Bulk writes go through :func:`object_batch`: new objects collect in memory and, when the batch
ends, land as one pack written by :mod:`fleetcd.git.packfile` (a large batch) or as loose objects
(a small one). A loose object costs ~1 ms here (a file and a directory entry each); measured on
this machine, 10,000 files in 10,100 directories (20,100 objects) took 9.9 s loose and 1.8 s as
one pack.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple, TypeAlias, TypeVar

import pygit2
from pygit2.enums import FileMode

from fleetcd.errors import DISK_ERRNOS, RefConflict, SetupError, TransportError
from fleetcd.git.gitcli import git_binary
from fleetcd.git.mirror import LockedRepository, remove_stale_lock_files
from fleetcd.git.packedrefs import update_packed
from fleetcd.git.packfile import remove_stale_temp_files, write_pack

# A nested view of the requested changes: name → new bytes, a blob's id, None (delete) or a sub-directory.
_Changes: TypeAlias = dict[str, "bytes | pygit2.Oid | _Changes | None"]
_FORBIDDEN_SEGMENTS = frozenset({"", ".", ".."})


class Identity(NamedTuple):
    """Who a commit is by (also the committer); a plain ``(name, email)`` tuple works too."""

    name: str
    email: str


class StagingRepository(pygit2.Repository):
    """A second handle on a repository whose new objects go to memory until its batch ends."""


class _MemoryBackend(pygit2.OdbBackend):
    """Object storage in a dict, consulted before the repository's own loose and pack storage."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[pygit2.Oid, tuple[int, bytes]] = {}

    # libgit2 calls these; a KeyError reads as "not here", so lookups fall through to the disk.
    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[oid] = (kind, data)

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        return self.objects[oid]

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.objects[oid]
        return kind, len(data)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self.objects

    def refresh_cb(self) -> None:
        pass

    def __iter__(self) -> Iterator[pygit2.Oid]:
        return iter(list(self.objects))


# Above the loose (1) and pack (2) backends libgit2 installs, so every new object lands in memory.
_MEMORY_PRIORITY = 1000
# Before 1.21, a Python ODB backend could not be trusted with a whole batch (PackBuilder.add over
# it crashed the interpreter with 1.18.2, 1.20.0 and 1.20.1). The controller declares pygit2 >= 1.21;
# older versions only exist where the tests build fleets on Python 3.10 (no newer wheel), and there
# a batch writes loose objects.
_PACKS_FROM_MEMORY = tuple(int(part) for part in version("pygit2").split(".")[:2]) >= (1, 21)
# write_tree batches on its own from this many files on (a handful of loose objects are cheaper).
AUTO_BATCH_FILES = 64
# A batch of this many new objects or more lands as one pack (:mod:`fleetcd.git.packfile`); fewer
# are written loose. A pack is cheaper to write at any size (CPU here: 16 objects 1.2 ms vs 1.8 ms
# loose, 256: 10 ms vs 40 ms), but each is one more file every lookup that misses searches, and
# nothing repacks the controller's mirror: a wave of a few robots a minute would pile up packs.
PACK_FROM_OBJECTS = 256


@contextmanager
def object_batch(repo: pygit2.Repository) -> Iterator[StagingRepository]:
    """Write many objects fast: yields a handle to write through; they land on disk on exit, as
    one pack from :data:`PACK_FROM_OBJECTS` new objects on, else as loose objects.

    Objects the repository already has are not written again (libgit2 looks an object up on disk
    before it writes it, and our memory backend only sees the ones it lacks). If the block raises,
    nothing is written at all. Refs cannot be moved through the handle (a ref would point at
    objects not yet on disk): call :func:`update_refs` on ``repo`` after the block, which then
    sees every object of the batch.
    """
    staged = StagingRepository(repo.path)
    if not _PACKS_FROM_MEMORY:
        yield staged
        return
    memory = _MemoryBackend()
    staged.odb.add_backend(memory, _MEMORY_PRIORITY)
    yield staged
    with disk_problems(repo.path):
        land_objects(repo, memory.objects)


@dataclass(frozen=True)
class LandedTree:
    """A tree written as one pack (:func:`land_objects` with ``tree``): every object reachable from
    ``tree`` and not from ``base`` (None: the empty tree) is in the pack ``index`` names. A push
    by hand of a commit of that tree on a parent of that base sends the pack as it is
    (:mod:`fleetcd.git.localpush`) instead of walking both trees again to find those objects
    (100,000 robots: 0.05 s in ``git pack-objects`` and 0.04 s in ``git index-pack``)."""

    tree: pygit2.Oid
    base: pygit2.Oid | None
    index: Path


# repository path -> the last tree landed there as one pack (one entry a repository: a few bytes)
_LANDED: dict[str, LandedTree] = {}


def landed_tree(repo: pygit2.Repository, tree: pygit2.Oid) -> LandedTree | None:
    """What :func:`land_objects` recorded for ``tree`` in ``repo`` (None: not the last one landed)."""
    found = _LANDED.get(os.path.normpath(repo.path))
    return found if found is not None and found.tree == tree else None


def land_objects(
    repo: pygit2.Repository,
    objects: Mapping[pygit2.Oid, tuple[int, bytes]],
    *,
    tree: tuple[pygit2.Oid, pygit2.Oid | None] | None = None,
) -> None:
    """Put a finished batch's objects (id -> type, bytes; the ids trusted) on disk where ``repo``
    finds them: one pack from :data:`PACK_FROM_OBJECTS` on, else loose objects.

    ``tree``: (a tree, its base) when ``objects`` hold every object reachable from that tree and
    not from the base (:func:`fleetcd.git.hashtree.write_tree_hashed`); written as a pack, that is
    recorded for :func:`landed_tree`."""
    key = os.path.normpath(repo.path)
    if len(objects) < PACK_FROM_OBJECTS:
        for kind, data in objects.values():
            beside_prune(lambda: repo.odb.write(kind, data))  # noqa: B023 (called at once)
        return
    pack_dir = Path(repo.path) / "objects" / "pack"
    remove_stale_temp_files(pack_dir)
    index = write_pack(pack_dir, ((oid.raw, kind, data) for oid, (kind, data) in objects.items()))
    if tree is not None and index is not None:
        _LANDED[key] = LandedTree(tree[0], tree[1], index)
    # libgit2 rescans objects/pack when a lookup misses, so ``repo`` finds the new pack's objects
    # (pygit2 has no Odb.refresh); tests/test_git_packfile.py holds libgit2 to that.


def write_blob(repo: pygit2.Repository, data: bytes) -> pygit2.Oid:
    """Write one file's bytes once; its id can then stand for them in many trees (:func:`write_tree`)."""
    with disk_problems(repo.path):
        return beside_prune(lambda: repo.create_blob(data))


def write_tree(
    repo: pygit2.Repository,
    files: Mapping[str, bytes | pygit2.Oid | None],
    base_tree: pygit2.Tree | pygit2.Oid | None = None,
) -> pygit2.Oid:
    """Write ``files`` (``"a/b.yaml"`` → bytes) as a tree; returns its id.

    A blob's id (:func:`write_blob`) may stand for a file's bytes: a file shared by many trees is
    then hashed and looked up once, not once per tree (libgit2 refuses an id it does not have).

    With ``base_tree`` the result is that tree with ``files`` applied: bytes add or replace a file,
    None deletes a file or a whole directory, every other entry is kept as is. Directories are built
    bottom-up with one TreeBuilder each and only directories on a changed path are rewritten, so
    untouched subtrees keep their ids and updating a few files of 10,000 costs a few objects.
    Directories left empty disappear (git cannot store them). From :data:`AUTO_BATCH_FILES` files
    on, the objects are written as one pack (see :func:`object_batch`).
    """
    if len(files) >= AUTO_BATCH_FILES and not isinstance(repo, StagingRepository):
        with object_batch(repo) as staged:
            return write_tree(staged, files, base_tree)
    base = _as_tree(repo, base_tree)
    changes = nest_paths(files)
    with disk_problems(repo.path):
        built = beside_prune(lambda: _build(repo, base, changes))
        return built if built is not None else beside_prune(lambda: repo.TreeBuilder().write())


def _as_tree(repo: pygit2.Repository, tree: pygit2.Tree | pygit2.Oid | None) -> pygit2.Tree | None:
    if tree is None or isinstance(tree, pygit2.Tree):
        return tree
    obj = repo.get(tree)
    if not isinstance(obj, pygit2.Tree):
        raise ValueError(f"{tree} is not a tree in {repo.path}")
    return obj


def nest_paths(files: Mapping[str, bytes | pygit2.Oid | None]) -> _Changes:
    """``{"a/b": x}`` as ``{"a": {"b": x}}``; a path that is not plain names is a ValueError."""
    root: _Changes = {}
    for path, data in files.items():
        parts = path.split("/")
        if any(p in _FORBIDDEN_SEGMENTS or p.lower() == ".git" or "\0" in p for p in parts):
            raise ValueError(f"{path!r} is not a relative path of plain names")
        if data is not None and not isinstance(data, (bytes, pygit2.Oid)):
            raise TypeError(f"{path}: file content must be bytes or a blob id, not {type(data).__name__}")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{path!r}: {part!r} is also given as a file")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"{path!r} is given both as a file and as a directory")
        node[parts[-1]] = data
    return root


def _build(repo: pygit2.Repository, base: pygit2.Tree | None, changes: _Changes) -> pygit2.Oid | None:
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    for name, change in changes.items():
        existing = base[name] if base is not None and name in base else None
        if isinstance(change, dict):
            sub_base = existing if isinstance(existing, pygit2.Tree) else None
            sub = _build(repo, sub_base, change)
            if sub is not None:
                builder.insert(name, sub, FileMode.TREE)
            elif sub_base is not None:  # a directory left empty; a file under a path to delete stays
                builder.remove(name)
        elif change is None:
            if existing is not None:
                builder.remove(name)
        else:
            blob = change if isinstance(change, pygit2.Oid) else repo.create_blob(change)
            builder.insert(name, blob, FileMode.BLOB)
    return builder.write() if len(builder) else None


def commit(
    repo: pygit2.Repository,
    ref: str | None,
    tree: pygit2.Oid,
    message: str,
    parents: Sequence[pygit2.Oid],
    author: Identity | tuple[str, str],
    when: datetime,
) -> pygit2.Oid:
    """Write a commit object (author = committer, at ``when``); returns its id.

    With ``ref`` the ref then moves to the commit by compare-and-swap from the first parent (absent
    for a root commit), raising :class:`~fleetcd.errors.RefConflict` if someone else moved it.
    ``when`` must carry a time zone: a naive time would make the id depend on the machine's zone.
    """
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"commit time {when.isoformat()} has no time zone")
    name, email = author
    signature = pygit2.Signature(name, email, int(when.timestamp()), int(offset.total_seconds()) // 60)
    text = message if message.endswith("\n") else f"{message}\n"
    with disk_problems(repo.path):
        oid = beside_prune(lambda: repo.create_commit(None, signature, signature, text, tree, list(parents)))
    if ref is not None:
        update_refs(repo, {ref: (parents[0] if parents else None, oid)}, message=text.splitlines()[0])
    return oid


def update_refs(
    repo: pygit2.Repository,
    updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]],
    *,
    message: str = "fleetcd: update refs",
) -> None:
    """Move every ref from its expected old value (None: must not exist) to its new value, or none.

    All refs are locked first (the same lock files git uses), then checked, then written in one
    transaction, so a concurrent writer either finishes before us — and we raise
    :class:`~fleetcd.errors.RefConflict` naming the ref — or waits for us. A ref already at its new
    value counts as done, which makes a replayed update after a crash a no-op. A process killed
    inside the transaction leaves its lock files behind; in the controller's mirror they are
    removed when the mirror is next opened under its lock (:func:`fleetcd.git.mirror.open_locked_mirror`).
    In that mirror, :data:`PACKED_REFS_FROM` refs or more are moved by one rewrite of packed-refs
    (:mod:`fleetcd.git.packedrefs`), with the same checks and the same all-or-none outcome.
    """
    for ref in updates:
        if not pygit2.reference_is_valid_name(ref) or not ref.startswith("refs/"):
            raise ValueError(f"{ref!r} is not a valid full ref name")
    if isinstance(repo, StagingRepository):
        raise ValueError("refs must not point into an unfinished object batch: update them after it ends")
    if not hasattr(repo, "transaction"):  # pygit2 < 1.19: only the tests' Python 3.10 fleets
        _update_refs_unlocked(repo, updates)
        return
    with disk_problems(repo.path):
        _update_refs(repo, updates, message=message)


def _update_refs(
    repo: pygit2.Repository, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]], *, message: str
) -> None:
    if isinstance(repo, LockedRepository) and len(updates) >= PACKED_REFS_FROM:
        update_packed(repo, updates)
        return
    if len(updates) > LOCKED_REFS_MAX:
        _update_refs_with_git(repo, updates, message=message)
        return
    tx = repo.transaction()
    try:
        with tx:
            for ref in sorted(updates):
                try:
                    tx.lock_ref(ref)
                except pygit2.GitError as exc:
                    expected = updates[ref][0]
                    held = f"(locked by another writer, or left by a killed one: {exc})"
                    raise RefConflict(ref, _hex(expected), held) from exc
            for ref, (old, new) in sorted(updates.items()):
                actual = ref_target(repo, ref)
                if actual == new:
                    continue
                if actual != old:
                    raise RefConflict(ref, _hex(old), _hex(actual))
                tx.set_target(ref, new, message=message)
    finally:
        # pygit2 frees a transaction, which removes its lock files, when the block raised or the
        # commit succeeded, not when the commit failed (a full disk): the lock files then stayed
        # while anything held the traceback, and every later update of those refs was a conflict.
        # With an exception type given, __exit__ only frees what is left, and is a no-op otherwise.
        tx.__exit__(RuntimeError, None, None)


# What a full or read-only disk looks like through libgit2 (its messages carry strerror) and the OS.
_DISK_MESSAGES = ("No space left on device", "Disk quota exceeded", "Read-only file system")
_T = TypeVar("_T")
# libgit2 writes a loose object to a temporary file in objects/, makes objects/xx/, then renames
# the file into it; ``git prune-packed`` and ``git prune`` (a background ``git gc``:
# fleetcd.git.housekeeping) remove every empty objects/xx/ meanwhile, and one removed between the
# two fails the rename: "failed to rename lockfile to '.../objects/xx/...': No such file or
# directory" (a reconcile beside the mirror's background repack failed so in the housekeeping
# benchmark). git's own writers make the directory again and retry; so does beside_prune.
PRUNE_RACE_TRIES = 8
_PRUNE_RACE = ("failed to rename lockfile to", "No such file or directory")


def beside_prune(write: Callable[[], _T]) -> _T:
    """``write()``, again (at most :data:`PRUNE_RACE_TRIES` times in all) while it fails only
    because a concurrent ``git prune`` removed the ``objects/xx/`` directory it had just made for a
    loose object; ``write`` must be safe to repeat (objects are content-addressed: the same bytes
    make the same object). Any other failure is raised at once."""
    for _ in range(PRUNE_RACE_TRIES - 1):
        try:
            return write()
        except (OSError, pygit2.GitError) as exc:
            if not all(words in str(exc) for words in _PRUNE_RACE):
                raise
    return write()


@contextmanager
def disk_problems(where: str) -> Iterator[None]:
    """A write that failed because the disk is full or read-only becomes a
    :class:`~fleetcd.errors.SetupError` naming ``where``: a problem of the machine the operator
    can fix (exit 4, retried by ``controller run``), not a bug. libgit2 reports it as a plain
    ``GitError``, which the CLI would otherwise take for one (exit 70)."""
    try:
        yield
    except pygit2.GitError as exc:
        if any(message in str(exc) for message in _DISK_MESSAGES):
            raise SetupError(f"{where}: {exc}") from exc
        raise
    except OSError as exc:
        # pygit2 raises libgit2's OS errors as OSError without an errno ("failed to write out
        # file: No space left on device"): the message tells.
        unnumbered = exc.errno is None and any(message in str(exc) for message in _DISK_MESSAGES)
        if exc.errno in DISK_ERRNOS or unnumbered:
            raise SetupError(f"{where}: {exc.strerror or exc}") from exc
        raise


# libgit2's transaction keeps every lock file open until it commits, so a fan-out to more robots
# than the process may open files (20,000 here; often 1,024) failed with "Too many open files".
# ``git update-ref --stdin`` closes each lock file once written and commits all or none the same
# way, so larger updates go through it.
LOCKED_REFS_MAX = 512
# In the controller's mirror (its only writer holds its lock) an update of this many refs or more
# rewrites packed-refs instead of writing loose files (:mod:`fleetcd.git.packedrefs`): a fan-out to
# 10,000 robots took 4.0 s as loose refs and 10.0 s more to pack them, the rewrite well under 0.1 s.
PACKED_REFS_FROM = 64
_ZERO_OID = "0" * 40


def _update_refs_with_git(
    repo: pygit2.Repository, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]], *, message: str
) -> None:
    """:func:`update_refs` through one ``git update-ref --stdin`` transaction (all or none)."""
    lines = ["start"]
    for ref, (old, new) in sorted(updates.items()):
        actual = ref_target(repo, ref)
        if actual == new:
            continue
        if actual != old:
            raise RefConflict(ref, _hex(old), _hex(actual))
        lines.append(f"update {ref} {new} {_ZERO_OID if old is None else old}")
    if len(lines) == 1:
        return
    lines += ["prepare", "commit", ""]
    done = _ref_transaction(repo, lines, message, f"updating {len(lines) - 4} refs")
    if done.returncode == 0:
        return
    # "fatal: cannot lock ref 'refs/...': ..." names the ref another writer holds or moved.
    fatal = next((line for line in done.stderr.splitlines() if "cannot lock ref" in line), "")
    named = re.search(r"cannot lock ref '([^']+)'", fatal)
    ref = named.group(1) if named and named.group(1) in updates else min(updates)
    detail = fatal[:300] or done.stderr.strip()[-300:] or f"git update-ref exited {done.returncode}"
    held = f"(locked by another writer, or left by a killed one: {detail})"
    raise RefConflict(ref, _hex(updates[ref][0]), held)


UPDATE_REFS_TIMEOUT_S = 600.0


def delete_refs(repo: pygit2.Repository, refs: Mapping[str, pygit2.Oid], *, message: str) -> None:
    """Delete every ref in ``refs`` that still names its given object, in one ``git update-ref
    --stdin`` transaction: one rewrite of ``packed-refs`` however many go (libgit2 rewrites the
    whole file once per deleted packed ref: 200,000 lines at 100,000 robots). A ref that moved
    meanwhile is a :class:`~fleetcd.errors.RefConflict` and nothing is deleted."""
    if not refs:
        return
    lines = ["start", *(f"delete {ref} {oid}" for ref, oid in sorted(refs.items())), "prepare", "commit", ""]
    done = _ref_transaction(repo, lines, message, f"deleting {len(refs)} refs")
    if done.returncode == 0:
        return
    named = re.search(r"cannot lock ref '([^']+)'", done.stderr)
    ref = named.group(1) if named and named.group(1) in refs else min(refs)
    raise RefConflict(ref, str(refs[ref]), done.stderr.strip()[-300:] or f"git exited {done.returncode}")


def _ref_transaction(
    repo: pygit2.Repository, lines: list[str], message: str, what: str
) -> subprocess.CompletedProcess[str]:
    """``git update-ref --stdin`` of ``lines`` (one transaction) in ``repo``: what git answered. A
    timeout is a :class:`~fleetcd.errors.TransportError`, a full or read-only disk a
    :class:`~fleetcd.errors.SetupError`; any other failure is the caller's to name. git killed at
    the timeout leaves the locks it held; in the controller's mirror they are removed at once (the
    release that follows is clean, so the next holder would not look: every later update of those
    refs, or of any once ``packed-refs.lock`` stayed, failed for good)."""
    git_dir = str(repo.path)
    try:
        done = subprocess.run(
            [git_binary(), "--git-dir", git_dir, "update-ref", "-m", message, "--stdin"],
            input="\n".join(lines),
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C", "LANGUAGE": "C"},
            timeout=UPDATE_REFS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        if isinstance(repo, LockedRepository):  # its only writer: what the killed git held is stale
            remove_stale_lock_files(Path(git_dir))
        raise TransportError(f"{git_dir}: {what} took over {UPDATE_REFS_TIMEOUT_S:g} s") from exc
    if done.returncode != 0 and any(problem in done.stderr for problem in _DISK_MESSAGES):
        raise SetupError(f"{git_dir}: {what} failed: {done.stderr.strip()[-300:]}")
    return done


def _update_refs_unlocked(
    repo: pygit2.Repository, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]
) -> None:
    # Checked, then written one by one without git's lock files: a single writer (a test fixture) only.
    for ref, (old, new) in sorted(updates.items()):
        actual = ref_target(repo, ref)
        if actual not in (old, new):
            raise RefConflict(ref, _hex(old), _hex(actual))
    for ref, (_old, new) in sorted(updates.items()):
        repo.references.create(ref, new, force=True)


def _hex(oid: pygit2.Oid | None) -> str | None:
    return None if oid is None else str(oid)


def ref_target(repo: pygit2.Repository, ref: str) -> pygit2.Oid | None:
    """The object a ref points at (symbolic refs followed), or None when it does not exist."""
    found = repo.references.get(ref)
    if found is None:
        return None
    target = found.resolve().target
    return target if isinstance(target, pygit2.Oid) else None


def read_blob(repo: pygit2.Repository, ref: str | pygit2.Oid, path: str) -> bytes | None:
    """The bytes of ``path`` in the commit ``ref`` names (a full ref name or a commit id).

    None when the ref, the commit or the path does not exist, the ref does not lead to a commit, or
    the path is a directory.
    """
    entry = _tree_entry(repo, ref, path)
    return entry.data if isinstance(entry, pygit2.Blob) else None


def _tree_entry(repo: pygit2.Repository, ref: str | pygit2.Oid, path: str) -> pygit2.Object | None:
    """What ``path`` names in the commit ``ref`` names; None when there is no such ref, commit or path."""
    target = ref if isinstance(ref, pygit2.Oid) else ref_target(repo, ref)
    obj = repo.get(target) if target is not None else None
    if obj is None:
        return None
    try:
        return obj.peel(pygit2.Commit).tree[path]
    except (KeyError, ValueError, pygit2.GitError):  # not a commit (a blob, or a tag of one), no path
        return None


def list_refs(repo: pygit2.Repository, prefix: str | tuple[str, ...]) -> dict[str, pygit2.Oid]:
    """Every ref whose name starts with ``prefix`` (or one of them) → the object it points at
    (symbolic refs followed). One pass over the repository's refs, whatever the number of prefixes."""
    found: dict[str, pygit2.Oid] = {}
    # One pass over the reference objects: looking each name up again cost as much as the listing.
    for ref in repo.references.iterator():
        name = ref.name
        if not name.startswith(prefix):
            continue
        target = ref.target if isinstance(ref.target, pygit2.Oid) else ref_target(repo, name)
        if target is not None:
            found[name] = target
    return found


def blob_size(repo: pygit2.Repository, ref: str | pygit2.Oid, path: str) -> int | None:
    """The size of ``path`` in the commit ``ref`` names, from the object header alone.

    Lets a reader refuse an oversized file (a robot's report is untrusted) before loading it; None
    when :func:`read_blob` would return None.
    """
    entry = _tree_entry(repo, ref, path)
    if entry is None or entry.type != pygit2.enums.ObjectType.BLOB:
        return None
    return object_size(repo, entry.id)


def object_size(repo: pygit2.Repository, oid: pygit2.Oid) -> int:
    """``oid``'s size from its header; KeyError when ``repo`` lacks it."""
    read_header = getattr(repo.odb, "read_header", None)
    if read_header is None:  # pygit2 < 1.19.2: only the tests' Python 3.10 fleets (see above)
        return len(repo.odb.read(oid)[1])
    return int(read_header(oid)[1])
