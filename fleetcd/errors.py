"""Errors of the shared core, grouped by what the caller's loop must do about them.

* :class:`InvalidContent` — the repository content is wrong (bad YAML, schema violation, bad
  signature, broken reference). Never retried: the reconcile stalls until a new commit fixes it.
* :class:`TransportError` — git or HTTP failed on the way. Retried with backoff.
* :class:`ApplyError` — installing or health-checking on a robot failed. The agent rolls back.
* :class:`SetupError` — the local environment cannot do the job safely (gpg missing, unusable
  keyring, unreadable repository path). Fail closed and tell the operator.

Every message names the file, line and field where it can, through :class:`Diagnostic`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass

from fleetcd.reasons import Reason


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding about one place in the fleet repository: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str | None
    message: str
    reason: Reason = Reason.INVALID
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "reason": self.reason.value,
            "severity": self.severity,
        }


class FleetcdError(Exception):
    """Base of every error fleetcd raises on purpose."""


class InvalidContent(FleetcdError):
    """Repository content is invalid: stall until a new commit, never retry."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics) or "invalid content")

    @classmethod
    def at(
        cls,
        file: str,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        reason: Reason = Reason.INVALID,
    ) -> InvalidContent:
        return cls([Diagnostic(file, line, field, message, reason)])


class TransportError(FleetcdError):
    """Fetching or pushing failed (network, server, timeout): retry with backoff."""


class PushRejected(TransportError):
    """The git server refused a ref update (hook, ACL, non-fast-forward)."""

    def __init__(self, ref: str, message: str) -> None:
        self.ref = ref
        super().__init__(f"push of {ref} rejected by the server: {message}")


class RefConflict(TransportError):
    """A compare-and-swap ref update lost a race: someone moved the ref meanwhile. Re-read, retry."""

    def __init__(self, ref: str, expected: str | None, actual: str | None) -> None:
        self.ref = ref
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{ref} changed concurrently: expected {expected or '(absent)'}, found {actual or '(absent)'}"
        )


class ApplyError(FleetcdError):
    """Installing, switching or health-checking failed on the robot: roll back."""


# A disk that is full, over its quota or read-only: a setup problem of the machine (exit 4), never a
# bug, wherever the write was (the CLI's error handler, the git adapter).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class SetupError(FleetcdError):
    """The local environment cannot do this safely (e.g. gpg missing): fail closed."""
