"""Writing a tree of many changed files with the objects hashed here and fed straight to the pack.

:func:`fleetcd.git.objects.write_tree` builds each directory with libgit2's ``TreeBuilder`` over
an in-memory object database: every file is a ``create_blob`` (the id hashed, looked up on disk,
where it is missing, then handed to a Python callback) and every insert reads the object's header
back through that callback. For the state branch of a fan-out, 100,000 device files in 256
directories, that is tens of microseconds a file before the pack is written. Here the blob and
tree ids are SHA-1s computed with :mod:`hashlib` from git's object format, directories are
serialized in git's entry order, and the new objects go to
:func:`fleetcd.git.objects.land_objects` (one pack, or loose objects for a small batch) as they
are. The ids are the ones libgit2 gives for the same files (tests/test_git_hashtree.py builds
both), so the trees, commits and refs written are the same bytes.

Only bytes and deletions are taken (no blob ids standing for bytes, no other file modes): what
the state branch writes. Entries of the base tree that are not changed are kept as they are.
"""

from __future__ import annotations

import bisect
import hashlib
import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter

import pygit2

from fleetcd.git.objects import disk_problems, land_objects, nest_paths

_TREE_MODE = b"40000"
_BLOB_MODE = b"100644"
_BLOB, _TREE = 3, 2  # git's object types (libgit2's GIT_OBJECT_BLOB / GIT_OBJECT_TREE)

# name -> (mode, raw 20-byte id), as a tree object lists them
_Entries = dict[bytes, tuple[bytes, bytes]]
_Changes = dict[str, "bytes | _Changes | None"]


@dataclass
class TreeMemo:
    """The directories a write left, as their entries' byte runs (:class:`_Spliced`), by raw tree
    id, so that the next write on top of them neither reads nor splits them again: at 100,000
    robots the 256 bucket trees are 7 MB to read and split per write (~40 ms), held in ~20 MB.
    An entry stands for the exact bytes its id names (it is filed under the id of its joined
    runs), and a write in progress takes the entries it changes out of the memo until it has
    finished, so a write that fails leaves no entry behind that another write changed."""

    trees: dict[bytes, _Spliced] = field(default_factory=dict)


# A memo holding more directories than this is dropped (directories deleted whole are never
# visited, so their entries would stay): the state branch has about 260.
TREE_MEMO_MAX = 4096


def write_tree_hashed(
    repo: pygit2.Repository,
    files: Mapping[str, bytes | None],
    base_tree: pygit2.Oid | None = None,
    *,
    memo: TreeMemo | None = None,
) -> pygit2.Oid:
    """``base_tree`` with ``files`` applied (bytes add or replace a file, None deletes a file or a
    whole directory), as :func:`fleetcd.git.objects.write_tree` does, written as one batch;
    returns the root tree's id. Directories left empty disappear; nothing left is the empty tree.
    ``memo``: the directories the last write through it left (read from the repository when not
    there), then the ones this write leaves."""
    for path, data in files.items():
        if data is not None and not isinstance(data, bytes):
            raise TypeError(f"{path}: file content must be bytes, not {type(data).__name__}")
    changes: _Changes = nest_paths(files)  # type: ignore[assignment]  # values are bytes or None here
    new: dict[bytes, tuple[int, bytes]] = {}
    trees: dict[bytes, _Spliced] | None = None
    if memo is not None:
        trees, memo.trees = memo.trees, {}  # held by this write until it has finished
    with disk_problems(repo.path):
        root = _build(repo, base_tree.raw if base_tree is not None else None, changes, new, trees)
        if root is None:
            root = _add(new, _TREE, b"")
        landed = {pygit2.Oid(raw=oid): entry for oid, entry in new.items()}
        land_objects(repo, landed, tree=(pygit2.Oid(raw=root), base_tree))  # every object base lacks
    if memo is not None and trees is not None and len(trees) <= TREE_MEMO_MAX:
        memo.trees = trees
    return pygit2.Oid(raw=root)


