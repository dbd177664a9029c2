"""``fleetcd controller run``'s error policy (controller.runner), pass by pass: no error ends the loop.

Issue 10: ``run_forever`` once caught only ``TransportError``, so a broken audit chain, an illegal
transition or a bundle naming the wrong rollout ended the process. Here each pass's reconcile is
replaced by one that raises an error of each group in turn (the reconcile's own behaviour is tested
against real fleets elsewhere); the loop must go on every time, wait the normal interval after a
stall, back off (capped, jittered) on the environment and on bugs, and reset the backoff after a
good pass. Only ``KeyboardInterrupt``/``SystemExit`` end it.
"""

from __future__ import annotations

import gc
import itertools
import logging
import random
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from controller import runner
from controller.errors import AuditChainBroken, IllegalTransition, StateConflict
from controller.reconcile.result import ReconcileResult
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.runner import MAX_BACKOFF_SECONDS, backoff_seconds, run_forever
from fleetcd.desired.verify import BundleRejected
from fleetcd.errors import SetupError, TransportError
from fleetcd.reasons import Reason

INTERVAL = 10.0
# Never used to reach a server: the reconcile below replaces the real one (the loop only adds its cache).
SETTINGS = ControllerSettings(
    source=Source("/nonexistent/fleet.git", Path("/nonexistent/cache")), gnupghome=Path("/nonexistent")
)
Outcome = Callable[[], ReconcileResult]


def fine() -> ReconcileResult:
    return cast(ReconcileResult, "applied")


def raising(error: BaseException) -> Outcome:
    def outcome() -> ReconcileResult:
        raise error

    return outcome


def run(monkeypatch: pytest.MonkeyPatch, outcomes: list[Outcome]) -> tuple[list[float], list[object]]:
    """Run one pass per outcome; returns the waits between passes and what was reported."""
    script: Iterator[Outcome] = iter(outcomes)
    monkeypatch.setattr(runner, "reconcile_once", lambda settings: next(script)())
    waits: list[float] = []
    reported: list[object] = []
    run_forever(SETTINGS, INTERVAL, iterations=len(outcomes), report=reported.append, wait=waits.append)
    return waits, reported


CONTENT: list[Exception] = [
    AuditChainBroken("audit/2026/05/04.jsonl", 3, "prev is not the hash of the previous line"),
    IllegalTransition("dep-x", "target_status", "archived", "deployed", "it only moves forward"),
    BundleRejected(Reason.ROLLOUT_MISMATCH, "the bundle names another rollout"),
]
ENVIRONMENT: list[Exception] = [
    TransportError("connection refused"),
    StateConflict("refs/heads/fleetcd/state", None, None),
    SetupError("gpg"),
]
BUGS: list[Exception] = [
    ValueError("bug"),
    KeyError("bug"),
    RecursionError("deep"),
    AttributeError("None has no x"),
]


