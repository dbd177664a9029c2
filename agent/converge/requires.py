"""A release's ``requires`` on the robot: switch an app only when the apps it needs run here.

The controller already holds a deployment until its requirements run on the robot
(:mod:`controller.engine.requires`); the robot checks again, against what it runs itself, so a
stale or mistaken bundle cannot start an app without what it needs. Before the switch (converge
state *verifying*, as for robot-state gates) a deployment defers, like a closed gate, when:

* a required app does not run here at a version in range — running means the executor's active
  version is up and that app is not in the middle of its own switch; or
* an app that runs here requires this app in a range the new version is outside of (its release is
  the one the verified bundle gives it, when that is the version it runs).

A deferral is reported ``queued``/``retrying`` with the reason and checked again every
``gates.retry_seconds``; after ``gates.max_deferral_seconds`` the deployment fails
(:class:`~agent.errors.GateTimedOut`, gate ``requires``). Rollbacks are never held: going back to
what ran before is the safe side. :func:`converge_order` converges required apps first in a cycle,
so a dependent app can start in the same cycle as what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.converge.context import Assignment, ConvergeContext
from agent.converge.machine import POST_SWITCH
from agent.errors import CorruptState, GateClosed, GateTimedOut
from agent.executors.base import RunState
from agent.gates import deferral_expired
from agent.state.journal import Journal, JournalEntry
from fleetcd.models.requirement import Dependent, broken_dependent, first_unmet
from fleetcd.vocabulary import Activity

GATE = "requires"  # the name a requirement's deferral is reported under


def enforce_requirements(ctx: ConvergeContext, app: str, assignment: Assignment, entry: JournalEntry) -> None:
    """Return when ``app`` may switch to ``entry.version``; GateClosed (then GateTimedOut) if not."""
    if entry.action == "rollback":
        return
    why = unmet(ctx, app, assignment, entry.version)
    if why is None:
        return
    closed = GateClosed(GATE, why)
    first = entry.first_deferred_at
    if first is not None and deferral_expired(first, ctx.now(), ctx.config.gates):
        raise GateTimedOut(GATE, why, ctx.config.gates.max_deferral_seconds) from closed
    raise closed


def unmet(ctx: ConvergeContext, app: str, assignment: Assignment, version: str) -> str | None:
    """Why ``app`` may not switch to ``version`` on this robot now; None when it may."""

    def running(other: str) -> str | None:
        return running_version(ctx, other)

    why = first_unmet(assignment.release.requires, running)
    if why is not None:
        return why
    dependents = [
        Dependent(other, given.release.version, requirement)
        for other, given in sorted(ctx.assignments.items())
        if other != app
        for requirement in given.release.requires
        if requirement.app == app
    ]
    return broken_dependent(version, dependents, running)


def running_version(ctx: ConvergeContext, app: str) -> str | None:
    """The version of ``app`` that runs here and is not being switched away from or to."""
    try:
        active = ctx.executor.active(app)
        if active is None or ctx.executor.state(app, active) is not RunState.RUNNING:
            return None
        entry = Journal(ctx.paths.journal(app)).load()
    except (CorruptState, OSError):
        return None  # fail closed: the dependent app waits
    if entry is not None and (entry.state in POST_SWITCH or entry.state is Activity.ROLLING_BACK):
        return None
    return active


def converge_order(apps: Iterable[str], requires: Mapping[str, Iterable[str]]) -> list[str]:
    """``apps`` sorted by name, each after the apps it requires (``requires``: app → required apps);
    apps in a cycle, which validation refuses, come last in name order."""
    remaining = sorted(set(apps))
    needs = {app: set(requires.get(app, ())) - {app} for app in remaining}
    ordered: list[str] = []
    while remaining:
        ready = [app for app in remaining if not needs[app] & set(remaining)]
        pick = ready[0] if ready else remaining[0]
        ordered.append(pick)
        remaining.remove(pick)
    return ordered


def required_apps(assignments: Mapping[str, Assignment]) -> dict[str, list[str]]:
    """app → the apps its assigned release requires."""
    return {app: [r.app for r in a.release.requires] for app, a in assignments.items()}
