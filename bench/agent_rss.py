"""Benchmark: peak RSS of a real ``fleetcd-agent run`` process (goal: at most 60 MB).

The world is the agent tests' (:class:`tests.sim.agent.AgentWorld`): a fleet repository written
by the real controller, a real tarball release of a small HTTP app on a local artifact server, real
gpg. The agent is the console script (``.venv/bin/fleetcd-agent``, else ``python -m agent.cli``)
polling every second, in two runs:

* **updating**: it installs 1.0.0 (download, verify, unpack, start, health watch, report push),
  polls; halfway the controller publishes 1.1.0 and it upgrades; then more polls. SIGTERM.
* **idle**: a fresh agent over the same state (a reboot) that only finds nothing to do — what a
  robot runs most of its life.

A cycle is counted by the ``seq`` of the status report the agent writes at the end of each one.
Measured from ``/proc/<pid>/status`` just before SIGTERM: ``VmHWM`` (the peak resident set of the
agent's own address space), ``VmRSS``, and its split into anonymous memory and file-backed pages
(shared libraries, which the kernel shares and can drop). The app the agent starts and the gpg/git
children it runs are other processes and not counted; the app's own peak is shown beside. For scale,
the peak of a bare interpreter and of one that only imported the agent's CLI.

Robots run Python 3.10 through 3.13: ``--agent-python`` (repeatable) runs the agent, and the two
baselines, on other interpreters (a venv's python, e.g. ``.venv-py310/bin/python`` made by
``dev/test-python 3.10``); the world stays on this one. One table per interpreter.

    python -m bench.agent_rss [--cycles 20] [--timeout 300] [--agent-python PY ...]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import MIB, REPO_ROOT, base_parser, table, write_results

NAME = "agent_rss"
DEFAULT_CYCLES = 20
DEFAULT_TIMEOUT_SECONDS = 300.0
MIN_CYCLES = 3  # an install, then no-op polls
GOAL_MIB = 60.0
POLL = {"interval_seconds": 1, "jitter_percent": 0, "heartbeat_seconds": 60}
SAMPLE_SECONDS = 0.1
STOP_TIMEOUT_SECONDS = 30.0
STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
_STATUS_OF_SELF = "import pathlib; print(pathlib.Path('/proc/self/status').read_text())"


def agent_argv(config_file: Path, python: str) -> list[str]:
    """The console script next to ``python``, else the module (same code either way)."""
    script = Path(python).with_name("fleetcd-agent")
    prefix = [str(script)] if script.exists() else [python, "-m", "agent.cli"]
    return [*prefix, "--config", str(config_file), "run"]


def proc_status(pid: int) -> dict[str, int]:
    """The memory lines of ``/proc/<pid>/status`` in bytes (empty when the process is gone)."""
    try:
        return _memory_fields(Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace"))
    except OSError:
        return {}


def _memory_fields(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def interpreter_peak(code: str, python: str) -> int:
    """VmHWM of a fresh interpreter that runs ``code`` and then prints its own status."""
    done = subprocess.run(
        [python, "-c", f"{code}\n{_STATUS_OF_SELF}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return _memory_fields(done.stdout)["VmHWM"]


def cycles_done(status_file: Path) -> int:
    """The seq of the last status report the agent wrote (one a cycle); 0 before the first."""
    try:
        return int(json.loads(status_file.read_bytes())["seq"])
    except (OSError, ValueError, KeyError):
        return 0


def reported_current(status_file: Path, app: str) -> str | None:
    """The version the agent's last status report says ``app`` runs."""
    try:
        apps = json.loads(status_file.read_bytes())["apps"]
    except (OSError, ValueError, KeyError):
        return None
    return next((str(a.get("current")) for a in apps if a.get("app") == app), None)


