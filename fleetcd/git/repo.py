"""Opening repositories and the git types other packages may name without importing pygit2.

Roles treat repositories and object ids as opaque handles passed back into ``fleetcd.git``. The
controller's mirror is opened under its lock by :mod:`fleetcd.git.mirror`.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

import pygit2

Repository = pygit2.Repository
Oid = pygit2.Oid


def open_or_init_bare(path: Path) -> pygit2.Repository:
    """A bare repository at ``path``, created empty if missing; creating it races with no one."""
    if not (path / "HEAD").exists():
        init_bare_atomically(path)
    return pygit2.Repository(str(path))


def init_bare_atomically(path: Path) -> None:
    """A new bare repository at ``path`` unless one appeared meanwhile: made aside, renamed in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    try:
        pygit2.init_repository(str(scratch), bare=True)
        try:
            scratch.rename(path)  # replaces an empty directory; refuses a populated one
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def oid(hex_id: str) -> pygit2.Oid:
    return pygit2.Oid(hex=hex_id)


def tree_of(repo: pygit2.Repository, commit_id: pygit2.Oid) -> pygit2.Oid:
    """The tree id of a commit."""
    found = repo.get(commit_id)
    if not isinstance(found, pygit2.Commit):
        raise ValueError(f"{commit_id} is not a commit in {repo.path}")
    return found.tree_id
