"""``fleetcd controller run --watch``: a change to a local server is reconciled at once, not at the
next ``--interval``; and what watches the loop (its metrics) can fail without stopping it.

The real command runs against a real bare server with an interval far longer than the test waits,
so a second pass can only come from the watch (watchfiles on the server's folder). The waiting
itself (:func:`controller.watch.wait_for_change`) returns when something under the folder changes,
and otherwise after its timeout, which is the loop's clock tick.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import pytest

from controller.reconcile.result import ReconcileResult
from controller.runner import run_forever
from controller.watch import wait_for_change
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, make_world
from tests.test_controller_run_process import Running


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    return make_world(tmp_path / "world", keys, name="watched")


def test_with_watch_a_robot_report_is_reconciled_long_before_the_interval(
    tmp_path: Path, world: ControllerWorld
) -> None:
    running = Running(world, tmp_path, interval=3600, watch=True)
    try:
        running.until("the first pass applied", lambda: running.count("applied") >= 1)
        before = world.state().commit
        time.sleep(1)  # the watch is set up after the first pass
        world.report_all(STAGING, "deployed")  # a push to the server's status ref
        running.until("a pass took the report in", lambda: world.state().commit != before)
    finally:
        code, _seconds = running.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in running.err()


def test_a_change_under_the_folder_ends_the_wait_before_its_timeout(tmp_path: Path) -> None:
    watched = tmp_path / "server.git"
    watched.mkdir()
    timer = threading.Timer(0.5, (watched / "FETCH_HEAD").write_text, args=("x",))
    started = time.monotonic()
    timer.start()
    try:
        assert wait_for_change(watched, timeout_seconds=60) is True
    finally:
        timer.cancel()
    assert time.monotonic() - started < 30


def test_without_a_change_the_wait_ends_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    assert wait_for_change(tmp_path, timeout_seconds=1) is False
    assert 0.9 <= time.monotonic() - started < 30


def test_metrics_that_fail_to_record_are_logged_and_the_loop_keeps_reconciling(
    world: ControllerWorld, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[ReconcileResult] = []
    calls: list[bool] = []

    def broken(result: ReconcileResult | None, seconds: float, error: Exception | None) -> None:
        calls.append(error is None)
        raise OSError(28, "No space left on device")  # e.g. a textfile on a full disk

    def wait(_seconds: float) -> None:
        world.report_all(STAGING, "deployed")
        world.clock.tick(10)

    with caplog.at_level(logging.ERROR, logger="fleetcd.controller"):
        run_forever(world.settings, 30, iterations=2, report=seen.append, wait=wait, observe=broken)

    assert calls == [True, True]  # both passes were observed, each failing
    assert len(seen) == 2 and all(r.stalled is None for r in seen)  # and both reported as applied
    assert seen[1].state_commit is not None  # the second pass took the report in
    assert [r.getMessage() for r in caplog.records].count("recording the reconcile's metrics failed") == 2
