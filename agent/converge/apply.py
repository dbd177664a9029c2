"""Converge one app, agent steps 3–5 (download → pre-flight → install → switch → watch → commit or
roll back): the orchestrator around the pure :mod:`agent.converge.machine`.

Every state is recorded in the app's journal (``journal/<app>.json``) *before* its step runs, with
a checkpoint before and after each write (``before-<state>``/``after-<state>``; tests SIGKILL the
agent there). The steps, per recorded state:

* downloading — ``executor.fetch`` (resumable, size-capped, digest-checked);
* verifying — ``executor.fetch`` again, which re-hashes what is on disk, then the release's and
  rollout's robot-state gates and the release's ``requires`` (:mod:`agent.converge.requires`; not
  for a stage-only install); a closed gate defers the deployment (reported ``queued``/``retrying``)
  until ``gates.max_deferral_seconds``;
* applying — the release's pre-flight steps, the ``run_preflight`` hook, then ``install_artifact``
  hook or ``executor.install``;
* switched — the config file (:mod:`agent.converge.configs`; written only now, so a staged or
  failed install never gives the running version a config that is not its own), then
  ``switch_slot`` hook or ``executor.switch``; watching — :func:`agent.health.watch.watch` then the
  ``report_health`` hook; healthy — ``executor.commit``;
* rolling_back — :func:`agent.converge.rollback.roll_back` (config, then code, then checks; local
  files only, never the network).

A TransportError leaves the state as it is (retried next cycle), and so does a full disk before
the switch (:class:`~agent.errors.DiskFull`: space can come back, the deployment waits for it,
reported ``retrying``); an ApplyError, or anything unexpected, goes where
:func:`agent.converge.machine.fail` says, under the release's rollback policy
(:mod:`agent.converge.fallback`). Each step first declares its budget to the watchdog
(:mod:`agent.liveness`, :mod:`agent.converge.budgets`) and every journal write is a beat.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.converge.context import Assignment, ConvergeContext
from agent.converge.drift import expected_version
from agent.converge.fallback import join
from agent.converge.machine import (
    POST_SWITCH,
    PRE_SWITCH,
    Action,
    ActionKind,
    Failure,
    advance,
    fail,
    next_action,
    reported,
)
from agent.converge.steps import keep_running, run_step
from agent.errors import CorruptState, DiskFull, GateClosed
from agent.executors.base import RunState
from agent.report.build import clip
from agent.state.journal import Journal, JournalEntry
from fleetcd.errors import ApplyError, SetupError, TransportError
from fleetcd.reports import ReportEvent
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # e.g. roll back a superseded version, then start its successor, in one cycle


@dataclass(frozen=True)
class AppOutcome:
    """What one cycle did for one app."""

    app: str
    action: ActionKind  # the first decision of the cycle
    reason: str
    entry: JournalEntry | None  # the journal entry as the cycle left it
    events: tuple[ReportEvent, ...] = ()
    error: Exception | None = None  # why the app waits: TransportError, SetupError, GateClosed, a commit
    warnings: tuple[Exception, ...] = ()  # reported, changed nothing: a failed rollback check
    # Wall seconds each journal state's step ran this cycle (``downloading``, ``watching``...), for
    # the metrics textfile (agent.report.metrics); a step resumed after a restart counts from there.
    seconds: tuple[tuple[str, float], ...] = ()

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
    warnings: list[Exception] = []
    first: Action | None = None
    error: Exception | None = None
    seconds: dict[str, float] = {}
    for _ in range(MAX_ROUNDS):
        ctx.liveness.beat()
        active = _active(ctx, app, entry)
        running = active is not None and ctx.executor.state(app, active) is RunState.RUNNING
        action = next_action(
            entry,
            desired,
            active,
            ctx.now(),
            max_trials=ctx.config.max_trials,
            active_running=running,
            known=known,
            fallback=ctx.fallback(app, entry, assignment),
        )
        first = first or action
        if action.entry is None:
            break
        log.info("%s: %s (%s)", app, action.kind.value, action.reason)
        entry, error = _drive(ctx, journal, app, action.entry, assignment, events, warnings, seconds)
        if error is not None:
            break
    assert first is not None
    if first.kind is ActionKind.NONE and entry is not None and entry.settled:
        keep_running(ctx, app)
    return AppOutcome(
        app, first.kind, first.reason, entry, tuple(events), error, tuple(warnings), tuple(seconds.items())
    )


def _active(ctx: ConvergeContext, app: str, entry: JournalEntry | None) -> str | None:
    """The executor's active version; when its record is damaged (``current`` a file, or a link out of
    ``releases/``), the version the journal made active. The damage is runtime drift, reported (and
    put back under ``drift: restore``) by agent.converge.drift; it must not stop the app for good: a
    new deployment still installs beside that version, and its switch writes the record again."""
    try:
        return ctx.executor.active(app)
    except CorruptState as exc:
        version = expected_version(entry)
        log.warning("%s: %s; taking %s, the journal's, as the active version", app, exc, version)
        return version


def _drive(
    ctx: ConvergeContext,
    journal: Journal,
    app: str,
    entry: JournalEntry,
    assignment: Assignment | None,
    events: list[ReportEvent],
    warnings: list[Exception],
    seconds: dict[str, float],
) -> tuple[JournalEntry, Exception | None]:
    """Record ``entry`` and run steps until it settles or must wait; (last entry, why it waits)."""
    _record(ctx, journal, entry, events)
    while not entry.settled or (entry.state is Activity.HEALTHY and not entry.committed):
        try:
            warning = _timed(seconds, entry, functools.partial(run_step, ctx, app, entry, assignment))
        except GateClosed as closed:
            deferred = fail(entry, Failure.DEFERRED, str(closed), ctx.now())
            _record(ctx, journal, deferred, events)
            return deferred, closed
        except Exception as exc:  # ApplyError, HealthFailed, HookFailed, GateTimedOut, or a bug
            if _temporary(exc, entry):
                log.warning("%s: %s: %s (retried next cycle)", app, entry.state.value, exc)
                moved = fail(entry, Failure.TRANSIENT, f"{type(exc).__name__}: {exc}", ctx.now())
                _record(ctx, journal, moved, events)
                return moved, exc
            log.warning(
                "%s: %s failed: %s", app, entry.state.value, exc, exc_info=not isinstance(exc, ApplyError)
            )
            fallback = ctx.fallback(app, entry, assignment)
            running = not fallback.automatic and _still_running(ctx, app, entry)
            moved = fail(
                entry, Failure.PERMANENT, str(exc), ctx.now(), still_running=running, fallback=fallback
            )
            _record(ctx, journal, moved, events)
            if moved.state is entry.state:
                return moved, exc  # commit failed: healthy stays healthy, commit retried next cycle
            entry = moved
            continue
        entry = advance(entry, ctx.now())
        if warning is not None:
            log.warning("%s: %s", app, warning)
            warnings.append(warning)
            entry = entry.model_copy(update={"reason": join(entry.reason, str(warning))})
        _record(ctx, journal, entry, events)
    return entry, None


def _timed(
    seconds: dict[str, float], entry: JournalEntry, step: Callable[[], Exception | None]
) -> Exception | None:
    """``step()``, its wall time added to ``seconds[entry's state]`` however it ends."""
    started = time.monotonic()
    try:
        return step()
    finally:
        state = entry.state.value
        seconds[state] = seconds.get(state, 0.0) + time.monotonic() - started


def _temporary(exc: Exception, entry: JournalEntry) -> bool:
    """Retried next cycle in the same state: the network, the local setup, or a full disk before the
    switch (nothing changed yet, and space can come back; after it, a full disk rolls back)."""
    if isinstance(exc, (TransportError, SetupError)):
        return True
    return isinstance(exc, DiskFull) and entry.state in PRE_SWITCH


def _still_running(ctx: ConvergeContext, app: str, entry: JournalEntry) -> bool:
    """After a failure past the switch: does the new version still run (automatic off keeps it)?"""
    if entry.state not in POST_SWITCH:
        return False
    try:
        return ctx.executor.state(app, entry.version) is RunState.RUNNING
    except Exception:  # an engine that cannot tell: fall back, the safe side
        return False


def _record(ctx: ConvergeContext, journal: Journal, entry: JournalEntry, events: list[ReportEvent]) -> None:
    state = entry.state.value
    ctx.liveness.beat()
    ctx.checkpoint(f"before-{state}")
    journal.record(entry)
    ctx.checkpoint(f"after-{state}")
    activity, error = reported(entry)
    if not events or (events[-1].activity, events[-1].error) != (activity, error):
        message = clip(entry.reason or f"{entry.action} {entry.version}: {state}")
        events.append(ReportEvent(at=entry.updated_at, activity=activity, error=error, message=message))
