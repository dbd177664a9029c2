"""The converge state machine's decisions: PURE — journal entry, desired deployment, what the executor
says is active, and ``now`` in; the next journal entry out. No I/O, no clock, no executor calls.

:mod:`agent.converge.apply` does the work around it: it records the entry :func:`next_action` or
:func:`advance` returns *before* acting in its state, runs that state's step, and asks
:func:`advance` (success) or :func:`fail` (error) for the entry to record next::

    downloading → verifying → applying → switched → watching → healthy (commit) ─┐
                                   │ stage only: staged (waits for the switch)    ├→ settled
        error before the switch: failed;  after it: rolling_back → rolled_back ───┘

Resuming after a crash or power cut (the entry on disk is the state that was about to run):
``downloading``/``verifying``/``applying`` redo that step (the old version is still active);
``switched``/``watching`` count one more start and redo the switch, or roll back once the version
was started more than ``max_trials`` times (a crash-looping version falls back without network);
``rolling_back`` redoes the rollback. A deployment id is used once: a settled one is never re-run.

Where a failure after the switch goes is the release's rollback policy, decided by
:mod:`agent.converge.fallback` (automatic off keeps a still-running new version; a target version).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from agent.converge.fallback import PREVIOUS, Fallback, join, kept, rolling_back
from agent.state.journal import JournalEntry
from fleetcd.compat import StrEnum
from fleetcd.vocabulary import Activity, ErrorStatus, JournalActivity, ReportedActivity, ReportedError

DeploymentAction = Literal["deploy", "stage", "rollback"]

PRE_SWITCH = frozenset({Activity.DOWNLOADING, Activity.VERIFYING, Activity.APPLYING})
POST_SWITCH = frozenset({Activity.SWITCHED, Activity.WATCHING})


@dataclass(frozen=True)
class DesiredApp:
    """What the verified bundle asks of one app (``fleetcd.desired.BundleDeployment``, reduced)."""

    deployment_id: str
    version: str
    action: DeploymentAction = "deploy"
    not_before: datetime | None = None
    # The config files this robot wrote for the app are the bundle's (False: a config-only change
    # when the version already runs, so it is applied and watched, never silently adopted).
    config_current: bool = True


class ActionKind(StrEnum):
    NONE = "none"  # nothing to do
    START = "start"  # a new deployment: download it
    RESUME = "resume"  # finish the recorded state (after a crash, a retry, or a deferral)
    PROMOTE = "promote"  # a staged deployment is now to be switched to
    ADOPT = "adopt"  # the desired version already runs: settle without touching it
    ABANDON = "abandon"  # the bundle no longer lists a deployment that never switched
    SUPERSEDE = "supersede"  # a switched, unconfirmed deployment is no longer desired: roll back
    GIVE_UP = "give_up"  # started more than max_trials times: roll back


@dataclass(frozen=True)
class Action:
    """What to do: record ``entry`` (None only for NONE), then run from its state."""

    kind: ActionKind
    entry: JournalEntry | None
    reason: str


class Failure(StrEnum):
    """How a step failed, as the loop must treat it (``agent.errors`` grouping)."""

    TRANSIENT = "transient"  # TransportError: stay in the state, retry next cycle with backoff
    DEFERRED = "deferred"  # GateClosed: stay in the state, remember when the wait began
    PERMANENT = "permanent"  # ApplyError and anything unexpected: this deployment cannot succeed


def next_action(
    entry: JournalEntry | None,
    desired: DesiredApp | None,
    active: str | None,
    now: datetime,
    *,
    max_trials: int,
    active_running: bool = True,
    known: bool = True,
    fallback: Fallback = PREVIOUS,
) -> Action:
    """The decision table of one app at the start of a cycle (and after each settled round).

    ``known=False`` means there is no trustworthy desired state this cycle (offline with no cached
    bundle, rejected or expired): unswitched work waits instead of being abandoned. ``fallback`` is
    the rollback policy of ``entry``'s release.
    """
    if entry is not None and (not entry.settled or _uncommitted(entry)):
        running = active == entry.version and active_running
        return _unfinished(
            entry,
            desired,
            active,
            now,
            max_trials=max_trials,
            known=known,
            fallback=fallback,
            running=running,
        )
    if desired is None:
        return Action(ActionKind.NONE, None, "nothing desired for this app")
    if entry is not None and entry.deployment_id == desired.deployment_id:
        return _same_deployment(entry, desired, active, now)
    if desired.not_before is not None and now < desired.not_before:
        return Action(ActionKind.NONE, None, f"scheduled for {desired.not_before.isoformat()}")
    return _new_deployment(entry, desired, active, now, active_running=active_running)


def _uncommitted(entry: JournalEntry) -> bool:
    return entry.state is Activity.HEALTHY and not entry.committed


def _unfinished(
    entry: JournalEntry,
    desired: DesiredApp | None,
    active: str | None,
    now: datetime,
    *,
    max_trials: int,
    known: bool,
    fallback: Fallback,
    running: bool,
) -> Action:
    state = entry.state
    mine = desired is not None and desired.deployment_id == entry.deployment_id
    if state in (Activity.ROLLING_BACK, Activity.HEALTHY):
        return Action(ActionKind.RESUME, _refresh(entry, now), f"finish {state.value}")
    if state in PRE_SWITCH:
        if mine and desired is not None:
            resumed = _refresh(entry, now, action=desired.action, stage_only=desired.action == "stage")
            return Action(ActionKind.RESUME, resumed, f"redo {state.value}; the old version is still active")
        if desired is not None:
            started = _new_deployment(None, desired, active, now, active_running=True)
            reason = f"{entry.deployment_id} was never switched to; {started.reason}"
            return Action(started.kind, started.entry, reason)
        if not known:
            return Action(ActionKind.NONE, None, f"{state.value} waits for trustworthy desired state")
        reason = "no longer in the desired state; it was never switched to"
        return Action(ActionKind.ABANDON, entry.moved_to(Activity.IDLE, now=now, reason=reason), reason)
    # switched / watching: the new version was started and never confirmed healthy
    if not mine:
        why = (
            f"superseded by {desired.deployment_id}"
            if desired is not None
            else "no verified release to watch it with"
        )
        rolling = rolling_back(entry, f"{state.value}: {why}", now, fallback)
        return Action(ActionKind.SUPERSEDE, rolling, why)
    attempts = entry.attempts + 1
    if attempts > max_trials:
        why = f"started {entry.attempts} times without passing its health watch (max_trials {max_trials})"
        if not fallback.automatic and running:
            failed = entry.moved_to(Activity.FAILED, now=now, reason=kept(why, entry))
            return Action(ActionKind.GIVE_UP, failed, why)
        return Action(ActionKind.GIVE_UP, rolling_back(entry, why, now, fallback), why)
    again = entry.moved_to(Activity.SWITCHED, now=now, reason=entry.reason, attempts=attempts)
    return Action(ActionKind.RESUME, again, f"start {attempts} of at most {max_trials}")


def _same_deployment(entry: JournalEntry, desired: DesiredApp, active: str | None, now: datetime) -> Action:
    if entry.state is Activity.STAGED and desired.action != "stage":
        if active == desired.version:  # blue/green of a config change: the version runs already
            if desired.config_current:
                adopted = _fresh(desired, Activity.HEALTHY, entry.previous_version, now, committed=True)
                return Action(ActionKind.ADOPT, adopted, f"{desired.version} already runs")
            start = _fresh(desired, Activity.VERIFYING, active, now, config_only=True)
            return Action(
                ActionKind.PROMOTE, start, f"switch: {desired.version} runs, only its config changes"
            )
        promoted = _fresh(desired, Activity.VERIFYING, _previous(entry, desired, active), now)
        return Action(ActionKind.PROMOTE, promoted, "staged; now switch to it")
    if entry.state is Activity.IDLE:
        return _new_deployment(entry, desired, active, now, active_running=True)
    why = {
        Activity.HEALTHY: "already deployed",
        Activity.STAGED: "staged, waiting for the switch",
    }.get(entry.state, f"{entry.state.value}: a deployment id is used once")
    return Action(ActionKind.NONE, None, why)


def _new_deployment(
    entry: JournalEntry | None,
    desired: DesiredApp,
    active: str | None,
    now: datetime,
    *,
    active_running: bool,
) -> Action:
    previous = _previous(entry, desired, active)
    if active == desired.version and active_running:
        if not desired.config_current and desired.action != "stage":
            # A config-only deployment: the gates are checked again (verifying re-hashes what is on
            # disk, nothing is downloaded), then the config is switched to and watched like a release.
            start = _fresh(desired, Activity.VERIFYING, active, now, config_only=True)
            return Action(ActionKind.START, start, f"{desired.version} runs: only its config changes")
        state: JournalActivity = Activity.STAGED if desired.action == "stage" else Activity.HEALTHY
        adopted = _fresh(desired, state, previous, now, committed=True)
        return Action(ActionKind.ADOPT, adopted, f"{desired.version} already runs")
    start = _fresh(desired, Activity.DOWNLOADING, previous, now)
    return Action(ActionKind.START, start, f"{desired.action} {desired.version}")


def _previous(entry: JournalEntry | None, desired: DesiredApp, active: str | None) -> str | None:
    """The version a rollback returns to: what is active, unless that is the version itself."""
    if active != desired.version:
        return active
    if entry is not None and entry.version == active and entry.state is Activity.HEALTHY:
        return entry.previous_version
    return None


def _fresh(
    desired: DesiredApp,
    state: JournalActivity,
    previous: str | None,
    now: datetime,
    *,
    committed: bool = False,
    config_only: bool = False,
) -> JournalEntry:
    return JournalEntry(
        config_only=config_only,
        deployment_id=desired.deployment_id,
        version=desired.version,
        previous_version=previous,
        state=state,
        attempts=0,
        updated_at=now,
        action=desired.action,
        stage_only=desired.action == "stage",
        committed=committed,
    )


def _refresh(entry: JournalEntry, now: datetime, **changes: object) -> JournalEntry:
    data = entry.model_dump()
    data.update(updated_at=now, **changes)
    return JournalEntry.model_validate(data)


def advance(entry: JournalEntry, now: datetime) -> JournalEntry:
    """The entry to record once ``entry``'s step succeeded."""
    state = entry.state
    if state is Activity.DOWNLOADING:
        return entry.moved_to(Activity.VERIFYING, now=now)
    if state is Activity.VERIFYING:
        if entry.config_only:  # nothing to install: the version's code is active already
            switched = entry.moved_to(Activity.SWITCHED, now=now, attempts=entry.attempts + 1)
            return _refresh(switched, now, first_deferred_at=None)
        return _refresh(entry.moved_to(Activity.APPLYING, now=now), now, first_deferred_at=None)
    if state is Activity.APPLYING:
        if entry.stage_only:
            return entry.moved_to(Activity.STAGED, now=now)
        return entry.moved_to(Activity.SWITCHED, now=now, attempts=entry.attempts + 1)
    if state is Activity.SWITCHED:
        return entry.moved_to(Activity.WATCHING, now=now)
    if state is Activity.WATCHING:
        return entry.moved_to(Activity.HEALTHY, now=now)
    if state is Activity.HEALTHY:
        return _refresh(entry, now, committed=True, reason=None)
    if state is Activity.ROLLING_BACK:
        return entry.moved_to(Activity.ROLLED_BACK, now=now, reason=entry.reason)
    raise ValueError(f"{state.value} is settled: there is no step to advance from")


