"""The write step: one path that records every outcome of a reconcile on the state branch.

:func:`controller.reconcile.steps.reconcile_once` calls :func:`write` from a ``finally``, so
whatever the steps decided — applied, stalled with a reason, failed with a reason — is recorded
the same way. :func:`applied`, :func:`stalled` and :func:`failed` say what each outcome changes;
:func:`commit_status` is the one tail for all three:

1. settle the webhook outbox, append the outcome's events to the audit log — only to a log the
   verify step checked: nothing is ever appended to a broken or unread chain — sign the new head
   with the controller key (:mod:`controller.audit.heads`) and queue the messages for the events
   newly logged;
2. ``state.json`` with the audit anchor and the idle mark and, when something changed, the status
   pages and receipts;
3. one state-branch commit, one push (with the desired state that moved, when applied), then
   the desired-state refs the controller does not own deleted (:mod:`controller.delivery.prune`),
   the webhooks delivered, the idle hint kept in the mirror.

Only the applied outcome moves robots' desired state. Every byte is derived from git and ``now``,
so a rerun after ``kill -9`` between any two of these writes ends identical and logs nothing twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import is_not

from controller.audit.chain import added_keys, append, head
from controller.audit.events import AuditEvent, AuditKind, event_key
from controller.audit.heads import head_files
from controller.delivery.prune import Push, remove_stale
from controller.notify.outbox import OutboxEntry
from controller.reconcile.context import ReconcileContext
from controller.reconcile.delivery_step import Delivered
from controller.reconcile.due import FULL_RECONCILE_EVERY, next_due
from controller.reconcile.finish import pages_and_receipts
from controller.reconcile.idle import audit_fields, mark_of, remember
from controller.reconcile.notify_step import deliver_outbox, post_status, queue_outbox, settle_outbox
from controller.reconcile.refdigest import IdleDigests
from controller.reconcile.result import Continue, Fail, Observed, ReconcileResult, Stall, StepResult
from controller.reconcile.source import publish
from controller.reconcile.stall import accepted_fleet, stall_record
from controller.reconcile.statebranch import Models, changed_files, dump, flat_device_paths, write_state
from controller.state.layout import META_FILE, device_file, legacy_device_of, rollout_file
from controller.state.model import IdleMark, RolloutPhase
from fleetcd.errors import InvalidContent
from fleetcd.git.remote import push
from fleetcd.git.repo import Oid
from fleetcd.loading.documents import load_document
from fleetcd.models import Fleet, TrustRoot
from fleetcd.trust.gpg import Signer

log = logging.getLogger(__name__)
_ROOT_PATH = re.compile(r"^trust/root/([1-9][0-9]{0,5})\.yaml$")


@dataclass
class Status:
    """What one outcome records, before the audit log, the outbox and ``state.json``'s anchor."""

    events: list[AuditEvent]  # to log; the log skips what it already holds
    files: dict[str, bytes | None]  # rollout and device files
    meta: dict[str, object]  # the ``state.json`` fields this outcome sets
    mark: IdleMark | None  # the idle fast path's mark; None: the next reconcile runs in full
    fleet: Fleet | None  # whose webhooks hear of the events
    message: str | None  # the commit message; None: a summary of the events' kinds
    desired: Delivered | None = None  # applied only: the desired state to publish
    # Status pages and receipts, rendered only when something changed (so "generated at" never
    # makes an idle reconcile commit).
    pages: Callable[[], Mapping[str, bytes | None]] | None = None
    models: Models | None = None  # device files of ``files`` with the models dumped to them


