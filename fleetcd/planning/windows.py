"""Maintenance windows: is a robot allowed to change at an instant, in its own time zone, and when
its next window opens (pure; shared by the controller's dispatch and ``fleetcd plan``).

A window is a set of *wall-clock* times: ``now`` is converted to the robot's zone (the window's
own ``timezone`` when it gives one) and compared with ``start``/``end`` on the listed days. ``end``
before ``start`` crosses midnight, and the part after midnight belongs to the day the window
started on (a Friday 22:00–04:00 window covers Saturday 00:00–04:00). ``start == end`` is a
24-hour window.

Daylight saving follows from wall-clock semantics, and errs on the side of never acting outside
the hours the operator wrote down: on the spring-forward night a 02:00–03:00 window in
Europe/Berlin does not occur at all (those clock times do not exist; robots wait for the next
night), and on the fall-back night it lasts two real hours (the clock shows 02:xx twice).
No I/O, no clock: ``now`` is passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from fleetcd.compat import UTC
from fleetcd.models.base import MaintenanceWindow, Weekday

_WEEKDAYS = list(Weekday)  # Monday first, like datetime.weekday()
LOOKAHEAD_DAYS = 8  # a weekly window opens within a week; one more day covers a skipped DST night


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def in_window(window: MaintenanceWindow, now: datetime, device_zone: str) -> bool:
    """True when ``now`` (aware) falls inside ``window`` on the robot's wall clock."""
    local = now.astimezone(_zone(window.timezone or device_zone))
    clock = local.time().replace(tzinfo=None, fold=0)
    start, end = _clock(window.start), _clock(window.end)
    today = _WEEKDAYS[local.weekday()] in window.days
    yesterday = _WEEKDAYS[(local.weekday() - 1) % 7] in window.days
    if start < end:
        return today and start <= clock < end
    # Crosses midnight (or start == end: a whole day starting at ``start``).
    return (today and clock >= start) or (yesterday and clock < end)


def window_open(windows: Sequence[MaintenanceWindow], now: datetime, device_zone: str) -> bool:
    """True when there are no windows at all, or ``now`` is inside at least one of them."""
    return not windows or any(in_window(w, now, device_zone) for w in windows)


def next_open(windows: Sequence[MaintenanceWindow], now: datetime, device_zone: str) -> datetime | None:
    """The first instant at or after ``now`` inside one of ``windows`` (``now`` itself when open or
    when there are none); None when none opens within :data:`LOOKAHEAD_DAYS`."""
    if window_open(windows, now, device_zone):
        return now
    starts = []
    for window in windows:
        zone = _zone(window.timezone or device_zone)
        today = now.astimezone(zone).date()
        for offset in range(LOOKAHEAD_DAYS):
            day = today + timedelta(days=offset)
            at = datetime.combine(day, _clock(window.start), tzinfo=zone).astimezone(UTC)
            # A wall-clock time the zone skips (spring forward) does not occur: the real instant
            # reads an hour later on the robot's clock, and in_window says no.
            if at >= now and in_window(window, at, device_zone):
                starts.append(at)
                break
    # A daylight-saving jump can open a window without passing its start: spring forward over a
    # 02:30 start lands inside a 02:30–04:00 window at 03:00; falling back repeats a window's last
    # hour. The wall clock jumps only at a zone's transitions, so those are the other candidates.
    until = now + timedelta(days=LOOKAHEAD_DAYS)
    for name in sorted({w.timezone or device_zone for w in windows}):
        for at in _transitions(name, now, until):
            if window_open(windows, at, device_zone):
                starts.append(at)
                break
    return min(starts, default=None)


def _transitions(zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """The instants in ``[start, end)`` at which ``zone_name``'s UTC offset changes, ascending."""
    day = start.astimezone(UTC).date()
    found: list[datetime] = []
    while (midnight := datetime.combine(day, time(0), tzinfo=UTC)) < end:
        found.extend(t for t in _transitions_on(zone_name, midnight) if start <= t < end)
        day += timedelta(days=1)
    return found


@functools.cache
def _transitions_on(zone_name: str, midnight: datetime) -> tuple[datetime, ...]:
    """Offset changes of the zone during the UTC day from ``midnight``, to the second (cached:
    ``fleetcd plan`` asks for every robot of a fleet, most sharing a few zones)."""
    zone = _zone(zone_name)
    found = []
    for hour in range(24):
        lo, hi = midnight + timedelta(hours=hour), midnight + timedelta(hours=hour + 1)
        if lo.astimezone(zone).utcoffset() == hi.astimezone(zone).utcoffset():
            continue
        before = lo.astimezone(zone).utcoffset()
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) // 2
            lo, hi = (mid, hi) if mid.astimezone(zone).utcoffset() == before else (lo, mid)
        found.append(hi)
    return tuple(found)


def window_text(window: MaintenanceWindow, device_zone: str) -> str:
    """``mon-fri 22:00–04:00 America/Chicago``: the window as written, in its own zone."""
    days = sorted({_WEEKDAYS.index(d) for d in window.days})
    if len(days) == len(_WEEKDAYS):
        when = "daily"
    elif days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        when = f"{_WEEKDAYS[days[0]].value}-{_WEEKDAYS[days[-1]].value}"
    else:
        when = ",".join(_WEEKDAYS[d].value for d in days)
    return f"{when} {window.start}–{window.end} {window.timezone or device_zone}"
