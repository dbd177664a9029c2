"""Seeded random checks of the planner's pure rules: wave membership and when a window opens.

``fleetcd plan`` shows reviewers these numbers and the controller acts on the same functions, so
they must hold for any fleet, not only the tabled cases of ``test_waves``/``test_engine_windows``:

* every eligible robot is in exactly one wave (blue/green: in both of its phases), or reported
  unplaced by an explicit ``waves`` list; the plan does not depend on the order robots are listed in;
* :func:`next_open` is the *first* instant at or after ``now`` inside a window, checked against a
  minute-by-minute scan, across zones and daylight-saving nights;
* every robot a rollout targets (directly, through a cohort's list or selector) is eligible or
  skipped once, with a reason that holds of it; the order robots are read in changes nothing;
* a wave's earliest start is its first robot's window, never before ``not_before``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from fleetcd.compat import UTC
from fleetcd.models import Cohort, Release
from fleetcd.models.base import MaintenanceWindow, Weekday
from fleetcd.models.device import Device
from fleetcd.models.rollout import Rollout
from fleetcd.planning.schedule import wave_start
from fleetcd.planning.selection import (
    cohort_members,
    device_stages,
    incompatibility,
    resolve_targets,
    rollout_stage,
)
from fleetcd.planning.waves import WaveAction, effective_strategy, plan_waves, unplaced
from fleetcd.planning.windows import LOOKAHEAD_DAYS, next_open, window_open
from fleetcd.reasons import SkipReason

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
]
# Instants near daylight-saving changes of the zones above (2026), plus ordinary days.
NEAR = [
    datetime(2026, 3, 28, 12, tzinfo=UTC),  # Europe springs forward 03-29 01:00 UTC
    datetime(2026, 10, 24, 12, tzinfo=UTC),  # Europe falls back 10-25
    datetime(2026, 3, 7, 12, tzinfo=UTC),  # New York springs forward 03-08
    datetime(2026, 10, 3, 6, tzinfo=UTC),  # Lord Howe (30-minute shift) 10-04
    datetime(2026, 9, 5, 6, tzinfo=UTC),  # Santiago springs forward 09-06 (at midnight)
    datetime(2026, 5, 4, 9, 17, tzinfo=UTC),
    datetime(2026, 7, 15, 23, 59, tzinfo=UTC),
]


def _strategy(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["all_at_once", "rolling", "canary", "waves", "blue_green"])
    if kind == "rolling":
        return {"type": kind, "batch_size": rng.randint(1, 6)}
    if kind == "canary":
        return {"type": kind, "percent": rng.choice([1, 7, 33.3, 50, 100])}
    if kind == "waves":
        waves = []
        for i in range(rng.randint(1, 4)):
            wave: dict[str, Any] = {"name": f"w{i}"}
            if rng.random() < 0.5:
                wave["cohort"] = rng.choice(["north", "south"])
            if rng.random() < 0.7 or "cohort" not in wave:  # a wave names a cohort, a percent or both
                wave["percent"] = rng.choice([10, 25, 50, 100])
            waves.append(wave)
        return {"type": kind, "waves": waves}
    return {"type": kind}


def _rollout(strategy: dict[str, Any]) -> Rollout:
    doc = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Rollout",
        "name": "nav-2-0",
        "app": "nav",
        "release": "2.0.0",
        "targets": {"cohorts": ["north", "south"]},
        "strategy": strategy,
    }
    return Rollout.model_validate(doc)


@pytest.mark.parametrize("seed", range(60))
def test_every_eligible_robot_is_placed_once_whatever_the_order(seed: int) -> None:
    rng = random.Random(seed)
    eligible = [f"amr-{i:03d}" for i in rng.sample(range(500), rng.randint(0, 40))]
    members = {"north": [d for d in eligible if rng.random() < 0.5]}
    members["south"] = [d for d in eligible if d not in members["north"]]
    cohorts_of = {d: [c for c, ds in members.items() if d in ds] for d in eligible}
    strategy = effective_strategy(_rollout(_strategy(rng)), None)
    waves = plan_waves("nav-2-0", strategy, eligible, cohorts_of, members)
    shuffled = rng.sample(eligible, len(eligible))
    assert plan_waves("nav-2-0", strategy, shuffled, cohorts_of, members) == waves
    assert [w.index for w in waves] == list(range(len(waves)))
    for wave in waves:
        assert list(wave.devices) == sorted(set(wave.devices)), "sorted, no duplicates"
        assert set(wave.devices) <= set(eligible)
    if strategy.type == "blue_green":
        stage, switch = waves
        assert (stage.action, switch.action) == (WaveAction.STAGE, WaveAction.SWITCH)
        assert stage.devices == switch.devices == tuple(sorted(eligible))
        return
    placed = [d for w in waves for d in w.devices]
    assert len(placed) == len(set(placed)), "a robot in two waves would be dispatched twice"
    left = unplaced(eligible, waves)
    assert sorted([*placed, *left]) == sorted(eligible)
    if strategy.type != "waves":
        assert left == ()


def _window(rng: random.Random) -> MaintenanceWindow:
    start = f"{rng.randrange(24):02d}:{rng.choice([0, 15, 30, 45]):02d}"
    end = f"{rng.randrange(24):02d}:{rng.choice([0, 30]):02d}"
    doc: dict[str, Any] = {"start": start, "end": end}
    if rng.random() < 0.5:
        doc["days"] = sorted({d.value for d in rng.sample(list(Weekday), rng.randint(1, 6))})
    if rng.random() < 0.3:
        doc["timezone"] = rng.choice(ZONES)
    return MaintenanceWindow.model_validate(doc)


def _scan(windows: list[MaintenanceWindow], now: datetime, zone: str) -> datetime | None:
    """The first instant inside a window by brute force: ``now``, then every whole minute after."""
    if window_open(windows, now, zone):
        return now
    at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = now + timedelta(days=LOOKAHEAD_DAYS - 1)
    while at <= end:
        if window_open(windows, at, zone):
            return at
        at += timedelta(minutes=1)
    return None


@pytest.mark.parametrize("seed", range(120))
def test_next_open_is_the_first_open_instant(seed: int) -> None:
    rng = random.Random(seed)
    zone = rng.choice(ZONES)
    windows = [_window(rng) for _ in range(rng.randint(1, 2))]
    now = rng.choice(NEAR) + timedelta(minutes=rng.randrange(0, 36 * 60), seconds=rng.choice([0, 7]))
    expected = _scan(windows, now, zone)
    got = next_open(windows, now, zone)
    if expected is None:
        assert got is None or got > now + timedelta(days=LOOKAHEAD_DAYS - 1)
    else:
        assert got == expected, f"{windows} in {zone} from {now.isoformat()}"


def _device(dev: str, zone: str, windows: list[MaintenanceWindow]) -> Device:
    doc = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Device",
        "id": dev,
        "family": "amr",
        "hardware": {"model": "amr-x", "revision": 2},
        "site": "ber",
        "timezone": zone,
        "maintenance_windows": [w.model_dump(exclude_none=True) for w in windows],
    }
    return Device.model_validate(doc)


@pytest.mark.parametrize("seed", range(20))
def test_a_wave_starts_at_its_first_robots_window_never_before_not_before(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"amr-{i:02d}" for i in range(rng.randint(1, 6))]
    models = {
        d: _device(d, rng.choice(ZONES), [_window(rng)] if rng.random() < 0.7 else [])
        for d in ids
        if rng.random() < 0.9
    }
    cohort = {d: [_window(rng)] for d in ids if rng.random() < 0.3}
    now = rng.choice(NEAR)
    not_before = now + timedelta(hours=rng.randint(-5, 30)) if rng.random() < 0.5 else None
    respect = rng.random() < 0.8
    start = wave_start("w", ids, models, cohort, now, not_before, respect)
    begin = max(now, not_before) if not_before is not None else now

    def windows_of(d: str) -> tuple[list[MaintenanceWindow], str]:
        model = models.get(d)
        own = list(model.maintenance_windows) if model is not None else []
        return [*own, *cohort.get(d, [])], model.timezone if model is not None else "UTC"

    free = [d for d in ids if not respect or not windows_of(d)[0]]
    if free:
        assert start.earliest == begin, "a robot that may change any time starts the wave at once"
    if start.earliest is not None:
        assert start.earliest >= begin, "a wave never starts before not_before"
        assert any(
            window_open(*windows_of(d)[:1], start.earliest, windows_of(d)[1]) or d in free for d in ids
        )
    with_windows = {d for d in ids if windows_of(d)[0]}
    assert {r.device for r in start.robots} == with_windows


def test_spring_forward_over_a_window_start_opens_it_at_the_jump() -> None:
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). A 02:30-04:00 window has no
    # 02:30 that night, but the clock reads 03:00 inside it at the jump: dispatch acts then, so the
    # plan must not say 03:30.
    window = MaintenanceWindow(start="02:30", end="04:00")
    at = next_open([window], datetime(2026, 3, 28, 12, tzinfo=UTC), "Europe/Berlin")
    assert at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_fall_back_reopens_a_window_whose_last_hour_repeats() -> None:
    # Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC). A 00:00-02:30 window
    # closed at 02:30 CEST and reopens at 02:00 CET for another half hour.
    window = MaintenanceWindow(start="00:00", end="02:30")
    at = next_open([window], datetime(2026, 10, 25, 0, 40, tzinfo=UTC), "Europe/Berlin")
    assert at == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


# --- target selection ---------------------------------------------------------------------------

_API = "fleetcd.dev/v1"
_IMAGE = "registry.fleet.test/nav@sha256:" + "0" * 64


def _fleet(rng: random.Random) -> tuple[dict[str, Device], dict[str, Cohort]]:
    devices = {}
    for i in rng.sample(range(100), rng.randint(0, 15)):
        doc = {
            "apiVersion": _API,
            "kind": "Device",
            "id": f"r-{i:02d}",
            "family": rng.choice(["amr", "arm"]),
            "site": rng.choice(["ber", "muc"]),
            "hardware": {"model": rng.choice(["mk1", "mk2"]), "revision": rng.randint(1, 4)},
            "labels": {"ring": rng.choice(["early", "late"])},
            "decommissioned": rng.random() < 0.15,
        }
        devices[doc["id"]] = Device.model_validate(doc)
    cohorts = {}
    for name in ["north", "south", "lab"]:
        doc: dict[str, Any] = {"apiVersion": _API, "kind": "Cohort", "name": name}
        doc["stage"] = rng.choice(["staging", "canary", "production"])
        doc["devices"] = [f"r-{i:02d}" for i in rng.sample(range(100), rng.randint(0, 5))]
        if rng.random() < 0.6 or not doc["devices"]:
            pick = rng.choice([{"sites": ["ber"]}, {"families": ["amr"]}, {"labels": {"ring": "early"}}])
            doc["selector"] = pick
        cohorts[name] = Cohort.model_validate(doc)
    return devices, cohorts


def _release(rng: random.Random) -> Release:
    compat: dict[str, Any] = {}
    if rng.random() < 0.4:
        compat["families"] = ["amr"]
    if rng.random() < 0.4:
        compat["models"] = ["mk2"]
    doc: dict[str, Any] = {"apiVersion": _API, "kind": "Release", "app": "nav", "version": "2.0.0"}
    doc["artifacts"] = [{"kind": "container_image", "name": "nav", "image": _IMAGE}]
    doc["compatibility"] = compat
    return Release.model_validate(doc)


@pytest.mark.parametrize("seed", range(60))
def test_every_targeted_robot_is_eligible_or_skipped_with_a_reason_that_holds(seed: int) -> None:
    rng = random.Random(seed)
    devices, cohorts = _fleet(rng)
    doc = {
        "apiVersion": _API,
        "kind": "Rollout",
        "name": "nav-2-0",
        "app": "nav",
        "release": "2.0.0",
        "targets": {
            "cohorts": rng.sample(["north", "south", "lab", "gone"], rng.randint(1, 3)),
            "devices": [f"r-{i:02d}" for i in rng.sample(range(100), rng.randint(0, 4))],
        },
        "paused": rng.random() < 0.15,
        "aborted": rng.random() < 0.1,
    }
    rollout = Rollout.model_validate(doc)
    release = _release(rng) if rng.random() < 0.8 else None
    chosen = resolve_targets(rollout, release, devices, cohorts)

    targeted = set(rollout.targets.devices)
    for name in rollout.targets.cohorts:
        if name in cohorts:
            targeted |= set(cohort_members(cohorts[name], devices)) | set(cohorts[name].devices)
    skipped = dict(chosen.skipped)
    assert len(skipped) == len(chosen.skipped), "a robot skipped twice"
    assert set(chosen.eligible).isdisjoint(skipped)
    assert set(chosen.eligible) | set(skipped) == targeted, "every targeted robot is accounted for"
    assert list(chosen.eligible) == sorted(chosen.eligible)
    for dev in chosen.eligible:
        model = devices[dev]
        assert not model.decommissioned and not rollout.paused and not rollout.aborted
        if release is not None:  # read from the release itself, not through incompatibility()
            compat = release.compatibility
            assert not compat.families or model.family in compat.families
            assert not compat.models or model.hardware.model in compat.models
    for dev, why in skipped.items():
        model = devices.get(dev)
        holds = {
            SkipReason.UNKNOWN: model is None,
            SkipReason.DECOMMISSIONED: model is not None and model.decommissioned,
            SkipReason.PAUSED: rollout.paused,
            SkipReason.ABORTED: rollout.aborted,
        }.get(why)
        if holds is None:  # an incompatibility
            assert model is not None and release is not None and incompatibility(release, model) is why
        else:
            assert holds, f"{dev} skipped as {why.value}"
    for dev, names in chosen.cohorts_of.items():
        assert set(names) <= set(rollout.targets.cohorts)
        for name in names:
            cohort = cohorts[name]
            assert dev in cohort.devices or dev in cohort_members(cohort, devices)
    stage = rollout_stage(rollout, cohorts, device_stages(cohorts, devices))
    touched = [cohorts[c].stage for c in rollout.targets.cohorts if c in cohorts]
    assert all(stage.rank >= s.rank for s in touched), "approvals follow the highest stage touched"
    shuffled = dict(rng.sample(list(devices.items()), len(devices)))
    assert resolve_targets(rollout, release, shuffled, cohorts) == chosen, "the order robots are read in"
