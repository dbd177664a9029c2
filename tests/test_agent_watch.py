"""The watch window against a real app process and a real HTTP server.

The "app" is a real child process (``sleep``, or a small shell script that changes the world
while it runs); its RunState comes from its ``Popen``. Windows are short (1–5 s) and a failing
window is given a long one (60 s) to show the verdict does not wait for its end. Only the test
about how often the app state is checked uses a counting clock.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import HealthFailed
from agent.executors.base import RunState
from agent.health.watch import HealthVerdict, watch
from fleetcd.errors import ApplyError
from fleetcd.models.release import Health
from tests.httpserver import ArtifactServer, Behaviour

LONG_WINDOW = 60  # a failing verdict must come long before this


def health(window: int, *probes: dict[str, Any]) -> Health:
    return Health.model_validate({"watch_seconds": window, "probes": list(probes)})


def http(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "web", "type": "http", "url": url, "timeout_seconds": 1, "interval_seconds": 1} | extra


def ready_file(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "ready", "type": "file", "path": str(path), "interval_seconds": 1, "attempts": 1} | extra


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(list(argv))
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def state_of(child: subprocess.Popen[bytes]) -> Callable[[], RunState]:
    return lambda: RunState.RUNNING if child.poll() is None else RunState.EXITED


def timed_watch(*args: Any, **kwargs: Any) -> tuple[HealthVerdict, float]:
    started = time.monotonic()
    verdict = watch(*args, **kwargs)
    return verdict, time.monotonic() - started


def test_app_that_stays_up_and_answers_its_probe_is_healthy(spawn: Any) -> None:
    app = spawn("/bin/sleep", "60")
    with ArtifactServer() as server:
        url = server.add("/healthz", b"ok")
        verdict = watch("web", "1.2.0", health(2, http(url)), state_of(app), allowlist=[])
        probed = len(server.seen("/healthz"))
    assert verdict.healthy, verdict.detail
    assert verdict.reason == "healthy"
    assert [r.probe for r in verdict.probe_results] == ["web"]
    assert probed >= 2  # probed through the window, not once at its start
    assert app.poll() is None
    verdict.raise_if_unhealthy()


def test_app_that_exits_during_the_window_is_unhealthy_without_waiting_for_the_end(spawn: Any) -> None:
    app = spawn("/bin/sleep", "1")
    verdict, took = timed_watch("web", "1.2.0", health(LONG_WINDOW), state_of(app), allowlist=[])
    assert not verdict.healthy
    assert verdict.reason == "exited"
    assert "web 1.2.0 is exited" in verdict.detail
    assert took < LONG_WINDOW / 2


def test_failing_probe_makes_the_app_unhealthy_naming_the_probe(spawn: Any) -> None:
    app = spawn("/bin/sleep", "60")
    with ArtifactServer() as server:
        url = server.add("/healthz", b"", Behaviour(status=500))
        verdict, took = timed_watch(
            "web", "1.2.0", health(LONG_WINDOW, http(url, attempts=2)), state_of(app), allowlist=[]
        )
    assert not verdict.healthy
    assert verdict.reason == "probe_failed"
    assert verdict.probe == "web"
    assert "probe 'web' failed 2 time(s) in a row" in verdict.detail
    assert "status 500, expected 200" in verdict.detail
    assert took < LONG_WINDOW / 2
    assert app.poll() is None  # the app ran fine; its probe is what failed
    with pytest.raises(HealthFailed, match="web") as caught:
        verdict.raise_if_unhealthy()
    assert isinstance(caught.value, ApplyError)
    assert caught.value.probe == "web"


def test_probe_that_passes_early_and_fails_later_in_the_window_fails_it(tmp_path: Path, spawn: Any) -> None:
    ready = tmp_path / "ready"
    ready.write_text("1")
    app = spawn("/bin/sh", "-c", f"/bin/sleep 1; rm -f {ready}; exec /bin/sleep 60")
    verdict = watch("web", "1.2.0", health(LONG_WINDOW, ready_file(ready)), state_of(app), allowlist=[])
    assert not verdict.healthy
    assert verdict.reason == "probe_failed"
    assert verdict.probe_results[0].attempts >= 2
    assert "does not exist" in verdict.detail


def test_window_waits_for_a_probe_still_within_its_attempts(tmp_path: Path, spawn: Any) -> None:
    ready = tmp_path / "ready"
    app = spawn("/bin/sh", "-c", f"/bin/sleep 2; echo 1 > {ready}; exec /bin/sleep 60")
    verdict = watch("web", "1.2.0", health(1, ready_file(ready, attempts=10)), state_of(app), allowlist=[])
    assert verdict.healthy, verdict.detail
    assert verdict.probe_results[0].attempts >= 2


def test_exec_probe_off_the_allowlist_fails_at_once(spawn: Any) -> None:
    app = spawn("/bin/sleep", "60")
    probe = {
        "name": "selftest",
        "type": "exec",
        "argv": ["/usr/bin/id"],
        "attempts": 10,
        "interval_seconds": 30,
    }
    verdict, took = timed_watch(
        "web", "1.2.0", health(LONG_WINDOW, probe), state_of(app), allowlist=["/bin/true"]
    )
    assert verdict.reason == "probe_failed"
    assert verdict.probe == "selftest"
    assert "/usr/bin/id is not in exec_allowlist" in verdict.detail
    assert took < LONG_WINDOW / 2


def test_probe_failing_because_the_app_died_reports_the_exit(spawn: Any) -> None:
    app = spawn("/bin/sleep", "60")
    # The probe finds the app crashing under it: it kills it, waits for it to be dead, and fails.
    crash = f"kill -9 {app.pid}; until grep -q ') Z' /proc/{app.pid}/stat; do sleep 0.05; done; exit 1"
    probe = {"name": "selftest", "type": "exec", "argv": ["/bin/sh", "-c", crash], "attempts": 1}
    verdict = watch("web", "1.2.0", health(LONG_WINDOW, probe), state_of(app), allowlist=["/bin/sh"])
    assert verdict.reason == "exited"
    assert [r.probe for r in verdict.probe_results] == ["selftest"]


def test_app_removed_during_the_window_is_reported_missing() -> None:
    verdict = watch("web", "1.2.0", health(3), lambda: RunState.MISSING, allowlist=[])
    assert not verdict.healthy
    assert verdict.reason == "app_missing"


class CountingClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_app_state_is_checked_every_second_of_the_window() -> None:
    checks: list[float] = []
    clock = CountingClock()

    def state() -> RunState:
        checks.append(clock.now() - 100.0)
        return RunState.RUNNING

    verdict = watch("web", "1.2.0", health(30), state, allowlist=[], clock=clock, window_seconds=10)
    assert verdict.healthy
    assert checks == [float(s) for s in range(11)]
