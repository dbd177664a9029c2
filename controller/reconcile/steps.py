"""One reconcile as a fixed list of steps, each ``(ctx) -> StepResult``, then one write whatever happened.

The list, in order (:data:`STEPS`)::

    fetch           main, the state branch, robots' status and desired-state refs; read main's tree
                    and the state branch
    verify_history  the audit log's hash chain; main descends from the last processed commit; the
                    commits since then pass the fleet's commit policy
    load            strict-load and validate main's tree: schema, references, signatures, approvals
    ingest          robots' status reports into their device files; connectivity ages
    plan            every rollout's waves and gates advanced at ``now`` (the pure engine)
    deliver         per-robot desired state for the robots that move, under one signed root (not
                    yet pushed); their device files record the new commits
    -- finally --
    write           the outcome recorded on the state branch: applied, stalled with a reason, or
                    failed with a reason; audit, pages, one commit, one push, webhooks

A step returns :data:`~controller.reconcile.result.CONTINUE`, a
:class:`~controller.reconcile.result.Stall` or raises. The errors say what happens
(:func:`controller.errors.loop_action`): invalid content (``InvalidContent``: a history rewrite, a
broken audit chain, an illegal record transition, a bundle naming the wrong rollout) stalls like a
returned ``Stall``; a transport or setup error records nothing and propagates (the loop retries it
with backoff); any other error is a bug: recorded as a failure, then raised. :func:`write`
(:mod:`controller.reconcile.write`) runs from a ``finally``, so status is written once per
reconcile whatever failed, and nothing partial is applied.

Every output is derived deterministically from git (main, the state branch, status refs) and
``now``, so a controller killed at any instant and run again writes identical objects and no
duplicate records or audit lines. One push publishes desired state and the state branch together
(:func:`controller.reconcile.source.publish`); a lost race is retried from a fresh fetch.

Before all of that, :func:`controller.reconcile.idle.idle_main` lists the server's refs: when
nothing is new and nothing is due since the last reconcile, it returns at once (``idle``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from controller.audit.chain import verify
from controller.audit.events import AuditEvent, AuditKind
from controller.errors import HistoryRewritten, LoopAction, StateConflict, loop_action
from controller.ingest.reports import ingest as ingest_report
from controller.ingest.reports import read_moved_reports
from controller.policy.commits import MAIN_REF, check_history
from controller.reconcile.context import ReconcileContext
from controller.reconcile.delivery_step import deliver as deliver_desired
from controller.reconcile.fleetmap import starting_devices
from controller.reconcile.idle import audit_anchor, idle_main
from controller.reconcile.owners import Owners
from controller.reconcile.result import CONTINUE, Continue, Fail, ReconcileResult, Stall, StepResult
from controller.reconcile.rollouts import FleetContext, advance_rollout, removed
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.shards import ShardView, fetch_shards, locate
from controller.reconcile.source import fetch_all, housekeep_repository, open_mirror
from controller.reconcile.stall import REASON_CHARS
from controller.reconcile.statebranch import load_state
from controller.reconcile.write import write
from controller.records.model import Connectivity, DeviceState
from controller.state.model import DeviceFile, RolloutState
from fleetcd.errors import Diagnostic, InvalidContent, PushRejected
from fleetcd.git.repo import Repository
from fleetcd.git.signatures import RepositoryCommits
from fleetcd.git.trees import commit_tree_id, read_tree, read_tree_since
from fleetcd.layout import FLEET_FILE, FileKind, classify, trust_root_path
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.models import Fleet, TrustRoot
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from fleetcd.validation import ValidationResult, validate_snapshot
from fleetcd.validation.incremental import Reuse, recheck_content
from fleetcd.validation.pipeline import judge

__all__ = ["STEPS", "ReconcileResult", "Step", "reconcile_once"]

Step = Callable[[ReconcileContext], StepResult]
log = logging.getLogger("fleetcd.controller")


def fetch(ctx: ReconcileContext) -> StepResult:
    """Main, the state branch and robots' refs from the server; main's tree and the state branch read."""
    shards, cache = ctx.settings.status_shards, ctx.settings.cache
    memo = cache.refs if cache is not None else None
    ctx.fetched = fetch_all(ctx.repo, ctx.settings.source, status=not shards, memo=memo)
    if shards:
        ctx.shards = fetch_shards(ctx.repo, shards)
        ctx.fetched = replace(ctx.fetched, status=locate(ctx.shards).marked)
    ctx.result = ReconcileResult(main=ctx.main)
    ctx.snapshot = load_state(ctx.repo, cache=cache.state if cache is not None else None)
    if cache is None:
        ctx.files, ctx.problems = read_tree(ctx.repo, ctx.main)
        return CONTINUE
    tree = commit_tree_id(ctx.repo, ctx.main)
    if not cache.main.holds(tree):
        # From the last read, reading only the entries that differ: a commit changing one file of
        # 10,000 reads one blob.
        main, since = cache.main, None
        if main.tree is not None:
            since = read_tree_since(ctx.repo, ctx.main, main.tree, main.files, main.problems)
        main.remember(tree, *(since or read_tree(ctx.repo, ctx.main)))
        cache.main.keep_policy(tree, _policy_files(cache.main.files))
    ctx.files, ctx.problems = cache.main.files, cache.main.problems
    return CONTINUE


def verify_history(ctx: ReconcileContext) -> StepResult:
    """The audit chain up to ``state.json``'s anchor, then main's commits since the last accepted one."""
    snapshot, cache = ctx.state, ctx.settings.cache
    verify(
        snapshot.audit, anchor=audit_anchor(snapshot.meta), memo=cache.audit if cache is not None else None
    )
    ctx.audit_verified = True
    last, head = snapshot.meta.last_processed_commit, ctx.main
    # The commit policy and its keys come from the last accepted commit, so an unsigned head can
    # neither switch the policy off nor trust its own key.
    refused = _check_commits(ctx.repo, _trusted_files(ctx, last, head), last, head)
    return CONTINUE if refused is None else Stall(refused)


def load(ctx: ReconcileContext) -> StepResult:
    """Every file of main strict-loaded and validated; nothing downstream sees unverified data."""
    validation = _validated(ctx)
    if not validation.ok or validation.spec.fleet is None or validation.trust is None:
        first = validation.errors[0] if validation.errors else Diagnostic("fleet.yaml", None, None, "missing")
        return Stall(f"{len(validation.errors)} invalid: {first}")
    trust = validation.trust.model
    held = ctx.state.meta.trust_version
    if trust.version < held:
        path = trust_root_path(trust.version)
        return Stall(
            f"{path}: version: trust root version {trust.version} is older than version {held} this "
            "controller already applied (newer versions were removed: a rollback to revoked keys)"
        )
    if trust.expires <= ctx.now:
        # TUF's freeze rule: an expired trust list drives nothing new. Robots keep what they run
        # (their bundles expire on their own clock) until a newer version is signed.
        path = trust_root_path(trust.version)
        return Stall(
            f"{path}: expires: trust root version {trust.version} expired at {trust.expires.isoformat()}"
        )
    ctx.fleet_ctx = _fleet_context(ctx, validation.spec, validation.spec.fleet.model, trust)
    if ctx.state.meta.last_processed_commit != ctx.main:
        ctx.result.events.extend(_ignored_withdrawals(validation.warnings, ctx.main, ctx.now))
    return CONTINUE


def _validated(ctx: ReconcileContext) -> ValidationResult:
    """Main validated, or the validation of the same tree a previous reconcile kept while no key
    in it expired since (:class:`~controller.reconcile.cache.MainCache`). A new validation reuses
    the previous one's content checks where the files they read did not change."""
    main = ctx.settings.cache.main if ctx.settings.cache is not None else None
    if main is None or main.files is not ctx.files:
        return validate_snapshot(ctx.files, problems=ctx.problems)
    kept = main.validated(ctx.now)
    if kept is not None:
        return kept
    main.validations += 1
    # What the bytes alone decide is reused as far as the files it came from are unchanged
    # (fleetcd.validation.incremental); gpg's and the clock's part is judged afresh every time.
    main.content, reuse = recheck_content(main.content, ctx.files, problems=ctx.problems, memo=main.documents)
    main.reuses[reuse] = main.reuses.get(reuse, 0) + 1
    validation = judge(main.content)
    if validation.ok:  # an invalid tree is not kept (its keys may not even import): it stalls anyway
        same = reuse is Reuse.SAME
        return main.keep(validation, ctx.now, _keys_expire(ctx.files), same_content=same)
    return validation


