"""The simulator's clock and scheduler (controller.sim.clock): what ``fleetcd sim`` promises about time.

A rehearsal is only worth something if it is the same run for the same seed and if the controller
sees every robot event due before it, as on a real fleet. So: events run in time order (ties in the
order they were scheduled), the controller's reconciles are barriers that robot events never pass,
each event sees its own instant even on a worker thread, an event's exception ends the run, and the
real clock sleeps until each event and records how late it ran.
"""

from __future__ import annotations

import functools
import threading
from datetime import datetime, timedelta

import pytest

from controller.sim.clock import Scheduler, SimClock
from fleetcd.compat import UTC

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def virtual(workers: int = 1) -> tuple[SimClock, Scheduler]:
    clock = SimClock(START, virtual=True)
    return clock, Scheduler(clock, workers=workers)


# --- ordering -----------------------------------------------------------------------------------------


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    clock, scheduler = virtual()
    seen: list[str] = []
    for when, name in [(5.0, "c"), (1.0, "a"), (5.0, "d"), (3.0, "b"), (5.0, "e")]:
        scheduler.at(when, functools.partial(seen.append, name))
    assert scheduler.run(until=10.0) is False
    assert seen == ["a", "b", "c", "d", "e"]
    assert scheduler.events_run == 5
    assert clock.elapsed() == 10.0, "time runs out at until"


def test_each_event_sees_its_own_instant() -> None:
    clock, scheduler = virtual()
    seen: list[datetime] = []
    for when in (0.0, 2.5, 60.0):
        scheduler.at(when, lambda: seen.append(clock.now()))
    scheduler.run(until=100.0)
    assert seen == [START, START + timedelta(seconds=2.5), START + timedelta(seconds=60)]


def test_an_event_scheduled_in_the_past_runs_now_not_back_in_time() -> None:
    clock, scheduler = virtual()
    seen: list[float] = []
    scheduler.at(10.0, lambda: scheduler.at(2.0, lambda: seen.append(clock.elapsed())))
    scheduler.run(until=20.0)
    assert seen == [10.0]


def test_after_is_relative_to_the_running_event() -> None:
    clock, scheduler = virtual()
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.elapsed())
        if len(seen) < 4:
            scheduler.after(7.0, tick)

    scheduler.at(1.0, tick)
    scheduler.run(until=100.0)
    assert seen == [1.0, 8.0, 15.0, 22.0]


def test_events_after_until_wait_for_the_next_run() -> None:
    clock, scheduler = virtual()
    seen: list[float] = []
    for when in (1.0, 5.0, 9.0):
        scheduler.at(when, lambda: seen.append(clock.elapsed()))
    scheduler.run(until=5.0)
    assert seen == [1.0, 5.0]
    scheduler.run(until=9.0)
    assert seen == [1.0, 5.0, 9.0]


def test_stop_inside_an_event_ends_the_run_after_it() -> None:
    clock, scheduler = virtual()
    seen: list[str] = []
    scheduler.at(1.0, lambda: seen.append("before"))

    def stopper() -> None:
        seen.append("stopper")
        scheduler.stop()

    scheduler.at(2.0, stopper)
    scheduler.at(3.0, lambda: seen.append("never"))
    assert scheduler.run(until=100.0) is True
    assert seen == ["before", "stopper"]
    assert clock.elapsed() == 2.0, "a stopped run does not advance to until"


def test_virtual_time_never_goes_backwards() -> None:
    clock, _ = virtual()
    clock.advance_to(10.0)
    clock.advance_to(4.0)
    assert clock.elapsed() == 10.0


# --- barriers and worker threads ----------------------------------------------------------------------


def robots_and_controller(workers: int) -> list[tuple[str, float]]:
    """Ten robots polling every 3 s and a controller reconciling every 10 s (a barrier)."""
    clock, scheduler = virtual(workers)
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()

    def robot(name: str) -> None:
        with lock:
            seen.append((name, clock.elapsed()))
        scheduler.after(3.0, lambda: robot(name))

    def controller() -> None:
        seen.append(("controller", clock.elapsed()))
        scheduler.after(10.0, controller, barrier=True)

    for index in range(10):
        scheduler.at(index * 0.1, functools.partial(robot, f"r{index}"))
    scheduler.at(10.0, controller, barrier=True)
    scheduler.run(until=30.0)
    return seen


@pytest.mark.parametrize("workers", [1, 4])
def test_no_robot_event_due_before_a_reconcile_runs_after_it(workers: int) -> None:
    seen = robots_and_controller(workers)
    reconciles = [at for name, at in seen if name == "controller"]
    assert reconciles == [10.0, 20.0, 30.0]
    for index, (name, at) in enumerate(seen):
        if name == "controller":
            later_robots = [t for n, t in seen[index + 1 :] if n != "controller"]
            assert all(t >= at for t in later_robots), "a robot event due earlier ran after the barrier"
            earlier_robots = [t for n, t in seen[:index] if n != "controller"]
            assert all(t <= at for t in earlier_robots)


def test_the_same_schedule_gives_the_same_events_on_one_thread_or_four() -> None:
    one, four = robots_and_controller(1), robots_and_controller(4)
    assert sorted(one) == sorted(four)
    assert [e for e in one if e[0] == "controller"] == [e for e in four if e[0] == "controller"]


def test_a_worker_threads_event_sees_its_own_instant_not_a_neighbours() -> None:
    clock, scheduler = virtual(workers=4)
    seen: dict[float, float] = {}
    lock = threading.Lock()

    def record(when: float) -> None:
        with lock:
            seen[when] = clock.elapsed()

    for when in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5):
        scheduler.at(when, functools.partial(record, when))
    scheduler.at(5.0, lambda: None, barrier=True)
    scheduler.run(until=10.0)
    assert seen == {when: when for when in seen} and len(seen) == 6


def test_an_exception_in_an_event_ends_the_run_on_any_thread() -> None:
    for workers in (1, 3):
        _clock, scheduler = virtual(workers)

        def boom() -> None:
            raise RuntimeError("robot crashed")

        scheduler.at(1.0, lambda: None)
        scheduler.at(2.0, boom)
        with pytest.raises(RuntimeError, match="robot crashed"):
            scheduler.run(until=10.0)


def test_a_real_clock_uses_one_worker_whatever_is_asked() -> None:
    scheduler = Scheduler(SimClock(START, virtual=False), workers=8)
    assert scheduler.workers == 1


# --- the real clock -----------------------------------------------------------------------------------


def test_a_real_clock_sleeps_until_each_event_and_records_lateness() -> None:
    clock = SimClock(START, virtual=False)
    scheduler = Scheduler(clock)
    seen: list[float] = []
    scheduler.at(0.05, lambda: seen.append(clock.elapsed()))
    scheduler.at(0.10, lambda: seen.append(clock.elapsed()))
    scheduler.run(until=0.12)
    assert len(seen) == 2
    assert seen[0] >= 0.05 and seen[1] >= 0.10
    assert clock.elapsed() >= 0.12
    assert clock.now() >= START + timedelta(seconds=0.12)
    clock.advance_to(0.0)  # an event due in the past: no sleep, its lateness is recorded
    assert clock.max_lag_seconds >= 0.1
