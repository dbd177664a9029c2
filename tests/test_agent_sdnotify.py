"""The agent's systemd integration: notify datagrams on a real socket, and the shipped unit file."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import notify, watchdog_interval_seconds

UNIT = Path(__file__).resolve().parent.parent / "agent" / "fleetcd-agent.service"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_ready_and_status_arrive_as_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert notify(environ={"NOTIFY_SOCKET": path}, READY=1, STATUS="synced serial 7")
    assert sock.recv(4096).decode().splitlines() == ["READY=1", "STATUS=synced serial 7"]


def test_status_line_is_one_line_and_bounded(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert notify(environ={"NOTIFY_SOCKET": path}, STATUS="a\nb" + "x" * 1000)
    message = sock.recv(4096).decode()
    assert "\n" not in message
    assert len(message) == len("STATUS=") + 200


def test_abstract_socket_address_is_supported() -> None:
    name = f"fleetcd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify(environ={"NOTIFY_SOCKET": "@" + name}, WATCHDOG=1)
        assert sock.recv(64) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="outside-systemd"),
        pytest.param({"NOTIFY_SOCKET": "relative.sock"}, id="relative-path-ignored"),
    ],
)
def test_without_a_notify_socket_nothing_is_sent(environ: dict[str, str]) -> None:
    assert notify(environ=environ, READY=1) is False


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    assert notify(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, READY=1) is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"WATCHDOG_USEC": "120000000"}, 60.0, id="half-of-watchdogsec"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero-means-off"),
        pytest.param({}, None, id="no-watchdog"),
        pytest.param({"WATCHDOG_USEC": "junk"}, None, id="garbage-ignored"),
        pytest.param({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None, id="meant-for-another-pid"),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_seconds(environ) == expected


def test_watchdog_for_this_process_is_honoured() -> None:
    environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_seconds(environ) == 1.0


def test_unit_is_a_notify_service_with_watchdog_restart_and_state_directory() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always"
    assert service["StateDirectory"] == "fleetcd"
    assert service["ExecStart"].split()[0] == "/usr/bin/fleetcd-agent"
    assert service["ExecStart"].split()[-1] == "run"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit's keys are checked above)")
    # verify resolves ExecStart: point it at a binary that exists on this machine.
    unit = tmp_path / "fleetcd-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/fleetcd-agent", shutil.which("true") or "/bin/true"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    problems = [line for line in lines if "fleetcd-agent.service" in line and "Documentation" not in line]
    assert not problems, done.stderr
