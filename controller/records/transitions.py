"""How deployment records move: robot reports, deadlines, the switch and archiving (pure).

Every function takes a record (and ``at``/``now`` passed in: no clock, no I/O) and returns the new
record; records are frozen, so "unchanged" is simply the same object back.

Two sources of change, two policies:

* **Robot reports are untrusted input** and must never crash the reconcile loop.
  :func:`apply_report` applies what is allowed and returns the record unchanged otherwise;
  :func:`judge_report` tells the caller why (an :class:`IgnoredReport`), for the audit line.
  Rules: only the controller queues or retires (``queued``, and ``removing``/``archived`` while the
  target is not archived, are ignored); a terminal record is one-time use — it never goes back to
  work, so a late ``downloading`` after ``deployed``, or a ``deployed`` after a timeout, is ignored.
  The one sideways move allowed is ``deployed`` ⇄ ``drifted`` (an observation, not a re-run).
  A record the controller *cancelled* (archived before its outcome was known: a halt, an abort,
  a robot leaving the targets) still takes one late *final* report — deployed, drifted, failed,
  rolled back. The robot may have finished it before it saw the cancellation, and what a robot
  did is a fact the records, the audit and the receipt must show, or a robot that switched would
  be recorded as one that never ran the release. The target stays ``archived``: the record does
  not go back to work and never returns to a bundle.
  Re-reading the same status (same activity and error) changes nothing, so an idle fleet does not
  rewrite its records on every reconcile.
* **The controller's own plan** moves ``target_status``, one way only: staged → deployed →
  archived. A backwards move can only be a bug or tampered state, so :func:`set_target` raises
  :class:`~controller.errors.IllegalTransition` instead of guessing.
"""

from __future__ import annotations

from datetime import datetime

from controller.errors import IllegalTransition
from controller.records.ids import deployment_id
from controller.records.model import (
    MAX_EVENTS,
    MESSAGE_MAX_CHARS,
    SETTLED_ACTIVITIES,
    Action,
    DeploymentEvent,
    DeploymentRecord,
    TargetStatus,
    is_terminal,
)
from fleetcd.compat import UTC
from fleetcd.reasons import IgnoredReport, RecordReason
from fleetcd.vocabulary import REPORTED_ACTIVITIES, Activity, ErrorStatus

_OBSERVED_SUCCESS = frozenset({Activity.DEPLOYED, Activity.DRIFTED})
_FINAL_OUTCOMES = frozenset({Activity.DEPLOYED, Activity.DRIFTED, Activity.FAILED, Activity.ROLLED_BACK})
_REMOVAL = frozenset({Activity.REMOVING, Activity.ARCHIVED})


def _aware(at: datetime) -> datetime:
    # Report times may come from a robot's clock; a naive one is read as UTC rather than crashing.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _append(record: DeploymentRecord, event: DeploymentEvent) -> tuple[DeploymentEvent, ...]:
    return (*record.events, event)[-MAX_EVENTS:]


def _event(at: datetime, activity: Activity, error: ErrorStatus, message: str) -> DeploymentEvent:
    return DeploymentEvent(at=_aware(at), activity=activity, error=error, message=message[:MESSAGE_MAX_CHARS])


def new_deployment(
    *,
    rollout: str,
    generation: int,
    device: str,
    app: str,
    version: str,
    release_sha256: str,
    wave: int,
    action: Action,
    target_status: TargetStatus,
    at: datetime,
    deadline_at: datetime | None,
    config_sha256: str | None = None,
    config_files: tuple[str, ...] = (),
    commit: str | None = None,
) -> DeploymentRecord:
    """A queued record whose id is derived from what it deploys (replays recreate the same id)."""
    return DeploymentRecord(
        id=deployment_id(rollout, generation, device, release_sha256, config_sha256),
        config_sha256=config_sha256,
        config_files=config_files,
        commit=commit,
        rollout=rollout,
        generation=generation,
        device=device,
        app=app,
        version=version,
        release_sha256=release_sha256,
        wave=wave,
        action=action,
        target_status=target_status,
        created_at=at,
        updated_at=at,
        deadline_at=deadline_at,
        events=(_event(at, Activity.QUEUED, ErrorStatus.NONE, f"{action.value} {app} {version}"),),
    )


def judge_report(record: DeploymentRecord, activity: str, error: str) -> IgnoredReport | None:
    """None when a report of ``activity``/``error`` may be applied to ``record``, else why not."""
    try:
        reported, reported_error = Activity(activity), ErrorStatus(error)
    except ValueError:
        return IgnoredReport.UNKNOWN_VALUE
    if reported not in REPORTED_ACTIVITIES:  # a robot-only journal state (idle, switched, …)
        return IgnoredReport.UNKNOWN_VALUE
    if (reported, reported_error) == (record.activity, record.error):
        return IgnoredReport.UNCHANGED
    if reported is Activity.QUEUED:
        # Only a deferral may be said while still queued (a closed robot-state gate: "not docked"),
        # so the reason reaches the record; a robot cannot send a started deployment back to queued.
        deferral = record.activity is Activity.QUEUED and reported_error is ErrorStatus.RETRYING
        return None if deferral else IgnoredReport.NOT_REPORTABLE
    if record.activity is Activity.ARCHIVED:
        # Cancelled before its outcome was known: the robot's late final word is still the truth.
        final = reported in _FINAL_OUTCOMES or reported_error is ErrorStatus.FAILED
        return None if final and reported not in _REMOVAL else IgnoredReport.RETIRED
    if record.target_status is TargetStatus.ARCHIVED:
        return None if reported in _REMOVAL else IgnoredReport.RETIRED
    if reported in _REMOVAL:
        return IgnoredReport.NOT_REQUESTED
    if is_terminal(record):
        sideways = (
            record.activity in _OBSERVED_SUCCESS
            and record.error is ErrorStatus.NONE
            and reported in _OBSERVED_SUCCESS
            and reported_error is ErrorStatus.NONE
        )
        return None if sideways else IgnoredReport.FINISHED
    return None


