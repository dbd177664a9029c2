"""Lifecycle edges: membership changes, phases the loop set itself, abort during a rollback,
and device files that stay bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.audit.events import AuditKind
from controller.records import Action, Activity, DeploymentRecord, RecordReason, TargetStatus, new_deployment
from controller.state.model import MAX_RECORDS_PER_DEVICE, RolloutPhase, WavePhase
from tests.sim.engine import T0, Sim, device, robots, rollout_doc

ALL = {"type": "all_at_once"}
SINGLE = {
    "type": "waves",
    "waves": [{"name": "all", "percent": 100, "soak_seconds": 60, "failure_threshold": {"count": 0}}],
}


def test_a_robot_that_leaves_the_targets_has_its_deployment_archived() -> None:
    ids = robots(3)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    del sim.devices[ids[2]]  # e.g. removed from its cohort: the plan no longer has it
    sim.tick(timedelta(minutes=1))
    left = sim.record(ids[2])
    assert left is not None
    assert (left.target_status, left.reason) == (TargetStatus.ARCHIVED, RecordReason.UNTARGETED)
    assert sim.wave("all").devices == tuple(ids[:2])


def test_a_robot_that_joins_after_completion_still_gets_the_release() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    sim.succeed(*ids)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.COMPLETED
    sim.devices["amr-03"] = device("amr-03")
    sim.tick(timedelta(minutes=1))
    assert sim.dispatched() == [*ids, "amr-03"]
    assert sim.phase() is RolloutPhase.COMPLETED
    assert sim.kinds().count(AuditKind.ROLLOUT_COMPLETED) == 1


@pytest.mark.parametrize("label", [RolloutPhase.STALLED, RolloutPhase.REMOVED], ids=["stalled", "removed"])
def test_a_phase_set_by_the_loop_is_re_derived(label: RolloutPhase) -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    sim.state = sim.rollout_state.model_copy(update={"phase": label})
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.PROGRESSING


def test_a_stalled_halted_rollout_stays_halted_without_a_second_rollback() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, SINGLE))
    sim.tick()
    sim.fail(ids[0])
    sim.succeed(ids[1])
    sim.tick(timedelta(minutes=1))
    for dev in sim.rollbacks():
        sim.report(dev, "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    rollbacks = sim.kinds().count(AuditKind.ROLLBACK)
    sim.state = sim.rollout_state.model_copy(update={"phase": RolloutPhase.STALLED})
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.kinds().count(AuditKind.ROLLBACK) == rollbacks


def test_abort_waits_for_the_automatic_rollback_to_finish() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, SINGLE))
    sim.tick()
    sim.fail(ids[0])
    sim.report(ids[1], "downloading", "applying")
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    sim.edit(aborted=True)
    sim.report(ids[1], "watching", "deployed")
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.rollbacks() == ids, "the late switcher is still rolled back"
    for dev in ids:
        sim.report(dev, "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ABORTED
    assert sim.wave("all").phase is WavePhase.FAILED


def old_record(dev: str, n: int) -> DeploymentRecord:
    record = new_deployment(
        rollout=f"other-{n}",
        generation=1,
        device=dev,
        app="mapper",
        version="2.0.0",
        release_sha256=f"{n:064x}",
        wave=0,
        action=Action.DEPLOY,
        target_status=TargetStatus.DEPLOYED,
        at=T0 - timedelta(days=30 - n),
        deadline_at=None,
    )
    return record.model_copy(update={"activity": Activity.DEPLOYED})


def test_device_files_stay_bounded_and_drop_the_oldest_finished_records() -> None:
    ids = robots(1)
    sim = Sim(rollout_doc(ids, ALL))
    history = tuple(old_record(ids[0], n) for n in range(MAX_RECORDS_PER_DEVICE))
    sim.seen(ids[0])
    sim.files[ids[0]] = sim.files[ids[0]].model_copy(update={"records": history})
    out = sim.tick()
    records = out.records[ids[0]]
    assert len(records) == MAX_RECORDS_PER_DEVICE
    assert history[0] not in records, "the oldest finished record goes first"
    assert sim.record(ids[0]) in records


# --- retired robots (`decommissioned: true`, `fleetcd robot retire`) -------------------------------


def _retire(sim: Sim, dev: str) -> None:
    sim.devices[dev] = sim.devices[dev].model_copy(update={"decommissioned": True})


def test_a_robot_retired_while_paused_is_archived_not_timed_out_as_a_failure() -> None:
    ids = robots(3)
    sim = Sim(rollout_doc(ids, SINGLE))
    sim.tick()
    sim.succeed(ids[0], ids[1])
    sim.edit(paused=True)
    _retire(sim, ids[2])
    sim.tick(timedelta(hours=2))  # past the one-hour device timeout: it would time out and fail
    gone = sim.record(ids[2])
    assert gone is not None
    assert (gone.target_status, gone.reason) == (TargetStatus.ARCHIVED, RecordReason.DECOMMISSIONED)
    assert sim.phase() is RolloutPhase.PAUSED, "a retired robot is no failure that halts the rollout"


def test_a_retired_robots_rollback_is_dropped_and_the_rollback_finishes_without_it() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, SINGLE))
    sim.tick()
    sim.fail(ids[0])
    sim.succeed(ids[1])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK and sim.rollbacks() == ids
    _retire(sim, ids[1])
    sim.report(ids[0], "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    sim.tick(timedelta(minutes=1))
    dropped = sim.rollback(ids[1])
    assert dropped is not None and dropped.reason == RecordReason.DECOMMISSIONED
    assert sim.phase() is RolloutPhase.HALTED, "the rollback finished without waiting for the retired robot"


def test_a_retired_robots_finished_deployment_keeps_its_outcome() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    sim.succeed(ids[0])
    sim.tick(timedelta(minutes=1))
    _retire(sim, ids[0])
    sim.tick(timedelta(minutes=1))
    kept = sim.record(ids[0])
    assert kept is not None
    assert (kept.activity, kept.target_status, kept.reason) == (
        Activity.DEPLOYED,
        TargetStatus.DEPLOYED,
        None,
    )
