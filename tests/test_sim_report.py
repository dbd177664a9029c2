"""What ``fleetcd sim`` reports (controller.sim.report), as tables over hand-made traces and real records.

The report is what an operator reads to decide whether a rollout plan is safe before merging it, so
a wave's robots, its applied/failed/pending counts and its timing percentiles must be exactly what
the traces say: a failed deployment never counted as applied, a rollback never counted in the wave
it undoes, a robot still working never dropped, and a wave nobody reached yet still listed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controller.records.model import Action, DeploymentRecord, TargetStatus
from controller.records.transitions import new_deployment
from controller.sim.model import Trace
from controller.sim.report import percentile, summarize, wave_timings
from controller.state.model import RolloutPhase, RolloutState, WavePhase, WaveState
from fleetcd.compat import UTC

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SHA = "a" * 64


# --- percentile (nearest rank) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 1, 1.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 50, 50.0),
        ([float(i) for i in range(1, 1001)], 99, 990.0),
        ([5.0, 5.0, 5.0], 50, 5.0),
    ],
    ids=[
        "empty",
        "one-p50",
        "one-p99",
        "p50-even",
        "unsorted",
        "p75",
        "p100",
        "p1",
        "p99-of-100",
        "p50-of-100",
        "p99-of-1000",
        "ties",
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


def test_percentile_is_always_one_of_the_values() -> None:
    values = [0.3, 17.0, 2.5, 9.9, 100.0, 4.2, 4.2]
    for p in (0.1, 10, 33.3, 50, 66.6, 90, 99, 99.9, 100):
        assert percentile(values, p) in values


# --- summarize ----------------------------------------------------------------------------------------


def trace(
    device: str, outcome: str | None, finished: float | None = None, action: str = "deploy", dep: str = ""
) -> Trace:
    return Trace(
        device=device,
        deployment_id=dep or f"dep-{device}",
        app="nav",
        version="1.1.0",
        action=action,
        received_s=1.0,
        started_s=2.0 if outcome is not None or finished is not None else None,
        finished_s=finished,
        outcome=outcome,
    )


def test_summary_counts_each_outcome_once() -> None:
    traces = [
        trace("r1", "deployed", 10.0),
        trace("r2", "staged", 20.0),
        trace("r3", "failed", 30.0),
        trace("r4", "rolled_back", 40.0),
        trace("r5", None),
        trace("r4", "deployed", 50.0, action="rollback", dep="dep-r4-rb"),
    ]
    summary = summarize(traces, robots=6, offline=1, rejected=2)
    assert (summary.robots, summary.offline, summary.rejected_bundles) == (6, 1, 2)
    assert (summary.applied, summary.failed, summary.rolled_back, summary.pending) == (2, 1, 1, 1)
    assert summary.rollbacks_applied == 1
    assert (summary.merge_to_applied_p50_s, summary.merge_to_applied_p99_s) == (10.0, 20.0)


def test_a_rollback_is_not_an_applied_deployment_nor_in_the_timings() -> None:
    summary = summarize([trace("r1", "deployed", 5.0, action="rollback")], robots=1, offline=0, rejected=0)
    assert summary.applied == 0
    assert summary.rollbacks_applied == 1
    assert summary.merge_to_applied_p50_s is None


def test_an_applied_outcome_without_a_time_is_not_timed() -> None:
    summary = summarize([trace("r1", "deployed", None)], robots=1, offline=0, rejected=0)
    assert summary.applied == 0 and summary.pending == 0


def test_an_empty_simulation_summarizes_to_zeros() -> None:
    summary = summarize([], robots=0, offline=0, rejected=0)
    assert (summary.applied, summary.failed, summary.pending, summary.merge_to_applied_p50_s) == (
        0,
        0,
        0,
        None,
    )


# --- wave_timings over real records and rollout state -------------------------------------------------


def record(device: str, wave: int, generation: int = 1, action: Action = Action.DEPLOY) -> DeploymentRecord:
    return new_deployment(
        rollout="nav-1-1",
        generation=generation,
        device=device,
        app="nav",
        version="1.1.0",
        release_sha256=SHA,
        wave=wave,
        action=action,
        target_status=TargetStatus.DEPLOYED,
        at=START,
        deadline_at=None,
    )


def rollout(generation: int = 1) -> RolloutState:
    return RolloutState(
        name="nav-1-1",
        app="nav",
        version="1.1.0",
        release_path="releases/nav/1.1.0.yaml",
        release_sha256=SHA,
        generation=generation,
        generation_fingerprint="f" * 64,
        phase=RolloutPhase.PROGRESSING,
        commit="c" * 40,
        created_at=START,
        updated_at=START,
        waves=(
            WaveState(
                index=0,
                name="canary",
                devices=("r1", "r2"),
                phase=WavePhase.PASSED,
                started_at=START + timedelta(seconds=3),
            ),
            WaveState(
                index=1,
                name="rest",
                devices=("r3", "r4", "r5"),
                phase=WavePhase.RUNNING,
                started_at=START + timedelta(seconds=60),
            ),
            WaveState(index=2, name="last", devices=("r6",), phase=WavePhase.PENDING),
        ),
    )


def traced(rec: DeploymentRecord, outcome: str | None, finished: float | None = None) -> Trace:
    return Trace(rec.device, rec.id, "nav", "1.1.0", rec.action.value, 1.0, 2.0, finished, outcome)


def test_each_wave_gets_one_row_named_and_phased_by_the_controller() -> None:
    recs = {d: record(d, 0 if d in ("r1", "r2") else 1) for d in ("r1", "r2", "r3", "r4")}
    traces = [
        traced(recs["r1"], "deployed", 10.0),
        traced(recs["r2"], "deployed", 12.0),
        traced(recs["r3"], "failed", 70.0),
        traced(recs["r4"], None),
    ]
    rows = wave_timings(traces, {r.id: r for r in recs.values()}, {"nav-1-1": rollout()}, START)
    by_wave = {row.wave: row for row in rows}
    assert list(by_wave) == ["canary", "rest", "last"]
    canary, rest, last = by_wave["canary"], by_wave["rest"], by_wave["last"]
    assert (canary.robots, canary.applied, canary.failed, canary.pending, canary.phase) == (
        2,
        2,
        0,
        0,
        "passed",
    )
    assert (canary.controller_started_s, canary.first_started_s, canary.last_applied_s) == (3.0, 2.0, 12.0)
    assert (canary.merge_to_applied_p50_s, canary.merge_to_applied_p99_s) == (10.0, 12.0)
    assert (rest.robots, rest.applied, rest.failed, rest.pending, rest.phase) == (3, 0, 1, 1, "running")
    assert rest.last_applied_s is None and rest.merge_to_applied_p50_s is None
    assert (last.robots, last.applied, last.phase, last.controller_started_s) == (1, 0, "pending", None)


def test_a_rollback_gets_its_own_row_counting_the_robots_given_it() -> None:
    deploy = record("r1", 0)
    undo = record("r1", 0, action=Action.ROLLBACK).model_copy(update={"id": "dep-" + "e" * 24})
    rows = wave_timings(
        [traced(deploy, "rolled_back", 9.0), traced(undo, "deployed", 15.0)],
        {deploy.id: deploy, undo.id: undo},
        {"nav-1-1": rollout()},
        START,
    )
    (rollback,) = [row for row in rows if row.action == "rollback"]
    assert (rollback.robots, rollback.applied, rollback.phase, rollback.controller_started_s) == (
        1,
        1,
        None,
        None,
    )
    (canary,) = [row for row in rows if row.wave == "canary" and row.action == "deploy"]
    assert (canary.rolled_back, canary.applied) == (1, 0)


def test_an_older_generation_is_named_by_its_wave_index() -> None:
    old = record("r1", 1, generation=1)
    rows = wave_timings(
        [traced(old, "deployed", 5.0)], {old.id: old}, {"nav-1-1": rollout(generation=2)}, START
    )
    (older,) = [row for row in rows if row.generation == 1]
    assert (older.wave, older.phase, older.robots, older.applied) == ("1", None, 1, 1)
    assert {row.generation for row in rows} == {1, 2}


def test_a_trace_without_a_record_is_kept_as_unknown_not_dropped() -> None:
    stray = Trace("r9", "dep-" + "9" * 24, "nav", "1.1.0", "deploy", 1.0, 2.0, 3.0, "deployed")
    rows = wave_timings([stray], {}, {}, START)
    assert [(r.rollout, r.wave, r.applied) for r in rows] == [("(unknown)", "0", 1)]


def test_rows_are_ordered_by_rollout_generation_and_wave() -> None:
    recs = [record("r1", 1), record("r2", 0)]
    rows = wave_timings(
        [traced(r, None) for r in recs], {r.id: r for r in recs}, {"nav-1-1": rollout()}, START
    )
    assert [(r.generation, r.index) for r in rows] == sorted((r.generation, r.index) for r in rows)


def test_no_traces_and_no_rollouts_give_no_rows() -> None:
    assert wave_timings([], {}, {}, START) == []
