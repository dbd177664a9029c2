"""The tarball executor's built-in process supervisor: one detached process per app, found again by pidfile.

The tarball executor calls it on **switch** (stop the old version, start the new one), **watch**
(``state``) and **rollback**. The app must outlive the agent: the agent is restarted by systemd,
killed by the OOM killer or kill -9'ed, and none of that may take the robot's application down. So
the app is started in its own session (``start_new_session``) with stdin from ``/dev/null`` and
stdout/stderr appended to ``<run_dir>/<app>.log``: nothing ties it to the agent's lifetime, and a
restarted agent finds it again from ``<run_dir>/<app>.json`` (pid, version, argv, boot id and the
process start time, field 22 of ``/proc/<pid>/stat``), written atomically right after the fork.

A pid alone is a weak name, so "running" means all of: ``/proc/<pid>`` exists, it was started at
the recorded time in the same boot, and it is not a zombie. Anything else is a dead app, and the
supervisor never signals a process that fails this check. ``stop`` sends SIGTERM to the app's
process group, waits, then SIGKILLs the group; a zombie that is our own child is reaped on sight.

Every process also carries ``FLEETCD_SUPERVISOR=<run_dir>`` and ``FLEETCD_APP=<app>`` in its
environment, so the tiny window between the fork and the pidfile write (an agent killed exactly
there) cannot leave an unmanaged twin: ``start`` finds such an orphan in ``/proc`` and stops it.

Logs are capped copytruncate-style whenever the supervisor looks at an app (``start``, ``state``,
``stop``; the watch looks every second and the loop every poll): past ``log_cap_bytes`` the last
``log_cap_bytes`` are kept in ``<app>.log.1`` and ``<app>.log`` is truncated (the app's descriptor
is ``O_APPEND``, so it keeps writing at the new end).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.executors.base import RunState
from agent.state.atomic import read_record, write_atomic
from fleetcd.errors import ApplyError

DEFAULT_LOG_CAP_BYTES = 1024 * 1024  # per app: <app>.log and <app>.log.1 each stay near this
DEFAULT_STOP_TIMEOUT_SECONDS = 10.0  # SIGTERM grace before SIGKILL
KILL_WAIT_SECONDS = 5.0  # after SIGKILL the kernel needs only moments; bounded anyway
POLL_SECONDS = 0.05  # how often a stop looks whether the app is gone
LOG_FILE_MODE = 0o640
PIDFILE_MODE = 0o644
SUPERVISOR_ENV = "FLEETCD_SUPERVISOR"
APP_ENV = "FLEETCD_APP"
_STAT_STATE = 0  # indexes into /proc/<pid>/stat after the ")" closing the command name
_STAT_STARTTIME = 19  # field 22 (starttime, clock ticks after boot), counted from field 3
_ZOMBIE_STATES = frozenset({"Z", "X", "x"})


@dataclass(frozen=True)
class ProcessRecord:
    """The pidfile: which process runs which version of the app, and how to recognise it."""

    app: str
    version: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22; a reused pid has another one
    boot_id: str  # /proc/sys/kernel/random/boot_id; after a reboot no old pid is ours
    argv: list[str]
    env_sha256: str  # the environment it was given (a hash: the values may be secrets)
    started_at: float  # wall clock, for people reading the file


class Supervisor:
    """Starts, finds and stops the one process of each app; all its state lives in ``run_dir``."""

    def __init__(self, run_dir: Path, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        if log_cap_bytes < 1024:
            raise ValueError(f"log_cap_bytes must be at least 1024, got {log_cap_bytes}")
        self.run_dir = run_dir
        self.log_cap_bytes = log_cap_bytes
        # Our children, kept so they are reaped through subprocess (no ResourceWarning, no zombie).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def pidfile(self, app: str) -> Path:
        return self.run_dir / f"{app}.json"

    def log_path(self, app: str) -> Path:
        return self.run_dir / f"{app}.log"

    def start(self, app: str, version: str, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
        """Run ``argv`` as the app's one process; returns its pid (the running one if already started).

        Whatever else runs for ``app`` (another version, an orphan of a killed agent) is stopped
        first: two instances would fight over the app's ports and devices.
        """
        if not argv:
            raise ApplyError(f"{app} {version}: empty command, nothing to start")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        wanted = (version, list(argv), _env_digest(env))
        record = self._live_record(app)
        if record is not None and (record.version, record.argv, record.env_sha256) == wanted:
            return record.pid  # started before a crash: do not start a twin
        self.stop(app)
        for orphan in self._orphans(app):
            self._terminate(orphan, DEFAULT_STOP_TIMEOUT_SECONDS)
        self._rotate_log(app)
        full_env = {**env, SUPERVISOR_ENV: str(self.run_dir.resolve()), APP_ENV: app}
        log_fd = os.open(self.log_path(app), os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_FILE_MODE)
        try:
            child = subprocess.Popen(  # argv from the signed release, never a shell
                list(argv),
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ApplyError(f"{app} {version}: cannot start {list(argv)!r} in {cwd}: {exc}") from exc
        finally:
            os.close(log_fd)
        self._children[child.pid] = child
        # Our unreaped child: its /proc entry stays until we wait, so the start time is readable.
        ticks = _start_ticks(child.pid)
        record = ProcessRecord(
            app=app,
            version=version,
            pid=child.pid,
            start_ticks=ticks if ticks is not None else -1,
            boot_id=_boot_id(),
            argv=list(argv),
            env_sha256=wanted[2],
            started_at=time.time(),
        )
        write_atomic(self.pidfile(app), json.dumps(asdict(record), indent=2).encode(), mode=PIDFILE_MODE)
        return child.pid

    def stop(self, app: str, timeout_s: float = DEFAULT_STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the app's process group, SIGKILL it after ``timeout_s``; a no-op if not running.

        The pidfile stays (the app now reads as EXITED) until the next ``start`` replaces it.
        """
        record = self._live_record(app)
        if record is not None:
            self._terminate(record.pid, timeout_s)
        self._rotate_log(app)

    def state(self, app: str, version: str) -> RunState:
        """RUNNING: the recorded process of this version is alive; EXITED: it was started and is gone;
        MISSING: this supervisor never started this version of the app (or started another since)."""
        record = self._record(app)
        if record is None or record.version != version:
            return RunState.MISSING
        self._rotate_log(app)
        return RunState.RUNNING if self._is_alive(record) else RunState.EXITED

    def running_version(self, app: str) -> str | None:
        """The version whose process is alive now, or None."""
        record = self._live_record(app)
        return None if record is None else record.version

    def running_pid(self, app: str) -> int | None:
        """The pid of the app's live process (its session leader), or None."""
        record = self._live_record(app)
        return None if record is None else record.pid

    def known_apps(self) -> list[str]:
        """Apps that have a pidfile here (running or not), sorted."""
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.json") if not p.name.startswith("."))

    def log_tail(self, app: str, max_bytes: int = 2048) -> str:
        """The end of the app's log, for an error message or a report (undecodable bytes replaced)."""
        try:
            with self.log_path(app).open("rb") as handle:
                handle.seek(max(handle.seek(0, os.SEEK_END) - max_bytes, 0))
                return handle.read(max_bytes).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # --- process identity -------------------------------------------------------------------------

    def _record(self, app: str) -> ProcessRecord | None:
        return read_record(self.pidfile(app), ProcessRecord, "a supervisor pidfile")

    def _live_record(self, app: str) -> ProcessRecord | None:
        record = self._record(app)
        return record if record is not None and self._is_alive(record) else None

    def _is_alive(self, record: ProcessRecord) -> bool:
        if record.boot_id != _boot_id() or _start_ticks(record.pid) != record.start_ticks:
            return False  # gone, or the pid now names a stranger: never ours to signal
        return self._running(record.pid)

    def _running(self, pid: int) -> bool:
        """The process exists and is not a zombie; a zombie child of ours is reaped on the way."""
        if _proc_state(pid) not in _ZOMBIE_STATES | {None}:
            return True
        child = self._children.pop(pid, None)
        if child is not None:
            child.poll()
        elif _parent_of(pid) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # started by an earlier Supervisor in this process
        return False

    def _orphans(self, app: str) -> list[int]:
        """Session leaders carrying this supervisor's and app's markers but no pidfile of their own."""
        wanted = {
            f"{SUPERVISOR_ENV}={self.run_dir.resolve()}".encode(),
            f"{APP_ENV}={app}".encode(),
        }
        found = []
        for pid, entry in other_processes():
            try:
                if os.getsid(pid) != pid:
                    continue
                environ = set((entry / "environ").read_bytes().split(b"\0"))
            except (OSError, ProcessLookupError):
                continue  # exited meanwhile, or not ours to read
            if wanted <= environ and self._running(pid):
                found.append(pid)
        return found

    # --- stopping ---------------------------------------------------------------------------------

    def _terminate(self, pid: int, timeout_s: float) -> None:
        """SIGTERM the group led by ``pid`` (checked alive just before), then SIGKILL if it stays."""
        _signal_group(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout_s):
            _signal_group(pid, signal.SIGKILL)
            if not self._wait_gone(pid, KILL_WAIT_SECONDS):
                raise ApplyError(
                    f"process {pid} survived SIGKILL for {KILL_WAIT_SECONDS}s (stuck in the kernel?)"
                )
        # Helpers the app forked share its group and must not outlive it. While any of them lives,
        # or the leader is an unreaped zombie, the kernel keeps the group id from being reused.
        _signal_group(pid, signal.SIGKILL)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._running(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # --- logs -------------------------------------------------------------------------------------

    def _rotate_log(self, app: str) -> None:
        log = self.log_path(app)
        try:
            size = log.stat().st_size
        except FileNotFoundError:
            return
        if size <= self.log_cap_bytes:
            return
        with log.open("rb") as handle:
            handle.seek(size - self.log_cap_bytes)
            tail = handle.read(self.log_cap_bytes)
        write_atomic(log.with_name(log.name + ".1"), tail, mode=LOG_FILE_MODE)
        os.truncate(log, 0)


def other_processes() -> Iterator[tuple[int, Path]]:
    """(pid, its ``/proc`` folder) of every process but this one, for a scan of their markers."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            yield int(entry.name), entry


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[_STAT_STARTTIME])


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[_STAT_STATE]


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def _env_digest(env: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(env), sort_keys=True).encode()).hexdigest()


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # start_new_session made the app a session and group leader: its pgid is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
