"""Maintenance windows in each robot's own time zone, across midnight and daylight-saving changes.

Europe/Berlin changes clocks on 2026-03-29 (02:00 CET → 03:00 CEST: the 02:xx hour does not exist)
and on 2026-10-25 (03:00 CEST → 02:00 CET: the 02:xx hour happens twice). A 02:00–03:00 window is
wall-clock time: it does not occur on the first night and lasts two real hours on the second.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controller.engine.windows import in_window, window_open
from fleetcd.compat import UTC
from tests.sim.engine import Sim, device, robots, rollout_doc, window

BERLIN = "Europe/Berlin"
NIGHT = window("02:00", "03:00")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "days", "at", "zone", "inside"),
    [
        ("09:00", "17:00", None, "2026-05-04T10:00", "UTC", True),
        ("09:00", "17:00", None, "2026-05-04T17:00", "UTC", False),  # end is exclusive
        ("09:00", "17:00", None, "2026-05-04T09:00", "UTC", True),  # start is inclusive
        ("09:00", "17:00", ["sat", "sun"], "2026-05-04T10:00", "UTC", False),  # a Monday
        ("22:00", "04:00", None, "2026-05-04T23:30", "UTC", True),
        ("22:00", "04:00", None, "2026-05-05T03:59", "UTC", True),
        ("22:00", "04:00", None, "2026-05-05T04:00", "UTC", False),
        ("22:00", "04:00", None, "2026-05-04T21:59", "UTC", False),
        # Friday 22:00–04:00 covers Saturday early morning, not Friday early morning.
        ("22:00", "04:00", ["fri"], "2026-05-09T02:00", "UTC", True),
        ("22:00", "04:00", ["fri"], "2026-05-08T02:00", "UTC", False),
        # The robot's zone decides: 10:00 UTC is 19:00 in Tokyo and 06:00 in New York (EDT).
        ("18:00", "20:00", None, "2026-05-04T10:00", "Asia/Tokyo", True),
        ("18:00", "20:00", None, "2026-05-04T10:00", "America/New_York", False),
        ("05:00", "07:00", None, "2026-05-04T10:00", "America/New_York", True),
        ("08:00", "08:00", None, "2026-05-04T03:00", "UTC", True),  # start == end: all day
    ],
    ids=[
        "inside-plain",
        "end-exclusive",
        "start-inclusive",
        "wrong-weekday",
        "across-midnight-evening",
        "across-midnight-morning",
        "across-midnight-end",
        "across-midnight-before",
        "friday-night-spills-into-saturday",
        "friday-morning-is-thursdays-night",
        "tokyo-evening",
        "new-york-not-yet",
        "new-york-morning",
        "start-equals-end-is-all-day",
    ],
)
def test_window_is_read_on_the_robots_wall_clock(
    start: str, end: str, days: list[str] | None, at: str, zone: str, inside: bool
) -> None:
    spec = window(start, end, **({"days": days} if days else {}))
    assert in_window(spec, utc(at), zone) is inside


def test_window_timezone_overrides_the_robots_zone() -> None:
    spec = window("18:00", "20:00", timezone="Asia/Tokyo")
    assert in_window(spec, utc("2026-05-04T10:00"), "America/New_York")


def test_a_robot_without_windows_may_always_change() -> None:
    assert window_open([], utc("2026-05-04T03:00"), BERLIN)


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        ("2026-03-28T01:30", True),  # the night before: 02:30 CET
        ("2026-03-29T00:30", False),  # 01:30 CET
        ("2026-03-29T00:59", False),  # 01:59 CET; one minute later the clock reads 03:00 CEST
        ("2026-03-29T01:00", False),  # 03:00 CEST
        ("2026-03-29T01:30", False),  # 03:30 CEST
        ("2026-03-30T00:30", True),  # the night after: 02:30 CEST
    ],
    ids=["night-before", "0130-cet", "0159-cet", "0300-cest", "0330-cest", "night-after"],
)
def test_spring_forward_night_has_no_0200_window(at: str, inside: bool) -> None:
    assert in_window(NIGHT, utc(at), BERLIN) is inside


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        ("2026-10-24T23:30", False),  # 01:30 CEST
        ("2026-10-25T00:00", True),  # 02:00 CEST (first pass)
        ("2026-10-25T00:45", True),  # 02:45 CEST
        ("2026-10-25T01:00", True),  # 02:00 CET (second pass: the clock went back)
        ("2026-10-25T01:59", True),  # 02:59 CET
        ("2026-10-25T02:00", False),  # 03:00 CET
    ],
    ids=["0130-cest", "0200-cest", "0245-cest", "0200-cet", "0259-cet", "0300-cet"],
)
def test_fall_back_night_repeats_the_0200_window(at: str, inside: bool) -> None:
    assert in_window(NIGHT, utc(at), BERLIN) is inside


def night_shift(start: str, hours: int) -> tuple[Sim, list[tuple[datetime, int]]]:
    """A Berlin robot fleet with a 02:00–03:00 window, ticked every 15 minutes from ``start`` UTC."""
    ids = robots(3)
    windows = [{"start": "02:00", "end": "03:00"}]
    sim = Sim(
        rollout_doc(ids, {"type": "all_at_once"}),
        [device(i, BERLIN, windows) for i in ids],
        now=utc(start),
    )
    progress: list[tuple[datetime, int]] = []
    for _ in range(hours * 4):
        sim.tick()
        progress.append((sim.now, len(sim.dispatched())))
        sim.now += timedelta(minutes=15)
    return sim, progress


def first_dispatch(progress: list[tuple[datetime, int]]) -> datetime | None:
    return next((at for at, count in progress if count), None)


def test_rollout_waits_through_the_missing_spring_forward_hour_until_the_next_night() -> None:
    sim, progress = night_shift("2026-03-28T22:00", 27)
    assert first_dispatch(progress) == utc("2026-03-30T00:00")  # 02:00 CEST on the next night
    assert sim.wave("all").phase == "running"


def test_rollout_dispatches_at_the_first_0200_of_the_fall_back_night() -> None:
    _, progress = night_shift("2026-10-24T22:00", 4)
    assert first_dispatch(progress) == utc("2026-10-25T00:00")  # 02:00 CEST, before the clock goes back


def test_robots_outside_their_window_hold_the_wave_with_a_reason() -> None:
    sim, _ = night_shift("2026-03-28T22:00", 1)
    assert sim.dispatched() == []
    assert sim.wave("all").phase == "waiting"
    assert sim.wave("all").reason == "maintenance_window"


def test_cohort_windows_count_and_can_be_ignored_by_the_schedule() -> None:
    ids = robots(2)
    closed = {d: [window("02:00", "03:00")] for d in ids}
    held = Sim(rollout_doc(ids, {"type": "all_at_once"}), cohort_windows=closed)
    held.tick()
    assert held.dispatched() == []
    free = Sim(
        rollout_doc(ids, {"type": "all_at_once"}, schedule={"respect_maintenance_windows": False}),
        cohort_windows=closed,
    )
    free.tick()
    assert free.dispatched() == ids
