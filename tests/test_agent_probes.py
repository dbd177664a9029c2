"""Health probes against real processes, a real HTTP server and real files.

Exec probes run real binaries (and are refused when off the allowlist), HTTP probes talk to a
stdlib server on 127.0.0.1 (one that answers, one that never does), file probes look at real
mtimes. Only the retry schedule (how many attempts, how long between them) uses a recording clock:
that behaviour is about counting.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.health.probes import DETAIL_MAX_CHARS, ProbeResult, attempt, run_probe
from agent.process import run_bounded
from fleetcd.models.release import ExecProbe, FileProbe, HttpProbe
from tests.httpserver import ArtifactServer, Behaviour, QuietHandler, serve_handler
from tests.test_agent_supervisor import gone

ALLOW = ["/bin/true", "/bin/false", "/bin/echo", "/bin/sh", "/bin/sleep"]


class RecordingClock:
    """Counts instead of waiting; ``on_sleep`` lets a test change the world between attempts."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def exec_probe(*argv: str, **extra: Any) -> ExecProbe:
    return ExecProbe.model_validate(
        {"name": "cmd", "type": "exec", "argv": list(argv), "attempts": 1} | extra
    )


def http_probe(url: str, **extra: Any) -> HttpProbe:
    return HttpProbe.model_validate({"name": "web", "type": "http", "url": url, "attempts": 1} | extra)


def file_probe(path: str, **extra: Any) -> FileProbe:
    return FileProbe.model_validate({"name": "ready", "type": "file", "path": path, "attempts": 1} | extra)


@contextmanager
def silent_server() -> Iterator[str]:
    """A real HTTP server that accepts every request and never answers it."""
    release = threading.Event()

    class Hang(QuietHandler):
        def do_GET(self) -> None:
            release.wait(30)

    with serve_handler(Hang) as base_url:
        try:
            yield f"{base_url}/healthz"
        finally:
            release.set()  # before the shutdown: it waits for the hung handler


# --- exec -----------------------------------------------------------------------------------------


def test_allowlisted_exec_probe_passes_on_exit_zero() -> None:
    result = attempt(exec_probe("/bin/true"), allowlist=ALLOW)
    assert result == ProbeResult("cmd", True, "/bin/true exited 0")


def test_exec_probe_fails_on_nonzero_exit_and_says_why() -> None:
    result = attempt(
        exec_probe("/bin/sh", "-c", "echo motor controller offline >&2; exit 4"), allowlist=ALLOW
    )
    assert not result.ok
    assert "/bin/sh exited 4" in result.detail
    assert "motor controller offline" in result.detail


@pytest.mark.parametrize(
    ("argv0", "allowlist", "named"),
    [
        ("/usr/bin/id", ALLOW, "/usr/bin/id is not in exec_allowlist"),
        ("true", [*ALLOW, "true"], "'true' is not an absolute path"),
        ("/bin/../bin/true", ALLOW, "/bin/../bin/true is not in exec_allowlist"),
    ],
    ids=["not-listed", "relative-even-if-listed", "dotdot-spelling-of-listed"],
)
def test_exec_probe_off_the_allowlist_is_refused_naming_the_binary(
    argv0: str, allowlist: list[str], named: str
) -> None:
    result = attempt(exec_probe(argv0), allowlist=allowlist)
    assert not result.ok
    assert result.permanent
    assert named in result.detail


def test_refused_exec_probe_is_not_retried() -> None:
    clock = RecordingClock()
    result = run_probe(
        exec_probe("/usr/bin/id", attempts=5, interval_seconds=7), allowlist=ALLOW, clock=clock
    )
    assert not result.ok
    assert result.attempts == 1
    assert clock.sleeps == []


def test_exec_probe_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = attempt(exec_probe("/bin/echo", f"ok; touch {marker}", "$(id)"), allowlist=ALLOW)
    assert result.ok
    assert f"ok; touch {marker} $(id)" in result.detail
    assert not marker.exists()


def test_exec_probe_timeout_kills_the_probe_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"/bin/sleep 60 & echo $$ $! > {pids}; wait"
    result = attempt(exec_probe("/bin/sh", "-c", script, timeout_seconds=1), allowlist=ALLOW)
    assert not result.ok
    assert "timed out after 1 s" in result.detail
    shell, child = (int(p) for p in pids.read_text().split())
    assert gone(shell)
    assert gone(child)