def _keys_expire(files: Mapping[str, bytes]) -> datetime | None:
    """When the first key or subkey of main's keys/ expires: gpg's verdicts hold until then."""
    with Keyring.from_armored({p: d for p, d in files.items() if p.startswith("keys/")}) as keyring:
        return keyring.earliest_expiry()


def _fleet_context(ctx: ReconcileContext, spec: FleetSpec, fleet: Fleet, trust: TrustRoot) -> FleetContext:
    cache = ctx.settings.cache
    if cache is None:
        return FleetContext.of(spec, fleet, trust)
    main = cache.main
    if main.fleet is not None:
        return main.fleet
    if main.validation is None or main.validation.spec is not spec or main.tree is None:
        return FleetContext.of(spec, fleet, trust)
    # The rollouts' plans come from main's tree alone: kept across validations of the same tree.
    main.fleet = FleetContext.of(spec, fleet, trust, plans=cache.robots.plans_for(main.tree))
    return main.fleet


def _ignored_withdrawals(warnings: Iterable[Diagnostic], main: str, now: datetime) -> Iterator[AuditEvent]:
    """One line per withdrawal main carries without its approvals: validation left it out of the
    spec, so it withdraws nothing; the line says why, once per new main commit."""
    for warning in warnings:
        where = classify(warning.file)
        if where is None or where.kind is not FileKind.WITHDRAWAL:
            continue
        if warning.reason not in (Reason.APPROVAL_MISSING, Reason.APPROVAL_STALE):
            continue
        data: dict[str, JsonValue] = {"path": warning.file, "message": warning.message[:REASON_CHARS]}
        yield AuditEvent(
            at=now, kind=AuditKind.WITHDRAWAL_IGNORED, commit=main, reason=warning.reason.value, data=data
        )


