"""Idempotency: a replayed reconcile (same input, or its own output fed back) creates nothing twice.

The controller can be killed after any write and restarted; the engine must then derive exactly
the decisions it already wrote, so no record is duplicated and no audit line is repeated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from controller.audit.events import AuditKind, event_key
from controller.engine import advance
from controller.records import Activity, RecordReason, TargetStatus
from controller.state.model import RolloutPhase
from tests.sim.engine import Sim, robots, rollout_doc

CANARY = {"type": "canary", "percent": 25, "soak_seconds": 600}


def fresh() -> Sim:
    return Sim(rollout_doc(robots(8), CANARY))


def mid_canary() -> Sim:
    sim = fresh()
    sim.tick()
    sim.succeed(*sim.wave("canary").devices)
    sim.now += timedelta(minutes=11)
    return sim


def passing_canary() -> Sim:
    sim = mid_canary()
    sim.tick()
    sim.now += timedelta(minutes=11)
    return sim


def failing_canary() -> Sim:
    sim = fresh()
    sim.tick()
    sim.succeed(sim.wave("canary").devices[0])
    sim.fail(sim.wave("canary").devices[1])
    sim.now += timedelta(minutes=1)
    return sim


def rate_limited() -> Sim:
    sim = Sim(rollout_doc(robots(8), {"type": "all_at_once"}, download_rate_per_minute=3))
    sim.tick()
    sim.now += timedelta(seconds=61)
    return sim


def blue_green_switch() -> Sim:
    ids = robots(3)
    sim = Sim(rollout_doc(ids, {"type": "blue_green"}))
    sim.tick()
    for dev in ids:
        sim.report(dev, "downloading", "staged")
    sim.now += timedelta(minutes=1)
    return sim


def timing_out() -> Sim:
    sim = Sim(rollout_doc(robots(3), {"type": "all_at_once"}, device_timeout_seconds=600))
    sim.tick()
    sim.now += timedelta(minutes=11)
    return sim


def paused() -> Sim:
    sim = fresh()
    sim.tick()
    sim.edit(paused=True)
    return sim


SCENARIOS: dict[str, Callable[[], Sim]] = {
    "created": fresh,
    "canary-soaking": mid_canary,
    "canary-passing": passing_canary,
    "canary-failing": failing_canary,
    "rate-limited": rate_limited,
    "blue-green-switch": blue_green_switch,
    "timing-out": timing_out,
    "paused": paused,
}


@pytest.mark.parametrize("make", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_same_input_twice_gives_the_same_output(make: Callable[[], Sim]) -> None:
    sim = make()
    inp = sim.input()
    first, second = advance(inp), advance(inp)
    assert first == second
    assert first.events or first.records or first.state != sim.state, "each point decides something"


@pytest.mark.parametrize("make", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_output_fed_back_at_the_same_now_decides_nothing_new(make: Callable[[], Sim]) -> None:
    sim = make()
    sim.tick()
    state = sim.state
    again = advance(sim.input())
    assert again.events == ()
    assert again.records == {}
    assert again.state == state


def test_an_idle_tick_rewrites_nothing() -> None:
    sim = mid_canary()
    sim.tick()
    written = sim.rollout_state
    out = advance(dataclasses.replace(sim.input(), now=sim.now + timedelta(minutes=1)))
    assert out.events == () and out.records == {}
    assert out.state.updated_at == written.updated_at


def test_every_audit_event_of_a_whole_rollout_has_its_own_key() -> None:
    sim = fresh()
    sim.tick()
    sim.edit(paused=True)
    sim.tick(timedelta(minutes=1))
    sim.edit(paused=False)
    sim.tick(timedelta(minutes=1))
    sim.succeed(*sim.wave("canary").devices)
    sim.tick(timedelta(minutes=1))
    sim.tick(timedelta(minutes=11))
    sim.fail(*sim.wave("rest").devices[:3])
    sim.tick(timedelta(minutes=1))
    keys = [event_key(e) for e in sim.events]
    assert len(keys) == len(set(keys))
    assert AuditKind.ROLLBACK in sim.kinds()


def test_a_new_generation_supersedes_in_flight_deployments_of_the_old_one() -> None:
    ids = robots(2)
    sim = Sim(rollout_doc(ids, {"type": "all_at_once"}))
    sim.tick()
    sim.report(ids[0], "downloading")
    sim.succeed(ids[1])
    old_in_flight, old_done = sim.record(ids[0]), sim.record(ids[1])
    sim.edit(device_timeout_seconds=1800)
    sim.tick(timedelta(minutes=1))
    assert sim.rollout_state.generation == 2
    assert sim.kinds().count(AuditKind.ROLLOUT_CREATED) == 2
    files = {dev: {r.id: r for r in sim.files[dev].records} for dev in ids}
    assert old_in_flight is not None and old_done is not None
    superseded = files[ids[0]][old_in_flight.id]
    assert (superseded.target_status, superseded.activity) == (TargetStatus.ARCHIVED, Activity.ARCHIVED)
    assert superseded.reason == RecordReason.SUPERSEDED
    assert files[ids[1]][old_done.id] == old_done, "finished deployments keep their outcome"
    assert sim.dispatched() == ids
    assert sim.phase() is RolloutPhase.PROGRESSING
