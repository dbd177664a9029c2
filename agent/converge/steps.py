"""What each converge state does (the I/O of one step), within the budget it declares to the
watchdog. :mod:`agent.converge.apply` records the state in the journal first and calls
:func:`run_step`; the list of steps per state is in its docstring. :func:`keep_running` is the idle
path's restart of an active version that is not running (after a reboot).
"""

from __future__ import annotations

import dataclasses
import logging

from agent.configfiles.write import config_path
from agent.converge import budgets
from agent.converge.configs import AppConfigs
from agent.converge.context import Assignment, ConvergeContext, owns
from agent.converge.migrate import commit as commit_migrations
from agent.converge.migrate import migrate
from agent.converge.preflight import run_steps
from agent.converge.requires import enforce_requirements
from agent.converge.rollback import roll_back
from agent.errors import HealthFailed
from agent.executors.base import AppTarget
from agent.gates import enforce_gates
from agent.health.watch import watch
from agent.hooks import HookContext
from agent.state.journal import JournalEntry
from agent.state.migrations import Ledger
from fleetcd.models.release import (
    AppTarball,
    ConfigPayload,
    ContainerImage,
    McuFirmware,
    ModelPayload,
    Release,
)
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)

CONFIG_ENV = "FLEETCD_CONFIG"  # tells the app where its config file is
DOWNLOADED = (AppTarball, ConfigPayload, ModelPayload)  # the artifacts executors fetch as files


def run_step(
    ctx: ConvergeContext, app: str, entry: JournalEntry, assignment: Assignment | None
) -> Exception | None:
    """Run ``entry``'s step within its watchdog budget; a problem to report that changed nothing."""
    mine = assignment if owns(assignment, entry) else None
    release = None if mine is None else mine.release
    with ctx.liveness.step(f"{app} {entry.state.value}", _budget(ctx, app, entry, mine)):
        if entry.state is Activity.ROLLING_BACK:
            return roll_back(
                ctx.paths,
                ctx.executor,
                ctx.hooks,
                _hook_context(ctx, app, entry, None),
                entry,
                release,
                allowlist=ctx.config.exec_allowlist,
                clock=ctx.clock,
                now=ctx.now,
            )
        _converge_step(ctx, app, entry, assignment)
    return None


def _budget(ctx: ConvergeContext, app: str, entry: JournalEntry, assignment: Assignment | None) -> float:
    """Seconds ``entry``'s step may take (:mod:`agent.converge.budgets`)."""
    state, config, live = entry.state, ctx.config, ctx.liveness.settings
    release = None if assignment is None else assignment.release
    if state is Activity.ROLLING_BACK:
        runs = Ledger(ctx.paths.migrations(app)).load().of(entry.deployment_id)
        undo = sum(r.timeout_seconds for r in runs if r.rollback is not None)
        return budgets.rolling_back_seconds(release, config, live, undo_seconds=undo)
    if assignment is None or release is None:
        return live.default_step_seconds
    download = ctx.download_settings
    if state is Activity.DOWNLOADING:
        return budgets.fetch_seconds(release, download, live)
    if state is Activity.VERIFYING:
        return budgets.verifying_seconds(release, assignment.gates, config, download, live)
    if state is Activity.APPLYING:
        return budgets.applying_seconds(release, config, download, live)
    if state is Activity.SWITCHED:
        return budgets.switching_seconds(config, live)
    if state is Activity.WATCHING:
        return budgets.watching_seconds(release, config)
    return live.default_step_seconds