def ingest(ctx: ReconcileContext) -> StepResult:
    """Robots' status reports into their device files; a silent robot's connectivity ages.

    Only status refs that moved since their robot's device file was written are read
    (``last_report_oid``): ingesting K reports reads K, whatever the fleet's size. ``controller
    run`` starts from the last reconcile's map and ages only the robots whose connectivity flips
    (:mod:`controller.reconcile.fleetmap`)."""
    fleet, snapshot, now, events = ctx.fleet, ctx.state, ctx.now, ctx.result.events
    offline_after = fleet.fleet.defaults.offline_after_seconds
    memo = ctx.settings.cache.robots.devices if ctx.settings.cache is not None else None
    devices = starting_devices(fleet.devices, snapshot.devices, memo, snapshot.lineage)
    if ctx.shards is not None:
        shard_events = list(_shard_events(ctx.shards, devices, now))
        events.extend(shard_events)
        # A report in another robot's shard is refused (wrong_shard): counted like the others.
        ctx.rejections.extend(
            (e, str(e.reason)) for e in shard_events if e.kind is AuditKind.DEVICE_REPORT and e.reason
        )
    # The status refs the fetch found (with shards, each robot's from its own shard): listing the
    # mirror's refs again here cost 0.5 s at 100,000 robots.
    moved = read_moved_reports(ctx.repo, _LastRead(devices), present=ctx.status_refs)
    # Whose each deployment id is, for a report claiming another robot's: read only when a claim
    # names an id not the robot's own; ``controller run`` patches the last reconcile's map.
    kept = ctx.settings.cache.robots.owners if ctx.settings.cache is not None else None
    owners = Owners(dict(devices), kept) if moved else {}
    for device, read in moved.items():
        if read.problem is not None:
            why = str(read.problem)
            refused = AuditEvent(at=now, kind=AuditKind.DEVICE_REPORT, device=device, reason=why)
            events.append(refused)
            ctx.rejections.append((refused, read.problem.reason.value))
        data = devices[device].model_copy(update={"last_report_oid": read.target})
        if read.report is not None:
            before = data.last_report_seq
            data, found, _ = ingest_report(data, read.report, now, offline_after, owners=owners)
            events.extend(found)
            ctx.reports_ingested += data.last_report_seq != before
            # Claims the report made about deployments not its own: the events carry the reason.
            ctx.rejections.extend((e, e.reason) for e in found if e.reason is not None)
        devices[device] = data
    # A silent robot sends nothing to ingest: its connectivity ages here, or the device file and
    # the status pages would show it online forever. Online while ``now - last_seen`` is at most
    # ``offline_after`` (records.model.connectivity), compared as datetimes: no call per robot.
    # With the memo, only the robots that just reported and those its index says flip are looked at.
    since = now - timedelta(seconds=offline_after)
    ageing = devices if memo is None else [*memo.ageing.flipping(since), *moved]
    for device in ageing:
        data = devices[device]
        seen, was = data.state.last_seen, data.state.connectivity
        if seen is None:
            continue
        link = Connectivity.ONLINE if seen >= since else Connectivity.OFFLINE
        if link is not was:
            devices[device] = data.model_copy(
                update={"state": data.state.model_copy(update={"connectivity": link})}
            )
    ctx.devices = devices
    return CONTINUE


