"""The simulator's clock and event scheduler: one heap of timed events, in simulated or real time.

Every actor of a simulation — each virtual robot and the controller — is a chain of events
(:meth:`Scheduler.at`): each robot has exactly one pending event at any time, and the controller's
reconciles are *barriers*. With a real clock the scheduler runs events one by one, sleeping until
each is due and recording how late it ran. With a virtual clock the time jumps to each event (an
event takes no simulated time, however long its real git and gpg work takes), and the robots'
events between two reconciles run on ``workers`` threads: robots never read each other's refs, so
their events commute, and only the controller sees them all — it runs alone, after every robot
event due before it. Each event sees its own instant (a per-thread clock), so results do not depend
on which thread ran what: a run with the same seed is the same run.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

Action = Callable[[], None]


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    action: Action = field(compare=False)
    barrier: bool = field(default=False, compare=False)


class SimClock:
    """Seconds since the merge (``elapsed``) and the matching instant (``now``), virtual or real."""

    def __init__(self, start: datetime, *, virtual: bool) -> None:
        self.start = start
        self.virtual = virtual
        self._elapsed = 0.0
        self._local = threading.local()  # the instant of the event this thread is running
        self._wall_start = time.monotonic()
        self.max_lag_seconds = 0.0  # real clock: how late the latest-running event ran

    def elapsed(self) -> float:
        if not self.virtual:
            return time.monotonic() - self._wall_start
        at: float | None = getattr(self._local, "at", None)
        return self._elapsed if at is None else at

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    def advance_to(self, at: float) -> None:
        if self.virtual:
            self._elapsed = max(self._elapsed, at)
            return
        delay = at - self.elapsed()
        if delay > 0:
            time.sleep(delay)
        else:
            self.max_lag_seconds = max(self.max_lag_seconds, -delay)

    def run_at(self, at: float, action: Action) -> None:
        """Run ``action`` with this thread's clock at ``at`` (virtual clock, parallel events)."""
        self._local.at = at
        try:
            action()
        finally:
            self._local.at = None


class Scheduler:
    """A heap of events; ``stop()`` from inside an event ends :meth:`run` after it."""

    def __init__(self, clock: SimClock, *, workers: int = 1) -> None:
        self.clock = clock
        self.workers = workers if clock.virtual else 1
        self._heap: list[_Event] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._stopped = False
        self.events_run = 0

    def at(self, when: float, action: Action, *, barrier: bool = False) -> None:
        """Run ``action`` at ``when`` seconds since the merge (now, if that is already past)."""
        event = _Event(max(when, self.clock.elapsed()), 0, action, barrier)
        with self._lock:
            event.seq = next(self._seq)
            heapq.heappush(self._heap, event)

    def after(self, delay: float, action: Action, *, barrier: bool = False) -> None:
        self.at(self.clock.elapsed() + delay, action, barrier=barrier)

    def stop(self) -> None:
        self._stopped = True

    def run(self, until: float) -> bool:
        """Run events due up to ``until``; True when stopped by an event, False when time ran out."""
        with ThreadPoolExecutor(max_workers=max(self.workers, 1), thread_name_prefix="sim") as pool:
            while self._heap and not self._stopped and self._heap[0].at <= until:
                if self.workers > 1 and not self._heap[0].barrier:
                    self._round(pool, until)
                    continue
                event = heapq.heappop(self._heap)
                self.clock.advance_to(event.at)
                event.action()
                self.events_run += 1
        if not self._stopped:
            self.clock.advance_to(until)
        return self._stopped

    def _round(self, pool: ThreadPoolExecutor, until: float) -> None:
        """Every robot event due before the next barrier (and ``until``), on the worker threads."""
        barrier = min((e.at for e in self._heap if e.barrier), default=until)
        limit = min(barrier, until)
        batch: list[_Event] = []
        with self._lock:
            while self._heap and not self._heap[0].barrier and self._heap[0].at < limit:
                batch.append(heapq.heappop(self._heap))
            if not batch and self._heap and not self._heap[0].barrier and self._heap[0].at <= until:
                batch.append(heapq.heappop(self._heap))  # due exactly at the limit, before the barrier
        for done in [pool.submit(self.clock.run_at, e.at, e.action) for e in batch]:
            done.result()  # an event's exception ends the run, as it would sequentially
        self.events_run += len(batch)
        self.clock.advance_to(max(e.at for e in batch))
