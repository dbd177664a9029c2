"""What a stalled or failed reconcile records: why nothing was applied, once per main commit (pure).

A history rewrite, a commit the policy refuses or invalid content (a
:class:`~controller.reconcile.result.Stall`) stops a reconcile before anything is applied; so does
a bug (a :class:`~controller.reconcile.result.Fail`).
Its rollouts show ``stalled`` with the reason, the audit log gets one line, and ``state.json``
remembers the (commit, reason) pair — so the same stall logged again after midnight (the audit
log's own duplicate check looks at the head's day file only) or by another controller adds no
line. :mod:`controller.reconcile.write` commits it through the same path as an applied reconcile.

A stall's idle mark says "main stalls": until main moves (or
:data:`~controller.reconcile.due.FULL_RECONCILE_EVERY` passes) later reconciles stop after the
ref listing, whatever robots report meanwhile, since a stalled reconcile ingests no report. A
failure leaves no mark: the loop retries it in full after its backoff.

Webhooks come from the last accepted commit's ``fleet.yaml``: the stalled one cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.audit.events import AuditEvent, AuditKind
from controller.reconcile.statebranch import StateSnapshot, dump
from controller.state.layout import rollout_file
from controller.state.model import RolloutPhase
from fleetcd.git.objects import read_blob
from fleetcd.git.repo import Repository
from fleetcd.layout import FLEET_FILE
from fleetcd.loading.fleetspec import load_spec
from fleetcd.models import Fleet

REASON_CHARS = 2000  # in the audit line and state.json
STATUS_REASON_CHARS = 500  # in rollout status


@dataclass(frozen=True)
class StallRecord:
    reason: str  # as recorded (cut to REASON_CHARS)
    events: list[AuditEvent]  # the stall's audit line, unless this (commit, reason) is logged already
    files: dict[str, bytes | None]  # every rollout shown stalled with the reason
    meta: dict[str, object]  # state.json's stalled_commit and stalled_reason


def stall_record(
    snapshot: StateSnapshot, main: str, reason: str, kind: AuditKind, now: datetime
) -> StallRecord:
    """Why nothing was applied at ``main``, recorded once per (main commit, reason)."""
    reason = reason[:REASON_CHARS]
    known = snapshot.meta.stalled_commit == main and snapshot.meta.stalled_reason == reason
    events = [] if known else [AuditEvent(at=now, kind=kind, commit=main, reason=reason)]
    files: dict[str, bytes | None] = {}
    short = reason[:STATUS_REASON_CHARS]
    for name, state in snapshot.rollouts.items():
        if state.phase is not RolloutPhase.STALLED or state.reason != short:
            files[rollout_file(name)] = dump(
                state.model_copy(update={"phase": RolloutPhase.STALLED, "reason": short})
            )
    meta: dict[str, object] = {"stalled_commit": main, "stalled_reason": reason}
    return StallRecord(reason, events, files, meta)


def accepted_fleet(repo: Repository, last: str | None) -> Fleet | None:
    """``fleet.yaml`` of the last accepted main commit, or None (none yet, or not in the mirror)."""
    data = read_blob(repo, last, FLEET_FILE) if last is not None else None
    if data is None:
        return None
    spec, _ = load_spec({FLEET_FILE: data})
    return spec.fleet.model if spec.fleet is not None else None