class _LastRead(Mapping[str, str | None]):
    """Each robot's ``last_report_oid``, looked up in its device file when asked: the ingest asks
    for the robots whose status ref is present, not for the whole fleet."""

    def __init__(self, devices: Mapping[str, DeviceFile]) -> None:
        self._devices = devices

    def __getitem__(self, device: str) -> str | None:
        return self._devices[device].last_report_oid

    def __contains__(self, device: object) -> bool:
        return device in self._devices

    def __iter__(self) -> Iterator[str]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)


def _shard_events(view: ShardView, devices: Iterable[str], now: datetime) -> Iterator[AuditEvent]:
    """One line per status shard that did not answer, and per report found in the wrong shard."""
    for name, error in sorted(view.unreachable.items()):
        data: dict[str, JsonValue] = {"shard": name, "error": error[:REASON_CHARS]}
        yield AuditEvent(at=now, kind=AuditKind.STATUS_SHARD_UNREACHABLE, reason="transport", data=data)
    for wrong in locate(view, devices).misplaced:
        data = {"ref": wrong.ref, "shard": wrong.found_in, "expected_shard": wrong.owner}
        yield AuditEvent(
            at=now, kind=AuditKind.DEVICE_REPORT, device=wrong.device, reason=Reason.WRONG_SHARD, data=data
        )