def test_exec_probe_output_is_capped() -> None:
    script = "/usr/bin/head -c 5000000 /dev/zero | tr '\\0' x; echo END; exit 1"
    result = attempt(exec_probe("/bin/sh", "-c", script), allowlist=ALLOW)
    assert not result.ok
    prefix = "/bin/sh exited 1: …"
    assert result.detail.startswith(prefix)
    assert result.detail.endswith("END")
    assert len(result.detail) == len(prefix) + DETAIL_MAX_CHARS


def test_endless_output_neither_blocks_nor_grows_the_agent() -> None:
    done = run_bounded(["/usr/bin/yes"], timeout_seconds=1, cap_bytes=1000)
    assert done.timed_out
    assert len(done.stdout) == 1000
    assert done.stdout.endswith(b"y\n")


def test_missing_binary_fails_the_probe() -> None:
    result = attempt(exec_probe("/opt/nowhere/check"), allowlist=["/opt/nowhere/check"])
    assert not result.ok
    assert "cannot run /opt/nowhere/check" in result.detail


# --- http -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "expect", "ok"),
    [(200, 200, True), (204, 204, True), (500, 200, False), (200, 204, False), (302, 200, False)],
    ids=["200-expected", "204-expected", "500-not-200", "200-not-204", "redirect-not-followed"],
)
def test_http_probe_compares_the_status(served: int, expect: int, ok: bool) -> None:
    with ArtifactServer() as server:
        url = server.add("/healthz", b"", Behaviour(status=served))
        # A generous timeout: this compares statuses; a loaded CI machine once took over 5 s to answer.
        result = attempt(http_probe(url, expect_status=expect, timeout_seconds=30), allowlist=[])
    assert result.ok is ok
    assert f"status {served}, expected {expect}" in result.detail


def test_http_probe_against_a_server_that_never_answers_times_out() -> None:
    with silent_server() as url:
        result = attempt(http_probe(url, timeout_seconds=1), allowlist=[])
    assert not result.ok
    assert "no answer within 1 s" in result.detail
    assert url in result.detail


def test_http_probe_against_a_closed_port_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = attempt(http_probe(f"http://127.0.0.1:{port}/healthz"), allowlist=[])
    assert not result.ok
    assert f"GET http://127.0.0.1:{port}/healthz: cannot connect" in result.detail


def test_http_probe_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with ArtifactServer() as server:
        url = server.add("/healthz", b"ok")
        assert attempt(http_probe(url), allowlist=[]).ok


# --- file -----------------------------------------------------------------------------------------


def test_file_probe_passes_when_present_and_fails_when_missing(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    assert not attempt(file_probe(str(ready)), allowlist=[]).ok
    ready.write_text("1")
    assert attempt(file_probe(str(ready)), allowlist=[]).ok


def test_stale_file_fails_its_max_age(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_text("1")
    assert attempt(file_probe(str(beat), max_age_seconds=60), allowlist=[]).ok
    hour_ago = time.time() - 3600
    os.utime(beat, (hour_ago, hour_ago))
    result = attempt(file_probe(str(beat), max_age_seconds=60), allowlist=[])
    assert not result.ok
    assert "(max 60 s)" in result.detail


def test_relative_file_probe_path_is_refused() -> None:
    result = attempt(file_probe("run/ready"), allowlist=[])
    assert not result.ok
    assert result.permanent


# --- retry schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 3, 10], ids=["one", "three", "ten"])
def test_failing_probe_is_tried_attempts_times_interval_apart_after_initial_delay(
    tmp_path: Path, attempts: int
) -> None:
    clock = RecordingClock()
    probe = file_probe(
        str(tmp_path / "never"), attempts=attempts, interval_seconds=2, initial_delay_seconds=5
    )
    result = run_probe(probe, allowlist=[], clock=clock)
    assert not result.ok
    assert result.attempts == attempts
    assert clock.sleeps == [5] + [2] * (attempts - 1)


def test_probe_that_passes_on_a_later_attempt_stops_there(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    def app_gets_ready(sleeps: int) -> None:
        if sleeps == 2:
            ready.write_text("1")

    clock = RecordingClock(app_gets_ready)
    result = run_probe(file_probe(str(ready), attempts=10, interval_seconds=3), allowlist=[], clock=clock)
    assert result.ok
    assert result.attempts == 3
    assert clock.sleeps == [3, 3]


@pytest.mark.parametrize(
    "field",
    [
        {"attempts": 0},
        {"attempts": 11},
        {"timeout_seconds": 0},
        {"timeout_seconds": 301},
        {"initial_delay_seconds": -1},
    ],
    ids=["attempts-0", "attempts-11", "timeout-0", "timeout-301", "negative-delay"],
)
def test_probe_bounds_are_enforced_by_the_release_model(field: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        exec_probe("/bin/true", **field)
