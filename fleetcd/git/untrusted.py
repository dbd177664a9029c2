"""Reading refs and commits someone else wrote (robots' status refs), bounded and without surprises.

The controller's mirror holds every robot's status ref as the server has it, and a robot on a
server without the ``pre-receive`` hook of docs/git-server.md can point that ref at anything: a
blob, a tree, a tag, a commit whose tree holds a symlink, a submodule or a directory under the
expected name, or a huge object. A damaged mirror can even hold a ref to an object it lacks.

:func:`read_commit_file` returns the file's bytes or raises :class:`Unreadable` saying which of
those it met, and nothing else escapes it. Every object's type and size come from its header
before it is loaded, so a hostile ref costs about what an honest one does (one header per object
on the path, each object loaded once).

:func:`drop_unnegotiable_refs` repairs a mirror that libgit2 can no longer fetch into. Its fetch
negotiation walks every local ref outside ``refs/tags/`` as a commit. One ref that points at
anything else, or at a missing object, fails the *whole* fetch with ``object is not a committish``,
without naming the ref, on every later fetch. The mirror is a cache, so such refs can be deleted.
The next fetch brings back whatever the server still has, and the reader above then refuses it.
"""

from __future__ import annotations

import pygit2
from pygit2.enums import FileMode, ObjectType

from fleetcd.compat import StrEnum

# A status commit is a few hundred bytes (tree, parent, author, committer, a one-line message), its
# tree one entry. These bounds are far above that and far below what would cost anything to load.
MAX_COMMIT_BYTES = 64 * 1024
MAX_TREE_BYTES = 64 * 1024
_REGULAR_FILES = frozenset({FileMode.BLOB, FileMode.BLOB_EXECUTABLE})
_TYPE_NAMES = {
    ObjectType.COMMIT: "a commit",
    ObjectType.TREE: "a tree",
    ObjectType.BLOB: "a blob",
    ObjectType.TAG: "a tag object",
}
_MODE_NAMES = {
    FileMode.LINK: "a symlink",
    FileMode.COMMIT: "a submodule (gitlink)",
    FileMode.TREE: "a directory",
}


class Unreadable(StrEnum):
    """Why :func:`read_commit_file` refused (the message on :class:`UnreadableCommit` says more)."""

    MISSING = "missing"  # the ref names an object this repository does not have
    NOT_A_COMMIT = "not_a_commit"  # a blob, a tree or a tag object
    NO_FILE = "no_file"  # the commit's tree has no entry of that name
    NOT_A_FILE = "not_a_file"  # the entry is a symlink, a submodule or a directory
    TOO_LARGE = "too_large"  # the commit, its tree or the file is over its bound


class UnreadableCommit(Exception):
    """What :func:`read_commit_file` met instead of a file: ``kind`` for code, the message for people."""

    def __init__(self, kind: Unreadable, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def object_header(repo: pygit2.Repository, oid: pygit2.Oid) -> tuple[ObjectType, int] | None:
    """(type, size) of an object from its header alone; None when the repository lacks it."""
    try:
        read_header = getattr(repo.odb, "read_header", None)
        if read_header is None:  # pygit2 < 1.19.1: only the tests' Python 3.10 fleets
            kind, data = repo.odb.read(oid)
            return ObjectType(kind), len(data)
        kind, size = read_header(oid)
    except (KeyError, pygit2.GitError, ValueError):
        return None
    return ObjectType(kind), int(size)


def read_commit_file(repo: pygit2.Repository, target: pygit2.Oid, path: str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (one name, no ``/``) in the commit ``target``.

    Raises :class:`UnreadableCommit` when ``target`` is missing or not a commit (a tag counts as
    not a commit: nothing writes one there), when ``path`` is absent, not a regular file, or over
    ``max_bytes``, and when the commit or its tree is over its bound.
    """
    commit = _bounded(repo, target, ObjectType.COMMIT, MAX_COMMIT_BYTES, "the ref")
    assert isinstance(commit, pygit2.Commit)
    tree = _bounded(repo, commit.tree_id, ObjectType.TREE, MAX_TREE_BYTES, "the commit's tree")
    assert isinstance(tree, pygit2.Tree)
    entry = next((e for e in tree if e.name == path), None)  # by name: no path lookup into subtrees
    if entry is None:
        raise UnreadableCommit(Unreadable.NO_FILE, f"the commit holds no {path}")
    if entry.filemode not in _REGULAR_FILES:
        what = _MODE_NAMES.get(entry.filemode, f"mode {entry.filemode:o}")
        raise UnreadableCommit(Unreadable.NOT_A_FILE, f"{path} is {what}, not a file")
    header = object_header(repo, entry.id)
    if header is None or header[0] is not ObjectType.BLOB:
        raise UnreadableCommit(Unreadable.MISSING, f"{path} names {entry.id}, which is not here")
    if header[1] > max_bytes:
        message = f"{path} is {header[1]} bytes; at most {max_bytes}"
        raise UnreadableCommit(Unreadable.TOO_LARGE, message)
    blob = repo.get(entry.id)
    assert isinstance(blob, pygit2.Blob)
    return blob.data


def _bounded(
    repo: pygit2.Repository, oid: pygit2.Oid, kind: ObjectType, max_bytes: int, what: str
) -> pygit2.Object:
    header = object_header(repo, oid)
    if header is None:
        raise UnreadableCommit(Unreadable.MISSING, f"{what} names {oid}, which is not here")
    if header[0] is not kind:
        found = _TYPE_NAMES.get(header[0], f"object type {header[0]!r}")
        raise UnreadableCommit(
            Unreadable.NOT_A_COMMIT, f"{what} points at {found} ({oid}), not {_TYPE_NAMES[kind]}"
        )
    if header[1] > max_bytes:
        raise UnreadableCommit(
            Unreadable.TOO_LARGE, f"{what} is a {header[1]}-byte object; at most {max_bytes}"
        )
    found_object = repo.get(oid)
    if found_object is None:
        raise UnreadableCommit(Unreadable.MISSING, f"{what} names {oid}, which is not here")
    return found_object


def drop_unnegotiable_refs(repo: pygit2.Repository) -> dict[str, str]:
    """Delete every direct ref outside ``refs/tags/`` that does not lead to a commit here.

    Returns ref → why. Tags are skipped because libgit2 skips them too, and symbolic refs because
    libgit2 does not walk them. Reads one header per ref (two for an annotated tag object), so a
    caller runs it when a fetch failed, not before every fetch.
    """
    dropped: dict[str, str] = {}
    for name in list(repo.references):
        if name.startswith("refs/tags/"):
            continue
        ref = repo.references.get(name)
        if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
            continue
        why = _not_negotiable(repo, ref.target)
        if why is not None:
            repo.references.delete(name)
            dropped[name] = why
    return dropped


def _not_negotiable(repo: pygit2.Repository, oid: pygit2.Oid | str) -> str | None:
    if not isinstance(oid, pygit2.Oid):
        return None
    header = object_header(repo, oid)
    if header is None:
        return f"points at {oid}, which the mirror lacks"
    if header[0] is ObjectType.COMMIT:
        return None
    if header[0] is ObjectType.TAG:
        tag = repo.get(oid)
        try:
            if tag is not None and tag.peel(pygit2.Commit) is not None:
                return None
        except (pygit2.GitError, ValueError, KeyError):
            pass
        return f"points at a tag object ({oid}) that does not lead to a commit"
    return f"points at {_TYPE_NAMES.get(header[0], 'a non-commit')} ({oid})"
