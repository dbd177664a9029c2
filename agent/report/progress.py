"""Agent step 6 (report), mid-step: a report with a ``progress`` object, pushed at a bounded rate.

A download over cellular or a ten-minute health watch would otherwise leave the controller showing
``queued`` until the cycle ends. The converge steps tell a :class:`ProgressReporter` how far they
are (:meth:`~ProgressReporter.begin` a phase, then :meth:`~ProgressReporter.downloaded` for each
chunk written or :meth:`~ProgressReporter.watching` at each wake of the watch loop). Those calls are
the hot path, so they cost one clock read and a comparison, and only when a push is due do more:

* due means: at least ``poll.progress_seconds`` since the phase began and since the last progress
  push started (:func:`progress_due`, pure), and no progress push still in flight;
* the report is then built on the calling thread (the journals and the executor are the main
  loop's; a few milliseconds once per interval) with the next ``seq``, and handed to one background
  thread that pushes it. The converge never waits for the network;
* a progress push is never queued, rebased or retried: one that fails (link down, server busy, a
  newer report on the server) is dropped, logged, and no other progress push is tried this cycle,
  so a flaky link is not hammered and a rollback never waits behind it. The outbox is not touched:
  it keeps the one report that must arrive, the one that ends the cycle;
* :meth:`~ProgressReporter.close`, called before the cycle's own report, waits for a push still in
  flight (at most the remote's timeout), so the two never race on the status ref, and returns the
  highest ``seq`` used: the cycle's report goes above it and, carrying no progress, replaces it on
  the controller.

``poll.progress_seconds: 0`` turns progress reports off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetcd.reports import Progress, StatusReport
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)

Build = Callable[[Progress, int], StatusReport]  # (progress, seq) -> the report to push
Push = Callable[[StatusReport], None]  # pushes it (raises when the server did not take it)


def progress_due(now: float, phase_started: float, last_push: float | None, every: float) -> bool:
    """Whether a progress push may start at monotonic ``now``: ``every`` seconds into the phase and
    after the last one started (``last_push`` None: none yet this cycle)."""
    if every <= 0:
        return False
    since_push = None if last_push is None else now - last_push
    return now - phase_started >= every and (since_push is None or since_push >= every)


@dataclass
class _Phase:
    deployment_id: str
    phase: Activity
    started: float
    total_bytes: int = 0
    window_seconds: int = 0
    done: dict[str, int] = field(default_factory=dict)  # artifact name -> bytes on disk


class ProgressReporter:
    """One cycle's progress pushes; see the module docstring. ``disabled()`` does nothing at all."""

    def __init__(
        self,
        every_seconds: float,
        build: Build,
        push: Push,
        *,
        first_seq: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_seconds = every_seconds
        self._build = build
        self._push = push
        self._next_seq = first_seq
        self._monotonic = monotonic
        self._phase: _Phase | None = None
        self._last_push: float | None = None
        self._thread: threading.Thread | None = None
        self._failed = False
        self.started = 0  # progress pushes started this cycle
        self.delivered = 0  # ... and taken by the server

    @classmethod
    def disabled(cls) -> ProgressReporter:
        def never(_progress: Progress, _seq: int) -> StatusReport:
            raise AssertionError("a disabled progress reporter builds nothing")

        return cls(0, never, lambda _report: None, first_seq=0)

    # --- the converge steps' side (main thread) ----------------------------------------------------

    def begin(
        self, deployment_id: str, phase: Activity, *, total_bytes: int = 0, window_seconds: int = 0
    ) -> None:
        """A long phase of ``deployment_id`` starts: a download of ``total_bytes`` (every artifact of
        the release) or a health watch of ``window_seconds``."""
        self._phase = _Phase(deployment_id, phase, self._monotonic(), total_bytes, window_seconds)

    def end(self) -> None:
        """The phase is over: nothing more is said about it (a push in flight finishes on its own)."""
        self._phase = None

    def downloaded(self, artifact: str, done_bytes: int) -> None:
        """``artifact`` has ``done_bytes`` on disk (resumed bytes included). Hot path."""
        phase = self._phase
        if phase is None or phase.phase is not Activity.DOWNLOADING:
            return
        phase.done[artifact] = done_bytes
        if self._due(phase):
            done = min(sum(phase.done.values()), phase.total_bytes)
            self._start(
                Progress(
                    deployment_id=phase.deployment_id,
                    phase=Activity.DOWNLOADING,
                    done_bytes=done,
                    total_bytes=phase.total_bytes,
                )
            )

    def watching(self, seconds_left: float) -> None:
        """The health watch has ``seconds_left`` of its window to go. Called at each of its wakes."""
        phase = self._phase
        if phase is None or phase.phase is not Activity.WATCHING or not self._due(phase):
            return
        left = min(max(0, int(seconds_left + 0.999)), phase.window_seconds)  # whole seconds, rounded up
        self._start(
            Progress(
                deployment_id=phase.deployment_id,
                phase=Activity.WATCHING,
                seconds_left=left,
                window_seconds=phase.window_seconds,
            )
        )

    def close(self) -> int:
        """Wait for a push in flight; the highest seq a progress report used (``first_seq - 1``: none)."""
        self._phase = None
        thread = self._thread
        if thread is not None:
            thread.join()
        return self._next_seq - 1

    # --- inside ---------------------------------------------------------------------------------------

    def _due(self, phase: _Phase) -> bool:
        if self._failed or (self._thread is not None and self._thread.is_alive()):
            return False
        return progress_due(self._monotonic(), phase.started, self._last_push, self.every_seconds)

    def _start(self, progress: Progress) -> None:
        self._last_push = self._monotonic()
        try:
            report = self._build(progress, self._next_seq)
        except Exception as exc:  # a report that cannot be built now: say nothing, converge on
            log.warning("progress report not built: %s", exc)
            self._failed = True
            return
        self._next_seq += 1
        self.started += 1
        self._thread = threading.Thread(
            target=self._deliver, args=(report,), name="fleetcd-progress", daemon=True
        )
        self._thread.start()

    def _deliver(self, report: StatusReport) -> None:
        try:
            self._push(report)
        except Exception as exc:  # dropped, never retried: the cycle's own report still goes out
            log.warning("progress report %s not pushed (no more this cycle): %s", report.seq, exc)
            self._failed = True
            return
        self.delivered += 1
