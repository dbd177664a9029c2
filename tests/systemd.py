"""systemd's side of ``fleetcd-agent run`` for tests: the notify socket, and the daemon in a real process.

:class:`NotifyListener` is what systemd listens on (``NOTIFY_SOCKET``, a datagram socket): every
datagram with the monotonic time it arrived, read by a thread. :class:`AgentDaemon` starts
``fleetcd-agent --config agent.yaml run`` as a separate process with ``NOTIFY_SOCKET`` pointing at
its own listener, as the unit does, so the tests can send it SIGTERM, ``kill -9`` it and start it
again::

    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        daemon.wait_for(b"STATUS=serial")
        daemon.terminate()            # SIGTERM, as `systemctl stop`; returns the exit code
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PING = b"WATCHDOG=1"
_DAEMON_SCRIPT = "from agent.cli import main; main()"
_counter = itertools.count()
LONG_SECONDS = 3600  # a poll interval no test waits for: anything sooner came from elsewhere


def quiet_poll(**backoff: int) -> dict[str, Any]:
    """agent.yaml's ``poll``: an hour between polls and heartbeats, no jitter, no progress pushes."""
    return {
        "poll": {
            "interval_seconds": LONG_SECONDS,
            "heartbeat_seconds": LONG_SECONDS,
            "jitter_percent": 0,
            "progress_seconds": 0,
            **backoff,
        }
    }


def wait_for(predicate: Callable[[], object], limit_s: float = 60.0, what: str = "a condition") -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail the test after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {limit_s} s waiting for {what}"
        time.sleep(0.02)


@dataclass
class NotifyListener:
    """systemd's side of NOTIFY_SOCKET: every datagram, with the monotonic time it arrived."""

    sock: socket.socket
    path: Path
    received: list[tuple[float, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    @classmethod
    def bind(cls, path: Path) -> NotifyListener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        listener = cls(sock, path)
        listener.thread = threading.Thread(target=listener._run, daemon=True)
        listener.thread.start()
        return listener

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return  # closed at teardown
            with self.lock:
                self.received.append((time.monotonic(), data))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already shut
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)

    def lines(self, start: float = 0.0) -> list[bytes]:
        """Every field line received since ``start`` (``READY=1``, ``STATUS=…``), in order."""
        with self.lock:
            return [line for t, data in self.received if t >= start for line in data.split(b"\n") if line]

    def statuses(self, start: float = 0.0) -> list[str]:
        """The ``STATUS=`` texts received since ``start``, in order."""
        return [line[len(b"STATUS=") :].decode() for line in self.lines(start) if line.startswith(b"STATUS=")]

    def wait_for(self, prefix: bytes, limit_s: float = 60.0, start: float = 0.0) -> bytes:
        """The first line since ``start`` that begins with ``prefix``, waiting for it."""
        found: list[bytes] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines(start) if line.startswith(prefix)]
            return bool(found)

        wait_for(seen, limit_s, f"{prefix!r} on the notify socket")
        return found[0]

    def pings(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        with self.lock:
            return [t for t, data in self.received if PING in data.split(b"\n") and start <= t <= end]

    def longest_silence(self, start: float, end: float) -> float:
        """The longest stretch within [start, end] without a ping (what systemd's timer measures)."""
        marks = [start, *self.pings(start, end), end]
        return max(b - a for a, b in itertools.pairwise(marks))


@dataclass
class AgentDaemon:
    """``fleetcd-agent run`` in its own process, its notify messages in :attr:`systemd`."""

    process: subprocess.Popen[bytes]
    systemd: NotifyListener
    log: Path  # its stdout and stderr (a pipe nobody reads would fill up and block it)

    @classmethod
    def start(cls, config_file: Path, folder: Path, *, env: dict[str, str] | None = None) -> AgentDaemon:
        """Start the daemon on ``config_file``; its notify socket is a new file under ``folder``."""
        name = f"daemon-{next(_counter)}"
        listener = NotifyListener.bind(folder / f"{name}.sock")
        environ = {**os.environ, **(env or {}), "NOTIFY_SOCKET": str(listener.path)}
        environ.pop("WATCHDOG_USEC", None)
        log = folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _DAEMON_SCRIPT, "--config", str(config_file), "run"],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(process, listener, log)

    def wait_for(self, prefix: bytes, limit_s: float = 60.0, start: float = 0.0) -> bytes:
        """The first notify line since ``start`` beginning with ``prefix``; fails if the daemon dies."""
        try:
            return self.systemd.wait_for(prefix, limit_s, start)
        except AssertionError:
            raise AssertionError(f"{prefix!r} never came; daemon: {self.describe()}") from None

    def terminate(self, limit_s: float = 60.0) -> int:
        """SIGTERM (``systemctl stop``); the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=limit_s)

    def kill_9(self) -> None:
        """SIGKILL, as the OOM killer or a power cut would end it; nothing of the agent runs after."""
        self.process.kill()
        assert self.process.wait(timeout=30) == -signal.SIGKILL

    def describe(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        return f"exited {code}: {self.output()[-3000:]}"

    def output(self) -> str:
        """What the daemon wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.systemd.close()

    def __enter__(self) -> AgentDaemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
