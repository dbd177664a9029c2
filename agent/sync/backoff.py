"""How long the agent sleeps between sync cycles: the poll interval, or exponential backoff when offline.

Pure and deterministic given its ``random.Random`` (tests pass a seeded one; the real default is
``random.SystemRandom``): :meth:`Backoff.failure` after a cycle whose sync failed (a
:class:`~fleetcd.errors.TransportError`), :meth:`Backoff.success` after one that reached the server.
Every delay is spread by ``poll.jitter_percent`` so that robots that lost the network together —
a site outage — do not come back in lock-step and hammer the git server.

Failure ``n`` (from 0) waits about ``backoff_initial_seconds * 2**n``, never above
``backoff_max_seconds``: the un-jittered step is capped first, then jitter spreads the delay
within ``±jitter_percent`` of it, clipped at the cap so the cap holds for every robot.
"""

from __future__ import annotations

import random

from fleetcd.models.agent import PollSettings

# 2**64 times any initial delay is far above every cap PollSettings allows: stop doubling there.
MAX_EXPONENT = 64


class Backoff:
    """The sleep before the next sync cycle; ``failures`` counts consecutive failed cycles."""

    def __init__(self, settings: PollSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng if rng is not None else random.SystemRandom()
        self.failures = 0

    @property
    def jitter(self) -> float:
        return self.settings.jitter_percent / 100

    def step(self, failures: int) -> float:
        """The un-jittered delay after ``failures`` consecutive failures (1 = the first)."""
        exponent = min(max(failures - 1, 0), MAX_EXPONENT)
        return float(
            min(self.settings.backoff_initial_seconds * 2**exponent, self.settings.backoff_max_seconds)
        )

    def failure(self) -> float:
        """Count one more failed cycle; seconds to wait before retrying."""
        self.failures += 1
        base = self.step(self.failures)
        upper = min(base * (1 + self.jitter), float(self.settings.backoff_max_seconds))
        return self.rng.uniform(base * (1 - self.jitter), upper)

    def success(self) -> float:
        """Reset the backoff; seconds to wait before the next regular poll."""
        self.failures = 0
        base = float(self.settings.interval_seconds)
        return self.rng.uniform(base * (1 - self.jitter), base * (1 + self.jitter))
