"""When a planned wave could start: each robot's maintenance windows in its own local time and
when the next one opens (pure; ``now`` is passed in by ``fleetcd plan``).

The controller dispatches a robot only inside one of its windows (its own and its cohorts'), when
the rollout's ``schedule.respect_maintenance_windows`` is on. So a wave's robots can start at the
earliest when the first of their windows opens, and never before the rollout's ``not_before``;
a wave after the first also waits for the earlier waves to pass, which no plan can know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fleetcd.models import Device
from fleetcd.models.base import MaintenanceWindow
from fleetcd.planning.windows import next_open, window_text


@dataclass(frozen=True)
class RobotWindows:
    device: str
    timezone: str  # the robot's own zone (a window may name another)
    local_now: datetime  # ``now`` on the robot's wall clock
    windows: tuple[str, ...]  # each as written, in its own zone: ``mon-fri 22:00–04:00 America/Chicago``
    opens_at: datetime | None  # next instant inside a window (``now`` when open); None: none within 8 days


@dataclass(frozen=True)
class WaveStart:
    wave: str
    earliest: datetime | None  # when the first robot of the wave could be dispatched; None: never soon
    robots: tuple[RobotWindows, ...]  # robots that have windows (the others may start any time)


def wave_start(
    name: str,
    devices: Sequence[str],
    models: Mapping[str, Device],
    cohort_windows: Mapping[str, Sequence[MaintenanceWindow]],
    now: datetime,
    not_before: datetime | None,
    respect_windows: bool,
) -> WaveStart:
    """When wave ``name`` could start at the earliest (windows and ``not_before``), per robot why."""
    start = max(now, not_before) if not_before is not None else now
    robots = []
    opens: list[datetime] = []
    for device in devices:
        model = models.get(device)
        zone = model.timezone if model is not None else "UTC"
        windows = [*(model.maintenance_windows if model is not None else ()), *cohort_windows.get(device, ())]
        at = next_open(windows, start, zone) if respect_windows else start
        if at is not None:
            opens.append(at)
        if windows:
            local = now.astimezone(ZoneInfo(zone))
            robots.append(RobotWindows(device, zone, local, tuple(window_text(w, zone) for w in windows), at))
    return WaveStart(name, min(opens, default=None) if devices else None, tuple(robots))