def fail(
    entry: JournalEntry,
    failure: Failure,
    reason: str,
    now: datetime,
    *,
    auto_rollback: bool = True,
    still_running: bool = True,
    fallback: Fallback = PREVIOUS,
) -> JournalEntry:
    """The entry to record after ``entry``'s step failed with ``failure`` (``reason`` says why).

    ``still_running``: the new version runs after the failure (only asked after the switch);
    ``auto_rollback=False`` is the same as ``fallback.automatic`` off.
    """
    state = entry.state
    if failure is Failure.TRANSIENT:
        return _refresh(entry, now, reason=reason)
    if failure is Failure.DEFERRED:
        return _refresh(entry, now, reason=reason, first_deferred_at=entry.first_deferred_at or now)
    if state in PRE_SWITCH:
        return entry.moved_to(Activity.FAILED, now=now, reason=reason)
    if state in POST_SWITCH:
        if not (auto_rollback and fallback.automatic):
            if still_running:
                return entry.moved_to(Activity.FAILED, now=now, reason=kept(reason, entry))
            reason = f"{reason} (rollback.automatic is off, but {entry.version} is not running: falling back)"
        return rolling_back(entry, reason, now, fallback)
    if state is Activity.ROLLING_BACK:
        why = join(f"rollback failed: {reason}", entry.reason)
        return entry.moved_to(Activity.FAILED, now=now, reason=why)
    if state is Activity.HEALTHY:
        return _refresh(entry, now, reason=f"commit failed, retried next cycle: {reason}")
    raise ValueError(f"{state.value} is settled: no step of it can fail")


