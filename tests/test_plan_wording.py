"""The words ``fleetcd plan`` prints for a reviewer (fleetcd.planning.render helpers), as decision tables.

A plan is reviewed in a pull request before a fleet moves: a gate shown wrongly (a soak that is not
there, a threshold looser than the one enforced) misleads the reviewer who approves it. So the
texts here are checked against the model's own behaviour where there is one
(:meth:`FailureThreshold.crossed`): what the plan says must be what the controller does.
"""

from __future__ import annotations

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
from fleetcd.planning.render import (
    duration,
    gate_text,
    plural,
    robots_text,
    strategy_text,
    threshold_text,
)
from fleetcd.planning.waves import PlannedWave, WaveAction

# --- duration and plural ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (0, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (61, "1m1s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (86400, "1d"),
        (90000, "1d1h"),
        (7 * 86400, "7d"),
        (30 * 86400 + 59, "30d59s"),
    ],
    ids=str,
)
def test_durations_read_like_a_person_writes_them(seconds: int, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 61, 3599, 3661, 86399, 90061, 2_592_000])
def test_a_duration_adds_back_up_to_its_seconds(seconds: int) -> None:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text, total, number = duration(seconds), 0, ""
    for char in text:
        if char.isdigit():
            number += char
        else:
            total += int(number) * units[char]
            number = ""
    assert total == seconds


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 robots"), (1, "1 robot"), (2, "2 robots"), (-1, "-1 robots")], ids=str
)
def test_plural(count: int, text: str) -> None:
    assert plural(count, "robot") == text


# --- thresholds: the text must say what crossed() does ------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "text"),
    [
        (FailureThreshold(count=0), "halt on any failure"),
        (FailureThreshold(count=0, percent=50), "halt on any failure"),
        (FailureThreshold(count=1), "halt above 1 failure"),
        (FailureThreshold(count=3), "halt above 3 failures"),
        (FailureThreshold(percent=20), "halt above 20%"),
        (FailureThreshold(percent=12.5), "halt above 12.5%"),
        (FailureThreshold(count=2, percent=10), "halt above 2 failures or 10%"),
    ],
    ids=["zero", "zero-and-percent", "one", "three", "percent", "fraction", "both"],
)
def test_threshold_text(threshold: FailureThreshold, text: str) -> None:
    assert threshold_text(threshold) == text


@pytest.mark.parametrize(
    "threshold",
    [
        FailureThreshold(count=0),
        FailureThreshold(count=1),
        FailureThreshold(count=5),
        FailureThreshold(percent=0),
        FailureThreshold(percent=20),
        FailureThreshold(count=2, percent=10),
    ],
    ids=threshold_text,
)
def test_halt_on_any_failure_is_said_only_when_one_failure_halts_any_wave(
    threshold: FailureThreshold,
) -> None:
    one_failure_halts = all(threshold.crossed(1, total) for total in (1, 2, 10, 100, 10_000))
    said = threshold_text(threshold) == "halt on any failure"
    assert not said or one_failure_halts, "the plan promises a stricter gate than the controller enforces"


@pytest.mark.parametrize("count", [1, 2, 5, 50])
def test_halt_above_n_failures_means_n_pass_and_n_plus_one_halt(count: int) -> None:
    threshold = FailureThreshold(count=count)
    assert threshold_text(threshold).startswith(f"halt above {count} ")
    assert not threshold.crossed(count, 1000)
    assert threshold.crossed(count + 1, 1000)


@pytest.mark.parametrize("percent", [10.0, 20.0, 50.0])
def test_halt_above_percent_means_exactly_that_percent_passes(percent: float) -> None:
    threshold = FailureThreshold(percent=percent)
    assert threshold_text(threshold) == f"halt above {percent:g}%"
    assert not threshold.crossed(int(percent), 100)
    assert threshold.crossed(int(percent) + 1, 100)


