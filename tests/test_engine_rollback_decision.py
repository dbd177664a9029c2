"""Who gets a rollback after a halt (controller.engine.rollback: switched, needs_rollback, in_scope).

The records here are moved by the real :mod:`controller.records.transitions` through the reports a
robot would send, so each row is a robot's story. A robot that may run the failed release must be
rolled back (leaving it would keep a release that failed its gate on the fleet); a robot that never
ran it must not get a rollback it does not need; a robot that said nothing since it was told to run
the release is rolled back, since silence says nothing about what it runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controller.engine.rollback import in_scope, needs_rollback, switched
from controller.records.model import Action, DeploymentRecord, TargetStatus
from controller.records.transitions import apply_report, archive, new_deployment, set_target, time_out
from fleetcd.compat import UTC
from fleetcd.models.rollout import HaltPolicy
from fleetcd.reasons import RecordReason
from fleetcd.vocabulary import Activity, ErrorStatus

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
OK, RETRY, FAIL = ErrorStatus.NONE, ErrorStatus.RETRYING, ErrorStatus.FAILED


def fresh(action: Action = Action.DEPLOY) -> DeploymentRecord:
    return new_deployment(
        rollout="nav-1-1",
        generation=1,
        device="r1",
        app="nav",
        version="1.1.0",
        release_sha256="a" * 64,
        wave=0,
        action=action,
        target_status=TargetStatus.STAGED if action is Action.STAGE else TargetStatus.DEPLOYED,
        at=T0,
        deadline_at=T0 + timedelta(hours=1),
    )


def told(record: DeploymentRecord, *steps: tuple[Activity, ErrorStatus]) -> DeploymentRecord:
    for minute, (activity, error) in enumerate(steps, start=1):
        record = apply_report(
            record, activity.value, error.value, activity.value, T0 + timedelta(minutes=minute)
        )
    return record


def switch(record: DeploymentRecord) -> DeploymentRecord:
    return set_target(record, TargetStatus.DEPLOYED, T0 + timedelta(minutes=30))


# --- one robot's story → rolled back? -----------------------------------------------------------------


STORIES: list[tuple[str, DeploymentRecord, bool, bool]] = [
    # (story, record, delivered, needs a rollback)
    (
        "deployed",
        told(fresh(), (Activity.DOWNLOADING, OK), (Activity.APPLYING, OK), (Activity.DEPLOYED, OK)),
        True,
        True,
    ),
    ("drifted", told(fresh(), (Activity.DEPLOYED, OK), (Activity.DRIFTED, OK)), True, True),
    ("failed-while-applying", told(fresh(), (Activity.APPLYING, OK), (Activity.FAILED, FAIL)), True, True),
    ("failed-while-watching", told(fresh(), (Activity.WATCHING, OK), (Activity.FAILED, FAIL)), True, True),
    ("rolled-itself-back", told(fresh(), (Activity.WATCHING, OK), (Activity.ROLLED_BACK, FAIL)), True, False),
    ("failed-downloading", told(fresh(), (Activity.DOWNLOADING, OK), (Activity.FAILED, FAIL)), True, False),
    ("failed-verifying", told(fresh(), (Activity.VERIFYING, OK), (Activity.FAILED, FAIL)), True, False),
    ("queued-and-delivered", fresh(), True, True),
    ("queued-not-delivered", fresh(), False, False),
    ("deferred-by-a-gate", told(fresh(), (Activity.QUEUED, RETRY)), True, True),
    ("still-downloading", told(fresh(), (Activity.DOWNLOADING, OK)), True, False),
    ("still-applying", told(fresh(), (Activity.APPLYING, OK)), True, False),
    ("timed-out-delivered", time_out(fresh(), T0 + timedelta(hours=2)), True, True),
    ("timed-out-not-delivered", time_out(fresh(), T0 + timedelta(hours=2)), False, False),
    (
        "timed-out-after-applying",
        time_out(told(fresh(), (Activity.APPLYING, OK)), T0 + timedelta(hours=2)),
        False,
        True,
    ),
]


@pytest.mark.parametrize(("story", "record", "delivered", "needed"), STORIES, ids=[s[0] for s in STORIES])
def test_who_needs_a_rollback(story: str, record: DeploymentRecord, delivered: bool, needed: bool) -> None:
    assert needs_rollback(record, delivered) is needed, story


# --- blue/green: only what ran after the switch counts ------------------------------------------------


def test_a_robot_that_only_staged_ran_nothing_live() -> None:
    staged = told(
        fresh(Action.STAGE), (Activity.DOWNLOADING, OK), (Activity.APPLYING, OK), (Activity.STAGED, OK)
    )
    assert not switched(staged)
    assert not needs_rollback(staged, delivered=True)


def test_a_staged_robot_ordered_to_switch_and_silent_is_rolled_back() -> None:
    staged = switch(told(fresh(Action.STAGE), (Activity.APPLYING, OK), (Activity.STAGED, OK)))
    assert staged.activity is Activity.STAGED and staged.target_status is TargetStatus.DEPLOYED
    assert needs_rollback(staged, delivered=True)
    assert not needs_rollback(staged, delivered=False)


def test_applying_before_the_switch_is_staging_after_it_is_running() -> None:
    failed_staging = told(fresh(Action.STAGE), (Activity.APPLYING, OK), (Activity.FAILED, FAIL))
    assert failed_staging.activity is Activity.FAILED
    assert not switched(failed_staging), "applying while staging is not running the release"
    assert not needs_rollback(failed_staging, delivered=True)
    before = told(fresh(Action.STAGE), (Activity.APPLYING, OK), (Activity.STAGED, OK))
    after = told(switch(before), (Activity.WATCHING, OK), (Activity.FAILED, FAIL))
    assert after.activity is Activity.FAILED
    assert switched(after)
    assert needs_rollback(after, delivered=True)


def test_a_switched_and_deployed_blue_green_robot_is_rolled_back() -> None:
    done = told(
        switch(told(fresh(Action.STAGE), (Activity.STAGED, OK))),
        (Activity.WATCHING, OK),
        (Activity.DEPLOYED, OK),
    )
    assert switched(done) and needs_rollback(done, delivered=True)


# --- archived records ---------------------------------------------------------------------------------


def test_an_archived_deployment_that_had_switched_still_counts() -> None:
    ran = told(fresh(), (Activity.APPLYING, OK), (Activity.DEPLOYED, OK))
    retired = archive(ran, T0 + timedelta(hours=1), RecordReason.SUPERSEDED)
    assert retired.activity is Activity.DEPLOYED  # the outcome is kept
    assert needs_rollback(retired, delivered=True)


def test_a_deployment_cancelled_before_the_robot_acted_needs_nothing() -> None:
    cancelled = archive(fresh(), T0 + timedelta(minutes=5), RecordReason.ABORTED)
    assert cancelled.activity is Activity.ARCHIVED
    assert not needs_rollback(cancelled, delivered=False)


# --- which waves go back ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "failed", "rolled_back"),
    [
        (HaltPolicy.ROLLBACK_ALL, 2, [0, 1, 2]),
        (HaltPolicy.ROLLBACK_ALL, 0, [0]),
        (HaltPolicy.ROLLBACK_WAVE, 2, [2]),
        (HaltPolicy.ROLLBACK_WAVE, 0, [0]),
        (HaltPolicy.PAUSE, 2, []),
    ],
    ids=["all-from-wave-2", "all-from-wave-0", "wave-only", "first-wave-only", "pause"],
)
def test_which_waves_are_rolled_back(policy: HaltPolicy, failed: int, rolled_back: list[int]) -> None:
    assert [wave for wave in range(5) if in_scope(policy, wave, failed)] == rolled_back


def test_every_halt_policy_is_decided() -> None:
    for policy in HaltPolicy:
        assert isinstance(in_scope(policy, 0, 0), bool)
