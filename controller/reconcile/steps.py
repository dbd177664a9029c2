"""One reconcile as a fixed list of steps: fetch → verify → load & validate → ingest → plan → write.

Status and audit are written exactly once per reconcile, whatever failed: a history rewrite or
invalid content stalls with a reason in the rollout status and the audit log, nothing partial is
applied. Every output is derived deterministically from git (main, the state branch, status refs)
and ``now``, so a controller killed at any instant and run again writes identical objects and no
duplicate records or audit lines. One push publishes desired state and the state branch together
(:func:`controller.reconcile.source.publish`).

Webhooks are announced at least once, through an outbox committed with the audit lines
(:mod:`controller.reconcile.notify_step`); a stall is recorded by :mod:`controller.reconcile.stall`.

Before all of that, :func:`controller.reconcile.idle.idle_main` lists the server's refs: when
nothing is new and nothing is due since the last reconcile, it returns at once (``idle``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from controller.audit.chain import append, verify
from controller.audit.events import AuditEvent, AuditKind
from controller.engine import EngineOutput
from controller.errors import HistoryRewritten, StateConflict
from controller.ingest.reports import ingest, read_reports
from controller.notify.outbox import OutboxEntry
from controller.policy.commits import MAIN_REF, check_history
from controller.reconcile.delivery_step import deliver
from controller.reconcile.due import next_due
from controller.reconcile.finish import pages_and_receipts
from controller.reconcile.idle import audit_anchor, audit_fields, desired_refs, idle_main, mark_of, remember
from controller.reconcile.notify_step import deliver_outbox, queue_outbox, settle_outbox
from controller.reconcile.result import ReconcileResult
from controller.reconcile.rollouts import FleetContext, advance_rollout, removed
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Fetched, fetch_all, open_mirror, publish
from controller.reconcile.stall import stall
from controller.reconcile.statebranch import StateSnapshot, changed_files, dump, load_state, write_state
from controller.records.model import DeviceState, connectivity
from controller.state.layout import META_FILE, device_file, rollout_file
from controller.state.model import DeviceFile, RolloutState
from fleetcd.errors import Diagnostic, PushRejected
from fleetcd.git.repo import Repository
from fleetcd.git.signatures import RepositoryCommits
from fleetcd.git.trees import read_tree
from fleetcd.layout import FLEET_FILE
from fleetcd.loading.fleetspec import load_spec
from fleetcd.models import Fleet
from fleetcd.trust.gpg import Keyring
from fleetcd.validation import validate_snapshot

__all__ = ["ReconcileResult", "reconcile_once"]


def reconcile_once(settings: ControllerSettings) -> ReconcileResult:
    """Fetch, decide, write and push; a lost race is retried from a fresh fetch."""
    repo = open_mirror(settings.source)
    quiet = idle_main(repo, settings.source, settings.now(), outbox=settings.notify)
    if quiet is not None:
        return ReconcileResult(main=quiet.main, stalled=quiet.stalled, idle=True)
    for _ in range(settings.push_attempts):
        fetched = fetch_all(repo, settings.source)
        try:
            return _reconcile(repo, fetched, settings)
        except PushRejected as exc:
            last = exc
    raise StateConflict("refs/heads/fleetcd/state", None, str(last))


def _reconcile(repo: Repository, fetched: Fetched, settings: ControllerSettings) -> ReconcileResult:
    now = settings.now()
    main = str(fetched.main)
    snapshot = load_state(repo)
    verify(snapshot.audit, anchor=audit_anchor(snapshot.meta))
    result = ReconcileResult(main=main)
    last = snapshot.meta.last_processed_commit

    def stalls(reason: str, kind: AuditKind) -> ReconcileResult:
        return stall(repo, fetched, snapshot, settings, now, reason, kind)

    files, problems = read_tree(repo, main)
    # The commit policy and its keys come from the last accepted commit, so an unsigned head can
    # neither switch the policy off nor trust its own key.
    try:
        refused = _verify_history(repo, _trusted_files(repo, last, main, files), last, main)
    except HistoryRewritten as exc:
        return stalls(str(exc), AuditKind.HISTORY_REWRITTEN)
    if refused is not None:
        return stalls(refused, AuditKind.STALLED)
    validation = validate_snapshot(files, problems=problems)
    if not validation.ok or validation.spec.fleet is None:
        first = validation.errors[0] if validation.errors else Diagnostic("fleet.yaml", None, None, "missing")
        reason = f"{len(validation.errors)} invalid: {first}"
        return stalls(reason, AuditKind.STALLED)
    fleet = validation.spec.fleet.model
    ctx = FleetContext.of(validation.spec, fleet)
    devices_now = _ingest(repo, snapshot, ctx, fleet, now, result)
    rollouts_now = _plan(ctx, snapshot, devices_now, main, now, result)
    desired = deliver(repo, ctx, snapshot.meta, devices_now, rollouts_now, settings, now)
    result.desired_refs, result.signatures = len(desired.moved), desired.signatures
    changes = _state_files(snapshot, rollouts_now, devices_now)
    webhooks = fleet.webhooks if settings.notify else []
    entries: list[OutboxEntry] = []
    if settings.notify:
        entries, dropped = settle_outbox(
            snapshot.files, snapshot.commit, webhooks, settings.source.mirror, now
        )
        result.events.extend(dropped)
    audit = append(snapshot.audit, result.events)
    if settings.notify:
        changes.update(queue_outbox(entries, result.events, snapshot.audit, audit, webhooks))
    meta = snapshot.meta.model_copy(
        update={
            "last_processed_commit": main,
            "serial": desired.serial,
            "root_sha256": desired.root_sha256,
            "stalled_commit": None,
            "stalled_reason": None,
            **audit_fields(snapshot.audit, audit),
        }
    )
    due = next_due(
        ctx,
        rollouts_now,
        devices_now,
        root_expires_at=desired.root_expires_at,
        root_refresh_before=settings.root_refresh_before,
        now=now,
    )
    mark = mark_of(main, fetched.status, desired_refs(repo), due)
    if changed_files(snapshot.files, changes) or audit or meta != snapshot.meta:
        meta = meta.model_copy(
            update={"updated_at": now, "idle": mark.model_copy(update={"desired_sha256": None})}
        )
        changes[META_FILE] = dump(meta)
        changes.update(audit)
        changes.update(pages_and_receipts(ctx, snapshot, rollouts_now, devices_now, settings, now, main))
    settings.checkpoint("desired-written")
    written = write_state(repo, snapshot, changes, _message(main, result), now)
    settings.checkpoint("state-committed")
    if written is not None or desired.moved:
        moved = {ref: desired.refs[ref] for ref in desired.moved}
        publish(
            repo, settings.source, state_base=snapshot.commit, desired=moved, namespaces=settings.namespaces
        )
        settings.checkpoint("state-pushed")
        result.state_commit = str(written) if written is not None else None
    if webhooks:
        outbox = {**snapshot.files, **changes}
        state = written or snapshot.commit
        result.notified = deliver_outbox(outbox, webhooks, fleet.name, settings.source.mirror, state)
        settings.checkpoint("notified")
    remember(settings.source.mirror, written or snapshot.commit, mark)
    return result


def _trusted_files(
    repo: Repository, last: str | None, head: str, files: dict[str, bytes]
) -> dict[str, bytes]:
    """The tree the commit policy comes from: the last accepted commit's, once there is one.

    Descent is checked first: after a force push a freshly cloned mirror no longer has the last
    processed commit at all, which is a rewritten history, not a setup error.
    """
    if last is None:
        return files
    if not RepositoryCommits(repo).is_descendant(head, last):
        raise HistoryRewritten(MAIN_REF, last, head)
    return read_tree(repo, last)[0]


def _verify_history(
    repo: Repository, trusted: Mapping[str, bytes], last: str | None, head: str
) -> str | None:
    """None when the commits since ``last`` pass the fleet's commit policy, else the stall reason."""
    # Only fleet.yaml and keys/ are needed: loading every device file here doubled a reconcile.
    spec, _ = load_spec({p: d for p, d in trusted.items() if p == FLEET_FILE or p.startswith("keys/")})
    if spec.fleet is None:
        return None  # validation reports it
    policy = spec.fleet.model.trust.commits
    with Keyring.from_armored(spec.keys) as keyring:
        verdict = check_history(RepositoryCommits(repo), last, head, policy, keyring)
    if verdict.ok:
        return None
    return "; ".join(str(d) for d in verdict.diagnostics) or "commit policy not met"


