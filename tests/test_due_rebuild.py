"""The idle horizon after a write of most robots' files (issue 12): a bootstrap, a fan-out, the
first reconcile of a process. ``DueMemo`` then reads every robot again in one plain loop and keeps
the instants already passed in no order (the clock stepping back scans them); ``--once`` reads
every robot with :func:`earliest_cold` and keeps nothing. Whatever the history (fleet-wide
rewrites, a quarter of the fleet rewritten, robots leaving and joining, the clock jumping forward
and stepping back, an instant out of range), every answer must be the cold computation's, the
memo's count of live instants exact, its heaps bounded, and a robot that left never comes back.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from controller.reconcile.due import DueMemo, earliest_cold
from controller.records.model import Connectivity, DeviceState, is_terminal
from controller.state.model import DeviceFile
from fleetcd.compat import UTC
from tests.test_fleetmap import NAMES, OFFLINE_AFTER, T0, cold_earliest, file_of, step_clock
from tests.test_ingest import deployment


def live_instants(devices: dict[str, DeviceFile]) -> int:
    return sum(
        (d.state.last_seen is not None)
        + sum(r.deadline_at is not None and not is_terminal(r) for r in d.records)
        for d in devices.values()
    )


def check(memo: DueMemo, devices: dict[str, DeviceFile], now: datetime) -> None:
    cold = cold_earliest(devices, OFFLINE_AFTER, now)
    assert memo.earliest(devices, OFFLINE_AFTER, now) == cold
    assert earliest_cold(devices, OFFLINE_AFTER, now) == cold
    assert memo.live == live_instants(devices)
    assert len(memo.ahead) + len(memo.passed) <= 2 * memo.live + 1024 + 1
    assert set(memo.stamps) == set(devices)  # a robot that left holds no stamp, so no entry counts
    assert all(e[0] >= now for e in memo.ahead) or not memo.ahead or memo.ahead[0][0] >= now
    assert all(e[0] < now for e in memo.passed)


@pytest.mark.parametrize("seed", range(60))
def test_fleet_wide_rewrites_and_a_swinging_clock_give_the_cold_horizon_every_time(seed: int) -> None:
    rng = random.Random(seed)
    now = T0
    devices = {d: file_of(d, rng, now) for d in rng.sample(NAMES, rng.randrange(0, 40))}
    memo = DueMemo()
    for _ in range(30):
        now = step_clock(rng, now)
        what = rng.random()
        if what < 0.3:  # a fan-out: every robot's file written again
            devices = {d: file_of(d, rng, now) for d in devices}
        elif what < 0.45:  # about a third rewritten, in place or appended, some leaving, some joining
            for device in rng.sample(sorted(devices), len(devices) // 3):
                if rng.random() < 0.2:
                    del devices[device]
                elif rng.random() < 0.5:
                    del devices[device]
                    devices[device] = file_of(device, rng, now)
                else:
                    devices[device] = file_of(device, rng, now)
            for device in rng.sample(NAMES, 2):
                devices.setdefault(device, file_of(device, rng, now))
        elif what < 0.55:  # the state branch read again: every robot a new object, another order
            items = [(d, data.model_copy()) for d, data in devices.items()]
            rng.shuffle(items)
            devices = dict(items)
        elif what < 0.8:  # a few robots report
            for device in rng.sample(NAMES, 3):
                devices[device] = file_of(device, rng, now)
        check(memo, devices, now)


@pytest.mark.parametrize("seed", range(20))
def test_the_first_reconcile_of_a_process_and_once_agree_with_a_memo_kept_from_the_start(seed: int) -> None:
    """A memo that lived through the history, one built fresh from the last map (a restart) and
    --once's cold read give one answer."""
    rng = random.Random(1000 + seed)
    now = T0
    devices = {d: file_of(d, rng, now) for d in NAMES}
    kept = DueMemo()
    for _ in range(15):
        now = step_clock(rng, now)
        for device in rng.sample(NAMES, rng.randrange(0, 40)):
            devices[device] = file_of(device, rng, now)
        answer = kept.earliest(devices, OFFLINE_AFTER, now)
        assert answer == DueMemo().earliest(dict(devices), OFFLINE_AFTER, now)
        assert (
            answer == earliest_cold(devices, OFFLINE_AFTER, now) == cold_earliest(devices, OFFLINE_AFTER, now)
        )


def robot(device: str, seen: datetime | None, *deadlines: datetime) -> DeviceFile:
    state = DeviceState(device=device, connectivity=Connectivity.ONLINE, last_seen=seen)
    return DeviceFile(state=state, records=tuple(deployment(device, deadline_at=at) for at in deadlines))


