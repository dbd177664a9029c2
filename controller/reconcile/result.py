"""What a step and a whole reconcile return (pure values, no I/O).

A step (:data:`controller.reconcile.steps.STEPS`) returns a :data:`StepResult`: :data:`CONTINUE`
to the next step, :class:`Stall` (invalid content: nothing is applied until a new commit) or
:class:`Fail` (a bug: nothing is applied, the loop retries with backoff). The write path
(:mod:`controller.reconcile.write`) records whichever it got; :func:`reconcile_once
<controller.reconcile.steps.reconcile_once>` returns a :class:`ReconcileResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.audit.events import AuditEvent, AuditKind
from controller.state.model import DeviceFile, RolloutState


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
    bundles_built: int = 0  # robots' bundles built: whose inputs changed, or whose ref moved
    signatures: int = 0  # gpg signatures made: the desired-state root's and the audit head's
    head_signatures: int = 0  # of which over the audit log's new head (0 or 1)
    idle: bool = False  # nothing new and nothing due: nothing was fetched, loaded or planned
    notified: int = 0  # webhook messages delivered after the push
    reports_ingested: int = 0  # robots' reports with a new seq applied to their records (applied only)
    # Reports (or claims in one) refused, by reason (fleetcd.reasons), counted when the audit log
    # first records the refusal: a bad report left on its ref is not counted again every reconcile.
    reports_rejected: dict[str, int] = field(default_factory=dict)
    push_retries: int = 0  # state-branch pushes lost to another writer and retried from a fresh fetch
    repacks: list[Repack] = field(default_factory=list)  # housekeeping repacks run (mirror, server)
    observed: Observed | None = field(default=None, repr=False)  # what it recorded (None: idle, nothing)

    @property
    def root_signatures(self) -> int:
        """Signatures over the desired-state root (0, or 1 when any robot's bundle changed)."""
        return self.signatures - self.head_signatures


@dataclass(frozen=True)
class Repack:
    """One housekeeping run that was due (:mod:`fleetcd.git.housekeeping`), for logs and metrics."""

    repository: str  # "mirror" (the controller's --cache) or "server" (a local one pushed into by hand)
    ok: bool  # False: git failed or ran out of time; the counts stay over the threshold, so it is retried
    message: str  # what was repacked into what and how long it took, or why it failed


@dataclass(frozen=True)
class Observed:
    """The rollouts and robots as a reconcile recorded them on the state branch, for metrics.

    ``devices`` is None when the reconcile did not read robots (a stall: their files are unchanged);
    ``retired`` names the decommissioned robots, which no robot count includes.
    """

    rollouts: Mapping[str, RolloutState]
    devices: Mapping[str, DeviceFile] | None = None
    retired: frozenset[str] = frozenset()