@pytest.mark.parametrize("error", CONTENT + ENVIRONMENT + BUGS, ids=lambda e: type(e).__name__)
def test_no_error_of_any_group_ends_the_loop(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    waits, reported = run(monkeypatch, [raising(error), raising(error), fine])
    assert reported == ["applied"], "the pass after the errors ran"
    assert len(waits) == 2


@pytest.mark.parametrize("error", CONTENT, ids=lambda e: type(e).__name__)
def test_after_a_stall_the_loop_waits_the_normal_interval(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    waits, _ = run(monkeypatch, [raising(error)] * 4)
    assert waits == [INTERVAL] * 3, "only a new commit helps: no backoff, no hammering"


@pytest.mark.parametrize("error", ENVIRONMENT + BUGS, ids=lambda e: type(e).__name__)
def test_environment_errors_and_bugs_back_off_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    random.seed(7)
    waits, _ = run(monkeypatch, [raising(error)] * 12)
    assert all(INTERVAL <= w <= MAX_BACKOFF_SECONDS for w in waits)
    assert waits[0] <= 2 * INTERVAL and waits[-1] >= MAX_BACKOFF_SECONDS / 2


def test_a_good_pass_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = raising(TransportError("down"))
    waits, _ = run(monkeypatch, [failing] * 6 + [fine, failing, fine])
    assert waits[5] > 4 * INTERVAL  # long backoff after six failures
    assert waits[6] == INTERVAL  # the good pass waits the plain interval
    assert waits[7] <= 2 * INTERVAL  # the next failure starts the backoff from the beginning


def test_a_stall_between_failures_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = raising(TransportError("down"))
    waits, _ = run(monkeypatch, [failing] * 5 + [raising(CONTENT[0]), failing, fine])
    assert waits[5] == INTERVAL and waits[6] <= 2 * INTERVAL


def test_a_bug_is_logged_with_its_traceback_and_a_transport_error_without(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        run(monkeypatch, [raising(ValueError("the bug")), raising(TransportError("the network")), fine])
    bug, transport = caplog.records[0], caplog.records[1]
    assert bug.exc_info is not None and "bug in fleetcd" in bug.getMessage()
    assert transport.exc_info is None and "the network" in transport.getMessage()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(0)], ids=lambda e: type(e).__name__)
def test_only_an_interrupt_or_exit_ends_the_loop(
    monkeypatch: pytest.MonkeyPatch, stop: BaseException
) -> None:
    with pytest.raises(type(stop)):
        run(monkeypatch, [fine, raising(stop), fine])


def test_the_last_iteration_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    waits, reported = run(monkeypatch, [fine, fine, fine])
    assert waits == [INTERVAL, INTERVAL] and len(reported) == 3


# --- backoff_seconds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "failures"), list(itertools.product([1.0, 10.0, 60.0], [1, 2, 3, 5, 8]))
)
def test_backoff_doubles_per_failure_with_jitter_and_a_cap(interval: float, failures: int) -> None:
    ceiling = min(MAX_BACKOFF_SECONDS, interval * 2.0**failures)
    for _ in range(50):
        delay = backoff_seconds(interval, failures)
        assert ceiling * 0.5 <= delay <= ceiling


@pytest.mark.parametrize("failures", [17, 100, 10_000, 10**9])
def test_backoff_stays_finite_and_capped_for_any_number_of_failures(failures: int) -> None:
    delay = backoff_seconds(60.0, failures)
    assert MAX_BACKOFF_SECONDS / 2 <= delay <= MAX_BACKOFF_SECONDS


def test_backoff_spreads_two_controllers_retries() -> None:
    delays = {round(backoff_seconds(10.0, 3), 6) for _ in range(20)}
    assert len(delays) > 1, "jitter: controllers that failed together must not retry together"


def test_every_pass_of_the_loop_gets_the_same_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """``controller run`` keeps parsed git objects from one pass to the next (one cache for all)."""
    seen: list[ControllerSettings] = []

    def reconcile(settings: ControllerSettings) -> ReconcileResult:
        seen.append(settings)
        return fine()

    monkeypatch.setattr(runner, "reconcile_once", reconcile)
    run_forever(SETTINGS, INTERVAL, iterations=3, wait=lambda _: None)
    assert SETTINGS.cache is None and seen[0].cache is not None
    assert all(s.cache is seen[0].cache for s in seen) and len(seen) == 3


# --- the heap between reconciles ----------------------------------------------------------------------


class Cycle:
    """Garbage only a full collection frees (a reference cycle)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_the_heap_is_frozen_after_each_reconcile_and_fully_collected_once_an_interval(unfrozen: None) -> None:
    clock = [1000.0]
    heap = runner.HeapFreezer(every_seconds=3600, clock=lambda: clock[0])
    kept = Cycle()
    watch = weakref.ref(kept)
    heap.after_reconcile()
    assert gc.get_freeze_count() > 0
    del kept
    gc.collect()
    assert watch() is not None  # frozen: ordinary collections do not look at it
    clock[0] += 3599
    heap.after_reconcile()
    assert watch() is not None
    clock[0] += 1
    heap.after_reconcile()  # an hour since the last full collection
    assert watch() is None
    assert gc.get_freeze_count() > 0


def test_the_loop_freezes_the_heap_only_when_given_a_freezer(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    gc.unfreeze()
    run(monkeypatch, [fine])
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(runner, "reconcile_once", lambda settings: fine())
    calls: list[int] = []
    heap = runner.HeapFreezer()
    real = heap.after_reconcile
    monkeypatch.setattr(heap, "after_reconcile", lambda: (calls.append(1), real())[1])
    run_forever(SETTINGS, INTERVAL, iterations=3, wait=lambda _: None, heap=heap)
    assert len(calls) == 3 and gc.get_freeze_count() > 0
