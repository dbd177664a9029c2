"""Opening repositories and the git types other packages may name without importing pygit2.

Roles treat repositories and object ids as opaque handles passed back into ``fleetcd.git``.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

Repository = pygit2.Repository
Oid = pygit2.Oid


def open_or_init_bare(path: Path) -> pygit2.Repository:
    """A bare repository at ``path``, created empty if missing (the controller's local mirror)."""
    if (path / "HEAD").exists():
        return pygit2.Repository(str(path))
    path.mkdir(parents=True, exist_ok=True)
    return pygit2.init_repository(str(path), bare=True)


def oid(hex_id: str) -> pygit2.Oid:
    return pygit2.Oid(hex=hex_id)


def tree_of(repo: pygit2.Repository, commit_id: pygit2.Oid) -> pygit2.Oid:
    """The tree id of a commit."""
    found = repo.get(commit_id)
    if not isinstance(found, pygit2.Commit):
        raise ValueError(f"{commit_id} is not a commit in {repo.path}")
    return found.tree_id