def write(ctx: ReconcileContext, outcome: StepResult) -> None:
    """Record ``outcome``; nothing when the state branch was never read (nothing to build on)."""
    if ctx.snapshot is None or ctx.fetched is None:
        return
    if isinstance(outcome, Continue):
        status = applied(ctx)
    elif isinstance(outcome, Stall):
        status = stalled(ctx, outcome)
    else:
        status = failed(ctx, outcome)
    commit_status(ctx, status)
    forge = ctx.settings.commit_status
    if forge is not None:  # after the push: the forge hears only what the state branch holds
        phases = (
            [(n, r.phase.value) for n, r in ctx.rollouts.items()] if isinstance(outcome, Continue) else []
        )
        failure = outcome.reason if isinstance(outcome, Fail) else None
        post_status(forge, ctx.settings.source.mirror, ctx.main, ctx.result.stalled, failure, phases)


def applied(ctx: ReconcileContext) -> Status:
    """Every step passed: the rollout and device files that changed, the desired state delivered."""
    snapshot, fleet, desired = ctx.state, ctx.fleet, ctx.need(ctx.desired, "desired")
    files: dict[str, bytes | None] = {}
    for name, state in ctx.rollouts.items():
        if snapshot.rollouts.get(name) != state:
            files[rollout_file(name)] = dump(state)
    # A robot no step touched holds the very object the state branch gave (ingest and deliver
    # replace only the files they change): one identity test, not a model comparison, per robot.
    # The identity tests run in C (map/compress); Python sees only the robots that differ.
    # Each file dumped is handed to the state cache with its model, which the next reconcile then
    # reads back as this very object (statebranch.write_state's ``models``).
    before, devices, models = snapshot.devices, ctx.devices, {}
    for device in compress(devices, map(is_not, devices.values(), map(before.get, devices))):
        data = devices[device]
        if before.get(device) != data:
            path = device_file(device)
            files[path] = dumped = dump(data)
            models[path] = (data, dumped)
    # A state branch from before the buckets (``devices/<id>.json``): moved once.
    for path in flat_device_paths(ctx.repo, snapshot):
        flat = legacy_device_of(path)
        if flat is not None:
            files[path] = None
            files.setdefault(device_file(flat), snapshot.files[path])
    due = next_due(
        fleet,
        ctx.rollouts,
        ctx.devices,
        renewal_due_at=desired.next_renewal_at,
        now=ctx.now,
        memo=ctx.settings.cache.robots.due if ctx.settings.cache is not None else None,
    )

    def pages() -> Mapping[str, bytes | None]:
        return pages_and_receipts(
            fleet, snapshot, ctx.rollouts, ctx.devices, ctx.settings, ctx.now, ctx.main, ctx.planned
        )

    return Status(
        events=ctx.result.events,
        files=files,
        meta={
            "last_processed_commit": ctx.main,
            "serial": desired.serial,
            "trust_version": fleet.trust.version,
            "root_sha256": desired.root_sha256,
            "stalled_commit": None,
            "stalled_reason": None,
        },
        mark=mark_of(ctx.main, ctx.status_refs, _after_prune(desired.listed, desired), due, _digests(ctx)),
        fleet=fleet.fleet,
        message=None,
        desired=desired,
        pages=pages,
        models=models,
    )


def stalled(ctx: ReconcileContext, outcome: Stall) -> Status:
    """Invalid content: the stall's record; the idle mark says "main stalls"."""
    record = stall_record(ctx.state, ctx.main, outcome.reason, outcome.kind, ctx.now)
    ctx.result = ReconcileResult(main=ctx.main, stalled=record.reason)
    mark = mark_of(ctx.main, ctx.status_refs, None, ctx.now + FULL_RECONCILE_EVERY, _digests(ctx))
    return Status(
        events=record.events,
        files=record.files,
        meta=record.meta,
        mark=mark.model_copy(update={"stalled": True}),
        fleet=accepted_fleet(ctx.repo, ctx.state.meta.last_processed_commit),
        message=f"fleetcd: stalled at {ctx.main[:12]}: {record.reason[:200]}",
    )


