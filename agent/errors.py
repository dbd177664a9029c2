"""Errors of the agent, grouped by what the converge loop does about them.

They subclass the core classes of :mod:`fleetcd.errors`, so the loop needs only three ``except``
arms:

* :class:`~fleetcd.errors.TransportError` — :class:`DownloadFailed`, :class:`DeadlineExceeded`:
  the network let us down; keep any partial download and retry later with backoff.
* :class:`~fleetcd.errors.ApplyError` — :class:`DigestMismatch`, :class:`TooLarge`,
  :class:`UnsafeArchive`, :class:`UnsupportedSource`: this artifact cannot be installed here; fail
  the deployment and roll back (or keep running the current release). :class:`DiskFull` is one
  too, but before the switch it is *temporary*: space can come back (logs rotated, an operator
  cleans up), so the deployment waits in its state, reported ``retrying`` with the message, and is
  tried again next cycle; after the switch it rolls back like any ApplyError.
  :class:`HealthFailed`, :class:`HookFailed`, :class:`GateTimedOut`: the new version (or the
  robot) is not fit for it; roll back.
* :class:`GateClosed` is no error of anyone's: a robot-state gate ("docked") is closed, so the
  install is deferred and retried later, until :class:`GateTimedOut`.
* Docker executor: :class:`EngineUnavailable` (a TransportError: the engine's socket did not
  answer; retry), :class:`ImageNotInRegistry` and :class:`ContainerFailed` (ApplyErrors: the
  registry has no such digest; the engine refused to create, start or stop a container).
* :class:`~fleetcd.errors.SetupError` — :class:`StateDirUnwritable`: the state directory cannot be
  written (a read-only mount, wrong owner); the cycle does nothing, since it could record nothing.
  :class:`CorruptState`: a state file exists but does not parse; the loop sets it aside and rebuilds
  it from what the disk shows (:mod:`agent.converge.repair`), reporting :class:`StateRepaired`.

Every message names the file, member or URL and the offending value.
"""

from __future__ import annotations

from pathlib import Path

from fleetcd.errors import ApplyError, SetupError, TransportError
from fleetcd.reasons import Reason


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
    """Not enough free space to store or unpack an artifact (checked up front, or ENOSPC).

    Retried before the switch (the deployment waits for space), rolled back after it.
    """

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


class StateDirUnwritable(SetupError):
    """The state directory (or a folder in it) cannot be written: nothing can be journaled."""

    def __init__(self, state_dir: Path, why: str) -> None:
        self.state_dir, self.why = state_dir, why
        super().__init__(
            f"{state_dir}: the agent's state directory is not writable ({why}); the agent records "
            "every step there before taking it, so it does nothing until it is: check the mount "
            "(read-only?), its owner and mode, and the unit's StateDirectory=/ReadWritePaths="
        )


class StateRepaired(CorruptState):
    """A corrupt state file was set aside and rebuilt from what the disk shows: reported, not fatal."""

    def __init__(self, corrupt: CorruptState, aside: Path, rebuilt: str) -> None:
        self.aside, self.rebuilt = aside, rebuilt
        super().__init__(corrupt.path, f"{corrupt.why}; set aside as {aside.name}; {rebuilt}")


class HealthFailed(ApplyError):
    """The new version exited or a probe failed inside its watch window."""

    def __init__(self, reason: str, detail: str, *, probe: str | None = None) -> None:
        self.reason, self.detail, self.probe = reason, detail, probe
        super().__init__(f"unhealthy ({reason}): {detail}")


class HookFailed(ApplyError):
    """A customer hook exited with a code other than 0 or 3, timed out, or raised."""

    reason = Reason.HOOK_FAILED

    def __init__(
        self, hook: str, detail: str, *, exit_code: int | None = None, stderr_tail: str = ""
    ) -> None:
        self.hook, self.detail, self.exit_code, self.stderr_tail = hook, detail, exit_code, stderr_tail
        code = "" if exit_code is None else f" with exit code {exit_code}"
        tail = f"; stderr: {stderr_tail}" if stderr_tail else ""
        super().__init__(f"hook {hook} failed{code}: {detail}{tail}")


class GateClosed(Exception):
    """A robot-state gate is closed: defer the install and check again later (not an ApplyError)."""

    def __init__(self, gate: str, reason: str) -> None:
        self.gate, self.reason = gate, reason
        super().__init__(f"gate {gate!r} is closed: {reason}")


class GateTimedOut(ApplyError):
    """A gate stayed closed longer than ``gates.max_deferral_seconds``: the deployment fails."""

    reason = Reason.GATE_TIMED_OUT

    def __init__(self, gate: str, why: str, max_deferral_seconds: int) -> None:
        self.gate, self.why, self.max_deferral_seconds = gate, why, max_deferral_seconds
        super().__init__(
            f"gate {gate!r} stayed closed past gates.max_deferral_seconds ({max_deferral_seconds} s): {why}"
        )


class EngineUnavailable(TransportError):
    """The container engine did not answer on its socket (not running, restarting): retry later."""

    reason = Reason.ENGINE_UNAVAILABLE

    def __init__(self, base_url: str, detail: str) -> None:
        self.base_url, self.detail = base_url, detail
        super().__init__(f"container engine at {base_url} is unavailable: {detail}")


class ImageNotInRegistry(ApplyError):
    """The registry answered, and it has no manifest for this ``repo@sha256:…``."""

    reason = Reason.IMAGE_NOT_FOUND

    def __init__(self, image: str, detail: str) -> None:
        self.image, self.detail = image, detail
        super().__init__(f"image {image} is not in its registry: {detail}")


class ContainerFailed(ApplyError):
    """The engine refused an operation on a container (create, start, stop, remove)."""

    reason = Reason.CONTAINER_FAILED

    def __init__(self, operation: str, detail: str) -> None:
        self.operation, self.detail = operation, detail
        super().__init__(f"container engine failed to {operation}: {detail}")
