"""Pause, resume and abort from the repository: in-flight deployments finish, nothing new starts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from controller.audit.events import AuditKind
from controller.engine import advance
from controller.records import Activity, RecordReason, TargetStatus
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.reasons import SkipReason
from tests.sim.engine import Sim, robots, rollout_doc

ALL = {"type": "all_at_once"}
CANARY = {"type": "canary", "percent": 25, "soak_seconds": 600}


def test_pause_stops_dispatch_but_in_flight_deployments_continue() -> None:
    ids = robots(6)
    sim = Sim(rollout_doc(ids, ALL, download_rate_per_minute=2))
    sim.tick()
    first = sim.dispatched()
    sim.report(first[0], "downloading")
    sim.edit(paused=True)
    sim.tick(timedelta(minutes=5))
    sim.tick(timedelta(minutes=5))
    assert sim.phase() is RolloutPhase.PAUSED
    assert sim.dispatched() == first
    assert (sim.wave("all").phase, sim.wave("all").reason) == (WavePhase.WAITING, "paused")
    sim.report(first[0], "applying", "deployed")
    sim.tick(timedelta(minutes=1))
    record = sim.record(first[0])
    assert record is not None and record.activity is Activity.DEPLOYED
    assert sim.wave("all").counts.succeeded == 1
    assert sim.kinds().count(AuditKind.ROLLOUT_PAUSED) == 1
    sim.edit(paused=False)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.PROGRESSING
    assert len(sim.dispatched()) == 4
    assert sim.kinds()[-1] is AuditKind.ROLLOUT_RESUMED


def test_pause_holds_a_wave_at_its_gate() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, CANARY))
    sim.tick()
    sim.succeed(*sim.wave("canary").devices)
    sim.tick(timedelta(minutes=1))  # gates met: the 10-minute soak starts
    sim.edit(paused=True)
    sim.tick(timedelta(hours=1))
    assert (sim.wave("canary").phase, sim.wave("canary").reason) == (WavePhase.SOAKING, "paused")
    assert sim.wave("rest").phase is WavePhase.PENDING
    sim.edit(paused=False)
    sim.tick(timedelta(minutes=1))
    assert sim.wave("canary").phase is WavePhase.PASSED
    assert sim.dispatched() == ids


def test_a_failure_while_paused_still_halts() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, CANARY))
    sim.tick()
    sim.edit(paused=True)
    sim.tick(timedelta(minutes=1))
    sim.fail(*sim.wave("canary").devices)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert sim.wave("canary").phase is WavePhase.FAILED


def test_pause_seen_through_a_selection_that_skips_everyone_keeps_the_waves() -> None:
    """Selection skips every robot of a paused rollout; that must not read as "robots left"."""
    ids = robots(4)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    sim.report(ids[0], "downloading")
    sim.edit(paused=True)
    paused = dataclasses.replace(sim.input(), planned=[], skipped=[(d, SkipReason.PAUSED.value) for d in ids])
    out = advance(paused)
    sim.apply(out)
    assert sim.wave("all").devices == tuple(ids)
    for dev in ids:
        record = sim.record(dev)
        assert record is not None and record.target_status is TargetStatus.DEPLOYED


def test_abort_archives_queued_deployments_and_is_final() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    sim.report(ids[0], "downloading")
    sim.succeed(ids[1])
    sim.edit(aborted=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ABORTED
    in_flight, done = sim.record(ids[0]), sim.record(ids[1])
    assert in_flight is not None and in_flight.target_status is TargetStatus.DEPLOYED
    assert done is not None and done.activity is Activity.DEPLOYED
    for dev in ids[2:]:
        record = sim.record(dev)
        assert record is not None and record.activity is Activity.ARCHIVED
        # Their bundles held the release: "aborted" alone would claim they never ran it.
        assert record.reason == RecordReason.ABORTED_AFTER_DELIVERY
    sim.succeed(ids[2])  # it had installed before it saw the abort
    late = sim.record(ids[2])
    assert late is not None
    assert (late.activity, late.target_status) == (Activity.DEPLOYED, TargetStatus.ARCHIVED)
    sim.tick(timedelta(minutes=1))
    assert sim.kinds().count(AuditKind.ROLLOUT_ABORTED) == 1
    sim.edit(aborted=False)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ABORTED, "abort is final for the generation"


def test_pause_resume_pause_logs_each_change_once() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, ALL))
    sim.tick()
    for paused in (True, False, True):
        sim.edit(paused=paused)
        sim.tick(timedelta(minutes=1))
        sim.tick(timedelta(minutes=1))
    assert [k for k in sim.kinds() if k in (AuditKind.ROLLOUT_PAUSED, AuditKind.ROLLOUT_RESUMED)] == [
        AuditKind.ROLLOUT_PAUSED,
        AuditKind.ROLLOUT_RESUMED,
        AuditKind.ROLLOUT_PAUSED,
    ]
