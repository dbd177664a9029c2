"""A withdrawn release is deployed nowhere anew: the engine's decisions, tick by tick (pure).

``EngineInput.withdrawn`` holds the digests of the release files a withdrawal on main names. A
rollout of such a release stalls with ``release_withdrawn`` and retires what robots have not
started; in-flight deployments end on their own; a rollback already under way finishes; a
completed rollout takes no late joiner; lifting the withdrawal lets the rollout go on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.records import Action, RecordReason, TargetStatus
from controller.state.model import RolloutPhase, WavePhase
from tests.sim.engine import SHA_NEW, SHA_OLD, Sim, device, robots, rollout_doc

TWO_WAVES: dict[str, Any] = {
    "type": "waves",
    "waves": [
        {"name": "first", "percent": 50, "soak_seconds": 60, "failure_threshold": {"count": 0}},
        {"name": "rest", "percent": 100, "soak_seconds": 60, "failure_threshold": {"count": 0}},
    ],
}


def _stalled_events(sim: Sim) -> list[str | None]:
    return [e.reason for e in sim.events if e.kind is AuditKind.STALLED]


def test_a_rollout_of_a_withdrawn_release_dispatches_to_no_robot() -> None:
    sim = Sim(rollout_doc(robots(4), TWO_WAVES))
    sim.withdrawn = frozenset({SHA_NEW})
    sim.tick()
    assert (sim.phase(), sim.rollout_state.reason) == (RolloutPhase.STALLED, "release_withdrawn")
    assert sim.dispatched() == []
    sim.tick(timedelta(hours=2))
    assert sim.dispatched() == [] and sim.phase() is RolloutPhase.STALLED
    assert _stalled_events(sim) == ["release_withdrawn"], "stalled once, not on every tick"


def test_a_withdrawal_mid_rollout_retires_what_did_not_start_and_lets_in_flight_finish() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, TWO_WAVES))
    sim.tick()
    first = list(sim.wave("first").devices)
    sim.report(first[0], "downloading", "applying")  # in flight
    sim.withdrawn = frozenset({SHA_NEW})
    out = sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.STALLED
    assert [e.kind for e in out.events] == [AuditKind.STALLED]
    busy, silent = sim.record(first[0]), sim.record(first[1])
    assert busy is not None and busy.target_status is TargetStatus.DEPLOYED, "in flight: ends on its own"
    assert silent is not None and silent.target_status is TargetStatus.ARCHIVED
    assert silent.reason == RecordReason.ABORTED_AFTER_DELIVERY, "its bundle held the release"
    sim.report(first[0], "watching", "deployed")
    sim.tick(timedelta(hours=1))
    assert sim.wave("rest").phase is WavePhase.PENDING
    assert not any(d in sim.dispatched() for d in sim.wave("rest").devices), "no new deployment"


def test_lifting_the_withdrawal_lets_the_rollout_go_on() -> None:
    ids = robots(4)
    sim = Sim(rollout_doc(ids, TWO_WAVES))
    sim.withdrawn = frozenset({SHA_NEW})
    sim.tick()
    sim.withdrawn = frozenset()
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.PROGRESSING
    assert sim.dispatched() == sorted(sim.wave("first").devices)


def test_a_completed_rollout_of_a_withdrawn_release_takes_no_late_joiner() -> None:
    ids = robots(2)
    single = {"type": "all_at_once"}
    sim = Sim(rollout_doc(ids, single))
    sim.tick()
    sim.succeed(*ids)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.COMPLETED
    sim.withdrawn = frozenset({SHA_NEW})
    joiner = "amr-99"
    sim.devices[joiner] = device(joiner)  # joined a targeted cohort: same generation, a bigger plan
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.COMPLETED
    assert sim.record(joiner) is None


def test_a_rollback_under_way_finishes_when_the_failed_release_is_withdrawn() -> None:
    ids = robots(3)
    wave = {"name": "all", "percent": 100, "soak_seconds": 60, "failure_threshold": {"count": 0}}
    sim = Sim(rollout_doc(ids, {"type": "waves", "waves": [wave]}))
    sim.tick()
    sim.succeed(ids[0])
    sim.fail(ids[1])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    sim.withdrawn = frozenset({SHA_NEW})  # the bad release is withdrawn while robots go back
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK
    for dev in sim.rollbacks():
        sim.report(dev, "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert _stalled_events(sim) == []


@pytest.mark.parametrize(
    ("withdrawn", "rollbacks"),
    [(frozenset(), True), (frozenset({SHA_OLD}), False)],
    ids=["previous-available", "previous-withdrawn"],
)
def test_a_withdrawn_previous_release_is_never_a_rollback_target(
    withdrawn: frozenset[str], rollbacks: bool
) -> None:
    ids = robots(2)
    wave = {"name": "all", "percent": 100, "soak_seconds": 60, "failure_threshold": {"count": 0}}
    sim = Sim(rollout_doc(ids, {"type": "waves", "waves": [wave]}))
    sim.withdrawn = withdrawn
    sim.tick()
    sim.succeed(ids[0])
    sim.fail(ids[1])
    sim.tick(timedelta(minutes=1))
    made = [sim.rollback(d) for d in ids]
    assert any(r is not None and r.action is Action.ROLLBACK for r in made) is rollbacks
    if not rollbacks:
        assert sim.phase() is RolloutPhase.HALTED
