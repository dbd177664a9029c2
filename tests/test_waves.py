"""Decision tables for the wave planner: sizes, names, gates and stable spread ordering per strategy."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from fleetcd.models.rollout import (
    AllAtOnce,
    BlueGreen,
    Canary,
    FailureThreshold,
    Rolling,
    Strategy,
    Wave,
    Waves,
)
from fleetcd.planning.waves import (
    PlannedWave,
    WaveAction,
    percent_count,
    plan_waves,
    spread_order,
    unplaced,
)


def robots(n: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def plan(
    strategy: Strategy,
    eligible: Sequence[str],
    members: Mapping[str, Sequence[str]] | None = None,
    name: str = "nav-rollout",
) -> list[PlannedWave]:
    return plan_waves(name, strategy, eligible, {}, members or {})


def canary(percent: float) -> Canary:
    return Canary(type="canary", percent=percent)


def rolling(batch_size: int) -> Rolling:
    return Rolling(type="rolling", batch_size=batch_size)


def sizes(waves: Sequence[PlannedWave]) -> list[int]:
    return [len(w.devices) for w in waves]


# --- sizes per strategy ---------------------------------------------------------------------------

SIZE_TABLE = [
    pytest.param(AllAtOnce(type="all_at_once"), 5, ["all"], [5], id="all-at-once-5"),
    pytest.param(AllAtOnce(type="all_at_once"), 0, ["all"], [0], id="all-at-once-empty-kept"),
    pytest.param(rolling(10), 25, ["batch-1", "batch-2", "batch-3"], [10, 10, 5], id="rolling-10-over-25"),
    pytest.param(rolling(5), 5, ["batch-1"], [5], id="rolling-exact-batch"),
    pytest.param(rolling(10), 0, ["batch-1"], [0], id="rolling-nobody-one-empty-batch"),
    pytest.param(canary(10), 25, ["canary", "rest"], [3, 22], id="canary-10pct-of-25"),
    pytest.param(canary(10), 1, ["canary", "rest"], [1, 0], id="canary-of-1"),
    pytest.param(canary(10), 0, ["canary", "rest"], [0, 0], id="canary-of-0"),
    pytest.param(canary(10), 10, ["canary", "rest"], [1, 9], id="canary-10pct-of-10"),
    pytest.param(canary(7), 100, ["canary", "rest"], [7, 93], id="canary-7pct-no-float-error"),
    pytest.param(canary(33.3), 3, ["canary", "rest"], [1, 2], id="canary-ceil-below-one"),
    pytest.param(canary(50), 3, ["canary", "rest"], [2, 1], id="canary-ceil-half"),
    pytest.param(canary(100), 4, ["canary", "rest"], [4, 0], id="canary-100pct"),
    pytest.param(
        BlueGreen(type="blue_green"), 4, ["stage", "switch"], [4, 4], id="blue-green-everyone-twice"
    ),
]


@pytest.mark.parametrize(("strategy", "n", "names", "expected"), SIZE_TABLE)
def test_wave_sizes_follow_the_strategy(
    strategy: Strategy, n: int, names: list[str], expected: list[int]
) -> None:
    waves = plan(strategy, robots(n))
    assert [w.name for w in waves] == names
    assert sizes(waves) == expected
    assert [w.index for w in waves] == list(range(len(waves)))
    if not isinstance(strategy, BlueGreen):
        placed = [d for w in waves for d in w.devices]
        assert sorted(placed) == robots(n), "every eligible robot is in exactly one wave"


@pytest.mark.parametrize(
    ("percent", "total", "expected"),
    [
        pytest.param(10, 25, 3, id="ceil"),
        pytest.param(10, 1, 1, id="at-least-one"),
        pytest.param(10, 0, 0, id="nobody"),
        pytest.param(7, 100, 7, id="exact-decimal"),
        pytest.param(0.1, 5, 1, id="tiny-percent-still-one"),
        pytest.param(100, 9, 9, id="everyone"),
    ],
)
def test_percent_count_is_ceil_at_least_one(percent: float, total: int, expected: int) -> None:
    assert percent_count(percent, total) == expected


# --- gates ----------------------------------------------------------------------------------------


def test_any_canary_failure_halts_but_the_rest_uses_the_strategy_threshold() -> None:
    strategy = Canary(
        type="canary", percent=10, soak_seconds=900, failure_threshold=FailureThreshold(percent=5)
    )
    canary, rest = plan(strategy, robots(20))
    assert canary.failure_threshold.crossed(1, len(canary.devices))
    assert canary.failure_threshold == FailureThreshold(count=0)
    assert canary.soak_seconds == 900
    assert rest.failure_threshold == FailureThreshold(percent=5)
    assert rest.soak_seconds == 0


def test_rolling_soaks_delay_between_batches_not_after_the_last() -> None:
    waves = plan(Rolling(type="rolling", batch_size=4, delay_seconds=120), robots(10))
    assert [w.soak_seconds for w in waves] == [120, 120, 0]
    assert all(w.failure_threshold == FailureThreshold(percent=20.0) for w in waves)
    assert all(w.min_reported_percent == 100.0 and not w.manual_promotion for w in waves)


def test_blue_green_switch_waits_for_min_staged_percent() -> None:
    stage, switch = plan(BlueGreen(type="blue_green", min_staged_percent=80), robots(5))
    assert (stage.action, switch.action) == (WaveAction.STAGE, WaveAction.SWITCH)
    assert stage.min_reported_percent == 80
    assert stage.devices == switch.devices == tuple(robots(5))


# --- explicit waves -------------------------------------------------------------------------------

CANARY_COHORT = ["r-001", "r-003", "r-005", "r-007"]

EXPLICIT_TABLE = [
    pytest.param(
        [Wave(name="pilots", cohort="pilots"), Wave(name="all", percent=100)],
        [4, 6],
        0,
        id="cohort-then-everyone-else",
    ),
    pytest.param(
        [Wave(name="half", percent=50), Wave(name="rest", percent=100)], [5, 5], 0, id="percent-of-unplaced"
    ),
    pytest.param(
        [Wave(name="pilot-half", cohort="pilots", percent=50), Wave(name="rest", percent=100)],
        [2, 8],
        0,
        id="cohort-and-percent-is-percent-of-the-cohort",
    ),
    pytest.param([Wave(name="pilots", cohort="pilots")], [4], 6, id="no-implicit-last-wave-rest-unplaced"),
    pytest.param(
        [Wave(name="ghost", cohort="nope"), Wave(name="all", percent=100)],
        [0, 10],
        0,
        id="unknown-cohort-empty-wave-kept",
    ),
    pytest.param(
        [Wave(name="all", percent=100), Wave(name="pilots", cohort="pilots")],
        [10, 0],
        0,
        id="cohort-already-placed-empty-wave",
    ),
    pytest.param(
        [Wave(name="a", percent=10), Wave(name="b", percent=10), Wave(name="c", percent=100)],
        [1, 1, 8],
        0,
        id="percent-of-remaining-each-time",
    ),
]


@pytest.mark.parametrize(("waves", "expected", "left_over"), EXPLICIT_TABLE)
def test_explicit_waves(waves: list[Wave], expected: list[int], left_over: int) -> None:
    eligible = robots(10)
    planned = plan(Waves(type="waves", waves=waves), eligible, {"pilots": CANARY_COHORT})
    assert sizes(planned) == expected
    assert [w.name for w in planned] == [w.name for w in waves]
    assert len(unplaced(eligible, planned)) == left_over
    placed = [d for w in planned for d in w.devices]
    assert len(placed) == len(set(placed)), "no robot is in two waves"


def test_explicit_wave_cohort_is_matched_through_targeted_cohorts_too() -> None:
    strategy = Waves(type="waves", waves=[Wave(name="first", cohort="dock")])
    planned = plan_waves("x", strategy, ["a", "b", "c"], {"b": ("dock",)}, {})
    assert planned[0].devices == ("b",)


def test_explicit_wave_keeps_its_own_gate() -> None:
    gate = FailureThreshold(count=2)
    wave = Wave(
        name="w",
        percent=100,
        soak_seconds=60,
        failure_threshold=gate,
        min_reported_percent=90,
        manual_promotion=True,
    )
    (planned,) = plan(Waves(type="waves", waves=[wave]), robots(3))
    assert (planned.soak_seconds, planned.failure_threshold) == (60, gate)
    assert (planned.min_reported_percent, planned.manual_promotion) == (90, True)


# --- ordering -------------------------------------------------------------------------------------


def test_canary_is_not_the_alphabetically_first_robots() -> None:
    first, _ = plan(canary(10), robots(100))
    assert first.devices != tuple(robots(10))
    assert len(first.devices) == 10


def test_replanning_is_stable_whatever_the_input_order() -> None:
    eligible = robots(57)
    shuffled = list(eligible)
    random.Random(7).shuffle(shuffled)
    strategy = rolling(8)
    assert plan(strategy, eligible) == plan(strategy, shuffled) == plan(strategy, list(reversed(eligible)))


def test_each_rollout_gets_its_own_spread() -> None:
    eligible = robots(100)
    first = plan(canary(10), eligible, name="nav-1")[0].devices
    second = plan(canary(10), eligible, name="nav-2")[0].devices
    assert first != second


def test_wave_devices_are_listed_sorted() -> None:
    for wave in plan(rolling(7), robots(30)):
        assert list(wave.devices) == sorted(wave.devices)


@pytest.mark.parametrize("n", [9, 10, 11, 24, 25, 40, 99])
@pytest.mark.parametrize("newcomer", ["a-new-robot", "r-050x", "zz-last"])
def test_adding_one_robot_moves_at_most_that_robot_in_the_canary(n: int, newcomer: str) -> None:
    strategy = canary(10)
    before = set(plan(strategy, robots(n))[0].devices)
    after = set(plan(strategy, [*robots(n), newcomer])[0].devices)
    assert len(before - after) <= 1, "at most one canary robot is displaced"
    assert len(after - before - {newcomer}) <= 1, "at most one other robot joins (when the canary grows)"
    if len(after) == len(before):
        assert after - {newcomer} <= before, "same size: only the newcomer can be new"


def test_spread_order_is_a_permutation_without_duplicates() -> None:
    assert sorted(spread_order("x", ["b", "a", "b", "c"])) == ["a", "b", "c"]
