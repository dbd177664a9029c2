"""The demo's processes: the controller and one ``fleetcd-agent`` per robot, and ending all of them.

Each runs as a real subprocess of its console script (``fleetcd controller run``, ``fleetcd-agent
--config <robot>/agent.yaml run``) in a session of its own, so Ctrl-C reaches only the demo, which
then stops them in order. The controller package never imports ``agent``: the agent is started by
name (its console script next to this interpreter, else ``python -m agent``).

Ending is thorough because the tarball executor's apps are *meant* to outlive their agent (a robot's
app must survive an agent restart): they run in their own sessions with a clean environment that
names their supervisor's folder (``FLEETCD_SUPERVISOR=<state>/apps/.run``). So after stopping the
agents and the controller, :meth:`Processes.stop_all` sweeps ``/proc`` for every process that
carries the demo's marker variable (inherited by everything the demo or its agents started: probes,
gpg agents) or a supervisor folder inside the demo's directory, and ends those too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MARKER_ENV = "FLEETCD_DEMO_RUN"  # every process the demo starts inherits it
SUPERVISOR_ENV = "FLEETCD_SUPERVISOR"  # set by the tarball executor on every app it starts
STOP_TIMEOUT_SECONDS = 5.0  # an agent finishes its cycle (at most a health watch) on SIGTERM
_POLL_SECONDS = 0.05


def fleetcd_command() -> list[str]:
    """How to run ``fleetcd``: the console script next to this interpreter, else this module's CLI."""
    script = shutil.which("fleetcd", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from controller.cli import main; main()"]


def agent_command() -> list[str]:
    """How to run ``fleetcd-agent``, without importing the agent package."""
    script = shutil.which("fleetcd-agent", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "agent"]


@dataclass
class Processes:
    """Every long-running process of one demo run, by name."""

    marker: str  # the value of MARKER_ENV for this run
    root: Path  # apps whose supervisor folder is under it are this demo's
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)  # each process's output
    _files: list[IO[bytes]] = field(default_factory=list)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, MARKER_ENV: self.marker, "PYTHONUNBUFFERED": "1", **(extra or {})}

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        """Start ``argv`` in its own session, output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
        self._files.append(out)
        self.logs[name] = log
        self.started[name] = subprocess.Popen(  # our own console scripts, never a shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.environment(env),
            cwd=log.parent,
            start_new_session=True,
        )

    def exited(self) -> dict[str, int]:
        """Processes that ended on their own, with their exit codes."""
        return {name: code for name, proc in self.started.items() if (code := proc.poll()) is not None}

    def stop_all(self) -> None:
        """SIGTERM the started processes, SIGKILL what is left, then sweep for their descendants.

        Safe to call again: a process is forgotten once reaped, so its pid (free for reuse by
        then) is never signalled twice.
        """
        stopping, self.started = self.started, {}
        for proc in stopping.values():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for proc in stopping.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for out in self._files:
            out.close()
        self._files.clear()
        self.sweep()

    def sweep(self) -> None:
        """End every process left behind: apps, probes, gpg agents of this run."""
        strays = self.strays()
        for pid in strays:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while strays and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            strays = [pid for pid in strays if _alive(pid)]
        for pid in strays:
            _signal_group(pid, signal.SIGKILL)

    def strays(self) -> list[int]:
        """Live processes other than this one that belong to this run (by their environment)."""
        marker = f"{MARKER_ENV}={self.marker}".encode()
        supervisor = f"{SUPERVISOR_ENV}={self.root.resolve()}/".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue  # gone, or not ours to read
            if any(item == marker or item.startswith(supervisor) for item in environ):
                found.append(int(entry.name))
        return [pid for pid in found if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal ``pid``'s process group when it leads one (its children go too), else ``pid`` alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
