"""Scheduling: ``schedule.not_before`` and the download rate limit, on an injected clock."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from controller.audit.events import AuditKind
from controller.engine import advance
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.models.fleet import Defaults
from tests.sim.engine import T0, Sim, robots, rollout_doc

ALL = {"type": "all_at_once"}


def test_nothing_is_dispatched_before_not_before() -> None:
    ids = robots(3)
    start = T0 + timedelta(hours=2)
    sim = Sim(rollout_doc(ids, ALL, schedule={"not_before": start.isoformat()}))
    sim.tick()
    assert (sim.rollout_state.phase, sim.rollout_state.reason) == (RolloutPhase.SCHEDULED, "not_before")
    assert (sim.wave("all").phase, sim.wave("all").reason) == (WavePhase.WAITING, "not_before")
    sim.tick(timedelta(minutes=119))
    assert sim.dispatched() == []
    assert sim.kinds() == [AuditKind.ROLLOUT_CREATED]
    sim.tick(timedelta(minutes=1))  # the clock tick at not_before, no new commit needed
    assert sim.phase() is RolloutPhase.PROGRESSING
    assert sim.dispatched() == ids
    assert sim.kinds() == [AuditKind.ROLLOUT_CREATED, AuditKind.WAVE_STARTED]


def test_rate_limit_spreads_dispatch_over_minutes() -> None:
    ids = robots(10)
    sim = Sim(rollout_doc(ids, ALL, download_rate_per_minute=3))
    dispatched = []
    for _ in range(8):
        sim.tick()
        dispatched.append(len(sim.dispatched()))
        sim.now += timedelta(seconds=30)
    assert dispatched == [3, 3, 6, 6, 9, 9, 10, 10]
    records = [sim.record(d) for d in ids]
    per_minute: dict[int, int] = {}
    for record in records:
        assert record is not None
        minute = int((record.created_at - T0).total_seconds() // 60)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    assert max(per_minute.values()) <= 3


def test_rate_limited_wave_waits_with_the_reason() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, ALL, download_rate_per_minute=2))
    sim.tick()
    assert (sim.wave("all").phase, sim.wave("all").reason) == (WavePhase.WAITING, "rate_limit")
    sim.tick(timedelta(minutes=1))
    assert (sim.wave("all").phase, sim.wave("all").reason) == (WavePhase.RUNNING, None)


def test_fleet_default_rate_applies_when_the_rollout_sets_none() -> None:
    ids = robots(5)
    sim = Sim(rollout_doc(ids, ALL), defaults=Defaults(download_rate_per_minute=2))
    sim.tick()
    assert len(sim.dispatched()) == 2


def test_rate_limit_counts_dispatches_already_on_the_state_branch() -> None:
    """A restarted controller does not get a fresh budget: the count comes from record timestamps."""
    ids = robots(6)
    sim = Sim(rollout_doc(ids, ALL, download_rate_per_minute=3))
    sim.tick()
    restarted = dataclasses.replace(sim.input(), now=T0 + timedelta(seconds=20))
    out = advance(restarted)
    assert out.records == {}
