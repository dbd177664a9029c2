"""Errors of the controller, grouped by what the reconcile loop does about them (pure, no I/O).

:func:`loop_action` is the one place that maps an error to what the loop must do (kopf's
permanent / temporary split, plus bugs), and ``fleetcd controller reconcile --once`` maps the same
groups to exit codes (docs/cli.md):

* :attr:`LoopAction.STALL` — :class:`~fleetcd.errors.InvalidContent`: the repository content (or
  the state built from it) is wrong. The reconcile records a stall with the reason and applies
  nothing until a new commit (or an operator) fixes it; never retried. Exit 1.

  - :class:`HistoryRewritten`: main is no longer a descendant of the last processed commit. The
    controller halts instead of guessing which deployments the rewrite meant to undo.
  - :class:`AuditChainBroken`: the hash-chained audit log on the state branch was edited, cut or
    reordered. Nothing is appended on top of a broken chain (fail closed); the stall is recorded
    in the rollouts' status and ``state.json`` only.
  - :class:`IllegalTransition`: a planned change would move a deployment record backwards
    (e.g. ``target_status`` archived → deployed). Only the controller's own plan can ask for that,
    so it is a bug or tampered state, never something to paper over. Device *reports* never raise
    this: they are untrusted input and are ignored with a reason instead
    (:mod:`controller.records.transitions`).
  - a bundle naming the wrong rollout (``rollout_mismatch`` from
    :func:`controller.delivery.bundles.bundle_for`) and every other validation failure.

* :attr:`LoopAction.RETRY` — the environment: :class:`~fleetcd.errors.TransportError` (git or
  HTTP failed; :class:`StateConflict`: another writer moved the state branch between our read and
  our push — the deterministic record ids and audit event keys make the retry create nothing
  twice), :class:`~fleetcd.errors.SetupError` (gpg, keyring, mirror) and ``OSError``. Nothing is
  recorded (the state branch may be out of reach); the loop retries with capped exponential
  backoff. Exit 5 (transport) or 4 (setup).

  One transport error is not the loop's: a status shard that cannot be fetched
  (:mod:`controller.reconcile.shards`). The reconcile goes on with the other shards and the reports
  last fetched from that one, and records an audit line ``status_shard_unreachable`` naming it; the
  next reconcile tries it again. Only the fleet repository itself being unreachable is RETRY.

* :attr:`LoopAction.BUG` — anything else. The reconcile records a failure naming the step and
  the error, the loop logs the traceback, backs off and keeps going: a bug never ends the loop.
  Exit 70.
"""

from __future__ import annotations

from fleetcd.compat import StrEnum
from fleetcd.errors import Diagnostic, InvalidContent, SetupError, TransportError
from fleetcd.reasons import Reason


class LoopAction(StrEnum):
    """What the reconcile loop does about an error (see the module docstring)."""

    STALL = "stall"  # invalid content: recorded, waits for a new commit, never retried
    RETRY = "retry"  # transport or setup: nothing recorded, retried with backoff
    BUG = "bug"  # recorded as a failure, logged with its traceback, retried with backoff


ENVIRONMENT_ERRORS: tuple[type[Exception], ...] = (TransportError, SetupError, OSError)


def loop_action(error: BaseException) -> LoopAction:
    """The group ``error`` belongs to: what the loop must do about it."""
    if isinstance(error, InvalidContent):
        return LoopAction.STALL
    if isinstance(error, ENVIRONMENT_ERRORS):
        return LoopAction.RETRY
    return LoopAction.BUG


class HistoryRewritten(InvalidContent):
    """``ref`` now points at ``found``, which does not descend from ``last_processed``: halt."""

    def __init__(self, ref: str, last_processed: str, found: str) -> None:
        self.ref, self.last_processed, self.found = ref, last_processed, found
        message = (
            f"{found} is not a descendant of the last processed commit {last_processed}: "
            "history was rewritten (force push?); halting until an operator resolves it"
        )
        super().__init__([Diagnostic(ref, None, None, message, Reason.HISTORY_REWRITTEN)])


class AuditChainBroken(InvalidContent):
    """The audit log at ``file`` (1-based ``line``) breaks the hash chain: ``problem``.

    ``expected``/``found`` carry the two hashes (or seq numbers) that disagree, when there are two.
    """

    def __init__(
        self,
        file: str,
        line: int | None,
        problem: str,
        *,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        self.file, self.line, self.problem = file, line, problem
        self.expected, self.found = expected, found
        message = problem
        if expected is not None or found is not None:
            message += f" (expected {expected}, found {found})"
        super().__init__([Diagnostic(file, line, None, message, Reason.AUDIT_CHAIN_BROKEN)])


class IllegalTransition(InvalidContent):
    """Deployment ``record_id`` cannot move ``field`` from ``current`` to ``requested``."""

    def __init__(self, record_id: str, field: str, current: str, requested: str, why: str) -> None:
        self.record_id, self.field = record_id, field
        self.current, self.requested = current, requested
        message = f"cannot move from {current!r} to {requested!r}: {why}"
        super().__init__([Diagnostic(record_id, None, field, message, Reason.ILLEGAL_TRANSITION)])


class StateConflict(TransportError):
    """``ref`` moved from ``expected`` to ``found`` under us: retry the reconcile on the new tip."""

    def __init__(self, ref: str, expected: str | None, found: str | None) -> None:
        self.ref, self.expected, self.found = ref, expected, found
        super().__init__(
            f"{ref} moved while we reconciled (expected {expected or 'no ref'}, found {found or 'no ref'}): "
            "retrying on the new tip"
        )
