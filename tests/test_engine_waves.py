"""Waves over time: gates on reports and failure thresholds, soak, manual promotion, blue/green."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.records import Action, TargetStatus
from controller.state.model import RolloutPhase, WavePhase
from tests.sim.engine import T0, Sim, robots, rollout_doc

CANARY = {"type": "canary", "percent": 10, "soak_seconds": 600}


def one_wave(threshold: dict[str, Any], **wave: Any) -> dict[str, Any]:
    return {
        "type": "waves",
        "waves": [
            {"name": "all", "percent": 100, "soak_seconds": 60, "failure_threshold": threshold, **wave}
        ],
    }


def test_canary_soaks_then_the_rest_follow_and_the_rollout_completes() -> None:
    ids = robots(10)
    sim = Sim(rollout_doc(ids, CANARY))
    sim.tick()
    canary = sim.wave("canary").devices
    assert len(canary) == 1 and sim.dispatched() == list(canary)
    sim.succeed(*canary)
    sim.tick(timedelta(minutes=1))
    assert sim.wave("canary").phase is WavePhase.SOAKING
    sim.tick(timedelta(minutes=5))
    assert sim.wave("canary").phase is WavePhase.SOAKING
    assert sim.dispatched() == list(canary), "the rest must wait out the soak"
    sim.tick(timedelta(minutes=5))
    assert sim.wave("canary").phase is WavePhase.PASSED
    assert sim.wave("rest").phase is WavePhase.RUNNING
    assert sim.dispatched() == ids
    sim.succeed(*sim.wave("rest").devices)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.COMPLETED
    assert sim.kinds() == [
        AuditKind.ROLLOUT_CREATED,
        AuditKind.WAVE_STARTED,
        AuditKind.WAVE_PASSED,
        AuditKind.WAVE_STARTED,
        AuditKind.WAVE_PASSED,
        AuditKind.ROLLOUT_COMPLETED,
    ]
    passed = next(e for e in sim.events if e.kind is AuditKind.WAVE_PASSED)
    assert passed.data["succeeded"] == 1 and passed.data["soak_seconds"] == 600


@pytest.mark.parametrize(
    ("threshold", "failures", "phase"),
    [
        ({"count": 1}, 1, WavePhase.SOAKING),
        ({"count": 1}, 2, WavePhase.FAILED),
        ({"count": 0}, 1, WavePhase.FAILED),
        ({"percent": 20}, 2, WavePhase.SOAKING),  # 2 of 10 is not more than 20 %
        ({"percent": 20}, 3, WavePhase.FAILED),
        ({"percent": 5}, 1, WavePhase.FAILED),
        ({"count": 5, "percent": 10}, 2, WavePhase.FAILED),  # either bound crossing fails
        ({"count": 1, "percent": 90}, 2, WavePhase.FAILED),
    ],
    ids=[
        "count-1-one-failure-passes",
        "count-1-two-failures-fail",
        "count-0-any-failure-fails",
        "percent-20-at-bound-passes",
        "percent-20-above-bound-fails",
        "percent-5-one-of-ten-fails",
        "percent-bound-crossed-first",
        "count-bound-crossed-first",
    ],
)
def test_failure_threshold_counts_or_percent(
    threshold: dict[str, Any], failures: int, phase: WavePhase
) -> None:
    ids = robots(10)
    sim = Sim(rollout_doc(ids, one_wave(threshold), on_halt="pause"))
    sim.tick()
    sim.fail(*ids[:failures])
    sim.succeed(*ids[failures:])
    sim.tick(timedelta(seconds=10))
    assert sim.wave("all").phase is phase
    assert sim.wave("all").counts.failed == failures


def test_threshold_fails_the_wave_before_everyone_reported() -> None:
    ids = robots(10)
    sim = Sim(rollout_doc(ids, one_wave({"count": 1}), on_halt="pause"))
    sim.tick()
    sim.fail(*ids[:2])
    sim.tick(timedelta(seconds=10))
    assert sim.wave("all").phase is WavePhase.FAILED
    assert sim.phase() is RolloutPhase.HALTED


def test_min_reported_percent_opens_the_gate_before_the_stragglers() -> None:
    ids = robots(10)
    sim = Sim(rollout_doc(ids, one_wave({"count": 0}, min_reported_percent=50)))
    sim.tick()
    sim.succeed(*ids[:4])
    sim.tick(timedelta(seconds=10))
    assert sim.wave("all").phase is WavePhase.RUNNING
    sim.succeed(ids[4])
    sim.tick(timedelta(seconds=10))
    assert sim.wave("all").phase is WavePhase.SOAKING
    sim.tick(timedelta(minutes=2))
    assert sim.wave("all").phase is WavePhase.PASSED
    assert sim.phase() is RolloutPhase.PROGRESSING
    assert sim.rollout_state.reason == "draining", "half the robots have not finished yet"
    sim.succeed(*ids[5:])
    sim.tick(timedelta(seconds=10))
    assert sim.phase() is RolloutPhase.COMPLETED


def manual() -> dict[str, Any]:
    return {
        "type": "waves",
        "waves": [
            {"name": "first", "percent": 50, "soak_seconds": 60, "manual_promotion": True},
            {"name": "second", "percent": 100, "soak_seconds": 60},
        ],
    }


def test_manual_promotion_waits_for_a_promote_bump_and_consumes_it() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, manual(), promote=3))
    sim.tick()
    first = sim.wave("first").devices
    sim.succeed(*first)
    sim.tick(timedelta(seconds=10))
    sim.tick(timedelta(minutes=2))
    assert sim.wave("first").phase is WavePhase.AWAITING_PROMOTION, "a promote set before creation is no bump"
    assert sim.rollout_state.reason == "awaiting_promotion"
    sim.tick(timedelta(hours=5))
    assert sim.wave("first").phase is WavePhase.AWAITING_PROMOTION
    generation = sim.rollout_state.generation
    sim.edit(promote=4)
    sim.tick(timedelta(seconds=10))
    assert sim.rollout_state.generation == generation, "promote is operational: same generation"
    assert sim.wave("first").phase is WavePhase.PASSED
    assert sim.rollout_state.promote_seen == 4
    assert sim.dispatched() == ids
    passed = [e for e in sim.events if e.kind is AuditKind.WAVE_PASSED]
    assert passed[0].data["promoted"] is True


def test_blue_green_stages_everyone_before_switching() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, {"type": "blue_green", "min_staged_percent": 100}))
    sim.tick()
    for dev in ids:
        record = sim.record(dev)
        assert record is not None
        assert (record.action, record.target_status) == (Action.STAGE, TargetStatus.STAGED)
    for dev in ids[:3]:
        sim.report(dev, "downloading", "staged")
    sim.tick(timedelta(minutes=1))
    assert sim.wave("stage").phase is WavePhase.RUNNING
    assert all(sim.record(d).target_status is TargetStatus.STAGED for d in ids)  # type: ignore[union-attr]
    sim.report(ids[3], "downloading", "staged")
    sim.tick(timedelta(minutes=30))
    assert sim.wave("stage").phase is WavePhase.PASSED
    assert sim.wave("switch").phase is WavePhase.RUNNING
    for dev in ids:
        record = sim.record(dev)
        assert record is not None and record.target_status is TargetStatus.DEPLOYED
        assert record.deadline_at == sim.now + timedelta(seconds=3600), "the switch gets a fresh deadline"
    sim.report(ids[0], "applying", "watching", "deployed")
    for dev in ids[1:]:
        sim.seen(dev)  # heartbeats: still online, not yet picked up the switch
    sim.tick(timedelta(minutes=1))
    assert sim.wave("switch").counts.succeeded == 1 and sim.wave("switch").counts.queued == 3
    for dev in ids[1:]:
        sim.report(dev, "applying", "watching", "deployed")
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.COMPLETED


def test_blue_green_staging_uses_the_stage_timeout() -> None:
    ids = robots(2)
    strategy = {"type": "blue_green", "stage_timeout_seconds": 600}
    sim = Sim(rollout_doc(ids, strategy))
    sim.tick()
    record = sim.record(ids[0])
    assert record is not None and record.deadline_at == T0 + timedelta(seconds=600)
