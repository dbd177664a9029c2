"""Errors of the controller, grouped by what the reconcile loop does about them (pure, no I/O).

They subclass the core classes of :mod:`fleetcd.errors`, so the loop keeps its three ``except`` arms:

* :class:`~fleetcd.errors.InvalidContent` — stall with a reason until a new commit (or an operator)
  fixes it, never retried:

  - :class:`HistoryRewritten`: main is no longer a descendant of the last processed commit. The
    controller halts instead of guessing which deployments the rewrite meant to undo.
  - :class:`AuditChainBroken`: the hash-chained audit log on the state branch was edited, cut or
    reordered. Nothing is appended on top of a broken chain (fail closed).
  - :class:`IllegalTransition`: a planned change would move a deployment record backwards
    (e.g. ``target_status`` archived → deployed). Only the controller's own plan can ask for that,
    so it is a bug or tampered state, never something to paper over. Device *reports* never raise
    this: they are untrusted input and are ignored with a reason instead
    (:mod:`controller.records.transitions`).

* :class:`~fleetcd.errors.TransportError` — :class:`StateConflict`: another writer moved the state
  branch between our read and our push. Re-read the new tip and reconcile again on top of it; the
  deterministic record ids and audit event keys make the retry create nothing twice.
"""

from __future__ import annotations

from fleetcd.errors import Diagnostic, InvalidContent, TransportError
from fleetcd.reasons import Reason


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
