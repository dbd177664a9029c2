"""The idle fast path's clock horizon (controller.reconcile.due), pure parts as decision tables.

An idle controller sleeps until :func:`next_due`; if a maintenance-window boundary or a daylight
saving jump were computed late, robots would wait for the next full reconcile (minutes) or a whole
day. These tables pin the instants on ordinary days, on the day a clock is set forward (an hour that
never happens) and on the day it is set back (an hour shown twice), in zones east and west of UTC
and in zones without daylight saving. The soak a soaking wave waits must equal what the planner
planned, per strategy.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.reconcile.due import FULL_RECONCILE_EVERY, next_offset_change, soak_seconds, window_changes
from fleetcd.compat import UTC
from fleetcd.models.rollout import BlueGreen, Canary, Rolling, Strategy, Wave, Waves


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

# --- next_offset_change -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "change"),
    [
        ("Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T01:00:00"),  # spring forward
        ("Europe/Berlin", "2026-10-24T02:00:00", "2026-10-25T01:00:00"),  # fall back
        ("America/New_York", "2026-03-07T09:00:00", "2026-03-08T07:00:00"),
        ("America/New_York", "2026-10-31T12:00:00", "2026-11-01T06:00:00"),
        ("Australia/Sydney", "2026-04-04T12:00:00", "2026-04-04T16:00:00"),  # southern hemisphere
        ("Asia/Kathmandu", "2026-03-28T12:00:00", None),  # no daylight saving
        ("UTC", "2026-03-28T12:00:00", None),
        ("Europe/Berlin", "2026-03-26T23:00:00", None),  # more than 49 hours ahead: not soon
        ("Europe/Berlin", "2026-06-01T00:00:00", None),  # summer: nothing within two days
    ],
    ids=[
        "berlin-spring",
        "berlin-fall",
        "new-york-spring",
        "new-york-fall",
        "sydney-fall",
        "kathmandu-none",
        "utc-none",
        "beyond-scan",
        "midsummer",
    ],
)
def test_the_next_offset_change_is_found_to_the_second(zone: str, now: str, change: str | None) -> None:
    tz = ZoneInfo(zone)
    found = next_offset_change(tz, utc(now))
    if change is None:
        assert found is None
        return
    assert found is not None
    exact = utc(change)
    assert exact - timedelta(seconds=1) <= found < exact, "at most a second before the change, never after it"
    assert found.astimezone(tz).utcoffset() == utc(now).astimezone(tz).utcoffset()
    assert (found + timedelta(seconds=1)).astimezone(tz).utcoffset() != found.astimezone(tz).utcoffset()


def test_the_offset_change_from_a_non_utc_aware_now_is_the_same_instant() -> None:
    now = utc("2026-03-28T12:00:00")
    assert next_offset_change(BERLIN, now) == next_offset_change(BERLIN, now.astimezone(NEW_YORK))


def test_right_after_a_change_the_next_one_is_not_the_same_change() -> None:
    after = utc("2026-03-29T01:00:01")
    assert next_offset_change(BERLIN, after) is None


# --- window_changes -----------------------------------------------------------------------------------


def changes(boundaries: set[tuple[str, str]], now: str) -> list[datetime]:
    return sorted(window_changes(boundaries, utc(now)))


@pytest.mark.parametrize(
    ("clock", "now", "first"),
    [
        ("22:00", "2026-05-01T21:00:00", "2026-05-01T22:00:00"),
        ("22:00", "2026-05-01T22:00:00", "2026-05-01T22:00:00"),  # at the boundary itself: still due
        ("22:00", "2026-05-01T22:00:01", "2026-05-02T22:00:00"),
        ("00:00", "2026-05-01T23:59:00", "2026-05-02T00:00:00"),
        ("06:30", "2026-12-31T07:00:00", "2027-01-01T06:30:00"),  # across a year
        ("23:59", "2028-02-28T23:59:30", "2028-02-29T23:59:00"),  # leap day
    ],
    ids=["later-today", "exactly-now", "just-passed", "midnight", "new-year", "leap-day"],
)
def test_a_utc_boundary_is_the_next_wall_clock_instant(clock: str, now: str, first: str) -> None:
    assert changes({(clock, "UTC")}, now) == [utc(first)]


def test_a_berlin_boundary_is_in_berlin_time() -> None:
    # 02:00 in Berlin in May is 00:00 UTC; there is no offset change within two days.
    assert changes({("02:00", "Europe/Berlin")}, "2026-05-01T12:00:00") == [utc("2026-05-02T00:00:00")]


def test_start_and_end_in_two_zones_give_one_instant_each() -> None:
    boundaries = {("22:00", "UTC"), ("04:00", "UTC"), ("22:00", "America/New_York")}
    found = changes(boundaries, "2026-05-01T12:00:00")
    assert found == [utc("2026-05-01T22:00:00"), utc("2026-05-02T02:00:00"), utc("2026-05-02T04:00:00")]


def test_an_hour_shown_twice_yields_both_instants_in_turn() -> None:
    # New York, 1 November 2026: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    boundary = {("01:30", "America/New_York")}
    before_first = changes(boundary, "2026-11-01T05:00:00")
    assert utc("2026-11-01T05:30:00") in before_first
    between = changes(boundary, "2026-11-01T05:31:00")
    assert all(at >= utc("2026-11-01T05:31:00") for at in between)
    assert utc("2026-11-01T06:30:00") in between, "the second 01:30 must not be skipped"


def test_a_boundary_in_the_hour_that_never_happens_is_not_lost() -> None:
    # Berlin, 29 March 2026: 02:30 does not exist (02:00 → 03:00). Some instant at or before the
    # jump must still wake the controller, so a window starting "02:30" opens that night.
    now = utc("2026-03-28T23:00:00")
    found = sorted(window_changes({("02:30", "Europe/Berlin")}, now))
    assert found, "a boundary was dropped"
    assert min(found) <= utc("2026-03-29T01:30:00")
    assert all(at >= now for at in found)


def test_the_zones_offset_change_is_among_the_instants() -> None:
    found = changes({("12:00", "Europe/Berlin")}, "2026-10-24T02:00:00")
    assert any(utc("2026-10-25T00:59:59") <= at < utc("2026-10-25T01:00:00") for at in found)


def test_no_boundaries_give_no_instants() -> None:
    assert window_changes(set(), utc("2026-05-01T00:00:00")) == []


@pytest.mark.parametrize("hour", range(0, 24, 3))
def test_every_instant_is_at_or_after_now_and_within_two_days(hour: int) -> None:
    now = utc("2026-03-28T00:00:00") + timedelta(hours=hour)
    boundaries = {("00:00", "Europe/Berlin"), ("02:30", "Europe/Berlin"), ("23:59", "Asia/Tokyo")}
    for at in window_changes(boundaries, now):
        assert now <= at <= now + timedelta(days=2)


# --- soak_seconds -------------------------------------------------------------------------------------


WAVES = Waves(
    type="waves",
    waves=[
        Wave(name="first", percent=10, soak_seconds=600),
        Wave(name="second", percent=50, soak_seconds=1200),
        Wave(name="rest", percent=100, soak_seconds=60),
    ],
)


@pytest.mark.parametrize(
    ("strategy", "index", "seconds"),
    [
        (Rolling(type="rolling", delay_seconds=90), 0, 90),
        (Rolling(type="rolling", delay_seconds=90), 7, 90),
        (Rolling(type="rolling", delay_seconds=0), 2, 0),
        (Canary(type="canary", soak_seconds=3600), 0, 3600),
        (Canary(type="canary", soak_seconds=3600), 1, 0),
        (WAVES, 0, 600),
        (WAVES, 1, 1200),
        (WAVES, 2, 60),
        (WAVES, 3, 0),
        (BlueGreen(type="blue_green"), 0, 0),
    ],
    ids=[
        "rolling-first",
        "rolling-later",
        "rolling-no-delay",
        "canary-wave",
        "canary-rest",
        "waves-0",
        "waves-1",
        "waves-2",
        "waves-past-end",
        "blue-green",
    ],
)
def test_the_soak_is_what_the_strategy_plans(strategy: Strategy, index: int, seconds: int) -> None:
    assert soak_seconds(strategy, index) == seconds


def test_the_full_reconcile_bound_is_minutes_not_hours() -> None:
    assert timedelta(minutes=1) <= FULL_RECONCILE_EVERY <= timedelta(hours=1)