def apply_report(
    record: DeploymentRecord,
    report_activity: str,
    report_error: str,
    message: str,
    at: datetime,
) -> DeploymentRecord:
    """The record after a robot reported ``report_activity``/``report_error`` at ``at``.

    Never raises on report content: a report that may not apply returns ``record`` itself (ask
    :func:`judge_report` why). ``attempts`` counts tries as the reports show them: the first report
    starts try 1, and each move into ``retrying`` announces one more.
    """
    if judge_report(record, report_activity, report_error) is not None:
        return record
    activity, error = Activity(report_activity), ErrorStatus(report_error)
    attempts = max(record.attempts, 1)
    if error is ErrorStatus.RETRYING and record.error is not ErrorStatus.RETRYING:
        attempts += 1
    return record.model_copy(
        update={
            "activity": activity,
            "error": error,
            "attempts": attempts,
            "updated_at": max(record.updated_at, _aware(at)),
            "events": _append(record, _event(at, activity, error, message)),
        }
    )


def time_out(record: DeploymentRecord, now: datetime) -> DeploymentRecord:
    """Failed with reason ``timed_out`` when ``now`` is past the deadline and it is not terminal.

    A record staged and waiting for the switch is waiting on the controller, not on the robot, so
    it does not time out.
    """
    waiting_for_switch = record.activity is Activity.STAGED and record.target_status is TargetStatus.STAGED
    if is_terminal(record) or waiting_for_switch or record.deadline_at is None or now <= record.deadline_at:
        return record
    message = f"no final report by the deadline {record.deadline_at.isoformat()}; last {record.status.value}"
    return record.model_copy(
        update={
            "activity": Activity.FAILED,
            "error": ErrorStatus.FAILED,
            "reason": RecordReason.TIMED_OUT.value,
            "updated_at": max(record.updated_at, now),
            "events": _append(record, _event(now, Activity.FAILED, ErrorStatus.FAILED, message)),
        }
    )


def archive(
    record: DeploymentRecord, at: datetime, reason: RecordReason = RecordReason.SUPERSEDED
) -> DeploymentRecord:
    """Retire the record (target ``archived``); idempotent.

    A finished record keeps its outcome activity (deployed, failed, …) so statistics and receipts
    stay true; one still in flight becomes ``archived`` (cancelled) and stops retrying.
    """
    if record.target_status is TargetStatus.ARCHIVED:
        return record
    finished = record.activity in SETTLED_ACTIVITIES or record.error is ErrorStatus.FAILED
    activity = record.activity if finished else Activity.ARCHIVED
    error = ErrorStatus.NONE if record.error is ErrorStatus.RETRYING else record.error
    return record.model_copy(
        update={
            "target_status": TargetStatus.ARCHIVED,
            "activity": activity,
            "error": error,
            "reason": record.reason or reason.value,
            "updated_at": max(record.updated_at, at),
            "events": _append(record, _event(at, activity, error, f"archived: {reason.value}")),
        }
    )


def set_target(
    record: DeploymentRecord,
    target: TargetStatus,
    at: datetime,
    *,
    deadline_at: datetime | None = None,
    reason: RecordReason = RecordReason.SUPERSEDED,
) -> DeploymentRecord:
    """Move ``target_status`` forward (the blue/green switch: staged → deployed, or archive).

    Raises :class:`IllegalTransition` for a backwards move, or for switching a finished record
    (one-time use: a failed staging is replaced by a new deployment, never revived).
    ``deadline_at`` replaces the deadline when switching.
    """
    if target is record.target_status:
        return record
    if target.rank < record.target_status.rank:
        current = record.target_status.value
        raise IllegalTransition(record.id, "target_status", current, target.value, "it only moves forward")
    if target is TargetStatus.ARCHIVED:
        return archive(record, at, reason)
    if is_terminal(record):
        why = f"the deployment already finished ({record.status.value}); deployments are one-time use"
        raise IllegalTransition(record.id, "target_status", record.target_status.value, target.value, why)
    return record.model_copy(
        update={
            "target_status": target,
            "deadline_at": deadline_at if deadline_at is not None else record.deadline_at,
            "updated_at": max(record.updated_at, at),
            "events": _append(record, _event(at, record.activity, record.error, f"target {target.value}")),
        }
    )
