"""Health probes that flap, die, hide their reason or come up late, against real processes,
a real port and real files; the watch window's schedule runs on a counting clock.

A flapping probe is a real shell script walking a pattern file (``p`` pass, ``f`` fail) one
character per run, so every attempt is a real process whose exit code the probe judges.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.executors.base import RunState
from agent.health.probes import attempt, run_probe
from agent.health.watch import watch
from fleetcd.models.release import ExecProbe, FileProbe, Health, HttpProbe
from tests.httpserver import QuietHandler
from tests.test_agent_probes import RecordingClock

SH = "/bin/sh"
ALLOW = [SH, "/bin/true"]


class CountingClock(RecordingClock):
    """tests.test_agent_probes' clock, starting at 100 s."""

    def __init__(self, on_sleep: Any = None) -> None:
        super().__init__(on_sleep)
        self.t = 100.0


def sh_probe(code: str, **extra: Any) -> ExecProbe:
    fields = {"name": "selftest", "type": "exec", "argv": [SH, "-c", code], "attempts": 1} | extra
    return ExecProbe.model_validate(fields)


def flapping(tmp_path: Path, pattern: str) -> list[str]:
    """argv of a probe that passes or fails by the next character of ``pattern`` (then passes)."""
    left = tmp_path / "pattern"
    left.write_text(pattern)
    code = (
        f'p=$(cat "{left}"); printf %s "${{p#?}}" > "{left}"; case "$p" in f*) echo flap >&2; exit 1;; esac'
    )
    return [SH, "-c", code]


def window(seconds: int, argv: list[str], **extra: Any) -> Health:
    probe = {"name": "flappy", "type": "exec", "argv": argv, "interval_seconds": 1} | extra
    return Health.model_validate({"watch_seconds": seconds, "probes": [probe]})


def running() -> RunState:
    return RunState.RUNNING


# --- exec probes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 2, 126, 127, 255])
def test_every_nonzero_exit_fails_and_names_the_code(code: int) -> None:
    result = attempt(sh_probe(f"exit {code}"), allowlist=ALLOW)
    assert not result.ok and not result.permanent
    assert result.detail == f"{SH} exited {code}"


def test_a_probe_killed_by_a_signal_fails_naming_the_signal() -> None:
    result = attempt(sh_probe("kill -9 $$"), allowlist=ALLOW)
    assert not result.ok
    assert result.detail == f"{SH} exited -9"


def test_stderr_explains_a_failure_before_stdout_does() -> None:
    both = attempt(sh_probe("echo progress 99%; echo 'db: connection refused' >&2; exit 1"), allowlist=ALLOW)
    assert both.detail == f"{SH} exited 1: db: connection refused"
    only_out = attempt(sh_probe("echo 'queue depth 9000'; exit 1"), allowlist=ALLOW)
    assert only_out.detail == f"{SH} exited 1: queue depth 9000"


def test_output_that_is_not_utf8_is_reported_not_raised() -> None:
    result = attempt(sh_probe(r"printf '\377\376bad\n' >&2; exit 1"), allowlist=ALLOW)
    assert not result.ok
    assert "bad" in result.detail and "\ufffd" in result.detail


def test_a_probe_that_leaves_a_daemon_on_its_pipes_passes_without_waiting_for_it() -> None:
    started = time.monotonic()
    result = attempt(sh_probe("/bin/sleep 30 & echo $! ; exit 0", timeout_seconds=20), allowlist=ALLOW)
    took = time.monotonic() - started
    os.kill(int(result.detail.rsplit(" ", 1)[1]), 9)
    assert result.ok
    assert took < 15


@pytest.mark.parametrize(
    "binary", ["/bin/../bin/true", "//bin/true", "/bin/./true", "true", ""], ids=lambda v: repr(v)
)
def test_a_path_that_only_resolves_to_an_allowlisted_binary_is_refused_for_good(binary: str) -> None:
    probe = ExecProbe.model_validate({"name": "t", "type": "exec", "argv": [binary], "attempts": 5})
    clock = CountingClock()
    result = run_probe(probe, allowlist=ALLOW, clock=clock)
    assert not result.ok and result.permanent
    assert result.detail.startswith("refused: ")
    assert clock.sleeps == []  # no attempt waited out for a refusal


def test_an_allowlisted_binary_that_is_not_executable_fails_without_being_permanent(tmp_path: Path) -> None:
    binary = tmp_path / "check"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o644)
    result = attempt(
        ExecProbe.model_validate({"name": "t", "type": "exec", "argv": [str(binary)]}),
        allowlist=[str(binary)],
    )
    assert not result.ok and not result.permanent  # a package install may fix the mode
    assert result.detail == f"cannot run {binary}: Permission denied"


