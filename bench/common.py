"""Shared helpers of the benchmarks: timing, per-process peak memory, machine info, result files.

Every benchmark measures with these so numbers are comparable: wall time is the median of repeated
runs after a warm-up (``perf_counter``); peak memory is measured in a fresh child interpreter, which
reports its own peak RSS growth past a baseline taken once its imports are done. Results go to
``bench/results/<name>.json`` (latest run, replaced atomically) and one human-readable block is
appended to ``bench/results/<name>.txt`` (the history).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetcd.compat import UTC

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_RUNS = 3
DEFAULT_WARMUPS = 1
CHILD_TIMEOUT_SECONDS = 120.0
MIB = 1024 * 1024
LISTENER_START_TIMEOUT_S = 10.0
REAP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated runs of one operation; ``median_s`` is the number to report."""

    median_s: float
    runs_s: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": round(self.median_s, 6), "runs_s": [round(r, 6) for r in self.runs_s]}


def measure(fn: Callable[[], object], *, runs: int = DEFAULT_RUNS, warmups: int = DEFAULT_WARMUPS) -> Timing:
    """Call ``fn`` ``warmups`` times untimed (caches, imports, page cache), then time ``runs`` calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(max(runs, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), tuple(times))


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: exit code (negative: killed by that signal) and its output."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool


def run_child(argv: Sequence[str], *, timeout_s: float = CHILD_TIMEOUT_SECONDS) -> ChildRun:
    """Run ``argv`` from the repository root; a child that outlives ``timeout_s`` is killed."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            list(argv),
            cwd=REPO_ROOT,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return ChildRun(-9, _text(exc.stdout), _text(exc.stderr), time.perf_counter() - start, True)
    return ChildRun(
        done.returncode, _text(done.stdout), _text(done.stderr), time.perf_counter() - start, False
    )


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter (the project's .venv)."""
    return [sys.executable, "-m", module, *args]


def own_peak_rss_bytes() -> int:
    """This process's peak RSS so far (a high-water mark: deltas measure growth past a baseline).

    Read from VmHWM, the peak of this process's own address space. ``ru_maxrss`` (RUSAGE_SELF, or a
    parent's RUSAGE_CHILDREN / wait4) is not usable here: Linux starts a child's value at the RSS of
    the parent it was spawned from (measured: a 10 MB child of a 500 MB parent reports 511 MB).
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_listener(
    argv: Sequence[str], port: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the server ``argv`` and wait until it accepts connections on loopback ``port``."""
    server = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + LISTENER_START_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"{argv[0]} did not start listening on port {port}") from None
            time.sleep(0.05)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; load average shows how busy the machine was meanwhile."""
    import yaml

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "pyyaml": yaml.__version__,
        "libyaml": bool(yaml.__with_libyaml__),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="directory for <name>.json and <name>.txt (default: %(default)s)",
    )
    return parser


def write_results(
    name: str, payload: dict[str, Any], lines: Sequence[str], out_dir: Path = RESULTS_DIR
) -> Path:
    """Write ``<name>.json`` (replaced atomically) and append a dated block to ``<name>.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = machine_info()
    command = shlex.join([Path(sys.executable).name, "-m", f"bench.{name}", *sys.argv[1:]])
    document = {"bench": name, "timestamp": stamp, "command": command, "machine": machine, **payload}
    target = out_dir / f"{name}.json"
    with tempfile.NamedTemporaryFile("w", dir=out_dir, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(document, tmp, indent=2, sort_keys=False)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it private; results are for everyone to read
    os.replace(tmp.name, target)
    header = (
        f"== {name} {stamp} | {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}, load {machine['loadavg_1m']} | {command}"
    )
    with (out_dir / f"{name}.txt").open("a", encoding="utf-8") as handle:
        handle.write("\n".join([header, *lines]) + "\n\n")
    return target


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A plain-text table, columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def wait_reaped(pid: int, timeout_s: float = REAP_TIMEOUT_S) -> None:
    """Wait until ``pid`` has no child left (each finished one reaped, so its CPU is counted)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout_s
    while children.read_text(encoding="ascii").strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} still has children after {timeout_s} s")
        time.sleep(0.002)


def git_exec_path() -> Path:
    """Where git's own programs live (``git --exec-path``): to start ``git-daemon`` itself, since
    ``git daemon`` runs it as a child of a wrapper whose /proc counters see none of the serving."""
    done = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


_RUSAGE_WRAPPER = '''#!{python} -SE
"""fleetcd bench: run the real git with these arguments and log its CPU (rusage, microseconds)."""
import os, sys
pid = os.fork()
if pid == 0:
    os.execv({git!r}, ["git", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open({log!r}, "a") as log:
    log.write(f"{{usage.ru_utime + usage.ru_stime:.6f}} {{' '.join(sys.argv[1:2])}}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


def rusage_logging_git(directory: Path, log: Path) -> dict[str, str]:
    """Environment for a server (``git daemon``) whose ``git`` services log their CPU to ``log``.

    ``git daemon`` starts each service as ``git upload-pack .`` / ``git receive-pack .``, found on
    ``PATH``. The ``git`` this puts first on ``PATH`` runs the real one, waits for it with
    ``wait4`` and appends one line to ``log``: the user + system CPU of that process and of every
    process it waited for (index-pack, rev-list, hooks, ``gc --auto``), in seconds with microsecond
    resolution (``/proc``'s cutime counts 10 ms ticks), and the service's name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    real = shutil.which("git")
    if real is None:
        raise RuntimeError("git is not on PATH")
    wrapper = directory / "git"
    wrapper.write_text(
        _RUSAGE_WRAPPER.format(python=sys.executable, git=str(Path(real).resolve()), log=str(log)),
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"}


def read_rusage_log(log: Path, start_line: int = 0) -> list[tuple[float, str]]:
    """(CPU seconds, service) per line of a :func:`rusage_logging_git` log, from ``start_line`` on."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()[start_line:]
    return [(float(cpu), service) for cpu, _, service in (line.partition(" ") for line in lines)]
