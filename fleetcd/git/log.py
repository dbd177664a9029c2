"""Walking a branch's past one commit at a time, for questions about an instant (``history --at``).

The state branch and a robot's status ref are linear histories (one parent per commit), so "as of
time T" is the newest first-parent commit at or before T. A robot's status ref is untrusted (see
:mod:`fleetcd.git.untrusted`): the walk is bounded by the caller's ``limit``, a start that is not a
commit yields nothing, and a blob is read only after its size, from the object header, is within
the caller's cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pygit2

from fleetcd.compat import UTC


@dataclass(frozen=True)
class LogEntry:
    commit: str  # 40 hex
    when: datetime  # committer time, UTC


def _commit(repo: pygit2.Repository, commit_id: str | pygit2.Oid) -> pygit2.Commit | None:
    try:
        found = repo.get(commit_id)
    except (ValueError, pygit2.GitError):
        return None
    return found if isinstance(found, pygit2.Commit) else None


def first_parent_log(repo: pygit2.Repository, start: str | pygit2.Oid, limit: int) -> Iterator[LogEntry]:
    """``start`` and its first parents, newest first, at most ``limit`` commits; the walk ends at a
    root commit or at a parent missing from the object database."""
    current = _commit(repo, start)
    walked = 0
    while current is not None and walked < limit:
        walked += 1
        yield LogEntry(str(current.id), datetime.fromtimestamp(current.commit_time, UTC))
        parents = current.parent_ids
        current = _commit(repo, parents[0]) if parents else None


def commit_time(repo: pygit2.Repository, commit_id: str) -> datetime | None:
    found = _commit(repo, commit_id)
    return None if found is None else datetime.fromtimestamp(found.commit_time, UTC)


def commit_subject(repo: pygit2.Repository, commit_id: str) -> str | None:
    """The first line of the commit's message; None when it is not a commit here."""
    found = _commit(repo, commit_id)
    return None if found is None else found.message.split("\n", 1)[0]


def full_commit_id(repo: pygit2.Repository, rev: str) -> str | None:
    """The full id of the commit ``rev`` names (an id or an unambiguous abbreviation of one)."""
    try:
        found = repo.revparse_single(rev)
        commit = found.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return str(commit.id)


@dataclass(frozen=True)
class BlobAt:
    blob: str  # the blob id: equal ids are equal bytes, so a walk reads each version once
    size: int


def blob_at(repo: pygit2.Repository, commit_id: str, path: str) -> BlobAt | None:
    """The blob at ``path`` in ``commit_id`` (id and size from the header), or None."""
    found = _commit(repo, commit_id)
    if found is None:
        return None
    try:
        entry = found.tree[path]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    if entry.type != pygit2.enums.ObjectType.BLOB:
        return None
    read_header = getattr(repo.odb, "read_header", None)
    size = len(repo.odb.read(entry.id)[1]) if read_header is None else int(read_header(entry.id)[1])
    return BlobAt(str(entry.id), size)


def blob_bytes(repo: pygit2.Repository, blob: str) -> bytes:
    found = repo.get(blob)
    if not isinstance(found, pygit2.Blob):
        raise ValueError(f"{blob} is not a blob in {repo.path}")
    return found.data
