"""Converge one app, agent steps 3–5 (download → pre-flight → install → switch → watch → commit or
roll back): the orchestrator around the pure :mod:`agent.converge.machine`.

Every state is recorded in the app's journal (``journal/<app>.json``) *before* its step runs, with
a checkpoint before and after each write (``before-<state>``/``after-<state>``; tests SIGKILL the
agent there). The steps, per recorded state:

* downloading — ``executor.fetch`` (resumable, size-capped, digest-checked);
* verifying — ``executor.fetch`` again, which re-hashes what is on disk, then the release's and
  rollout's robot-state gates (not for a stage-only install); a closed gate defers the deployment
  (reported ``queued``/``retrying``) until ``gates.max_deferral_seconds``;
* applying — the release's pre-flight steps, the ``run_preflight`` hook, the config file, then
  ``install_artifact`` hook or ``executor.install``;
* switched — ``switch_slot`` hook or ``executor.switch``; watching — :func:`agent.health.watch.watch`
  then the ``report_health`` hook; healthy — ``executor.commit``;
* rolling_back — ``rollback`` hook or ``executor.rollback`` (local files only, never the network).

A TransportError leaves the state as it is (retried next cycle); an ApplyError, or anything
unexpected, goes where :func:`agent.converge.machine.fail` says.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from agent.configfiles.write import config_path
from agent.converge.configs import write_app_config
from agent.converge.machine import (
    Action,
    ActionKind,
    DesiredApp,
    Failure,
    advance,
    fail,
    next_action,
    reported,
)
from agent.converge.preflight import run_steps
from agent.errors import GateClosed, HealthFailed
from agent.executors.base import AppTarget, Executor, RunState
from agent.gates import enforce_gates
from agent.health.clock import Clock
from agent.health.watch import watch
from agent.hooks import HookContext, Hooks
from agent.paths import AgentPaths
from agent.report.build import clip
from agent.state.journal import Journal, JournalEntry, JournalState
from fleetcd.desired import BundleDeployment, VerifiedBundle
from fleetcd.errors import ApplyError, InvalidContent, SetupError, TransportError
from fleetcd.loading.documents import load_document
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import ContainerImage, Release
from fleetcd.models.rollout import Rollout
from fleetcd.reports import ReportEvent

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # e.g. roll back a superseded version, then start its successor, in one cycle
CONFIG_ENV = "FLEETCD_CONFIG"  # tells the app where its config file is


@dataclass(frozen=True)
class Assignment:
    """One app's deployment from the verified bundle, with its parsed release and gate names."""

    deployment: BundleDeployment
    release: Release
    gates: tuple[str, ...]  # the release's gates, then the rollout's

    @property
    def desired(self) -> DesiredApp:
        d = self.deployment
        return DesiredApp(d.deployment_id, d.version, d.action, d.not_before)


def assignments(verified: VerifiedBundle) -> dict[str, Assignment]:
    """{app: Assignment} of a verified bundle (its rollouts were verified with it)."""
    out: dict[str, Assignment] = {}
    for d in verified.bundle.deployments:
        release = verified.releases[d.deployment_id]
        try:
            rollout = load_document(d.rollout_path, base64.b64decode(d.rollout_b64), Rollout).model
        except InvalidContent as exc:  # verify_bundle parsed it already; keep the error honest anyway
            raise SetupError(f"{d.rollout_path}: verified rollout no longer parses: {exc}") from exc
        gates = tuple(dict.fromkeys([*release.gates, *rollout.gates]))
        out[d.app] = Assignment(d, release, gates)
    return out


@dataclass
class ConvergeContext:
    """What converging needs besides the app: the robot's settings and the outside world."""

    config: AgentConfig
    paths: AgentPaths
    executor: Executor
    hooks: Hooks
    clock: Clock  # the watch window's waits
    now: Callable[[], datetime]  # wall clock for journal times and reports
    checkpoint: Callable[[str], None] = field(default=lambda _name: None)


