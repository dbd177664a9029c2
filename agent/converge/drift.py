"""Runtime drift: what runs on the robot differs from what the agent installed — checked every cycle
before converging, reported, and put back under ``drift: restore`` (agent.yaml).

Place in the flow: :func:`agent.loop.run_once` calls :func:`check_runtime_drift` after the repair
pass and before the apps converge; config-file drift is :func:`agent.converge.configs.check_drift`,
after them. Per app whose journal says which version should be active — a deployed one (healthy),
or the version a rollback went back to — the executor says what differs
(:meth:`agent.executors.base.Executor.drift`): the tarball executor's ``current`` link retargeted,
the Docker executor's container running another image than its pinned digest (or gone), or a version of the
app running that the agent did not start. ``restore`` asks the executor to undo it
(:meth:`~agent.executors.base.Executor.restore`); drift is reported either way, with ``restored``
saying which, and an app whose drift was left in place is not restarted by the idle path (the agent
does not fight a person's change it was told to only report).
"""

from __future__ import annotations

import logging

from agent.converge.context import ConvergeContext
from agent.converge.fallback import rollback_version
from agent.converge.steps import app_target
from agent.errors import CorruptState
from agent.executors.base import AppTarget
from agent.report.build import clip
from agent.state.journal import Journal, JournalEntry
from agent.sync.accept import Desired
from fleetcd.errors import TransportError
from fleetcd.reports import MAX_RUNTIME_DRIFT, RuntimeDrift
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)


def expected_version(entry: JournalEntry | None) -> str | None:
    """PURE: the version that must be the app's active one, when the journal says so unambiguously."""
    if entry is None:
        return None
    if entry.state is Activity.HEALTHY and entry.committed:
        return entry.version
    if entry.state is Activity.ROLLED_BACK:
        return rollback_version(entry)
    return None  # in flight, staged, failed (kept or not): the converge steps own the app now


def check_runtime_drift(ctx: ConvergeContext, desired: Desired, *, restore: bool) -> list[RuntimeDrift]:
    """Every app's runtime drift (see the module docstring), restored first when ``restore``."""
    found: list[RuntimeDrift] = []
    for app in ctx.paths.journaled_apps():
        try:
            entry = Journal(ctx.paths.journal(app)).load()
        except CorruptState:
            continue  # reported by the repair pass
        version = expected_version(entry)
        if entry is None or version is None:
            continue
        target = _target(ctx, app, entry, desired, version)
        try:
            seen = ctx.executor.drift(app, version, target)
        except TransportError as exc:  # the engine is restarting: look again next cycle
            log.warning("%s: drift not checked: %s", app, exc)
            continue
        if not seen:
            continue
        restored, problem = False, None
        if restore:
            try:
                ctx.executor.restore(app, version, target)
                restored = True
            except Exception as exc:  # reported with the drift; the loop goes on
                problem = f"; restore failed: {exc}"
        for kind, detail in seen:
            log.warning("%s: drift (%s): %s%s", app, kind.value, detail, " — restored" if restored else "")
            found.append(
                RuntimeDrift(app=app, kind=kind, detail=clip(detail + (problem or "")), restored=restored)
            )
    return found[:MAX_RUNTIME_DRIFT]


def _target(
    ctx: ConvergeContext, app: str, entry: JournalEntry, desired: Desired, version: str
) -> AppTarget | None:
    """The release of the expected version, when the bundle still carries the journal's deployment."""
    assignment = desired.assignments.get(app)
    if assignment is None or assignment.deployment.deployment_id != entry.deployment_id:
        return None
    if assignment.deployment.version != version:
        return None
    return app_target(ctx, app, assignment)