def failed(ctx: ReconcileContext, outcome: Fail) -> Status:
    """A bug: recorded like a stall, but with no idle mark, so the next reconcile (after the loop's
    backoff) runs in full and tries again."""
    reason = f"internal error in step {outcome.step}, retried with backoff: {outcome.reason}"
    record = stall_record(ctx.state, ctx.main, reason, AuditKind.STALLED, ctx.now)
    ctx.result = ReconcileResult(main=ctx.main)
    return Status(
        events=record.events,
        files=record.files,
        meta={**record.meta, "idle": None},
        mark=None,
        fleet=accepted_fleet(ctx.repo, ctx.state.meta.last_processed_commit),
        message=f"fleetcd: failed at {ctx.main[:12]}: {record.reason[:200]}",
    )


def commit_status(ctx: ReconcileContext, status: Status) -> None:
    """The tail every outcome shares: audit, outbox, ``state.json``, commit, push, notify, hint."""
    settings, snapshot, main, now = ctx.settings, ctx.state, ctx.main, ctx.now
    result = ctx.result
    verified = ctx.audit_verified
    notify = settings.notify and verified  # drops and new messages are logged: a verified log only
    webhooks = status.fleet.webhooks if status.fleet is not None and notify else []
    events = list(status.events)
    changes = dict(status.files)
    entries: list[OutboxEntry] = []
    if notify:
        entries, dropped = settle_outbox(
            snapshot.files, snapshot.commit, webhooks, settings.source.mirror, now
        )
        events += dropped
    # The memo verify_history just filled: the head and its day's keys without parsing that day.
    memo = settings.cache.audit if settings.cache is not None else None
    audit = append(snapshot.audit, events, memo=memo) if verified else {}
    if status.desired is not None:
        result.events = events
    else:
        logged = added_keys(snapshot.audit, audit)
        result.events = [e for e in events if event_key(e) in logged]
    if notify:
        changes.update(queue_outbox(entries, events, snapshot.audit, audit, webhooks))
    changes.update(audit)
    head_signature = _signed_head(ctx, audit)
    changes.update(head_signature)
    result.head_signatures = 1 if head_signature else 0
    result.signatures += result.head_signatures
    _count_reports(ctx, status, added_keys(snapshot.audit, audit) if ctx.rejections else set())
    anchor = audit_fields(snapshot.audit, audit) if verified else {}
    meta = snapshot.meta.model_copy(update={**status.meta, **anchor})
    if changed_files(snapshot.files, changes) or meta != snapshot.meta:
        idle = status.mark.model_copy(update={"desired_sha256": None}) if status.mark is not None else None
        meta = meta.model_copy(update={"updated_at": now, "idle": idle})
        changes[META_FILE] = dump(meta)
        if status.pages is not None:
            changes.update(status.pages())
    message = status.message or _summary(main, result.events)
    settings.checkpoint("desired-written")
    cache = settings.cache.state if settings.cache is not None else None
    written = write_state(ctx.repo, snapshot, changes, message, now, cache=cache, models=status.models)
    settings.checkpoint("state-committed")
    moved = {ref: status.desired.refs[ref] for ref in status.desired.moved} if status.desired else {}
    if written is not None or moved:
        repack = publish(
            ctx.repo,
            settings.source,
            state_base=snapshot.commit,
            desired=moved,
            namespaces=settings.namespaces,
        )
        if repack is not None:  # the local server pushed into by hand, housekept after the push
            result.repacks.append(repack)
        settings.checkpoint("state-pushed")
        result.state_commit = str(written) if written is not None else None
    if status.desired is not None and status.desired.stale:  # after the refs robots now follow
        remove_stale(ctx.repo, status.desired.stale, _pusher(ctx))
    head = written or snapshot.commit
    if webhooks and status.fleet is not None:
        outbox = {**snapshot.files, **changes}
        result.notified = deliver_outbox(
            outbox, webhooks, status.fleet.name, settings.source.mirror, head, settings.webhook_secret
        )
        settings.checkpoint("notified")
    if status.mark is not None:
        remember(settings.source.mirror, head, status.mark)


