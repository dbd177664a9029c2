"""Reading commit signatures and ancestry from a repository, for the controller's commit policy.

Step 2 (verify) of a reconcile asks three questions of main before it reads any file: which
commits arrived since the last processed one, does the new tip still descend from it (a force push
would not), and what signature does each commit carry. This adapter answers them from the object
database; whether a signature is good and trusted is decided by ``controller.policy.commits``
against ``fleet.yaml``, with the signature bytes checked by gpg (:mod:`fleetcd.trust.gpg`).

Commit ids are 40-hex strings throughout, so the pure policy code never sees a pygit2 type.
"""

from __future__ import annotations

import pygit2

_SORT = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE


def _commit(repo: pygit2.Repository, oid: str) -> pygit2.Commit:
    try:
        found = repo.get(oid)
    except (ValueError, pygit2.GitError) as exc:
        raise ValueError(f"{oid!r} is not a commit id in {repo.path}: {exc}") from exc
    if not isinstance(found, pygit2.Commit):
        raise ValueError(f"{oid} is not a commit in {repo.path}")
    return found


def _present(repo: pygit2.Repository, oid: str) -> bool:
    try:
        return isinstance(repo.get(oid), pygit2.Commit)
    except (ValueError, pygit2.GitError):
        return False


def commit_signature(repo: pygit2.Repository, oid: str) -> tuple[bytes, bytes] | None:
    """(armored signature, signed payload) of commit ``oid``, or None when it is unsigned.

    The payload is the commit object without its ``gpgsig`` header: exactly the bytes git handed
    to ``gpg --detach-sign``, so a detached-signature check over it is the whole verification.
    """
    signature, payload = _commit(repo, oid).gpg_signature
    if signature is None or payload is None:
        return None
    return bytes(signature), bytes(payload)


def is_descendant(repo: pygit2.Repository, commit: str, ancestor: str) -> bool:
    """True when ``commit`` is ``ancestor`` or has it in its history.

    An ``ancestor`` missing from the object database counts as "not an ancestor": a fetch of
    ``commit`` brings its whole history, so the only way to lack the old tip is that the new one
    no longer reaches it (a force push, seen by a controller restarted on a fresh clone).
    """
    _commit(repo, commit)
    if commit == ancestor:
        return True
    if not _present(repo, ancestor):
        return False
    return bool(repo.descendant_of(commit, ancestor))


def commits_between(repo: pygit2.Repository, old: str | None, new: str) -> list[str]:
    """Commits reachable from ``new`` but not from ``old``, parents before children.

    ``old`` None means the whole history of ``new``. Merged branches are included: every commit
    that entered main since ``old`` is listed once, in topological order, oldest first.
    """
    _commit(repo, new)
    walker = repo.walk(new, _SORT)
    if old is not None:
        _commit(repo, old)
        walker.hide(old)
    return [str(commit.id) for commit in walker]


class RepositoryCommits:
    """The policy's :class:`~controller.policy.commits.CommitReader` over one repository."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self._repo = repo

    def signature(self, commit: str) -> tuple[bytes, bytes] | None:
        return commit_signature(self._repo, commit)

    def is_descendant(self, commit: str, ancestor: str) -> bool:
        return is_descendant(self._repo, commit, ancestor)

    def commits_between(self, old: str | None, new: str) -> list[str]:
        return commits_between(self._repo, old, new)