def app_peak(pidfile: Path) -> int:
    """The app's own peak (not the agent's), by the supervisor's pidfile; 0 when none runs."""
    try:
        pid = int(json.loads(pidfile.read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return proc_status(pid).get("VmHWM", 0)


def run_agent(
    python: str,
    config_file: Path,
    status_file: Path,
    log_file: Path,
    until_seq: int,
    timeout_s: float,
    on_cycle: Callable[[int], None],
    done: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Start ``fleetcd-agent run``, call ``on_cycle(seq)`` while it works until the status report
    reaches ``until_seq`` and ``done()`` holds, then read its memory and SIGTERM it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first_seq = cycles_done(status_file)
    with log_file.open("ab") as log:
        agent = subprocess.Popen(
            agent_argv(config_file, python), cwd=REPO_ROOT, stdout=log, stderr=log, env=env
        )
    started = time.monotonic()
    try:
        while (seq := cycles_done(status_file)) < until_seq or not done():
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.returncode}: {_tail(log_file)}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"status seq {seq}, not {until_seq}, after {timeout_s} s: {_tail(log_file)}"
                )
            on_cycle(seq)
            time.sleep(SAMPLE_SECONDS)
        wall_s = time.monotonic() - started
        memory = proc_status(agent.pid)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            exit_code = agent.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            agent.kill()
            exit_code = agent.wait()
    return {
        "cycles": cycles_done(status_file) - first_seq,
        "wall_s": round(wall_s, 2),
        "exit_code_after_sigterm": exit_code,
        **{f"{key.lower()}_bytes": memory[key] for key in STATUS_FIELDS},
    }


def run(python: str, cycles: int, timeout_s: float, root: Path) -> dict[str, Any]:
    # The world is the agent tests' (real controller, gpg, HTTP); imported here, not at the top, so
    # `--help` works without them.
    from agent.executors.supervisor import Supervisor
    from agent.executors.tarball import RUN_DIR
    from tests.gpgkeys import KeyFactory
    from tests.httpserver import ArtifactServer
    from tests.sim.agent import APP, AgentWorld

    (root / "keys").mkdir(mode=0o700)
    keys = KeyFactory(root / "keys")
    with ArtifactServer() as artifacts:
        world = AgentWorld.create(root / "world", keys, artifacts, agent={"poll": POLL})
        supervisor = Supervisor(world.paths.apps_dir / RUN_DIR)
        status, log = world.paths.status_file, root / "agent.log"
        upgrade_at = max(cycles // 2, 2)
        seen: dict[str, int] = {"app_peak": 0}

        def updating(seq: int) -> None:
            if "upgraded_at" not in seen and seq >= upgrade_at:
                world.publish("1.1.0")  # the controller's reconcile, in this process
                seen["upgraded_at"] = seq
            seen["app_peak"] = max(seen["app_peak"], app_peak(supervisor.pidfile(APP)))

        def upgraded() -> bool:  # over before the idle run, which must find nothing to do
            return reported_current(status, APP) == "1.1.0"

        try:
            world.publish("1.0.0")
            updated = run_agent(python, world.config_file, status, log, cycles, timeout_s, updating, upgraded)
            updated["upgraded_at_cycle"] = seen.get("upgraded_at")
            updated["running_version"] = supervisor.running_version(APP)
            idle_cycles = max(cycles // 2, MIN_CYCLES)
            idle = run_agent(
                python,
                world.config_file,
                status,
                log,
                cycles_done(status) + idle_cycles,
                timeout_s,
                lambda _s: None,
            )
            idle["running_version"] = supervisor.running_version(APP)
        finally:
            world.close()
            keys.close()
    return {"updating": updated, "idle": idle, "app_vmhwm_bytes": seen["app_peak"]}


def _tail(log: Path, limit: int = 3000) -> str:
    return log.read_text(errors="replace")[-limit:] if log.exists() else "(no log)"


def mib(n: int) -> float:
    return round(n / MIB, 1)


def measure(python: str, cycles: int, timeout_s: float) -> tuple[list[str], dict[str, Any]]:
    """The updating and idle runs and the baselines on ``python``: table lines and numbers."""
    baseline = {
        "python_bare_vmhwm_bytes": interpreter_peak("pass", python),
        "agent_cli_imported_vmhwm_bytes": interpreter_peak("import agent.cli", python),
    }
    with tempfile.TemporaryDirectory(prefix="fleetcd-agent-rss-") as tmp:
        measured = run(python, max(cycles, MIN_CYCLES), timeout_s, Path(tmp))
    updating, idle = measured["updating"], measured["idle"]
    peak = max(updating["vmhwm_bytes"], idle["vmhwm_bytes"])
    rows = [
        [
            f"fleetcd-agent run, {name}",
            run_["cycles"],
            mib(run_["vmhwm_bytes"]),
            mib(run_["vmrss_bytes"]),
            mib(run_["rssanon_bytes"]),
            mib(run_["rssfile_bytes"]),
        ]
        for name, run_ in (("updating", updating), ("idle", idle))
    ]
    rows += [
        ["python -c 'import agent.cli'", "-", mib(baseline["agent_cli_imported_vmhwm_bytes"]), "", "", ""],
        ["python -c pass", "-", mib(baseline["python_bare_vmhwm_bytes"]), "", "", ""],
        ["the app it runs (not counted)", "-", mib(measured["app_vmhwm_bytes"]), "", "", ""],
    ]
    lines = [
        f"poll every 1 s; updating: install 1.0.0, upgrade to 1.1.0 at cycle "
        f"{updating['upgraded_at_cycle']}, no-op polls ({updating['wall_s']} s); idle: a restarted "
        f"agent, no-op polls only ({idle['wall_s']} s); running {idle['running_version']}; "
        f"exit codes after SIGTERM {updating['exit_code_after_sigterm']}, {idle['exit_code_after_sigterm']}",
        *table(["process", "cycles", "peak MiB", "RSS MiB", "anon MiB", "file MiB"], rows),
        "",
        f"agent peak RSS {mib(peak)} MiB = {peak / 1e6:.1f} MB (goal <= {GOAL_MIB:.0f} MB); "
        f"idle {mib(idle['vmhwm_bytes'])} MiB",
    ]
    return lines, {**measured, **baseline, "agent_peak_vmhwm_bytes": peak}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--cycles", type=int, default=DEFAULT_CYCLES, help="cycles of the updating run")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds one run may take"
    )
    parser.add_argument(
        "--agent-python",
        action="append",
        metavar="PY",
        help="run the agent on this interpreter (repeatable; default: this one)",
    )
    args = parser.parse_args()
    if shutil.which("gpg") is None:
        parser.error("gpg is needed (Debian gnupg)")
    pythons = args.agent_python or [sys.executable]
    lines: list[str] = []
    payload: dict[str, Any] = {"goal_mb": GOAL_MIB, "by_python": {}}
    for python in pythons:
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        measured_lines, measured = measure(python, args.cycles, args.timeout)
        lines += [f"Python {version} ({python})", *measured_lines, ""]
        payload["by_python"][version] = measured
    peaks = {version: m["agent_peak_vmhwm_bytes"] for version, m in payload["by_python"].items()}
    lines.append(
        "peak by Python: " + ", ".join(f"{v} {mib(p)} MiB = {p / 1e6:.1f} MB" for v, p in peaks.items())
    )
    payload["goal_met"] = all(peak <= GOAL_MIB * 1e6 for peak in peaks.values())
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