def plan(ctx: ReconcileContext) -> StepResult:
    """Each rollout advanced by the engine, in name order; each sees the records earlier ones wrote."""
    fleet, snapshot, devices = ctx.fleet, ctx.state, ctx.devices
    rollouts: dict[str, RolloutState] = {}
    kept = ctx.settings.cache.robots.ledgers if ctx.settings.cache is not None else None
    if kept is not None:
        kept.start(devices, fleet.spec.rollouts)
    with Keyring.from_armored(fleet.spec.keys) as keyring:
        for name in sorted(fleet.spec.rollouts):
            memo, changed = kept.take(name) if kept is not None else (None, None)
            output, ctx.planned[name] = advance_rollout(
                fleet,
                fleet.spec.rollouts[name],
                snapshot.rollouts.get(name),
                devices,
                ctx.main,
                keyring,
                ctx.now,
                memo=memo,
                changed=changed,
            )
            rollouts[name] = output.state
            for device, records in output.records.items():
                base = devices.get(device) or DeviceFile(state=DeviceState(device=device))
                devices[device] = base.model_copy(update={"records": records})
            if kept is not None:
                kept.wrote(output.records)
            ctx.result.events.extend(output.events)
    if kept is not None:
        kept.finish()
    for name, state in snapshot.rollouts.items():
        if name not in rollouts:
            rollouts[name] = removed(state, ctx.now)
    ctx.rollouts = rollouts
    return CONTINUE


def deliver(ctx: ReconcileContext) -> StepResult:
    """Per-robot desired state into the mirror for the robots whose ref moves, under one signed root."""
    desired = deliver_desired(
        ctx.repo,
        ctx.fleet,
        ctx.state.meta,
        ctx.devices,
        ctx.rollouts,
        ctx.settings,
        ctx.now,
        listed=ctx.need(ctx.fetched, "fetched").desired,
    )
    ctx.desired = desired
    for device, written in desired.published.items():  # recorded with the push that publishes it
        ctx.devices[device] = ctx.devices[device].model_copy(update={"desired": written})
    ctx.result.desired_refs, ctx.result.signatures = len(desired.moved), desired.signatures
    ctx.result.bundles_built = desired.built
    ctx.result.events.extend(
        AuditEvent(at=ctx.now, kind=AuditKind.DESIRED_ROOT_IGNORED, reason=why)
        for why in desired.ignored_roots
    )
    return CONTINUE


STEPS: tuple[Step, ...] = (fetch, verify_history, load, ingest, plan, deliver)


def reconcile_once(settings: ControllerSettings) -> ReconcileResult:
    """The idle check, then :data:`STEPS` and :func:`write`; a lost push race is retried from a fresh fetch.

    Returns the result when applied or stalled (``result.stalled``); raises transport and setup
    errors (nothing recorded) and bugs (recorded as a failure first).
    """
    with open_mirror(settings.source) as repo:  # the cache's lock, released however this ends
        quiet = None
        if settings.idle_fast_path:
            quiet = idle_main(
                repo,
                settings.source,
                settings.now(),
                outbox=settings.notify,
                shards=settings.status_shards,
                memo=settings.cache.refs if settings.cache is not None else None,
                digests=settings.cache.digests if settings.cache is not None else None,
            )
        if quiet is not None:
            return _housekept(
                repo, settings, ReconcileResult(main=quiet.main, stalled=quiet.stalled, idle=True)
            )
        lost = ""
        for retries in range(settings.push_attempts):
            try:
                result = _reconcile(repo, settings)
            except PushRejected as exc:
                lost = str(exc)  # the text only: the exception would keep the mirror handle alive
                continue
            result.push_retries = retries
            return _housekept(repo, settings, result)
    raise StateConflict("refs/heads/fleetcd/state", None, lost)


def _housekept(repo: Repository, settings: ControllerSettings, result: ReconcileResult) -> ReconcileResult:
    """``result``, after the mirror was repacked if it was due (still under the mirror's lock, so no
    other reconcile writes meanwhile): two directory listings when it is not, which is almost always
    (:mod:`fleetcd.git.housekeeping`)."""
    repack = housekeep_repository(Path(repo.path), "mirror", settings.source.housekeeping)
    if repack is not None:
        result.repacks.append(repack)
    return result