@dataclass(frozen=True)
class AppOutcome:
    """What one cycle did for one app."""

    app: str
    action: ActionKind  # the first decision of the cycle
    reason: str
    entry: JournalEntry | None  # the journal entry as the cycle left it
    events: tuple[ReportEvent, ...] = ()
    error: Exception | None = None  # why the app waits: TransportError, SetupError, GateClosed, a commit

    @property
    def deferred(self) -> bool:
        return isinstance(self.error, GateClosed)

    @property
    def transient(self) -> bool:
        return isinstance(self.error, TransportError)


def converge_app(ctx: ConvergeContext, app: str, assignment: Assignment | None, *, known: bool) -> AppOutcome:
    """Take ``app`` as far as it can go this cycle; see the module docstring."""
    journal = Journal(ctx.paths.journal(app))
    entry = journal.load()
    desired = None if assignment is None else assignment.desired
    events: list[ReportEvent] = []
    first: Action | None = None
    error: Exception | None = None
    for _ in range(MAX_ROUNDS):
        active = ctx.executor.active(app)
        running = active is not None and ctx.executor.state(app, active) is RunState.RUNNING
        action = next_action(
            entry,
            desired,
            active,
            ctx.now(),
            max_trials=ctx.config.max_trials,
            active_running=running,
            known=known,
        )
        first = first or action
        if action.entry is None:
            break
        log.info("%s: %s (%s)", app, action.kind.value, action.reason)
        entry, error = _drive(ctx, journal, app, action.entry, assignment, events)
        if error is not None:
            break
    assert first is not None
    if first.kind is ActionKind.NONE and entry is not None and entry.settled:
        _keep_running(ctx, app)
    return AppOutcome(app, first.kind, first.reason, entry, tuple(events), error)


def _drive(
    ctx: ConvergeContext,
    journal: Journal,
    app: str,
    entry: JournalEntry,
    assignment: Assignment | None,
    events: list[ReportEvent],
) -> tuple[JournalEntry, Exception | None]:
    """Record ``entry`` and run steps until it settles or must wait; (last entry, why it waits)."""
    _record(ctx, journal, entry, events)
    auto = assignment is None or assignment.release.rollback.automatic
    while not entry.settled or (entry.state is JournalState.HEALTHY and not entry.committed):
        try:
            _step(ctx, app, entry, assignment)
        except GateClosed as closed:
            deferred = fail(entry, Failure.DEFERRED, str(closed), ctx.now())
            _record(ctx, journal, deferred, events)
            return deferred, closed
        except (TransportError, SetupError) as exc:
            log.warning("%s: %s: %s (retried next cycle)", app, entry.state.value, exc)
            moved = fail(entry, Failure.TRANSIENT, f"{type(exc).__name__}: {exc}", ctx.now())
            _record(ctx, journal, moved, events)
            return moved, exc
        except Exception as exc:  # ApplyError, HealthFailed, HookFailed, GateTimedOut, or a bug
            log.warning(
                "%s: %s failed: %s", app, entry.state.value, exc, exc_info=not isinstance(exc, ApplyError)
            )
            moved = fail(entry, Failure.PERMANENT, str(exc), ctx.now(), auto_rollback=auto)
            _record(ctx, journal, moved, events)
            if moved.state is entry.state:
                return moved, exc  # commit failed: healthy stays healthy, commit retried next cycle
            entry = moved
            continue
        entry = advance(entry, ctx.now())
        _record(ctx, journal, entry, events)
    return entry, None


def _record(ctx: ConvergeContext, journal: Journal, entry: JournalEntry, events: list[ReportEvent]) -> None:
    state = entry.state.value
    ctx.checkpoint(f"before-{state}")
    journal.record(entry)
    ctx.checkpoint(f"after-{state}")
    activity, error = reported(entry)
    if not events or (events[-1].activity, events[-1].error) != (activity, error):
        message = clip(entry.reason or f"{entry.action} {entry.version}: {state}")
        events.append(ReportEvent(at=entry.updated_at, activity=activity, error=error, message=message))


