"""``fleetcd controller run``: reconcile forever, on an interval or instantly on local changes.

The loop keeps no state of its own: each pass starts from git. Transport errors are retried with
backoff (capped); invalid content is already recorded by the reconcile as a stall and simply waits
for the next commit. ``--watch`` uses watchfiles on a local repository for instant reconciles
(the clock tick still runs, so scheduled work is dispatched without commits).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from controller.reconcile.settings import ControllerSettings
from controller.reconcile.steps import ReconcileResult, reconcile_once
from fleetcd.errors import TransportError

log = logging.getLogger("fleetcd.controller")
MAX_BACKOFF_SECONDS = 300.0


def run_forever(
    settings: ControllerSettings,
    interval_seconds: float,
    *,
    watch_path: Path | None = None,
    iterations: int | None = None,
    report: Callable[[ReconcileResult], None] = lambda _: None,
) -> None:
    failures = 0
    done = 0
    while iterations is None or done < iterations:
        done += 1
        try:
            report(reconcile_once(settings))
            failures = 0
            delay = interval_seconds
        except TransportError as exc:
            failures += 1
            delay = min(MAX_BACKOFF_SECONDS, interval_seconds * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311
            log.warning("reconcile failed (%s); retrying in %.0f s", exc, delay)
        if iterations is not None and done >= iterations:
            return
        _wait(delay, watch_path)


def _wait(seconds: float, watch_path: Path | None) -> None:
    if watch_path is None:
        time.sleep(seconds)
        return
    from controller.watch import wait_for_change

    wait_for_change(watch_path, timeout_seconds=seconds)