def test_a_flapping_probe_is_retried_until_it_passes_interval_apart(tmp_path: Path) -> None:
    probe = ExecProbe.model_validate(
        {
            "name": "flappy",
            "type": "exec",
            "argv": flapping(tmp_path, "ffp"),
            "attempts": 5,
            "interval_seconds": 7,
        }
    )
    clock = CountingClock()
    result = run_probe(probe, allowlist=ALLOW, clock=clock)
    assert result.ok and result.attempts == 3
    assert clock.sleeps == [7, 7]


# --- flapping in the watch window -----------------------------------------------------------------


def test_a_probe_that_flaps_but_never_fails_attempts_times_in_a_row_is_healthy(tmp_path: Path) -> None:
    argv = flapping(tmp_path, "fpfpfpfpfpfp")
    verdict = watch(
        "nav", "2.0.0", window(10, argv, attempts=2), running, allowlist=ALLOW, clock=CountingClock()
    )
    assert verdict.healthy, verdict.detail
    assert verdict.probe_results[0].attempts >= 10  # probed through the whole window, not just once


def test_a_probe_that_flaps_with_no_retry_budget_fails_at_its_first_failure(tmp_path: Path) -> None:
    argv = flapping(tmp_path, "pppf")
    clock = CountingClock()
    verdict = watch("nav", "2.0.0", window(10, argv, attempts=1), running, allowlist=ALLOW, clock=clock)
    assert not verdict.healthy
    assert verdict.reason == "probe_failed" and verdict.probe == "flappy"
    assert "failed 1 time(s) in a row" in verdict.detail and "flap" in verdict.detail
    assert clock.t - 100.0 == 3.0  # the 4th try, at t=3 s: long before the window's end


def test_a_run_of_failures_after_passing_fails_once_it_reaches_attempts(tmp_path: Path) -> None:
    argv = flapping(tmp_path, "ppfpfffp")
    verdict = watch(
        "nav", "2.0.0", window(20, argv, attempts=3), running, allowlist=ALLOW, clock=CountingClock()
    )
    assert not verdict.healthy
    assert "failed 3 time(s) in a row" in verdict.detail
    assert verdict.probe_results[0].attempts == 7


def test_a_probe_delayed_past_the_window_is_still_run_before_a_healthy_verdict(tmp_path: Path) -> None:
    argv = flapping(tmp_path, "p")
    clock = CountingClock()
    verdict = watch(
        "nav",
        "2.0.0",
        window(5, argv, attempts=1, initial_delay_seconds=40),
        running,
        allowlist=ALLOW,
        clock=clock,
    )
    assert verdict.healthy
    assert clock.t - 100.0 >= 40  # the window is a minimum, never a reason to skip a probe
    assert verdict.probe_results[0].attempts == 1


def test_an_app_that_dies_between_passing_probes_is_reported_as_exited(tmp_path: Path) -> None:
    argv = flapping(tmp_path, "pppppppppp")
    clock = CountingClock()

    def state() -> RunState:
        return RunState.RUNNING if clock.t < 104.5 else RunState.EXITED

    verdict = watch("nav", "2.0.0", window(30, argv, attempts=3), state, allowlist=ALLOW, clock=clock)
    assert not verdict.healthy and verdict.reason == "exited"
    assert clock.t - 100.0 == 5.0  # seen at the next once-a-second state check


# --- a port that comes up late, files that lie ---------------------------------------------------


@contextmanager
def started_servers() -> Iterator[list[ThreadingHTTPServer]]:
    """The servers a test starts along the way, shut down at the end."""
    servers: list[ThreadingHTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_http_probe_against_a_port_that_opens_between_attempts_passes_on_the_retry() -> None:
    with socket.socket() as grab:
        grab.bind(("127.0.0.1", 0))
        port = grab.getsockname()[1]

    class Ok(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with started_servers() as servers:

        def open_port(_sleeps: int) -> None:
            if not servers:
                server = ThreadingHTTPServer(("127.0.0.1", port), Ok)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                servers.append(server)

        probe = HttpProbe.model_validate(
            {"name": "web", "type": "http", "url": f"http://127.0.0.1:{port}/healthz", "timeout_seconds": 2}
        )
        result = run_probe(probe, allowlist=[], clock=CountingClock(on_sleep=open_port))
    assert result.ok and result.attempts == 2


def test_a_dangling_symlink_is_a_missing_file_worth_retrying(tmp_path: Path) -> None:
    link = tmp_path / "ready"
    link.symlink_to(tmp_path / "not-yet")
    probe = FileProbe.model_validate({"name": "ready", "type": "file", "path": str(link), "attempts": 3})
    result = run_probe(
        probe, allowlist=[], clock=CountingClock(on_sleep=lambda _n: (tmp_path / "not-yet").touch())
    )
    assert result.ok and result.attempts == 2


def test_a_file_touched_in_the_future_counts_as_fresh(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    path.touch()
    future = time.time() + 3600
    os.utime(path, (future, future))
    result = attempt(
        FileProbe.model_validate({"name": "hb", "type": "file", "path": str(path), "max_age_seconds": 5}),
        allowlist=[],
    )
    assert result.ok
    assert "modified 0 s ago" in result.detail