def test_a_robot_removed_in_a_fan_out_cannot_hold_the_horizon_when_the_clock_steps_back() -> None:
    """Its instants passed before it left; the clock stepping back to before them must not bring
    them back (its entries sit in ``passed`` with the stamp of the read before the fan-out)."""
    memo = DueMemo()
    gone = robot("gone", T0, T0 + timedelta(seconds=10))
    stays = robot("stays", T0 + timedelta(hours=5))
    assert memo.earliest({"gone": gone, "stays": stays}, OFFLINE_AFTER, T0) == T0 + timedelta(seconds=10)
    later = T0 + timedelta(hours=1)
    assert (
        memo.earliest({"gone": gone, "stays": stays}, OFFLINE_AFTER, later)
        == stays.state.last_seen + OFFLINE_AFTER
    )  # type: ignore[operator]
    assert len(memo.passed) == 2  # gone's deadline and ageing
    fanned = {"stays": robot("stays", T0 + timedelta(hours=5)), "new": robot("new", None)}
    assert memo.earliest(fanned, OFFLINE_AFTER, later) == T0 + timedelta(hours=5) + OFFLINE_AFTER
    assert memo.earliest(fanned, OFFLINE_AFTER, T0) == T0 + timedelta(hours=5) + OFFLINE_AFTER
    assert all(e[1] != "gone" for e in memo.ahead)
    assert memo.live == 1 and memo.counts == {"new": 0}


def test_the_clock_stepping_back_after_a_rebuild_brings_back_only_the_instants_after_it() -> None:
    devices = {
        f"r{n}": robot(f"r{n}", T0 + timedelta(seconds=n), T0 + timedelta(seconds=5000 + n))
        for n in range(200)
    }
    memo = DueMemo()
    at = T0 + timedelta(seconds=3000)
    assert memo.earliest(devices, OFFLINE_AFTER, at) == T0 + timedelta(seconds=5000)
    assert len(memo.passed) == 200 and len(memo.ahead) == 200  # the ageing instants passed, not the deadlines
    for back in (T0 + timedelta(seconds=1000), T0 + timedelta(seconds=950), T0 + timedelta(seconds=900)):
        assert memo.earliest(devices, OFFLINE_AFTER, back) == cold_earliest(devices, OFFLINE_AFTER, back)
    assert memo.earliest(devices, OFFLINE_AFTER, T0) == T0 + OFFLINE_AFTER
    assert memo.passed == [] and len(memo.ahead) == 400


def test_an_instant_out_of_range_leaves_the_memo_to_read_every_robot_again() -> None:
    """A fan-out rewrites every robot, one of them with a ``last_seen`` whose ageing instant
    overflows: the call fails (as the cold one does). The next reconcile, with that robot's file
    fixed, must not trust what the failed call had already marked as read (the other robots'
    new files), and gives the cold answer."""
    rng = random.Random(4)
    devices = {d: file_of(d, rng, T0) for d in NAMES}
    memo = DueMemo()
    memo.earliest(devices, OFFLINE_AFTER, T0)
    fanned = {d: robot(d, T0 + timedelta(seconds=60), T0 + timedelta(seconds=30)) for d in NAMES}
    fanned[NAMES[-1]] = robot(NAMES[-1], datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(OverflowError):
        memo.earliest(fanned, OFFLINE_AFTER, T0)
    with pytest.raises(OverflowError):
        earliest_cold(fanned, OFFLINE_AFTER, T0)
    fanned[NAMES[-1]] = robot(NAMES[-1], T0)
    assert memo.earliest(fanned, OFFLINE_AFTER, T0) == T0 + timedelta(seconds=30)
    assert memo.earliest(fanned, OFFLINE_AFTER, T0) == cold_earliest(fanned, OFFLINE_AFTER, T0)
    assert memo.live == live_instants(fanned)


def test_robots_with_no_instant_or_many_are_counted_exactly_across_rebuilds_and_rereads() -> None:
    silent = robot("silent", None)
    busy = robot("busy", T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), T0 + timedelta(seconds=3))
    plain = robot("plain", T0)
    memo = DueMemo()
    devices = {"silent": silent, "busy": busy, "plain": plain}
    assert memo.earliest(devices, OFFLINE_AFTER, T0) == T0 + timedelta(seconds=1)
    assert (memo.live, memo.counts) == (5, {"silent": 0, "busy": 4})
    devices["busy"] = robot("busy", None)  # read again on its own: now no instant
    assert memo.earliest(devices, OFFLINE_AFTER, T0) == T0 + OFFLINE_AFTER
    assert (memo.live, memo.counts) == (1, {"silent": 0, "busy": 0})
    devices["silent"] = robot("silent", T0 - timedelta(hours=1))  # now one: no entry in counts
    assert memo.earliest(devices, OFFLINE_AFTER, T0) == T0 + OFFLINE_AFTER
    assert (memo.live, memo.counts) == (2, {"busy": 0})
    del devices["plain"]
    assert memo.earliest(devices, OFFLINE_AFTER, T0) is None
    assert (memo.live, set(memo.stamps)) == (1, {"silent", "busy"})
