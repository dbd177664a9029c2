"""Errors of the agent, grouped by what the converge loop does about them.

They subclass the core classes of :mod:`fleetcd.errors`, so the loop needs only three ``except``
arms:

* :class:`~fleetcd.errors.TransportError` — :class:`DownloadFailed`, :class:`DeadlineExceeded`:
  the network let us down; keep any partial download and retry later with backoff.
* :class:`~fleetcd.errors.ApplyError` — :class:`DigestMismatch`, :class:`TooLarge`,
  :class:`UnsafeArchive`, :class:`DiskFull`, :class:`UnsupportedSource`: this artifact cannot be
  installed here; fail the deployment and roll back (or keep running the current release).
* :class:`~fleetcd.errors.SetupError` — :class:`CorruptState`: the agent's own state on disk is
  unreadable; fail closed and tell the operator instead of guessing where a deployment was.

Every message names the file, member or URL and the offending value.
"""

from __future__ import annotations

from pathlib import Path

from fleetcd.errors import ApplyError, SetupError, TransportError


class DownloadFailed(TransportError):
    """The artifact server or connection failed; a partial download is kept for resumption."""


class DeadlineExceeded(TransportError):
    """An operation ran past its overall deadline (e.g. a server trickling bytes)."""


class DigestMismatch(ApplyError):
    """The downloaded bytes do not hash to the signed digest; the file is deleted."""

    def __init__(self, source: str, expected: str, actual: str) -> None:
        self.source, self.expected, self.actual = source, expected, actual
        super().__init__(f"{source}: sha256 is {actual}, the release says {expected}")


class TooLarge(ApplyError):
    """More bytes arrived than the release declares; the partial file is deleted."""

    def __init__(self, source: str, limit_bytes: int, seen_bytes: int | None = None) -> None:
        self.source, self.limit_bytes, self.seen_bytes = source, limit_bytes, seen_bytes
        seen = "" if seen_bytes is None else f" (got at least {seen_bytes})"
        super().__init__(f"{source}: larger than the declared {limit_bytes} bytes{seen}")


class UnsafeArchive(ApplyError):
    """A tarball member would escape the target, is a device, or the archive breaks a cap."""

    def __init__(self, archive: Path, member: str | None, why: str) -> None:
        self.archive, self.member, self.why = archive, member, why
        where = f"{archive}" if member is None else f"{archive}: member {member!r}"
        super().__init__(f"{where}: {why}")


class DiskFull(ApplyError):
    """Not enough free space to store or unpack an artifact (checked up front, or ENOSPC)."""

    def __init__(self, path: Path, needed_bytes: int | None = None, free_bytes: int | None = None) -> None:
        self.path, self.needed_bytes, self.free_bytes = path, needed_bytes, free_bytes
        detail = "" if needed_bytes is None else f", needs {needed_bytes} bytes"
        detail += "" if free_bytes is None else f", {free_bytes} free"
        super().__init__(f"{path}: disk full{detail}")


class UnsupportedSource(ApplyError):
    """The artifact URL has a scheme this agent cannot fetch (only http, https and file)."""


class CorruptState(SetupError):
    """A local state file (journal, status cache) exists but cannot be parsed."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{path}: corrupt agent state file: {why}")