def _count_reports(ctx: ReconcileContext, status: Status, logged: set[str]) -> None:
    """Reports ingested (applied outcomes only: a stall drops what ingest read) and refusals the audit
    log records for the first time, by reason; and what this outcome recorded, for metrics."""
    result = ctx.result
    applied = status.desired is not None
    if applied:
        result.reports_ingested = ctx.reports_ingested
        for event, reason in ctx.rejections:
            if event_key(event) in logged:
                result.reports_rejected[reason] = result.reports_rejected.get(reason, 0) + 1
        # Read once per fleet context (kept with main's parse), not a pass over the fleet per reconcile.
        result.observed = Observed(ctx.rollouts, ctx.devices, ctx.fleet.retired)
    elif ctx.snapshot is not None:  # stalled or failed: every rollout shows stalled, robots unread
        stalled = {
            name: state.model_copy(update={"phase": RolloutPhase.STALLED})
            for name, state in ctx.snapshot.rollouts.items()
        }
        result.observed = Observed(stalled)


def _signed_head(ctx: ReconcileContext, appended: Mapping[str, bytes]) -> dict[str, bytes]:
    """The signed head over the lines just appended: one gpg signature per appending reconcile.

    The key is the one this reconcile signs with (the trust root's first controller key whose
    secret the controller holds); a stall before the trust root loaded takes the newest trust-root
    version on main that names a key it holds. None held: the head stays unsigned and
    ``fleetcd audit verify`` says so until a reconcile that holds a key appends again.
    """
    if not appended:
        return {}
    seq, line = head(appended)
    with Signer(ctx.settings.gnupghome) as signer:
        available = signer.secret_fingerprints()
        key = _controller_key(ctx, available)
        if key is None:
            log.error("audit head seq %d left unsigned: no controller key in the keyring", seq)
            return {}
        return head_files(seq, line, max(appended), ctx.now, lambda data: signer.sign_detached(data, key))


def _controller_key(ctx: ReconcileContext, available: list[str]) -> str | None:
    if ctx.fleet_ctx is not None:
        return ctx.fleet_ctx.signing_key(available)
    for keys in reversed(listed_controller_keys(ctx.files)):
        for fingerprint in keys:
            if fingerprint in available:
                return fingerprint
    return None


def listed_controller_keys(files: Mapping[str, bytes]) -> list[list[str]]:
    """The controller fingerprints each parseable ``trust/root/<N>.yaml`` lists, by version (unverified:
    only to choose a key; ``audit verify`` checks the signature against the verified chain)."""
    found: list[tuple[int, list[str]]] = []
    for path, raw in files.items():
        match = _ROOT_PATH.fullmatch(path)
        if match is None:
            continue
        try:
            root = load_document(path, raw, TrustRoot).model
        except InvalidContent:
            continue
        found.append((int(match[1]), [key.fingerprint for key in root.controller]))
    return [keys for _, keys in sorted(found)]


def _after_prune(listed: Mapping[str, Oid], desired: Delivered) -> Mapping[str, Oid]:
    """The desired-state refs the server holds once the stale ones are removed (the idle mark: when
    removing them fails, the next reconcile sees them again and retries)."""
    if not desired.stale:  # almost always: no pass over every robot's ref
        return listed
    return {ref: oid for ref, oid in listed.items() if ref not in desired.stale}


def _digests(ctx: ReconcileContext) -> IdleDigests | None:
    return ctx.settings.cache.digests if ctx.settings.cache is not None else None


def _pusher(ctx: ReconcileContext) -> Push:
    source = ctx.settings.source

    def push_specs(refspecs: list[str], leases: Mapping[str, str | None]) -> None:
        push(
            ctx.repo,
            source.url,
            refspecs,
            credentials=source.credentials,
            host_keys=source.host_keys,
            leases=leases,
        )

    return push_specs


def _summary(main: str, events: list[AuditEvent]) -> str:
    kinds = sorted({e.kind.value for e in events})
    return f"fleetcd: reconcile {main[:12]} ({', '.join(kinds) if kinds else 'no events'})"
