"""What one reconcile did: the value :func:`controller.reconcile.steps.reconcile_once` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.audit.events import AuditEvent


@dataclass
class ReconcileResult:
    """What one reconcile did, for logs, the CLI and tests."""

    main: str
    state_commit: str | None = None
    stalled: str | None = None
    events: list[AuditEvent] = field(default_factory=list)
    desired_refs: int = 0
    signatures: int = 0
    idle: bool = False  # nothing new and nothing due: nothing was fetched, loaded or planned
    notified: int = 0  # webhook messages delivered after the push