# --- strategies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "text"),
    [
        (AllAtOnce(type="all_at_once"), "all at once"),
        (Rolling(type="rolling", batch_size=10, delay_seconds=300), "rolling, batches of 10, 5m between"),
        (Rolling(type="rolling", batch_size=1, delay_seconds=0), "rolling, batches of 1, 0s between"),
        (Canary(type="canary", percent=5, soak_seconds=3600), "canary 5%, soak 1h, then the rest"),
        (Canary(type="canary", percent=12.5, soak_seconds=90), "canary 12.5%, soak 1m30s, then the rest"),
        (Waves(type="waves", waves=[Wave(name="a", percent=10)]), "1 explicit wave"),
        (
            Waves(type="waves", waves=[Wave(name="a", percent=10), Wave(name="b", percent=100)]),
            "2 explicit waves",
        ),
        (BlueGreen(type="blue_green"), "blue/green, switch once 100% staged"),
        (BlueGreen(type="blue_green", min_staged_percent=90), "blue/green, switch once 90% staged"),
        (None, "none"),
    ],
    ids=[
        "all",
        "rolling",
        "rolling-no-delay",
        "canary",
        "canary-fraction",
        "one-wave",
        "waves",
        "bg",
        "bg-90",
        "none",
    ],
)
def test_strategy_text(strategy: Strategy | None, text: str) -> None:
    assert strategy_text(strategy) == text


# --- the gate between waves ---------------------------------------------------------------------------


def wave(
    *,
    action: WaveAction = WaveAction.DEPLOY,
    soak: int = 0,
    reported: float = 100.0,
    manual: bool = False,
    threshold: FailureThreshold | None = None,
) -> PlannedWave:
    return PlannedWave(
        index=0,
        name="w",
        devices=("r1",),
        soak_seconds=soak,
        failure_threshold=threshold or FailureThreshold(count=0),
        min_reported_percent=reported,
        manual_promotion=manual,
        action=action,
    )


@pytest.mark.parametrize(
    ("planned", "last", "text"),
    [
        (wave(), False, "halt on any failure"),
        (wave(soak=600), False, "halt on any failure, soak 10m"),
        (wave(soak=600), True, "halt on any failure"),  # nothing follows the last wave to wait for
        (wave(reported=80), False, "halt on any failure, next wave once 80% reported"),
        (wave(reported=80), True, "halt on any failure"),
        (wave(manual=True), True, "halt on any failure, manual promotion"),
        (wave(action=WaveAction.STAGE, reported=90), True, "halt on any failure, switch once 90% staged"),
        (
            wave(action=WaveAction.STAGE, reported=100, soak=60),
            False,
            "halt on any failure, switch once 100% staged, soak 1m",
        ),
        (
            wave(threshold=FailureThreshold(percent=25), reported=50, soak=3600, manual=True),
            False,
            "halt above 25%, next wave once 50% reported, soak 1h, manual promotion",
        ),
    ],
    ids=[
        "plain",
        "soak",
        "soak-last",
        "reported",
        "reported-last",
        "manual",
        "stage",
        "stage-soak",
        "everything",
    ],
)
def test_gate_text(planned: PlannedWave, last: bool, text: str) -> None:
    assert gate_text(planned, last) == text


# --- robot lists --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("devices", "limit", "text"),
    [
        ((), 10, "(none)"),
        (("r1",), 10, "r1"),
        (("r1", "r2", "r3"), 3, "r1, r2, r3"),
        (("r1", "r2", "r3", "r4"), 3, "r1, r2, r3 … and 1 more"),
        (tuple(f"r{i}" for i in range(100)), 2, "r0, r1 … and 98 more"),
        (tuple(f"r{i}" for i in range(100)), None, ", ".join(f"r{i}" for i in range(100))),
    ],
    ids=["none", "one", "at-limit", "one-over", "many", "no-limit"],
)
def test_robot_lists_are_shortened_saying_how_many_are_left_out(
    devices: tuple[str, ...], limit: int | None, text: str
) -> None:
    assert robots_text(devices, limit) == text


@pytest.mark.parametrize("count", [0, 1, 9, 10, 11, 57])
def test_every_robot_is_shown_or_counted(count: int) -> None:
    devices = tuple(f"amr-{i:03d}" for i in range(count))
    text = robots_text(devices)
    shown = [d for d in devices if d in text]
    hidden = int(text.rsplit("and ", 1)[1].split()[0]) if "more" in text else 0
    assert len(shown) + hidden == count
