"""Running one outside command with a deadline and bounded output: the one runner that exec probes
(:mod:`agent.health.probes`), gates (:mod:`agent.gates`), pre-flight steps and executable hooks use.

Commands come from signed releases (exec probes) or agent.yaml (gates, hooks), and they run on a
small robot computer, so none of them may hang the agent or fill its memory:

* argv is executed directly, never through a shell;
* the command runs in a session of its own, and on timeout the whole process group is SIGKILLed
  (a probe script's own children die with it);
* stdout and stderr are drained as they come and only their last ``cap_bytes`` are kept, so an
  endless writer neither blocks on a full pipe nor grows the agent;
* once the command itself has exited, output still arriving from a grandchild that inherited the
  pipe is not waited for.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

DEFAULT_OUTPUT_CAP_BYTES = 4096  # enough for an error message; the tail is what explains a failure
_TICK_SECONDS = 0.1  # how often a quiet command is checked for having exited
_READ_BYTES = 65536


@dataclass(frozen=True)
class Completed:
    """What a bounded run saw. ``returncode`` is None when the command was killed at its deadline."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes  # the last cap_bytes
    stderr: bytes  # the last cap_bytes

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def stdout_tail(self) -> str:
        return self.stdout.decode("utf-8", errors="replace").strip()

    def stderr_tail(self) -> str:
        return self.stderr.decode("utf-8", errors="replace").strip()


class _Tail:
    """The last ``cap`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.cap:
            del self.data[: len(self.data) - self.cap]


def run_bounded(
    argv: Sequence[str],
    *,
    timeout_seconds: float,
    stdin: bytes = b"",
    cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES,
) -> Completed:
    """Run ``argv`` with ``stdin``; kill its process group at ``timeout_seconds``.

    Raises :class:`OSError` when the command cannot be started (missing, not executable).
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout_seconds
    out, err = _Tail(cap_bytes), _Tail(cap_bytes)
    pending = memoryview(stdin)
    killed = False
    with selectors.DefaultSelector() as selector:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                killed = _kill_group(proc)
                break
            events = selector.select(min(remaining, _TICK_SECONDS))
            for key, _mask in events:
                if key.fileobj is proc.stdin:
                    pending = _feed(proc, selector, pending)
                    continue
                chunk = os.read(key.fd, _READ_BYTES)
                if chunk:
                    key.data.add(chunk)
                else:
                    selector.unregister(key.fileobj)
            if not events and proc.poll() is not None:
                break  # exited; a grandchild may hold the pipes open, do not wait for it
    if not killed:
        try:  # both pipes closed, but the command may still be running
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed = _kill_group(proc)
    returncode = proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        with contextlib.suppress(OSError):
            stream.close()
    return Completed(tuple(argv), None if killed else returncode, bytes(out.data), bytes(err.data))


def _feed(proc: subprocess.Popen[bytes], selector: selectors.BaseSelector, pending: memoryview) -> memoryview:
    """Write what the stdin pipe takes now; close it when all is written or the reader went away."""
    assert proc.stdin is not None
    try:
        written = os.write(proc.stdin.fileno(), pending[:_READ_BYTES])
        pending = pending[written:]
    except BlockingIOError:
        return pending
    except (BrokenPipeError, ConnectionResetError):
        pending = pending[:0]  # the command does not read its input; that is its business
    if not pending:
        selector.unregister(proc.stdin)
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return pending


def _kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the command's whole session; True (it was killed at its deadline)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return True


def refusal(argv: Sequence[str], allowlist: Sequence[str]) -> str | None:
    """Why ``argv`` may not run under ``exec_allowlist`` (None: it may).

    The binary must be named by an absolute path listed verbatim: no PATH lookup, no relative path,
    no ``..`` tricks, so the allowlist in agent.yaml is exactly the set of binaries that can run.
    """
    binary = argv[0] if argv else ""
    if not PurePath(binary).is_absolute():
        return f"{binary!r} is not an absolute path (exec_allowlist in agent.yaml lists absolute paths)"
    if binary not in allowlist:
        return f"{binary} is not in exec_allowlist of agent.yaml"
    return None