def _converge_step(
    ctx: ConvergeContext, app: str, entry: JournalEntry, assignment: Assignment | None
) -> None:
    executor, hooks, state = ctx.executor, ctx.hooks, entry.state
    if state is Activity.HEALTHY:
        executor.commit(app, entry.version, entry.previous_version)
        AppConfigs(ctx.paths, app).prune({entry.version, entry.previous_version})
        commit_migrations(Ledger(ctx.paths.migrations(app)), entry.deployment_id)
        return
    if assignment is None or assignment.deployment.deployment_id != entry.deployment_id:
        raise AssertionError(f"{app}: no release for {entry.deployment_id} in {state.value}")  # machine bug
    target = app_target(ctx, app, assignment)
    hook_ctx = _hook_context(ctx, app, entry, assignment.release)
    if state is Activity.DOWNLOADING:
        _download(ctx, entry, target)
    elif state is Activity.VERIFYING:
        executor.fetch(target)  # the files on disk are hashed again, nothing is downloaded
        if not entry.stage_only:
            enforce_gates(
                assignment.gates,
                ctx.config.gates,
                allowlist=ctx.config.exec_allowlist,
                first_deferred_at=entry.first_deferred_at,
                now=ctx.now(),
            )
            enforce_requirements(ctx, app, assignment, entry)
    elif state is Activity.APPLYING:
        run_steps(assignment.release.preflight, allowlist=ctx.config.exec_allowlist)
        hooks.run_preflight(hook_ctx)
        if not hooks.install_artifact(hook_ctx):
            executor.install(target)
        if not entry.stage_only:  # a staged install migrates when it is promoted (applying again)
            migrate(
                Ledger(ctx.paths.migrations(app)),
                assignment.release,
                entry.deployment_id,
                allowlist=ctx.config.exec_allowlist,
                now=ctx.now,
            )
    elif state is Activity.SWITCHED:
        AppConfigs(ctx.paths, app).write(
            assignment.release,
            assignment.deployment.config,
            deployment_id=entry.deployment_id,
            outgoing=entry.previous_version,
        )
        if entry.config_only:  # the version runs already: restart it on its new config
            if not hooks.switch_slot(hook_ctx):
                executor.restart(app, entry.version)
        elif not hooks.switch_slot(hook_ctx):
            executor.switch(target, entry.previous_version)
    elif state is Activity.WATCHING:
        health = assignment.release.health
        ctx.progress.begin(entry.deployment_id, Activity.WATCHING, window_seconds=health.watch_seconds)
        try:
            verdict = watch(
                app,
                entry.version,
                health,
                lambda: executor.state(app, entry.version),
                allowlist=ctx.config.exec_allowlist,
                clock=ctx.clock,
                seconds_left=ctx.progress.watching,
            )
        finally:
            ctx.progress.end()
        verdict.raise_if_unhealthy()
        if hooks.report_health(hook_ctx) is False:
            raise HealthFailed("hook", "the report_health hook says the new version is unhealthy")
    else:
        raise AssertionError(f"{app}: no step for {state.value}")


def _download(ctx: ConvergeContext, entry: JournalEntry, target: AppTarget) -> None:
    """``executor.fetch`` with its bytes told to the progress reporter: the files an executor
    downloads (a container image is pulled by the engine, which counts nothing for us)."""
    total = sum(a.size for a in target.release.artifacts if isinstance(a, DOWNLOADED))
    if not total:
        ctx.executor.fetch(target)
        return
    ctx.progress.begin(entry.deployment_id, Activity.DOWNLOADING, total_bytes=total)
    try:
        ctx.executor.fetch(dataclasses.replace(target, progress=ctx.progress.downloaded))
    finally:
        ctx.progress.end()


def app_target(ctx: ConvergeContext, app: str, assignment: Assignment) -> AppTarget:
    """The executor's view of ``assignment``: its release, merged config and the app's environment."""
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
        targets=artifact_targets(release),
    )


def artifact_targets(release: Release | None) -> dict[str, str]:
    """Each ``mcu_firmware`` artifact's ``target``: the adapter's install hook is told which MCU."""
    if release is None:
        return {}
    return {a.name: a.target for a in release.artifacts if isinstance(a, McuFirmware)}


def keep_running(ctx: ConvergeContext, app: str) -> None:
    """Restart the active version after a reboot (executors that can: the tarball supervisor)."""
    if app in ctx.drifted:
        return  # what runs was changed by hand and left so (drift: report): start nothing over it
    ensure = getattr(ctx.executor, "ensure_running", None)
    if callable(ensure):
        try:
            if ensure(app):
                log.warning("%s: the active version was not running; started it again", app)
        except Exception as exc:  # keeping the loop alive matters more than this restart
            log.warning("%s: could not restart the active version: %s", app, exc)
