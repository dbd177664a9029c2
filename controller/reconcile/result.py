"""What a step and a whole reconcile return (pure values, no I/O).

A step (:data:`controller.reconcile.steps.STEPS`) returns a :data:`StepResult`: :data:`CONTINUE`
to the next step, :class:`Stall` (invalid content: nothing is applied until a new commit) or
:class:`Fail` (a bug: nothing is applied, the loop retries with backoff). The write path
(:mod:`controller.reconcile.write`) records whichever it got; :func:`reconcile_once
<controller.reconcile.steps.reconcile_once>` returns a :class:`ReconcileResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.audit.events import AuditEvent, AuditKind


@dataclass(frozen=True)
class Continue:
    """The step did its part: go on to the next one (after the last: apply)."""


CONTINUE = Continue()


@dataclass(frozen=True)
class Stall:
    """Invalid content: record ``reason`` (audit ``kind``) and apply nothing until main moves."""

    reason: str
    kind: AuditKind = AuditKind.STALLED


@dataclass(frozen=True)
class Fail:
    """A bug in step ``step``: record ``reason``, apply nothing; the loop logs it and backs off."""

    step: str
    reason: str


StepResult = Continue | Stall | Fail


@dataclass
class ReconcileResult:
    """What one reconcile did, for logs, the CLI and tests."""

    main: str
    state_commit: str | None = None
    stalled: str | None = None  # invalid content: the reason recorded on the state branch
    events: list[AuditEvent] = field(default_factory=list)
    desired_refs: int = 0
    signatures: int = 0
    idle: bool = False  # nothing new and nothing due: nothing was fetched, loaded or planned
    notified: int = 0  # webhook messages delivered after the push
