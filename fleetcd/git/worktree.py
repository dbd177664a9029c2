"""Local work-tree plumbing for operator commands: create a repository, commit the whole tree.

Used by ``fleetcd init`` (a new fleet repository on branch ``main``) and by tools that build
example fleets (demo, tests). The controller's commits go through its own plumbing; this module
only ever touches a local, non-bare work tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pygit2

from fleetcd.errors import SetupError

DEFAULT_BRANCH = "main"
_AUTHOR = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")


def init_repo(path: Path, branch: str = DEFAULT_BRANCH) -> None:
    """``git init -b <branch>`` in ``path`` (created if missing); an existing repository is kept."""
    if (path / ".git").exists():
        return
    try:
        pygit2.init_repository(str(path), bare=False, initial_head=branch)
    except pygit2.GitError as exc:
        raise SetupError(f"{path}: cannot create a git repository: {exc}") from exc


def commit_all(path: Path, message: str, author: str) -> str:
    """Stage the whole work tree (``.gitignore`` respected, deletions included) and commit on HEAD.

    ``author`` is ``"Name <email>"`` and is also the committer. Returns the new commit id (hex).
    """
    match = _AUTHOR.match(author)
    if match is None:
        raise SetupError(f"author {author!r} is not of the form 'Name <email>'")
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError as exc:
        raise SetupError(f"{path}: not a git work tree: {exc}") from exc
    index = repo.index
    # Rebuilt from the work tree so files deleted since the last commit leave the index too.
    index.clear()
    index.add_all()
    index.write()
    tree = index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    signature = pygit2.Signature(match["name"], match["email"])
    commit_id = repo.create_commit("HEAD", signature, signature, message, tree, parents)
    return str(commit_id)


def changed_paths(path: Path) -> list[str]:
    """Paths of the work tree that differ from HEAD (modified, staged, deleted, untracked; not ignored).

    Lets a command that commits the whole tree refuse to sweep someone's unrelated edits into its commit.
    """
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError as exc:
        raise SetupError(f"{path}: not a git work tree: {exc}") from exc
    return sorted(p for p, flags in repo.status().items() if flags != pygit2.enums.FileStatus.CURRENT)


def configured_author(path: Path) -> str | None:
    """``"Name <email>"`` from git config (``user.name``/``user.email``), or None when either is unset."""
    try:
        signature = pygit2.Repository(str(path)).default_signature
    except (KeyError, pygit2.GitError):
        return None
    return f"{signature.name} <{signature.email}>"
