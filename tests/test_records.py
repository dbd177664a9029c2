"""Deployment records: deterministic ids and generations, one-way transitions, one-time use.

Robot reports are treated as hostile input: every table below feeds reports a record must ignore
and checks that the record comes back untouched (not an exception that would stop the loop).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.errors import IllegalTransition
from controller.records import (
    Action,
    Activity,
    Connectivity,
    DeploymentRecord,
    ErrorStatus,
    Generation,
    IgnoredReport,
    Outcome,
    RecordReason,
    Status,
    TargetStatus,
    apply_report,
    archive,
    connectivity,
    deployment_id,
    generation_fingerprint,
    is_failure,
    is_success,
    is_terminal,
    judge_report,
    merged_status,
    new_deployment,
    outcome,
    rollout_generation,
    set_target,
    time_out,
)
from controller.records.model import MAX_EVENTS, MESSAGE_MAX_CHARS
from fleetcd.compat import UTC
from fleetcd.vocabulary import REPORTED_ACTIVITIES, ReportedActivity

T0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64


def record(
    target: TargetStatus = TargetStatus.DEPLOYED, deadline: timedelta | None = None
) -> DeploymentRecord:
    return new_deployment(
        rollout="navstack-1-1",
        generation=1,
        device="amr-ber-01",
        app="navstack",
        version="1.1.0",
        release_sha256=SHA_A,
        wave=0,
        action=Action.STAGE if target is TargetStatus.STAGED else Action.DEPLOY,
        target_status=target,
        at=T0,
        deadline_at=None if deadline is None else T0 + deadline,
    )


def reported(rec: DeploymentRecord, *steps: tuple[Activity, ErrorStatus]) -> DeploymentRecord:
    for minute, (activity, error) in enumerate(steps, start=1):
        rec = apply_report(rec, activity, error, f"{activity}", T0 + timedelta(minutes=minute))
    return rec


OK = ErrorStatus.NONE


# --- ids and generations ----------------------------------------------------------------------------


def test_same_inputs_give_the_same_deployment_id() -> None:
    first = deployment_id("navstack-1-1", 3, "amr-ber-01", SHA_A)
    assert first == deployment_id("navstack-1-1", 3, "amr-ber-01", SHA_A)
    assert first.startswith("dep-") and len(first) == 4 + 24
    assert record().id == deployment_id("navstack-1-1", 1, "amr-ber-01", SHA_A)


@pytest.mark.parametrize(
    "changed",
    [
        ("navstack-1-2", 1, "amr-ber-01", SHA_A),
        ("navstack-1-1", 2, "amr-ber-01", SHA_A),
        ("navstack-1-1", 1, "amr-ber-02", SHA_A),
        ("navstack-1-1", 1, "amr-ber-01", SHA_B),
    ],
    ids=["other-rollout", "next-generation", "other-device", "other-release"],
)
def test_any_changed_input_gives_a_different_deployment_id(changed: tuple[str, int, str, str]) -> None:
    assert deployment_id(*changed) != deployment_id("navstack-1-1", 1, "amr-ber-01", SHA_A)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a", 1, "bc", SHA_A), ("ab", 1, "c", SHA_A)),
        (("r1", 1, "d", SHA_A), ("r", 11, "d", SHA_A)),
        (("r", 1, "1d", SHA_A), ("r", 11, "d", SHA_A)),
    ],
    ids=["rollout|device", "rollout|generation", "generation|device"],
)
def test_field_boundaries_cannot_shift_between_fields(
    left: tuple[str, int, str, str], right: tuple[str, int, str, str]
) -> None:
    assert deployment_id(*left) != deployment_id(*right)


@pytest.mark.parametrize(
    "bad",
    [("r", 0, "d", SHA_A), ("r", 1, "d", "A" * 64), ("r", 1, "d", "a" * 63)],
    ids=["gen-0", "upper", "short"],
)
def test_malformed_id_inputs_are_refused(bad: tuple[str, int, str, str]) -> None:
    with pytest.raises(ValueError):
        deployment_id(*bad)


ROLLOUT: dict[str, Any] = {
    "apiVersion": "fleetcd.dev/v1",
    "kind": "Rollout",
    "name": "navstack",
    "app": "navstack",
    "release": "1.1.0",
    "targets": {"cohorts": ["canary"]},
    "strategy": {"type": "rolling", "batch_size": 5},
}


@pytest.mark.parametrize(
    ("edit", "release"),
    [
        ({"paused": True}, SHA_A),
        ({"aborted": True}, SHA_A),
        ({"promote": 2}, SHA_A),
        ({}, SHA_A),
    ],
    ids=["pause", "abort", "promote", "replay"],
)
def test_operational_switches_and_replays_keep_the_generation(edit: dict[str, Any], release: str) -> None:
    current = rollout_generation(ROLLOUT, SHA_A, None)
    assert rollout_generation({**ROLLOUT, **edit}, release, current) == current


@pytest.mark.parametrize(
    ("edit", "release"),
    [
        ({"release": "1.2.0"}, SHA_B),
        ({}, SHA_B),
        ({"targets": {"cohorts": ["canary", "production"]}}, SHA_A),
        ({"strategy": {"type": "rolling", "batch_size": 10}}, SHA_A),
    ],
    ids=["new-release", "release-bytes", "targets", "strategy"],
)
def test_release_targets_or_strategy_change_starts_a_new_generation(
    edit: dict[str, Any], release: str
) -> None:
    current = rollout_generation(ROLLOUT, SHA_A, None)
    assert current.number == 1
    after = rollout_generation({**ROLLOUT, **edit}, release, current)
    assert after.number == 2 and after.fingerprint != current.fingerprint


def test_reverting_to_earlier_content_gets_a_new_generation_so_the_rollback_deploys() -> None:
    first = rollout_generation(ROLLOUT, SHA_A, None)
    second = rollout_generation({**ROLLOUT, "release": "1.2.0"}, SHA_B, first)
    reverted = rollout_generation(ROLLOUT, SHA_A, second)
    assert reverted == Generation(3, first.fingerprint)
    assert deployment_id("navstack", reverted.number, "amr-ber-01", SHA_A) != deployment_id(
        "navstack", first.number, "amr-ber-01", SHA_A
    )


# --- target status and one-time use -----------------------------------------------------------------

TARGET_MOVES = [
    (TargetStatus.DEPLOYED, TargetStatus.STAGED),
    (TargetStatus.ARCHIVED, TargetStatus.DEPLOYED),
    (TargetStatus.ARCHIVED, TargetStatus.STAGED),
]


@pytest.mark.parametrize(("start", "back"), TARGET_MOVES, ids=[f"{a}->{b}" for a, b in TARGET_MOVES])
def test_target_status_never_moves_backwards(start: TargetStatus, back: TargetStatus) -> None:
    rec = record(TargetStatus.STAGED)
    rec = set_target(rec, TargetStatus.DEPLOYED, T0)
    if start is TargetStatus.ARCHIVED:
        rec = set_target(rec, TargetStatus.ARCHIVED, T0)
    with pytest.raises(IllegalTransition) as caught:
        set_target(rec, back, T0)
    assert caught.value.record_id == rec.id
    assert f"'{start}' to '{back}'" in str(caught.value)


def test_blue_green_switch_moves_staged_forward_with_a_new_deadline() -> None:
    staged = reported(record(TargetStatus.STAGED), (Activity.DOWNLOADING, OK), (Activity.STAGED, OK))
    switched = set_target(
        staged, TargetStatus.DEPLOYED, T0 + timedelta(hours=1), deadline_at=T0 + timedelta(hours=2)
    )
    assert switched.target_status is TargetStatus.DEPLOYED
    assert switched.deadline_at == T0 + timedelta(hours=2)
    assert reported(switched, (Activity.APPLYING, OK)).activity is Activity.APPLYING


def test_a_failed_staging_is_never_switched_on() -> None:
    failed = reported(record(TargetStatus.STAGED), (Activity.FAILED, ErrorStatus.FAILED))
    with pytest.raises(IllegalTransition, match="one-time use"):
        set_target(failed, TargetStatus.DEPLOYED, T0)


TERMINAL: dict[str, tuple[tuple[Activity, ErrorStatus], ...]] = {
    "deployed": ((Activity.WATCHING, OK), (Activity.DEPLOYED, OK)),
    "failed": ((Activity.APPLYING, OK), (Activity.FAILED, ErrorStatus.FAILED)),
    "rolled_back": ((Activity.WATCHING, OK), (Activity.ROLLED_BACK, OK)),
    "error-failed": ((Activity.DOWNLOADING, ErrorStatus.FAILED),),
}
LATE_REPORTS = [
    (Activity.QUEUED, OK),
    (Activity.DOWNLOADING, OK),
    (Activity.APPLYING, ErrorStatus.RETRYING),
    (Activity.WATCHING, OK),
    (Activity.FAILED, ErrorStatus.FAILED),
    (Activity.DEPLOYED, OK),
]


@pytest.mark.parametrize(
    ("state", "late"),
    [(s, r) for s, r in itertools.product(TERMINAL, LATE_REPORTS)],
    ids=[f"{s}+{a.value}/{e.value}" for s, (a, e) in itertools.product(TERMINAL, LATE_REPORTS)],
)
def test_a_terminal_deployment_ignores_later_reports(state: str, late: tuple[Activity, ErrorStatus]) -> None:
    finished = reported(record(), *TERMINAL[state])
    assert is_terminal(finished)
    after = apply_report(finished, late[0], late[1], "late", T0 + timedelta(hours=1))
    assert after is finished
    ignored = {IgnoredReport.FINISHED, IgnoredReport.NOT_REPORTABLE, IgnoredReport.UNCHANGED}
    assert judge_report(finished, *late) in ignored


def test_a_timed_out_deployment_ignores_a_late_success() -> None:
    timed_out = time_out(
        reported(record(deadline=timedelta(minutes=30)), (Activity.DOWNLOADING, OK)), T0 + timedelta(hours=1)
    )
    assert (
        apply_report(timed_out, Activity.DEPLOYED, OK, "done at last", T0 + timedelta(hours=2)) is timed_out
    )


def test_deployed_and_drifted_may_alternate_as_observations() -> None:
    deployed = reported(record(), (Activity.DEPLOYED, OK))
    drifted = apply_report(deployed, Activity.DRIFTED, OK, "config edited", T0 + timedelta(hours=1))
    assert drifted.status is Status.DRIFTED and is_success(drifted)
    assert (
        apply_report(drifted, Activity.DEPLOYED, OK, "restored", T0 + timedelta(hours=2)).activity
        is Activity.DEPLOYED
    )


@pytest.mark.parametrize(
    ("activity", "reason"),
    [
        (Activity.QUEUED, IgnoredReport.NOT_REPORTABLE),
        (Activity.REMOVING, IgnoredReport.NOT_REQUESTED),
        (Activity.ARCHIVED, IgnoredReport.NOT_REQUESTED),
        ("exploded", IgnoredReport.UNKNOWN_VALUE),
    ],
    ids=["queued", "removing", "archived", "unknown-activity"],
)
def test_a_robot_cannot_queue_or_retire_a_deployment(activity: str, reason: IgnoredReport) -> None:
    working = reported(record(), (Activity.DOWNLOADING, OK))
    assert judge_report(working, activity, "none") is reason
    assert apply_report(working, activity, "none", "", T0) is working


@pytest.mark.parametrize("journal_state", ["idle", "switched", "healthy", "rolling_back"])
def test_a_robot_only_journal_state_is_ignored_as_an_unknown_value(journal_state: str) -> None:
    """A real Activity, but one the report format does not carry: a robot that sends its journal's
    inner step (a hand-made report, an old agent) must not move the controller's record, e.g.
    ``healthy`` before the watch finished must not count as deployed."""
    working = reported(record(), (Activity.WATCHING, OK))
    assert judge_report(working, journal_state, "none") is IgnoredReport.UNKNOWN_VALUE
    assert apply_report(working, journal_state, "none", "", T0 + timedelta(minutes=1)) is working


def test_setting_the_target_a_record_already_has_changes_nothing() -> None:
    """The controller replays a reconcile after a crash: the same switch twice is one switch."""
    staged = record(TargetStatus.STAGED)
    switched = set_target(staged, TargetStatus.DEPLOYED, T0 + timedelta(minutes=5))
    assert set_target(switched, TargetStatus.DEPLOYED, T0 + timedelta(minutes=9)) is switched


def test_a_deferred_install_reaches_the_record_while_still_queued() -> None:
    deferred = apply_report(record(), Activity.QUEUED, ErrorStatus.RETRYING, "gate 'docked' is closed", T0)
    assert (deferred.activity, deferred.error) == (Activity.QUEUED, ErrorStatus.RETRYING)
    assert deferred.events[-1].message == "gate 'docked' is closed"
    started = apply_report(deferred, Activity.DOWNLOADING, OK, "", T0 + timedelta(minutes=5))
    assert started.activity is Activity.DOWNLOADING
    # once started, "queued" is never accepted again, deferral or not
    assert judge_report(started, Activity.QUEUED, ErrorStatus.RETRYING) is IgnoredReport.NOT_REPORTABLE


def test_an_unknown_error_value_is_ignored_not_raised() -> None:
    rec = record()
    assert judge_report(rec, "downloading", "on_fire") is IgnoredReport.UNKNOWN_VALUE
    assert apply_report(rec, "downloading", "on_fire", "", T0) is rec


def test_an_archived_deployment_accepts_only_removal() -> None:
    retired = archive(
        reported(record(), (Activity.DEPLOYED, OK)), T0 + timedelta(hours=1), RecordReason.UNTARGETED
    )
    assert apply_report(retired, Activity.DOWNLOADING, OK, "", T0) is retired
    removing = apply_report(retired, Activity.REMOVING, OK, "", T0 + timedelta(hours=2))
    gone = apply_report(removing, Activity.ARCHIVED, OK, "", T0 + timedelta(hours=3))
    assert (removing.activity, gone.activity) == (Activity.REMOVING, Activity.ARCHIVED)
    assert apply_report(gone, Activity.REMOVING, OK, "", T0 + timedelta(hours=4)) is gone


@pytest.mark.parametrize(
    ("late", "accepted"),
    [
        ((Activity.DEPLOYED, OK), True),
        ((Activity.DRIFTED, OK), True),
        ((Activity.FAILED, ErrorStatus.FAILED), True),
        ((Activity.ROLLED_BACK, OK), True),
        ((Activity.DOWNLOADING, ErrorStatus.FAILED), True),
        ((Activity.DOWNLOADING, OK), False),
        ((Activity.APPLYING, ErrorStatus.RETRYING), False),
        ((Activity.QUEUED, OK), False),
    ],
    ids=[
        "deployed",
        "drifted",
        "failed",
        "rolled-back",
        "failed-downloading",
        "downloading",
        "retrying",
        "queued",
    ],
)
def test_a_cancelled_deployment_takes_the_robots_late_final_report(
    late: tuple[Activity, ErrorStatus], accepted: bool
) -> None:
    """A halt retired it while the robot held it: what the robot did must reach the record."""
    cancelled = archive(record(), T0 + timedelta(minutes=5), RecordReason.ABORTED_AFTER_DELIVERY)
    assert cancelled.activity is Activity.ARCHIVED
    after = apply_report(cancelled, late[0], late[1], "late", T0 + timedelta(minutes=6))
    if not accepted:
        assert after is cancelled
        return
    assert (after.activity, after.error) == late
    assert after.target_status is TargetStatus.ARCHIVED and is_terminal(after), "it never goes back to work"
    assert after.reason == RecordReason.ABORTED_AFTER_DELIVERY
    other = (Activity.ROLLED_BACK, OK) if late[0] is not Activity.ROLLED_BACK else (Activity.DEPLOYED, OK)
    assert apply_report(after, *other, "later still", T0 + timedelta(minutes=7)) is after, "one final word"


def test_rereading_the_same_status_changes_nothing() -> None:
    working = reported(record(), (Activity.DOWNLOADING, OK))
    assert judge_report(working, Activity.DOWNLOADING, OK) is IgnoredReport.UNCHANGED
    assert apply_report(working, Activity.DOWNLOADING, OK, "42%", T0 + timedelta(hours=1)) is working


def test_attempts_count_the_first_try_and_each_retry() -> None:
    rec = reported(
        record(),
        (Activity.DOWNLOADING, OK),
        (Activity.DOWNLOADING, ErrorStatus.RETRYING),
        (Activity.DOWNLOADING, OK),
        (Activity.VERIFYING, ErrorStatus.RETRYING),
        (Activity.APPLYING, ErrorStatus.RETRYING),
    )
    assert rec.attempts == 3
    assert rec.status is Status.RETRYING and not is_terminal(rec)


# --- merged status and outcomes ---------------------------------------------------------------------

STATUS_TABLE = list(itertools.product(sorted(REPORTED_ACTIVITIES, key=list(Activity).index), ErrorStatus))


@pytest.mark.parametrize(
    ("activity", "error"), STATUS_TABLE, ids=[f"{a.value}/{e.value}" for a, e in STATUS_TABLE]
)
def test_error_wins_in_merged_status(activity: ReportedActivity, error: ErrorStatus) -> None:
    expected = Status(activity.value) if error is ErrorStatus.NONE else Status(error.value)
    assert merged_status(activity, error) is expected
    rec = record().model_copy(update={"activity": activity, "error": error})
    assert rec.status is expected
    assert rec.model_dump(mode="json")["status"] == expected.value


OUTCOMES = [
    ((), Outcome.PENDING, False, False),
    (((Activity.APPLYING, OK),), Outcome.IN_PROGRESS, False, False),
    (((Activity.APPLYING, ErrorStatus.RETRYING),), Outcome.IN_PROGRESS, False, False),
    (((Activity.DEPLOYED, OK),), Outcome.SUCCEEDED, True, False),
    (((Activity.DRIFTED, OK),), Outcome.SUCCEEDED, True, False),
    (((Activity.ROLLED_BACK, OK),), Outcome.FAILED, False, True),
    (((Activity.FAILED, OK),), Outcome.FAILED, False, True),
    (((Activity.WATCHING, ErrorStatus.FAILED),), Outcome.FAILED, False, True),
]


@pytest.mark.parametrize(
    ("steps", "expected", "success", "failure"),
    OUTCOMES,
    ids=["queued", "applying", "retrying", "deployed", "drifted", "rolled_back", "failed", "error-failed"],
)
def test_outcome_helpers(
    steps: tuple[tuple[Activity, ErrorStatus], ...], expected: Outcome, success: bool, failure: bool
) -> None:
    rec = reported(record(), *steps)
    assert (outcome(rec), is_success(rec), is_failure(rec)) == (expected, success, failure)


# --- deadlines, archiving, bounds -------------------------------------------------------------------


def test_a_silent_robot_past_its_deadline_fails_as_timed_out() -> None:
    rec = reported(record(deadline=timedelta(minutes=30)), (Activity.DOWNLOADING, OK))
    assert time_out(rec, T0 + timedelta(minutes=30)) is rec
    failed = time_out(rec, T0 + timedelta(minutes=31))
    assert failed.status is Status.FAILED and failed.reason == "timed_out"
    assert is_failure(failed) and is_terminal(failed)
    assert failed.events[-1].activity is Activity.FAILED


@pytest.mark.parametrize(
    "rec",
    [
        reported(record(deadline=timedelta(minutes=1)), (Activity.DEPLOYED, OK)),
        record(deadline=None),
        reported(record(TargetStatus.STAGED, deadline=timedelta(minutes=1)), (Activity.STAGED, OK)),
    ],
    ids=["already-deployed", "no-deadline", "staged-waiting-for-the-switch"],
)
def test_deadline_does_not_fail_what_is_not_waiting_on_the_robot(rec: DeploymentRecord) -> None:
    assert time_out(rec, T0 + timedelta(days=1)) is rec


def test_archive_keeps_a_finished_outcome_and_cancels_one_in_flight() -> None:
    deployed = archive(reported(record(), (Activity.DEPLOYED, OK)), T0 + timedelta(hours=1))
    assert (deployed.target_status, deployed.activity, outcome(deployed)) == (
        TargetStatus.ARCHIVED,
        Activity.DEPLOYED,
        Outcome.SUCCEEDED,
    )
    in_flight = reported(record(), (Activity.DOWNLOADING, ErrorStatus.RETRYING))
    cancelled = archive(in_flight, T0 + timedelta(hours=1), RecordReason.ABORTED)
    assert (cancelled.status, cancelled.reason, outcome(cancelled)) == (
        Status.ARCHIVED,
        "aborted",
        Outcome.RETIRED,
    )
    assert archive(cancelled, T0 + timedelta(hours=2)) is cancelled


def test_events_are_bounded_at_50() -> None:
    rec = record()
    for i in range(MAX_EVENTS * 2):
        error = ErrorStatus.RETRYING if i % 2 else OK
        rec = apply_report(rec, Activity.DOWNLOADING, error, f"step {i}", T0 + timedelta(seconds=i))
    assert len(rec.events) == MAX_EVENTS
    assert rec.events[-1].message == f"step {MAX_EVENTS * 2 - 1}"
    assert DeploymentRecord.model_validate(rec.model_dump(mode="json")) == rec


def test_a_huge_robot_message_is_cut_not_rejected() -> None:
    rec = apply_report(record(), Activity.FAILED, ErrorStatus.FAILED, "x" * 100_000, T0)
    assert len(rec.events[-1].message) == MESSAGE_MAX_CHARS


def test_record_round_trips_and_a_stored_status_is_recomputed() -> None:
    rec = reported(record(), (Activity.APPLYING, ErrorStatus.FAILED))
    stored = rec.model_dump(mode="json")
    stored["status"] = "deployed"  # a hand edit of the derived field cannot lie
    loaded = DeploymentRecord.model_validate(stored)
    assert loaded == rec and loaded.status is Status.FAILED


@pytest.mark.parametrize(
    ("last_seen", "expected"),
    [
        (None, Connectivity.UNKNOWN),
        (T0 - timedelta(seconds=60), Connectivity.ONLINE),
        (T0 - timedelta(hours=1), Connectivity.OFFLINE),
    ],
    ids=["never", "recent", "stale"],
)
def test_connectivity_from_last_seen(last_seen: datetime | None, expected: Connectivity) -> None:
    assert connectivity(last_seen, T0, offline_after_seconds=300) is expected


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: deployment_id("nav", 1, "amr-1", "A" * 64), "release_sha256"),
        (lambda: deployment_id("nav", 1, "amr-1", "a" * 64, config_sha256="a" * 63), "config_sha256"),
        (
            lambda: generation_fingerprint({"name": "nav"}, "a" * 64, config_root="sha256:" + "a" * 64),
            "config_root",
        ),
        (lambda: generation_fingerprint({}, "g" * 64), "release_sha256"),
    ],
    ids=["release-upper-case", "config-short", "config-root-prefixed", "release-not-hex"],
)
def test_an_id_is_never_derived_from_a_malformed_digest_and_the_refusal_names_which(
    call: Callable[[], str], named: str
) -> None:
    """Ids are the dedupe key of every deployment: a digest in another spelling would be a second
    deployment of the same bytes, so anything but 64 lower-case hex digits is refused."""
    with pytest.raises(ValueError, match=f"^{named} must be 64 lowercase hex digits"):
        call()


def test_config_changes_the_id_and_no_config_keeps_the_old_one() -> None:
    plain = deployment_id("nav", 1, "amr-1", "a" * 64)
    assert plain == deployment_id("nav", 1, "amr-1", "a" * 64, None)
    with_config = deployment_id("nav", 1, "amr-1", "a" * 64, config_sha256="b" * 64)
    assert with_config != plain != deployment_id("nav", 1, "amr-1", "a" * 64, config_sha256="c" * 64)