def _reconcile(repo: Repository, settings: ControllerSettings) -> ReconcileResult:
    ctx = ReconcileContext(repo, settings, settings.now())
    outcome: StepResult | None = None  # None: nothing decided (transport, setup), nothing recorded
    try:
        outcome = run_steps(ctx, STEPS)
    except Exception as exc:
        if loop_action(exc) is LoopAction.BUG:
            outcome = Fail(ctx.step, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if outcome is not None:
            _write(ctx, outcome)
    return ctx.result


def run_steps(ctx: ReconcileContext, steps: tuple[Step, ...]) -> StepResult:
    """Run ``steps`` in order until one does not continue; invalid content raised becomes a stall."""
    for step in steps:
        ctx.step = step.__name__
        try:
            outcome = step(ctx)
        except InvalidContent as exc:
            return stall_of(exc)
        if not isinstance(outcome, Continue):
            return outcome
    ctx.step = "write"
    return CONTINUE


def _write(ctx: ReconcileContext, outcome: StepResult) -> None:
    """:func:`write` for ``outcome``. Invalid content met while composing the applied status stalls
    instead; a bug there is recorded as a failure, then raised. Recording a failure is best effort:
    the bug being raised is what the loop must see, not a second error about recording it."""
    if isinstance(outcome, Fail):
        try:
            write(ctx, outcome)
        except Exception:
            log.warning("could not record the failure in step %s", outcome.step, exc_info=True)
        return
    try:
        write(ctx, outcome)
    except InvalidContent as exc:
        if not isinstance(outcome, Continue):
            raise
        write(ctx, stall_of(exc))
    except Exception as exc:
        if loop_action(exc) is not LoopAction.BUG:
            raise
        _write(ctx, Fail("write", f"{type(exc).__name__}: {exc}"))
        raise


def stall_of(exc: InvalidContent) -> Stall:
    kind = AuditKind.HISTORY_REWRITTEN if isinstance(exc, HistoryRewritten) else AuditKind.STALLED
    return Stall(str(exc), kind)


def _trusted_files(ctx: ReconcileContext, last: str | None, head: str) -> dict[str, bytes]:
    """fleet.yaml and keys/ of the tree the commit policy comes from: the last accepted commit's,
    once there is one.

    Descent is checked first: after a force push a freshly cloned mirror no longer has the last
    processed commit at all, which is a rewritten history, not a setup error. ``controller run``
    keeps these files of the last few trees it read (:meth:`MainCache.policy_of`), so a new commit
    does not read the whole previous tree again (at 10,000 robots, 10,000 blobs).
    """
    main = ctx.settings.cache.main if ctx.settings.cache is not None else None
    if last is None or last == head:  # main did not move: its tree was read already, and kept
        kept = main.policy_of(commit_tree_id(ctx.repo, head)) if main is not None else None
        return kept if kept is not None else _policy_files(ctx.files)  # one test a robot's file
    if not RepositoryCommits(ctx.repo).is_descendant(head, last):
        raise HistoryRewritten(MAIN_REF, last, head)
    if main is None:
        return _policy_files(read_tree(ctx.repo, last)[0])
    tree = commit_tree_id(ctx.repo, last)
    kept = main.policy_of(tree)
    if kept is None:
        main.policy_reads += 1
        kept = _policy_files(read_tree(ctx.repo, last)[0])
        main.keep_policy(tree, kept)
    return kept


def _policy_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """What the commit policy is read from: fleet.yaml and keys/ (loading every device file here
    doubled a reconcile)."""
    return {p: d for p, d in files.items() if p == FLEET_FILE or p.startswith("keys/")}


def _check_commits(repo: Repository, trusted: Mapping[str, bytes], last: str | None, head: str) -> str | None:
    """None when the commits since ``last`` pass the fleet's commit policy, else the stall reason."""
    spec, _ = load_spec(_policy_files(trusted))
    if spec.fleet is None:
        return None  # validation reports it
    policy = spec.fleet.model.trust.commits
    with Keyring.from_armored(spec.keys) as keyring:
        verdict = check_history(RepositoryCommits(repo), last, head, policy, keyring)
    if verdict.ok:
        return None
    return "; ".join(str(d) for d in verdict.diagnostics) or "commit policy not met"
