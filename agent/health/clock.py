"""The clock the health watch and probe retries wait on: a small Protocol with the real default.

Probe timeouts and process deadlines always use real time (a real process cannot be made to run
faster); only the *scheduling* between attempts goes through a :class:`Clock`, so a test that is
about counting attempts and delays can pass a clock that records instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds and a way to wait for them."""

    def now(self) -> float:
        """Monotonic seconds (only differences mean anything)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (never negative)."""


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()