def reported(entry: JournalEntry) -> tuple[ReportedActivity, ReportedError]:
    """(activity, error) of the deployment in the status report, as the controller reads them.

    The mapping from journal state to reported activity is documented in :mod:`fleetcd.vocabulary`.
    """
    none, failed = ErrorStatus.NONE, ErrorStatus.FAILED
    retrying: ReportedError = ErrorStatus.RETRYING if entry.reason else none
    match entry.state:
        case Activity.IDLE:
            return Activity.QUEUED, none
        case Activity.DOWNLOADING:
            return Activity.DOWNLOADING, retrying
        case Activity.VERIFYING:
            if entry.first_deferred_at:
                return Activity.QUEUED, ErrorStatus.RETRYING
            return Activity.VERIFYING, retrying
        case Activity.APPLYING:
            return Activity.APPLYING, retrying
        case Activity.STAGED:
            return Activity.STAGED, none
        case Activity.SWITCHED | Activity.WATCHING:
            return Activity.WATCHING, retrying
        case Activity.HEALTHY:
            return Activity.DEPLOYED, none
        case Activity.ROLLING_BACK:
            return Activity.WATCHING, ErrorStatus.RETRYING
        case Activity.ROLLED_BACK:
            return Activity.ROLLED_BACK, failed
        case Activity.FAILED:
            return Activity.FAILED, failed
    raise AssertionError(entry.state)  # pragma: no cover - every state is matched above
