"""What a halt does is the operator's choice, stated in the rollout (``on_halt``): a decision table.

A three-wave rollout whose first wave passed and whose second crosses its failure threshold:
``rollback_all`` (the default) returns every robot that received the release to the previous one,
``rollback_wave`` only the failed wave's robots, ``pause`` none — the rollout stops dispatching and
waits for a commit. The state records which policy was applied.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.records import Action, RecordReason, TargetStatus, rollout_generation
from controller.state.model import RolloutPhase, WavePhase
from tests.sim.engine import SHA_NEW, SHA_OLD, Sim, robots, rollout_doc

THREE_WAVES: dict[str, Any] = {
    "type": "waves",
    "waves": [
        {"name": "staging", "percent": 25, "soak_seconds": 60, "failure_threshold": {"count": 0}},
        {"name": "canary", "percent": 50, "soak_seconds": 60, "failure_threshold": {"count": 0}},
        {"name": "production", "percent": 100, "soak_seconds": 60, "failure_threshold": {"count": 0}},
    ],
}


def _halted_in_canary(on_halt: str | None) -> Sim:
    """Staging passed (its robots run the release); one canary robot failed, the other succeeded."""
    fields = {} if on_halt is None else {"on_halt": on_halt}
    sim = Sim(rollout_doc(robots(8), THREE_WAVES, **fields))
    sim.tick()
    sim.succeed(*sim.wave("staging").devices)
    sim.tick(timedelta(minutes=1))
    sim.tick(timedelta(minutes=2))  # soaked: canary starts
    assert sim.wave("staging").phase is WavePhase.PASSED
    canary = list(sim.wave("canary").devices)
    assert len(canary) >= 2
    sim.fail(canary[0])
    sim.succeed(*canary[1:])
    sim.tick(timedelta(minutes=1))
    assert sim.wave("canary").phase is WavePhase.FAILED
    return sim


@pytest.mark.parametrize(
    ("on_halt", "waves_back", "phase"),
    [
        (None, ("staging", "canary"), RolloutPhase.ROLLING_BACK),
        ("rollback_all", ("staging", "canary"), RolloutPhase.ROLLING_BACK),
        ("rollback_wave", ("canary",), RolloutPhase.ROLLING_BACK),
        ("pause", (), RolloutPhase.HALTED),
    ],
    ids=["default-is-rollback-all", "rollback-all", "rollback-wave", "pause"],
)
def test_halt_policy_decides_which_robots_return_to_the_previous_release(
    on_halt: str | None, waves_back: tuple[str, ...], phase: RolloutPhase
) -> None:
    sim = _halted_in_canary(on_halt)
    applied = on_halt or "rollback_all"
    canary = list(sim.wave("canary").devices)
    switched = sorted([*sim.wave("staging").devices, *canary])  # canary[0] failed after applying
    expected = sorted(d for d in switched if any(d in sim.wave(name).devices for name in waves_back))
    assert sim.phase() is phase
    assert sim.rollbacks() == expected
    assert sim.rollout_state.halt_policy == applied
    for device in expected:
        rollback = sim.rollback(device)
        assert rollback is not None
        assert (rollback.action, rollback.version, rollback.release_sha256) == (
            Action.ROLLBACK,
            "1.0.0",
            SHA_OLD,
        )
    assert not any(d in sim.dispatched() for d in sim.wave("production").devices), "production never got it"
    halted = next(e for e in sim.events if e.kind is AuditKind.ROLLOUT_HALTED)
    assert halted.data["on_halt"] == applied
    for device in expected:
        sim.report(device, "applying", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    if expected:
        finished = sim.events[-1]
        assert (finished.kind, finished.reason) == (AuditKind.ROLLBACK, "rollback_finished")
        assert finished.data["rolled_back"] == len(expected)
        assert finished.data["on_halt"] == applied


def test_rollback_all_returns_a_staging_robot_that_finished_long_before_the_halt() -> None:
    """The demo's amr-ber-01: staging passed hours ago; canary fails; staging goes back too."""
    sim = _halted_in_canary("rollback_all")
    staging = sim.wave("staging").devices[0]
    record = sim.record(staging)
    assert record is not None
    assert (record.target_status, record.reason) == (TargetStatus.ARCHIVED, RecordReason.SUPERSEDED)
    rollback = sim.rollback(staging)
    assert rollback is not None and rollback.wave == 0, "the rollback is filed under the robot's own wave"
    assert staging in sim.rollout_state.rolled_back_devices


def test_rollback_wave_leaves_passed_waves_on_the_release() -> None:
    sim = _halted_in_canary("rollback_wave")
    staging = sim.wave("staging").devices[0]
    assert sim.rollback(staging) is None
    record = sim.record(staging)
    assert record is not None and record.target_status is TargetStatus.DEPLOYED
    assert staging not in sim.rollout_state.rolled_back_devices


def test_pause_retires_what_did_not_start_and_waits_for_a_commit() -> None:
    sim = _halted_in_canary("pause")
    sim.tick(timedelta(hours=6))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.rollbacks() == []
    assert sim.wave("production").phase is WavePhase.PENDING
    staging = sim.wave("staging").devices[0]
    record = sim.record(staging)
    assert record is not None and record.target_status is TargetStatus.DEPLOYED, "robots keep what they run"


def test_a_robot_still_installing_in_a_passed_wave_is_rolled_back_when_it_finishes() -> None:
    sim = Sim(rollout_doc(robots(8), THREE_WAVES, on_halt="rollback_all"))
    sim.tick()
    sim.succeed(*sim.wave("staging").devices)
    sim.tick(timedelta(minutes=1))
    sim.tick(timedelta(minutes=2))
    canary = list(sim.wave("canary").devices)
    sim.report(canary[1], "downloading", "applying")  # working when its sibling fails
    sim.fail(canary[0])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    assert canary[1] not in sim.rollbacks(), "judged when it ends"
    sim.report(canary[1], "watching", "deployed")
    sim.tick(timedelta(minutes=1))
    assert canary[1] in sim.rollbacks()


def test_a_rollout_whose_phase_was_overwritten_resumes_rolling_back_every_wave() -> None:
    sim = _halted_in_canary("rollback_all")
    assert sim.state is not None
    sim.state = sim.state.model_copy(update={"phase": RolloutPhase.STALLED, "reason": "invalid"})
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK, "staging's rollbacks are still in flight"
    for device in sim.rollbacks():
        sim.report(device, "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED


def test_changing_the_halt_policy_is_a_new_generation_that_approvers_sign() -> None:
    doc = rollout_doc(robots(2), THREE_WAVES)
    first = rollout_generation(doc, SHA_NEW, None)
    assert rollout_generation({**doc, "on_halt": "rollback_all"}, SHA_NEW, first) != first
    assert rollout_generation({**doc, "on_halt": "pause"}, SHA_NEW, first).number == 2


def test_auto_rollback_is_refused_with_the_field_that_replaced_it() -> None:
    with pytest.raises(ValueError, match="'auto_rollback' was replaced by 'on_halt'"):
        Sim(rollout_doc(robots(2), THREE_WAVES, auto_rollback=False))