def _add(new: dict[bytes, tuple[int, bytes]], kind: int, data: bytes) -> bytes:
    header = b"blob %d\0" % len(data) if kind == _BLOB else b"tree %d\0" % len(data)
    digest = hashlib.sha1(header, usedforsecurity=False)
    digest.update(data)
    oid = digest.digest()
    new[oid] = (kind, data)
    return oid


def _build(
    repo: pygit2.Repository,
    base: bytes | None,
    changes: _Changes,
    new: dict[bytes, tuple[int, bytes]],
    trees: dict[bytes, _Spliced] | None = None,
) -> bytes | None:
    """The directory ``base`` (a raw tree id, None: none) with ``changes`` applied: its raw id, the
    new objects added to ``new``; None when nothing is left in it. ``trees``: directories by id,
    spliceable (one is taken out when it is changed, and the result put back under its new id)."""
    spliced = trees.pop(base, None) if trees is not None and base is not None else None
    if spliced is None:
        data = _read_tree(repo, base) if base is not None else b""
        spliced = _Spliced.of(data) if data else None
    if spliced is not None:
        body = spliced.apply(repo, changes, new, trees)
    else:
        body = _rebuilt(repo, parse_tree(data), changes, new, trees)
    if not body:
        return None
    oid = _add(new, _TREE, body)
    if oid == base:  # unchanged: the repository has it already
        del new[oid]
    if trees is not None and spliced is not None:
        trees[oid] = spliced
    return oid


def _rebuilt(
    repo: pygit2.Repository,
    entries: _Entries,
    changes: _Changes,
    new: dict[bytes, tuple[int, bytes]],
    trees: dict[bytes, _Spliced] | None,
) -> bytes:
    """The tree's bytes from all its entries with ``changes`` applied, sorted anew (a new directory,
    or a base not as git writes it)."""
    for name, change in changes.items():
        key = os.fsencode(name)  # as pygit2 encodes a name it inserts
        existing = entries.get(key)
        if isinstance(change, dict):
            sub_base = existing[1] if existing is not None and existing[0] == _TREE_MODE else None
            sub = _build(repo, sub_base, change, new, trees)
            if sub is not None:
                entries[key] = (_TREE_MODE, sub)
            elif sub_base is not None:  # a directory left empty; a file under a path to delete stays
                del entries[key]
        elif change is None:
            entries.pop(key, None)
        else:
            entries[key] = (_BLOB_MODE, _add(new, _BLOB, change))
    return b"".join(
        mode + b" " + name + b"\0" + oid
        for name, (mode, oid) in sorted(entries.items(), key=lambda kv: _order(kv[0], kv[1][0]))
    )