def _ingest(
    repo: Repository,
    snapshot: StateSnapshot,
    ctx: FleetContext,
    fleet: Fleet,
    now: datetime,
    result: ReconcileResult,
) -> dict[str, DeviceFile]:
    devices = {
        d: snapshot.devices.get(d) or DeviceFile(state=DeviceState(device=d)) for d in sorted(ctx.devices)
    }
    owners = {r.id: d for d, f in devices.items() for r in f.records}
    for device, (report, problem) in read_reports(repo, devices).items():
        if problem is not None:
            result.events.append(
                AuditEvent(at=now, kind=AuditKind.DEVICE_REPORT, device=device, reason=str(problem))
            )
        if report is not None:
            updated, events, _ = ingest(
                devices[device], report, now, fleet.defaults.offline_after_seconds, owners=owners
            )
            devices[device] = updated
            result.events.extend(events)
    # A silent robot sends nothing to ingest: its connectivity ages here, or the device file and
    # the status pages would show it online forever.
    for device, data in devices.items():
        link = connectivity(data.state.last_seen, now, fleet.defaults.offline_after_seconds)
        if data.state.last_seen is not None and link is not data.state.connectivity:
            devices[device] = data.model_copy(
                update={"state": data.state.model_copy(update={"connectivity": link})}
            )
    return devices


def _plan(
    ctx: FleetContext,
    snapshot: StateSnapshot,
    devices: dict[str, DeviceFile],
    main: str,
    now: datetime,
    result: ReconcileResult,
) -> dict[str, RolloutState]:
    rollouts: dict[str, RolloutState] = {}
    with Keyring.from_armored(ctx.spec.keys) as keyring:
        for name in sorted(ctx.spec.rollouts):
            output: EngineOutput = advance_rollout(
                ctx, ctx.spec.rollouts[name], snapshot.rollouts.get(name), devices, main, keyring, now
            )
            rollouts[name] = output.state
            for device, records in output.records.items():
                base = devices.get(device) or DeviceFile(state=DeviceState(device=device))
                devices[device] = base.model_copy(update={"records": records})
            result.events.extend(output.events)
    for name, state in snapshot.rollouts.items():
        if name not in rollouts:
            rollouts[name] = removed(state, now)
    return rollouts


def _state_files(
    snapshot: StateSnapshot, rollouts: Mapping[str, RolloutState], devices: Mapping[str, DeviceFile]
) -> dict[str, bytes | None]:
    changes: dict[str, bytes | None] = {}
    for name, state in rollouts.items():
        if snapshot.rollouts.get(name) != state:
            changes[rollout_file(name)] = dump(state)
    for device, data in devices.items():
        if snapshot.devices.get(device) != data:
            changes[device_file(device)] = dump(data)
    return changes


def _message(main: str, result: ReconcileResult) -> str:
    kinds = sorted({e.kind.value for e in result.events})
    summary = ", ".join(kinds) if kinds else "no events"
    return f"fleetcd: reconcile {main[:12]} ({summary})"