def _step(ctx: ConvergeContext, app: str, entry: JournalEntry, assignment: Assignment | None) -> None:
    executor, hooks, state = ctx.executor, ctx.hooks, entry.state
    if state is JournalState.HEALTHY:
        executor.commit(app, entry.version, entry.previous_version)
        return
    if state is JournalState.ROLLING_BACK:
        if not hooks.rollback(_hook_context(ctx, app, entry, None)):
            executor.rollback(app, entry.version, entry.previous_version)
        return
    if assignment is None or assignment.deployment.deployment_id != entry.deployment_id:
        raise AssertionError(f"{app}: no release for {entry.deployment_id} in {state.value}")  # machine bug
    target = _target(ctx, app, assignment)
    hook_ctx = _hook_context(ctx, app, entry, assignment.release)
    if state in (JournalState.DOWNLOADING, JournalState.VERIFYING):
        executor.fetch(target)  # verifying: the files on disk are hashed again, nothing is downloaded
        if state is JournalState.VERIFYING and not entry.stage_only:
            enforce_gates(
                assignment.gates,
                ctx.config.gates,
                allowlist=ctx.config.exec_allowlist,
                first_deferred_at=entry.first_deferred_at,
                now=ctx.now(),
            )
    elif state is JournalState.APPLYING:
        run_steps(assignment.release.preflight, allowlist=ctx.config.exec_allowlist)
        hooks.run_preflight(hook_ctx)
        d = assignment.deployment
        write_app_config(ctx.paths.config_hashes, app, ctx.paths.apps_dir / app, assignment.release, d.config)
        if not hooks.install_artifact(hook_ctx):
            executor.install(target)
    elif state is JournalState.SWITCHED:
        if not hooks.switch_slot(hook_ctx):
            executor.switch(target, entry.previous_version)
    elif state is JournalState.WATCHING:
        verdict = watch(
            app,
            entry.version,
            assignment.release.health,
            lambda: executor.state(app, entry.version),
            allowlist=ctx.config.exec_allowlist,
            clock=ctx.clock,
        )
        verdict.raise_if_unhealthy()
        if hooks.report_health(hook_ctx) is False:
            raise HealthFailed("hook", "the report_health hook says the new version is unhealthy")
    else:
        raise AssertionError(f"{app}: no step for {state.value}")


def _target(ctx: ConvergeContext, app: str, assignment: Assignment) -> AppTarget:
    d = assignment.deployment
    env: dict[str, str] = {}
    schema = assignment.release.config
    if schema is not None and d.config is not None:
        env[CONFIG_ENV] = str(config_path(ctx.paths.apps_dir / app, schema))
    return AppTarget(d.deployment_id, app, d.version, assignment.release, d.config, env)


def _hook_context(
    ctx: ConvergeContext, app: str, entry: JournalEntry, release: Release | None
) -> HookContext:
    files = ctx.paths.downloads_dir / app / entry.version  # where executors keep verified downloads
    payloads = (
        [] if release is None else [a.name for a in release.artifacts if not isinstance(a, ContainerImage)]
    )
    return HookContext(
        device=ctx.config.device,
        app=app,
        version=entry.version,
        previous=entry.previous_version,
        deployment_id=entry.deployment_id,
        phase=entry.state.value,
        artifacts={name: files / name for name in payloads if (files / name).is_file()},
        app_dir=ctx.paths.apps_dir / app,
    )


def _keep_running(ctx: ConvergeContext, app: str) -> None:
    """Restart the active version after a reboot (executors that can: the tarball supervisor)."""
    ensure = getattr(ctx.executor, "ensure_running", None)
    if callable(ensure):
        try:
            if ensure(app):
                log.warning("%s: the active version was not running; started it again", app)
        except Exception as exc:  # keeping the loop alive matters more than this restart
            log.warning("%s: could not restart the active version: %s", app, exc)