class _Spliced:
    """A tree's entries as the raw byte runs git wrote, with their names and sort keys, so that a
    change of K entries is K binary searches and list splices, and the new tree the unchanged runs
    joined with the changed ones: no entry is decoded or encoded again. With 1,000 robots changed
    at 100,000, each of the 256 bucket trees holds ~390 entries of which ~4 change; rebuilding
    every tree from all its entries (a sort and an encode per entry) grew with the fleet.

    Only for a tree whose bytes are entries exactly as git writes them (modes without leading
    zeros) in strictly increasing git order with distinct names, which rebuilding would give back
    byte for byte; any other base is rebuilt (:func:`_rebuilt`), as before."""

    def __init__(self, runs: list[bytes], names: list[bytes], keys: list[bytes]) -> None:
        self.runs, self.names, self.keys = runs, names, keys

    @classmethod
    def of(cls, data: bytes) -> _Spliced | None:
        found = _RUN.findall(data)
        runs = list(map(itemgetter(0), found))
        if sum(map(len, runs)) != len(data):
            return None  # not entries as git writes them from end to end
        names = list(map(itemgetter(2), found))
        if _TREE_MODE in map(itemgetter(1), found):  # a directory sorts as if its name ended in "/"
            keys = [name + b"/" if mode == _TREE_MODE else name for _, mode, name in found]
            if len(set(names)) != len(names):
                return None  # a name twice (as a file and as a directory)
        else:
            keys = names.copy()
        if not all(map(operator.lt, keys, islice(keys, 1, None))):
            return None  # out of git's order, or a name twice
        return cls(runs, names, keys)

    def apply(
        self,
        repo: pygit2.Repository,
        changes: _Changes,
        new: dict[bytes, tuple[int, bytes]],
        trees: dict[bytes, _Spliced] | None,
    ) -> bytes:
        """The tree's bytes with ``changes`` applied, as :func:`_rebuilt` gives them."""
        for name, change in changes.items():
            key = os.fsencode(name)  # as pygit2 encodes a name it inserts
            at = self._find(key)
            if isinstance(change, dict):
                mode, oid = self._entry(at) if at is not None else (None, None)
                sub_base = oid if mode == _TREE_MODE else None
                sub = _build(repo, sub_base, change, new, trees)
                if sub is not None:
                    self._put(at, key, _TREE_MODE, sub)
                elif sub_base is not None:  # a directory left empty; a file under a path to delete stays
                    self._drop(at)
            elif change is None:
                self._drop(at)
            else:
                self._put(at, key, _BLOB_MODE, _add(new, _BLOB, change))
        return b"".join(self.runs)

    def _find(self, name: bytes) -> int | None:
        """Where the entry named ``name`` is (as a file, or as a directory: sorted as ``name/``)."""
        for key in (name, name + b"/"):
            at = bisect.bisect_left(self.keys, key)
            if at < len(self.keys) and self.keys[at] == key and self.names[at] == name:
                return at
        return None

    def _entry(self, at: int) -> tuple[bytes, bytes]:
        run = self.runs[at]
        return run[: run.index(b" ")], run[-20:]

    def _drop(self, at: int | None) -> None:
        if at is not None:
            del self.runs[at], self.names[at], self.keys[at]

    def _put(self, at: int | None, name: bytes, mode: bytes, oid: bytes) -> None:
        self._drop(at)
        key = _order(name, mode)
        where = bisect.bisect_left(self.keys, key)
        self.runs.insert(where, mode + b" " + name + b"\0" + oid)
        self.names.insert(where, name)
        self.keys.insert(where, key)


def _order(name: bytes, mode: bytes) -> bytes:
    """git's tree order: names compared as bytes, a directory's as if it ended in ``/``."""
    return name + b"/" if mode == _TREE_MODE else name


def _read_tree(repo: pygit2.Repository, oid: bytes) -> bytes:
    """A tree object's raw bytes (``<mode> <name>\\0<20-byte id>`` each)."""
    kind, data = repo.odb.read(pygit2.Oid(raw=oid))[:2]
    if kind != _TREE:
        raise ValueError(f"{oid.hex()} is not a tree in {repo.path}")
    return bytes(data)


# One entry as git writes it (a mode without leading zeros); a whole tree of them is split in C:
# 256 trees of 390 entries (a 1,000-robot change at 100,000 robots) in 0.035 s, the loop 0.10 s.
_ENTRY = re.compile(rb"([1-7][0-7]*) ([^\0]+)\0(.{20})", re.DOTALL)
_ENTRIES = re.compile(rb"(?:[1-7][0-7]* [^\0]+\0.{20})*", re.DOTALL)
# The same entries, each as its whole run of bytes, its mode and its name.
_RUN = re.compile(rb"(([1-7][0-7]*) ([^\0]+)\0.{20})", re.DOTALL)


def parse_tree(data: bytes) -> _Entries:
    """A tree's entries from its bytes: split by one regular expression when the whole object is
    entries as git writes them, else (a mode written with leading zeros) entry by entry."""
    if _ENTRIES.fullmatch(data) is not None:
        return {name: (mode, oid) for mode, name, oid in _ENTRY.findall(data)}
    entries: _Entries = {}
    at, end = 0, len(data)
    while at < end:
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        mode = data[at:space]
        if mode[:1] == b"0":  # libgit2 reads the mode as a number and writes it back without zeros
            mode = b"%o" % int(mode, 8)
        entries[data[space + 1 : nul]] = (mode, data[nul + 1 : nul + 21])
        at = nul + 21
    return entries
