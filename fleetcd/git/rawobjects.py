"""Small commits of a known shape built as git's own bytes and hashed here, for one pack.

A fan-out writes one small commit per robot (:mod:`controller.delivery.write`): a tree of five
files at its root and a parentless commit of it. Through libgit2 (:func:`fleetcd.git.objects.write_tree`
and :func:`~fleetcd.git.objects.commit` inside an :func:`~fleetcd.git.objects.object_batch`) each
blob, tree and commit is a call that hashes the object, looks it up on disk where it is missing
and hands it to a Python callback, and each tree entry reads an object header back: about 0.3 ms
per robot, ~3.5 of a 10,000-robot fan-out's 13.5 s in the delivery step (cProfile, issue 12).
Here the bytes are built as git builds them and hashed once with :mod:`hashlib`, like the state
branch's trees (:mod:`fleetcd.git.hashtree`), and the caller lands them all at once with
:func:`fleetcd.git.objects.land_objects`.

Only shapes whose bytes are unambiguous are built: a tree of regular files under plain names and
a commit whose author is also its committer, under an identity libgit2 would write as it is.
tests/test_git_rawobjects.py holds every id to what libgit2 writes for the same input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

_COMMIT, _TREE, _BLOB = 1, 2, 3  # git's object types (libgit2's GIT_OBJECT_*)
_NAMES = {_COMMIT: b"commit", _TREE: b"tree", _BLOB: b"blob"}
# Characters libgit2 trims from either end of a signature's name and email, besides whitespace.
_CRUD = frozenset(".,:;<>\"\\'")

Objects = dict[bytes, tuple[int, bytes]]  # raw 20-byte id -> (type, bytes): what land_objects takes


def add_object(objects: Objects, kind: int, data: bytes) -> bytes:
    """Hash ``data`` as an object of ``kind`` (1 commit, 2 tree, 3 blob) into ``objects``; its raw id."""
    digest = hashlib.sha1(b"%s %d\0" % (_NAMES[kind], len(data)), usedforsecurity=False)
    digest.update(data)
    oid = digest.digest()
    objects[oid] = (kind, data)
    return oid


def add_blob(objects: Objects, data: bytes) -> bytes:
    return add_object(objects, _BLOB, data)


def add_flat_tree(objects: Objects, files: Mapping[str, bytes]) -> bytes:
    """A tree holding ``files`` (name -> raw blob id), all regular files at its root; its raw id."""
    entries = []
    for name, oid in files.items():
        if name in ("", ".", "..") or "/" in name or "\0" in name or name.lower() == ".git":
            raise ValueError(f"{name!r} is not a plain file name")
        entries.append((name.encode("utf-8"), oid))
    # git orders a tree's entries by name as bytes (a sub-tree as if it ended in "/": none here)
    body = b"".join(b"100644 %s\0%s" % entry for entry in sorted(entries))
    return add_object(objects, _TREE, body)


def add_commit(
    objects: Objects,
    tree: bytes,
    parents: Sequence[bytes],
    author: tuple[str, str],
    when: datetime,
    message: str,
) -> bytes:
    """A commit as :func:`fleetcd.git.objects.commit` writes it (author = committer at ``when``,
    the message ending in a newline); its raw id."""
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"commit time {when.isoformat()} has no time zone")
    for part in author:
        if not part or part != part.strip() or part[0] in _CRUD or part[-1] in _CRUD:
            raise ValueError(f"{part!r}: libgit2 would trim this identity")
        if "<" in part or ">" in part or "\n" in part:
            raise ValueError(f"{part!r}: not an identity libgit2 writes")
    name, email = author
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    who = f"{name} <{email}> {int(when.timestamp())} {sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    text = message if message.endswith("\n") else f"{message}\n"
    head = [
        f"tree {tree.hex()}",
        *(f"parent {p.hex()}" for p in parents),
        f"author {who}",
        f"committer {who}",
    ]
    return add_object(objects, _COMMIT, ("\n".join(head) + "\n\n" + text).encode("utf-8"))
