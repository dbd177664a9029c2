"""The local fleet work tree that ``pause``, ``resume``, ``rollback`` and ``deploy`` change and commit.

These commands write the commit a person would otherwise write, so they hold themselves to what
review expects of a person: the change must not add validation errors (missing approvals aside,
which the caller reports — reviewers add them in the pull request), and the commit holds only
that change. :func:`fleetcd.git.worktree.commit_all` commits the whole tree, so a tree with other
uncommitted edits is refused up front unless the caller leaves the edit uncommitted (``--no-commit``).
Validation runs on an in-memory snapshot before anything touches the disk.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import Diagnostic, InvalidContent, SetupError
from fleetcd.git.worktree import changed_paths, commit_all, configured_author
from fleetcd.loading.snapshot import read_directory
from fleetcd.operator.repo import find_root, write_atomic
from fleetcd.reasons import Reason
from fleetcd.validation import ValidationResult, validate_snapshot

MESSAGE_WIDTH = 72
_AUTHOR = re.compile(r"\s*[^<>]+?\s*<[^<>\s]+>\s*")  # what commit_all accepts


@dataclass(frozen=True)
class WorkTree:
    root: Path
    files: dict[str, bytes]  # managed files as on disk now

    def prepare_commit(self, author: str | None) -> str:
        """The commit's author, checked before anything is written; refuses a tree with other edits.

        The commit must hold only this change, and a bad ``--author`` must not leave the edit behind.
        """
        found = author if author is not None else configured_author(self.root)
        if found is None:
            raise SetupError(
                f"{self.root}: git has no user.name/user.email configured; set them or pass --author"
            )
        if _AUTHOR.fullmatch(found) is None:
            raise SetupError(f"author {found!r} is not of the form 'Name <email>'")
        dirty = changed_paths(self.root)
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise SetupError(
                f"{self.root} has uncommitted changes ({shown}); commit or stash them first, "
                "or pass --no-commit to leave this edit uncommitted next to them"
            )
        return found

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        """Apply ``changes`` (None deletes) to the work tree, each file replaced atomically."""
        for path, data in sorted(changes.items()):
            target = self.root / path
            if data is None:
                target.unlink(missing_ok=True)
                _prune_empty(target.parent, self.root)
            else:
                write_atomic(target, data)


def open_work_tree(start: Path) -> WorkTree:
    """The fleet repository at or above ``start``, with its managed files as on disk."""
    root = find_root(start)
    files, problems = read_directory(root)
    if problems:
        raise InvalidContent(problems)
    return WorkTree(root, files)


def apply(files: Mapping[str, bytes], changes: Mapping[str, bytes | None]) -> dict[str, bytes]:
    out = dict(files)
    for path, data in changes.items():
        if data is None:
            out.pop(path, None)
        else:
            out[path] = data
    return out


@dataclass(frozen=True)
class Checked:
    """A change validated in memory: the result after it, and the approvals it still lacks."""

    after: ValidationResult
    missing_approvals: tuple[Diagnostic, ...]


def check_change(tree: WorkTree, changes: Mapping[str, bytes | None], rollout_path: str) -> Checked:
    """Refuse (InvalidContent) a change that adds validation errors, except ``rollout_path``'s approvals,
    or that newly points a rollout at a withdrawn release (``deploy``, ``rollback --to``): the
    controller would only stall it. Edits to a rollout already in that state (pause, abort) pass."""
    before = validate_snapshot(tree.files)
    after = validate_snapshot(apply(tree.files, changes))
    known = {*before.errors, *before.warnings}
    missing = tuple(d for d in after.errors if d.file == rollout_path and d.reason is Reason.APPROVAL_MISSING)
    new = [d for d in after.errors if d not in known and d not in missing]
    withdrawn = [d for d in after.warnings if d.file == rollout_path and d.reason is Reason.RELEASE_WITHDRAWN]
    new += [d for d in withdrawn if d not in known]
    if new:
        raise InvalidContent(new)
    return Checked(after, missing)


@dataclass(frozen=True)
class Change:
    """What an operator edit did, for the CLI to print."""

    path: str  # the rollout file edited or written
    message: str  # the commit message (subject, blank line, body)
    changed: bool  # False: nothing to do, nothing written
    commit: str | None = None  # None: nothing written, or left uncommitted (--no-commit)
    notes: tuple[str, ...] = ()  # what the operator must know (approvals needed, paused, ...)

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]


def finish(
    tree: WorkTree,
    path: str,
    message: str,
    *,
    author: str | None,
    notes: tuple[str, ...] = (),
) -> Change:
    """Commit what was written as ``author`` (None: leave it for a pull request) and describe it."""
    message = wrap_message(message)
    made = commit_all(tree.root, message, author) if author is not None else None
    return Change(path, message, True, made, notes)


def wrap_message(message: str) -> str:
    """The subject as is; body lines folded at :data:`MESSAGE_WIDTH` (git's conventional width).

    A word longer than the width (a URL) stays whole on its own line: cut, it would no longer work.
    """
    subject, _, body = message.partition("\n")
    lines = [
        textwrap.fill(line, MESSAGE_WIDTH, break_on_hyphens=False, break_long_words=False) if line else ""
        for line in body.split("\n")
    ]
    return "\n".join([subject, *lines]) if body else subject


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove folders left empty by a deletion (git does not keep them; people would not either)."""
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
