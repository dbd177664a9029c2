"""Watchdog liveness: systemd is pinged while the main loop keeps the promises it makes, and only then.

``fleetcd-agent run`` runs under ``WatchdogSec=`` (:mod:`agent.sdnotify`). Pinging only from the main
loop would get a healthy agent killed in the middle of a long step — a 2 GB download over cellular,
a 10 minute watch window — and the download would then never finish. Pinging from a thread
unconditionally would keep a hung agent alive forever. So the main loop *promises* and a pinger
thread *checks*:

* every step declares a budget before it starts (:meth:`Liveness.step`): a download the
  downloader's own derived deadline, a watch its window plus the time its probes may take (see
  :mod:`agent.converge.budgets`); anything else gets ``default_step_seconds``;
* the main loop beats (:meth:`Liveness.beat`) as it moves: at every journal write and cycle phase;
* the pinger sends ``WATCHDOG=1`` every ``WatchdogSec/2`` while the current deadline is ahead, and
  stops once it has passed, so systemd restarts an agent stuck past what it promised.

Outside systemd (no ``WATCHDOG_USEC``) there is no thread and beats cost one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LivenessSettings:
    """Budgets of steps that declare none, and the margin around declared ones; seconds."""

    default_step_seconds: float = 300.0  # a git fetch, gpg, a journal write, a report push
    slack_seconds: float = 30.0  # added to a declared budget: the bookkeeping around the step
    image_pull_seconds: float = 3600.0  # a container image has no declared size to derive it from

    def __post_init__(self) -> None:
        for name in ("default_step_seconds", "slack_seconds", "image_pull_seconds"):
            value = getattr(self, name)
            if not 0 < value <= 7 * 86_400:
                raise ValueError(f"LivenessSettings.{name} must be within 0..604800 s, got {value}")


class Liveness:
    """The deadline the main loop promised, and the thread that pings while it holds."""

    def __init__(
        self,
        interval_seconds: float | None,
        send: Callable[[], object],
        *,
        settings: LivenessSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_seconds = interval_seconds  # None: no watchdog, nothing to ping
        self.settings = settings or LivenessSettings()
        self._send = send
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._steps: list[tuple[str, float]] = []  # (name, deadline) of the steps in progress
        self._deadline = monotonic() + self.settings.default_step_seconds
        self._overdue_logged = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def disabled(cls) -> Liveness:
        """No watchdog: beats and steps are bookkeeping only."""
        return cls(None, lambda: None)

    # --- the main loop's side ---------------------------------------------------------------------

    def beat(self) -> None:
        """The main loop moved: the deadline is at least ``default_step_seconds`` away again."""
        with self._lock:
            self._deadline = max(self._deadline, self._monotonic() + self.settings.default_step_seconds)
            self._overdue_logged = False

    @contextmanager
    def step(self, name: str, budget_seconds: float) -> Iterator[None]:
        """Declare that ``name`` may take ``budget_seconds`` (plus slack) before it counts as stuck."""
        with self._lock:
            deadline = self._monotonic() + budget_seconds + self.settings.slack_seconds
            self._steps.append((name, deadline))
            self._deadline = deadline
            self._overdue_logged = False
        try:
            yield
        finally:
            with self._lock:
                self._steps.pop()
                after = self._monotonic() + self.settings.default_step_seconds
                # A finished step gives its long budget back: a hang right after it is caught soon.
                self._deadline = max(after, self._steps[-1][1]) if self._steps else after

    @property
    def overdue(self) -> str | None:
        """What overran its budget (a step's name, or "main loop"), None while within it."""
        with self._lock:
            if self._monotonic() <= self._deadline:
                return None
            return self._steps[-1][0] if self._steps else "main loop"

    # --- the pinger ----------------------------------------------------------------------------------

    def start(self) -> Liveness:
        """Start pinging every ``interval_seconds`` (nothing when there is no watchdog)."""
        if self.interval_seconds is None or self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleetcd-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Liveness:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def ping_if_alive(self) -> bool:
        """One pinger tick: send WATCHDOG=1 if the deadline holds; whether it did."""
        stuck = self.overdue
        if stuck is None:
            self._send()
            return True
        with self._lock:
            first, self._overdue_logged = not self._overdue_logged, True
        if first:
            log.error("%s overran its budget: watchdog pings stopped, systemd will restart the agent", stuck)
        return False

    def _run(self) -> None:
        assert self.interval_seconds is not None
        while not self._stop.wait(self.interval_seconds):
            try:
                self.ping_if_alive()
            except Exception:  # a broken ping must not kill the thread that decides about pings
                log.exception("watchdog ping failed")
