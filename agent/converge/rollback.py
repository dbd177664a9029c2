"""Converge state *rolling_back*: the release's rollback policy applied — the I/O around
:mod:`agent.converge.fallback`.

:func:`fallback_for` tells the pure machine what it may choose from: the release's
``rollback.automatic`` and ``rollback.target``, and whether that target is installed here (its
code, by the executor, and its config, by the snapshots of :mod:`agent.converge.configs`).
:func:`roll_back` runs the step, from local files only (never the network):

0. the migrations this deployment ran are undone, newest first (:func:`agent.converge.migrate.undo`);
1. the config files go back first (:meth:`~agent.converge.configs.AppConfigs.rollback`), so the
   old version starts with its own config, never the new one;
2. the ``rollback`` hook, or else ``executor.rollback`` to :func:`~agent.converge.fallback.rollback_version`;
   if that raises while the failed version still runs, its config is put back too — exactly the
   old version or the new one runs, never a mix;
3. the release's ``rollback.checks`` probes; a failure is returned (reported as the cycle's
   ``last_error`` and in the deployment's message) and the robot stays where it rolled back to.

Every part is idempotent: a rollback redone after a kill -9 ends the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

from agent.converge.configs import AppConfigs
from agent.converge.fallback import PREVIOUS, Fallback, rollback_version
from agent.converge.migrate import undo
from agent.errors import HealthFailed
from agent.executors.base import Executor, RunState
from agent.health.clock import Clock
from agent.health.probes import run_probe
from agent.hooks import HookContext, Hooks
from agent.paths import AgentPaths
from agent.state.journal import JournalEntry
from agent.state.migrations import Ledger
from fleetcd.models.release import Probe, Release
from fleetcd.reasons import Reason


def fallback_for(
    paths: AgentPaths, executor: Executor, app: str, entry: JournalEntry | None, release: Release | None
) -> Fallback:
    """``release``'s rollback policy for ``entry`` (``release`` must be ``entry``'s, or None)."""
    if entry is None or release is None:
        return PREVIOUS
    policy = release.rollback
    if entry.config_only:  # the version never changed: back to its previous config, not another version
        return Fallback(automatic=policy.automatic)
    target = None if policy.target == "previous" else str(policy.target)
    installed = False
    if target is not None and target not in (entry.version, entry.previous_version):
        code = executor.state(app, target) is not RunState.MISSING
        installed = code and AppConfigs(paths, app).restorable(target, replaced_by=entry.previous_version)
    return Fallback(automatic=policy.automatic, target=target, target_installed=installed)


def roll_back(
    paths: AgentPaths,
    executor: Executor,
    hooks: Hooks,
    hook_ctx: HookContext,
    entry: JournalEntry,
    release: Release | None,
    *,
    allowlist: Sequence[str],
    clock: Clock,
    now: Callable[[], datetime],
) -> HealthFailed | None:
    """Roll ``entry``'s app back (see the module docstring); a failed rollback check, if any."""
    app, target = hook_ctx.app, rollback_version(entry)
    # The migrations first, while nothing else has moved: a failing one leaves the new version
    # running with its own config and data (the deployment fails), never the old code on new data.
    undo(Ledger(paths.migrations(app)), entry.deployment_id, allowlist=allowlist, now=now)
    configs = AppConfigs(paths, app)
    configs.rollback(
        deployment_id=entry.deployment_id,
        failed=entry.version,
        previous=entry.previous_version,
        target=target,
    )
    try:
        if not hooks.rollback(dataclasses.replace(hook_ctx, previous=target)):
            if entry.config_only and target == entry.version:
                executor.restart(app, entry.version)  # same code, its previous config restored
            else:
                executor.rollback(app, entry.version, target)
    except Exception:
        if _still_runs(executor, app, entry.version):
            configs.undo_rollback(deployment_id=entry.deployment_id, failed=entry.version)
        raise
    if target is None or release is None:
        return None  # nothing runs now: there is nothing to check
    return _checks(release.rollback.checks, app, target, allowlist=allowlist, clock=clock)


def _still_runs(executor: Executor, app: str, version: str) -> bool:
    try:
        return executor.active(app) == version
    except Exception:  # an engine that does not answer: leave the files as the rollback left them
        return False


def _checks(
    probes: Sequence[Probe], app: str, version: str, *, allowlist: Sequence[str], clock: Clock
) -> HealthFailed | None:
    for probe in probes:
        result = run_probe(probe, allowlist=allowlist, clock=clock)
        if not result.ok:
            detail = f"{app} {version} after the rollback: check {probe.name!r} failed: {result.detail}"
            return HealthFailed(Reason.PROBE_FAILED.value, detail, probe=probe.name)
    return None
