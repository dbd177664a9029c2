"""The write step of a reconcile that stalls: why nothing was applied, recorded once per main commit.

A history rewrite, a commit the policy refuses or invalid content stops a reconcile before it
ingests or plans anything. Its rollouts show ``stalled`` with the reason, the audit log gets one
line, and ``state.json`` remembers the (commit, reason) pair — so the same stall logged again
after midnight (the audit log's own duplicate check looks at the head's day file only) or by
another controller adds no line. The idle mark it leaves says "main stalls": until main moves (or
:data:`~controller.reconcile.due.FULL_RECONCILE_EVERY` passes) later reconciles stop after the
ref listing, whatever robots report meanwhile, since a stalled reconcile ingests no report.

Webhooks come from the last accepted commit's ``fleet.yaml``: the stalled one cannot be trusted.
"""

from __future__ import annotations

from datetime import datetime

from controller.audit.chain import added_keys, append
from controller.audit.events import AuditEvent, AuditKind, event_key
from controller.notify.outbox import OutboxEntry
from controller.reconcile.due import FULL_RECONCILE_EVERY
from controller.reconcile.idle import audit_fields, refs_sha256, remember
from controller.reconcile.notify_step import deliver_outbox, queue_outbox, settle_outbox
from controller.reconcile.result import ReconcileResult
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Fetched, publish
from controller.reconcile.statebranch import StateSnapshot, changed_files, dump, write_state
from controller.state.layout import META_FILE, rollout_file
from controller.state.model import IdleMark, RolloutPhase
from fleetcd.git.objects import read_blob
from fleetcd.git.repo import Repository
from fleetcd.layout import FLEET_FILE
from fleetcd.loading.fleetspec import load_spec
from fleetcd.models import Fleet

REASON_CHARS = 2000  # in the audit line and state.json
STATUS_REASON_CHARS = 500  # in rollout status


def stall(
    repo: Repository,
    fetched: Fetched,
    snapshot: StateSnapshot,
    settings: ControllerSettings,
    now: datetime,
    reason: str,
    kind: AuditKind,
) -> ReconcileResult:
    """Record why nothing was applied, once per (main commit, reason), and touch nothing else."""
    main, reason = str(fetched.main), reason[:REASON_CHARS]
    result = ReconcileResult(main=main, stalled=reason)
    known = snapshot.meta.stalled_commit == main and snapshot.meta.stalled_reason == reason
    events = [] if known else [AuditEvent(at=now, kind=kind, commit=main, reason=reason)]
    fleet = accepted_fleet(repo, snapshot.meta.last_processed_commit)
    webhooks = fleet.webhooks if fleet is not None and settings.notify else []
    changes: dict[str, bytes | None] = {}
    entries: list[OutboxEntry] = []
    if settings.notify:
        entries, dropped = settle_outbox(
            snapshot.files, snapshot.commit, webhooks, settings.source.mirror, now
        )
        events += dropped
    audit = append(snapshot.audit, events)
    logged = added_keys(snapshot.audit, audit)
    result.events = [e for e in events if event_key(e) in logged]
    if settings.notify:
        changes.update(queue_outbox(entries, events, snapshot.audit, audit, webhooks))
    for name, state in snapshot.rollouts.items():
        short = reason[:STATUS_REASON_CHARS]
        if state.phase is not RolloutPhase.STALLED or state.reason != short:
            changes[rollout_file(name)] = dump(
                state.model_copy(update={"phase": RolloutPhase.STALLED, "reason": short})
            )
    changes.update(audit)
    meta = snapshot.meta.model_copy(
        update={"stalled_commit": main, "stalled_reason": reason, **audit_fields(snapshot.audit, audit)}
    )
    mark = IdleMark(
        main=main,
        status_sha256=refs_sha256(fetched.status),
        next_due_at=now + FULL_RECONCILE_EVERY,
        stalled=True,
    )
    if changed_files(snapshot.files, changes) or meta != snapshot.meta:
        changes[META_FILE] = dump(meta.model_copy(update={"updated_at": now, "idle": mark}))
    written = write_state(repo, snapshot, changes, f"fleetcd: stalled at {main[:12]}: {reason[:200]}", now)
    if written is not None:
        publish(repo, settings.source, state_base=snapshot.commit)
        settings.checkpoint("state-pushed")
        result.state_commit = str(written)
    if fleet is not None and webhooks:
        outbox = {**snapshot.files, **changes}
        head = written or snapshot.commit
        result.notified = deliver_outbox(outbox, webhooks, fleet.name, settings.source.mirror, head)
    remember(settings.source.mirror, written or snapshot.commit, mark)
    return result


def accepted_fleet(repo: Repository, last: str | None) -> Fleet | None:
    """``fleet.yaml`` of the last accepted main commit, or None (none yet, or not in the mirror)."""
    data = read_blob(repo, last, FLEET_FILE) if last is not None else None
    if data is None:
        return None
    spec, _ = load_spec({FLEET_FILE: data})
    return spec.fleet.model if spec.fleet is not None else None
