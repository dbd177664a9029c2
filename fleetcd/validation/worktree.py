"""Validating a checked-out fleet repository: read the work tree (and ``--base`` from git), then validate.

The I/O edge in front of :func:`fleetcd.validation.validate_snapshot` for ``fleetcd validate`` and
pre-commit: the work tree is read with :func:`fleetcd.loading.snapshot.read_directory`, the base
snapshot with :mod:`fleetcd.git.trees` (no checkout). A bad ``--base`` ref or a work tree that is
not the top of its git repository is a :class:`~fleetcd.errors.SetupError`; content problems are
diagnostics in the result.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.git.trees import open_repository, read_tree
from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.loading.snapshot import read_directory
from fleetcd.trust.gpg import Keyring
from fleetcd.validation.pipeline import ValidationResult, sort_diagnostics, validate_snapshot
from fleetcd.validation.trust import KeyringFactory


def validate_work_tree(
    root: Path,
    base_ref: str | None = None,
    keyring_factory: KeyringFactory = Keyring.from_armored,
    *,
    strict: bool = False,
    now: datetime | None = None,
) -> ValidationResult:
    """Validate the fleet repository checked out at ``root``, optionally against git ref ``base_ref``.

    ``strict`` turns every warning into an error; ``now`` judges the trust root's ``expires``.
    """
    base = read_base(root, base_ref) if base_ref is not None else None
    try:
        files, problems = read_directory(root)
    except InvalidContent as exc:  # not a fleet repository at all: report it like any finding
        return ValidationResult(
            spec=FleetSpec(), diagnostics=sort_diagnostics(exc.diagnostics), strict=strict
        )
    return validate_snapshot(files, base, keyring_factory, problems=problems, strict=strict, now=now)


def read_base(root: Path, ref: str) -> dict[str, bytes]:
    """The managed files of ``root``'s git repository at ``ref``."""
    repo = open_repository(root)
    workdir = repo.workdir
    if workdir is None or Path(workdir).resolve() != root.resolve():
        raise SetupError(
            f"--base needs --repo to be the top of a git work tree; {root} is "
            + ("in a bare repository" if workdir is None else f"inside {workdir}")
        )
    files, _ = read_tree(repo, ref)  # symlinks at the base were that commit's problem, not this one's
    return files
