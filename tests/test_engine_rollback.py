"""A wave that crosses its failure threshold halts the rollout and rolls its robots back.

Also: offline robots are not failures until their deadline, silent robots time out so nothing
hangs, and a rolled-back robot never gets the same release again in the same generation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.engine.dispatch import cancel_reason
from controller.engine.ledger import Ledger
from controller.records import (
    Action,
    Activity,
    DeploymentRecord,
    DeviceState,
    RecordReason,
    TargetStatus,
    apply_report,
    new_deployment,
    set_target,
)
from controller.state.model import DeviceFile, RolloutPhase, WavePhase
from tests.sim.engine import NAME, SHA_NEW, SHA_OLD, T0, Sim, robots, rollout_doc

CANARY = {"type": "canary", "percent": 25, "soak_seconds": 600}


def single(threshold: dict[str, Any]) -> dict[str, Any]:
    wave = {"name": "all", "percent": 100, "soak_seconds": 60, "failure_threshold": threshold}
    return {"type": "waves", "waves": [wave]}


def test_failing_canary_halts_and_rolls_back_to_the_previous_release() -> None:
    ids = robots(8)
    sim = Sim(rollout_doc(ids, CANARY))
    sim.tick()
    canary = list(sim.wave("canary").devices)
    assert len(canary) == 2
    sim.succeed(canary[0])
    sim.fail(canary[1])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.wave("canary").phase is WavePhase.FAILED
    assert sim.wave("rest").phase is WavePhase.PENDING
    assert sim.dispatched() == sorted(canary), "the rest never get the release"
    assert sim.rollbacks() == sorted(canary)
    for dev in canary:
        rollback = sim.rollback(dev)
        assert rollback is not None
        assert (rollback.action, rollback.version, rollback.release_sha256) == (
            Action.ROLLBACK,
            "1.0.0",
            SHA_OLD,
        )
        superseded = sim.record(dev)
        assert superseded is not None and superseded.target_status is TargetStatus.ARCHIVED
    assert sim.rollout_state.rolled_back_devices == tuple(sorted(canary))
    assert sim.last is not None
    assert sim.kinds(sim.last.events) == [
        AuditKind.WAVE_FAILED,
        AuditKind.ROLLOUT_HALTED,
        AuditKind.ROLLBACK,
        AuditKind.ROLLBACK,
    ]
    failed = sim.last.events[0]
    assert (failed.data["failed"], failed.data["threshold_count"]) == (1, 0)
    for dev in canary:
        sim.report(dev, "downloading", "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    finished = sim.events[-1]
    assert (finished.kind, finished.reason) == (AuditKind.ROLLBACK, "rollback_finished")
    assert finished.data["rolled_back"] == 2 and finished.data["rollback_failed"] == 0


def test_only_robots_that_switched_get_a_rollback() -> None:
    ids = ["deployed", "failed-downloading", "self-rolled-back", "failed-applying", "still-applying"]
    sim = Sim(rollout_doc(ids, single({"count": 1})))
    sim.tick()
    sim.succeed("deployed")
    sim.report("failed-downloading", "downloading", "failed", error="failed")
    sim.report("self-rolled-back", "downloading", "applying", "watching", "rolled_back")
    sim.report("failed-applying", "downloading", "applying", "failed", error="failed")
    sim.report("still-applying", "downloading", "applying")
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.rollbacks() == ["deployed", "failed-applying"]
    sim.report("still-applying", "watching", "deployed")
    sim.tick(timedelta(minutes=1))
    assert sim.rollbacks() == ["deployed", "failed-applying", "still-applying"]
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    for dev in sim.rollbacks():
        sim.report(dev, "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED


def test_robots_whose_bundle_held_the_release_are_rolled_back_before_they_report() -> None:
    """A halt in the demo: the canary failed while its siblings were installing, reports not in."""
    ids = robots(4)
    sim = Sim(rollout_doc(ids, single({"count": 0})))
    sim.tick()  # every robot's bundle now holds the release
    sim.fail(ids[0])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.rollbacks() == ids, "a silent robot may already run the release"
    assert sim.last is not None
    assert sorted(e.device or "" for e in sim.last.events if e.kind is AuditKind.ROLLBACK) == ids
    for dev in ids[1:]:
        record = sim.record(dev)
        assert record is not None
        assert (record.target_status, record.activity) == (TargetStatus.ARCHIVED, Activity.ARCHIVED)
        assert record.reason == RecordReason.SUPERSEDED
    # ids[1] had switched before it saw its new bundle: its late report is what it did.
    sim.succeed(ids[1])
    late = sim.record(ids[1])
    assert late is not None
    assert (late.activity, late.target_status) == (Activity.DEPLOYED, TargetStatus.ARCHIVED)
    sim.tick(timedelta(minutes=1))
    assert sim.wave("all").counts.succeeded == 1
    for dev in ids:  # the agents adopt the previous release (a no-op for those still on it)
        sim.report(dev, "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.events[-1].data["rolled_back"] == 4


def test_a_robot_that_times_out_in_a_failed_wave_is_rolled_back() -> None:
    ids = robots(3)
    sim = Sim(rollout_doc(ids, single({"count": 0}), device_timeout_seconds=600))
    sim.tick()
    sim.report(ids[1], "downloading")  # then silence: it may have switched without a word
    sim.fail(ids[0])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.rollbacks() == [ids[0], ids[2]], "a robot still working is judged when it ends"
    sim.tick(timedelta(minutes=10))
    silent = sim.record(ids[1])
    assert silent is not None and silent.reason == RecordReason.TIMED_OUT
    assert sim.rollbacks() == ids


def test_queued_robots_of_a_halt_without_rollback_stay_open_to_a_late_report() -> None:
    ids = robots(3)
    sim = Sim(rollout_doc(ids, single({"count": 0}), on_halt="pause"))
    sim.tick()
    sim.fail(ids[0])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED and sim.rollbacks() == []
    for dev in ids[1:]:
        record = sim.record(dev)
        assert record is not None
        assert (record.target_status, record.activity) == (TargetStatus.ARCHIVED, Activity.ARCHIVED)
        assert record.reason == RecordReason.ABORTED_AFTER_DELIVERY, "its bundle held the release"
    sim.succeed(ids[1])
    late = sim.record(ids[1])
    assert late is not None and late.activity is Activity.DEPLOYED
    assert late.reason == RecordReason.ABORTED_AFTER_DELIVERY
    sim.tick(timedelta(minutes=1))
    assert sim.wave("all").counts.succeeded == 1


@pytest.mark.parametrize(
    ("on_halt", "previous", "withdrawn", "why"),
    [
        ("pause", ("1.0.0", SHA_OLD), False, "on_halt_pause"),
        ("rollback_all", None, False, "no_previous_release"),
        ("rollback_wave", None, False, "no_previous_release"),
        ("rollback_all", ("1.0.0", SHA_OLD), True, "previous_release_withdrawn"),
        ("rollback_wave", ("1.0.0", SHA_OLD), True, "previous_release_withdrawn"),
    ],
    ids=[
        "pause",
        "all-previous-unknown",
        "wave-previous-unknown",
        "all-previous-withdrawn",
        "wave-previous-withdrawn",
    ],
)
def test_halt_without_rollback(
    on_halt: str, previous: tuple[str, str] | None, withdrawn: bool, why: str
) -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, single({"count": 0}), on_halt=on_halt), previous=previous)
    if withdrawn:
        sim.withdrawn = frozenset({SHA_OLD})
    sim.tick()
    sim.succeed(ids[0])
    sim.fail(ids[1])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.rollbacks() == []
    assert sim.rollout_state.halt_policy == on_halt
    halted = next(e for e in sim.events if e.kind is AuditKind.ROLLOUT_HALTED)
    assert (halted.data["rollback"], halted.data["on_halt"]) == (why, on_halt)
    sim.tick(timedelta(hours=1))
    assert sim.phase() is RolloutPhase.HALTED and sim.rollbacks() == [], "nothing starts later either"


def test_offline_robots_are_not_failures_until_their_deadline() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, single({"count": 1}), device_timeout_seconds=3600))
    sim.tick()
    for dev in ids:
        sim.report(dev, "downloading")
    sim.now += timedelta(minutes=20)  # longer than offline_after_seconds (900)
    sim.succeed(ids[0])
    sim.fail(ids[1])
    sim.tick()
    counts = sim.wave("all").counts
    assert (counts.offline, counts.failed, counts.succeeded, counts.timed_out) == (2, 1, 1, 0)
    assert sim.wave("all").phase is WavePhase.RUNNING, "one failure is within the threshold"
    sim.tick(timedelta(minutes=41))  # past the one-hour deadline
    counts = sim.wave("all").counts
    assert (counts.offline, counts.timed_out) == (0, 2)
    assert sim.wave("all").phase is WavePhase.FAILED


def test_a_silent_robot_times_out_and_the_rollout_still_finishes() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, single({"percent": 50}), device_timeout_seconds=600))
    sim.tick()
    sim.succeed(*ids[1:])
    sim.tick(timedelta(minutes=5))
    assert sim.wave("all").phase is WavePhase.RUNNING
    sim.tick(timedelta(minutes=6))
    silent = sim.record(ids[0])
    assert silent is not None
    assert (silent.activity, silent.reason) == (Activity.FAILED, RecordReason.TIMED_OUT)
    assert sim.wave("all").counts.timed_out == 1
    sim.tick(timedelta(minutes=2))
    assert sim.phase() is RolloutPhase.COMPLETED


def test_a_rolled_back_robot_gets_the_release_again_only_in_a_new_generation() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, single({"count": 0})))
    sim.tick()
    sim.fail(ids[0])
    sim.succeed(ids[1])
    sim.tick(timedelta(minutes=1))
    for dev in ids:
        sim.report(dev, "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.rollout_state.rolled_back_devices == tuple(ids)
    # The device files lost their records (trimmed, or rebuilt): the state still remembers.
    for dev in ids:
        sim.files[dev] = sim.files[dev].model_copy(update={"records": ()})
    sim.edit(paused=True)
    sim.tick(timedelta(minutes=1))
    sim.edit(paused=False)
    sim.tick(timedelta(hours=3))
    assert sim.dispatched() == [] and sim.rollbacks() == []
    generation = sim.rollout_state.generation
    sim.edit(device_timeout_seconds=1800)  # an approved edit: a new generation, same release
    sim.tick(timedelta(minutes=1))
    assert sim.rollout_state.generation == generation + 1
    assert sim.rollout_state.rolled_back_devices == ()
    assert sim.dispatched() == ids
    record = sim.record(ids[0])
    assert record is not None and record.release_sha256 == sim.release_sha256


def _record(action: Action = Action.DEPLOY, *reports: tuple[str, str]) -> DeploymentRecord:
    staged = action is Action.STAGE
    record = new_deployment(
        rollout=NAME,
        generation=1,
        device="amr-01",
        app="navstack",
        version="1.0.0" if action is Action.ROLLBACK else "1.1.0",
        release_sha256=SHA_OLD if action is Action.ROLLBACK else SHA_NEW,
        wave=0,
        action=action,
        target_status=TargetStatus.STAGED if staged else TargetStatus.DEPLOYED,
        at=T0,
        deadline_at=None,
    )
    for activity, error in reports:
        record = apply_report(record, activity, error, "", T0)
    return record


_SWITCH_ORDERED = set_target(_record(Action.STAGE, ("staged", "none")), TargetStatus.DEPLOYED, T0)


@pytest.mark.parametrize(
    ("record", "published", "expected"),
    [
        (_record(), True, RecordReason.ABORTED_AFTER_DELIVERY),
        (_record(), False, RecordReason.ABORTED),
        (_record(Action.DEPLOY, ("queued", "retrying")), True, RecordReason.ABORTED_AFTER_DELIVERY),
        (_record(Action.STAGE), True, RecordReason.ABORTED),
        (_record(Action.STAGE, ("staged", "none")), True, RecordReason.ABORTED),
        (_SWITCH_ORDERED, True, RecordReason.ABORTED_AFTER_DELIVERY),
        (_record(Action.DEPLOY, ("downloading", "none")), True, None),
        (_record(Action.DEPLOY, ("deployed", "none")), True, None),
        (_record(Action.ROLLBACK), True, None),
    ],
    ids=[
        "queued-in-a-published-bundle",
        "queued-created-this-tick",
        "deferred-by-a-robot-gate",
        "stage-queued-never-told-to-run",
        "staged-waiting-for-the-switch",
        "switch-ordered-no-word-since",
        "in-flight-finishes",
        "finished",
        "rollback-is-never-cancelled",
    ],
)
def test_a_halt_retires_only_what_the_robot_has_not_started(
    record: DeploymentRecord, published: bool, expected: RecordReason | None
) -> None:
    given = {"amr-01": DeviceFile(state=DeviceState(device="amr-01"), records=(record,) if published else ())}
    ledger = Ledger(given, NAME, 1)
    ledger.put(record)
    assert cancel_reason(ledger, record) == expected
