"""Benchmark: the controller's whole reconcile at 1,000, 10,000 and 100,000 robots, in one run.

Every number is the real ``reconcile_once`` — idle check, fetch, history, validation, ingest, plan,
desired state, state branch, push — with real git and real gpg, on a generated fleet
(:func:`bench.controller_world.build_world`: fleetgen's devices, written to a bare server by one
``git fast-import``). Each size runs in a child process of its own, so the sizes do not share
memory, caches or page-cache-warmed mirrors, and each reconcile's peak RSS is that child's
``VmHWM``, reset before the reconcile (``/proc/self/clear_refs``). Per size, in order:

1. **bootstrap** — the first reconcile: every robot's first desired state and device file (context);
2. **no-change** — ``--runs`` reconciles with nothing new, the clock one second further each time;
3. **wave** — a rollout's wave falls due and dispatches navigator to 1,000 robots out of N; timed
   against the floor for those writes: ``git fast-import`` of the same 1,000 commits (the
   controller's own bytes, read back from the server) plus ``git update-ref --stdin`` creating
   their refs, into a fresh repository, median of seven (their range printed too), in the same run;
4. **ingest** — those 1,000 robots push a ``deployed`` report; the reconcile that ingests them,
   judged against the same reconcile at the smallest size;
5. **fan-out** — a second rollout sends telemetry to every robot at once; timed against
   fast-import plus update-ref writing all N commits and refs;
6. **no-change, refs packed** — after ``git pack-refs --all`` on the server (a remote server's
   scheduled packing), ``--runs`` reconciles with nothing new; the no-change goal is judged here.

Goals: no-change <= 0.5 s (stated at 100,000 robots); wave and fan-out <= 2x their git floor;
ingest at N <= 2x the same at the smallest size. Each is printed met / not met with its ratio, and
the slope over the sizes (seconds per 1,000 robots between sizes, and the log-log exponent: 1 is
linear in the fleet, 0 flat). A phase that runs longer than ``--phase-timeout`` (15 min) is stopped,
reported as not run and the larger sizes are skipped: the largest size that fits is what is shown.
Signatures are counted around every reconcile, and the time of each reconcile step is recorded
(the step functions are wrapped for timing from here; the controller is not changed).

    python -m bench.controller_reconcile [--sizes 1000 10000 100000] [--runs 5] [--phase-timeout 900]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import base_parser, python_module, table, write_results
from bench.controller_fanout import fast_import_stream, git_write
from bench.controller_world import (
    FAN_OUT_AT,
    WAVE_AT,
    WAVE_ROBOTS,
    BenchWorld,
    build_world,
    counting_signatures,
)
from controller.delivery import delivery_ref
from controller.reconcile import steps
from controller.reconcile import write as write_module
from controller.reconcile.steps import reconcile_once
from controller.runner import HeapFreezer
from fleetcd.desired import BUNDLE_FILE
from fleetcd.desired.bundle import Bundle
from fleetcd.git.objects import read_blob
from fleetcd.reports import StatusReport
from tests.sim.robots import ROBOT, push_reports

NAME = "controller_reconcile"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
DEFAULT_RUNS = 5
DEFAULT_PHASE_TIMEOUT_S = 900.0
GOAL_NO_CHANGE_S = 0.5
GOAL_RATIO = 2.0
# The wave's floor is wall time dominated by the disk (1,000 loose refs and their directories, the
# pack): three runs at one size spread 0.66-2.42 s (2026-12-07, 100,000 robots), so seven are taken
# and their range printed beside the median.
WAVE_BASELINE_RUNS = 7
REPORT_DELAY_S = 10  # robots report this long after the wave; the ingest reconcile runs then
PHASES = (
    "world",
    "bootstrap",
    "no-change",
    "wave",
    "wave-git",
    "ingest",
    "fan-out",
    "fan-out-git",
    "no-change-packed",
)
RECONCILES = ("bootstrap", "wave", "ingest", "fan-out")
HEAP = HeapFreezer()  # as controller run's loop: what survives a reconcile is frozen
WRITE_PARTS = ("write_state", "publish", "pages_and_receipts")  # timed inside the write step


# --- the child: one size ------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Start a new high-water mark: VmHWM becomes the current RSS (Linux >= 4.0, "5" in clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


@contextmanager
def step_times() -> Iterator[dict[str, float]]:
    """Seconds spent in each reconcile step (and the write step's parts) while the block runs.

    The controller is not changed: its step list, idle check and write parts are swapped for timed
    wrappers of the same functions (same names, so ``ctx.step`` reads as before) and put back.
    """
    times: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    saved_steps = steps.STEPS
    saved_write, saved_idle = getattr(steps, "write"), getattr(steps, "idle_main")  # noqa: B009
    saved_parts = {name: getattr(write_module, name) for name in WRITE_PARTS}
    steps.STEPS = tuple(timed(step.__name__, step) for step in saved_steps)
    setattr(steps, "write", timed("write", saved_write))  # noqa: B010 - not part of steps' __all__
    setattr(steps, "idle_main", timed("idle_check", saved_idle))  # noqa: B010
    for name, fn in saved_parts.items():
        setattr(write_module, name, timed(f"write.{name}", fn))
    try:
        yield times
    finally:
        steps.STEPS = saved_steps
        setattr(steps, "write", saved_write)  # noqa: B010
        setattr(steps, "idle_main", saved_idle)  # noqa: B010
        for name, fn in saved_parts.items():
            setattr(write_module, name, fn)


def _reconcile(world: BenchWorld, name: str, *, moves_at_least: int = 0) -> dict[str, Any]:
    """One timed reconcile that must do something (not idle, not stalled)."""
    rss_before = _status_kib("VmRSS")
    _reset_peak_rss()
    with counting_signatures() as signatures, step_times() as parts:
        start = time.perf_counter()
        result = reconcile_once(world.settings)
        seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    between = _between_reconciles(world)
    if result.stalled is not None:
        raise RuntimeError(f"{name}: the reconcile stalled: {result.stalled}")
    if result.idle:
        raise RuntimeError(f"{name}: the reconcile found nothing to do")
    if result.desired_refs < moves_at_least:
        raise RuntimeError(f"{name}: {result.desired_refs} desired refs moved, expected >= {moves_at_least}")
    return {
        "phase": name,
        "seconds": round(seconds, 3),
        "signatures": signatures(),
        "desired_refs_moved": result.desired_refs,
        "state_commit": result.state_commit is not None,
        "events": len(result.events),
        "steps_s": {k: round(v, 3) for k, v in parts.items()},
        "between_s": round(between, 3),
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
    }


def _between_reconciles(world: BenchWorld) -> float:
    """What ``controller run`` does after each reconcile with the heap (its :class:`HeapFreezer`),
    when the bench runs as ``controller run`` (one cache); seconds, not counted in the reconcile."""
    if world.settings.cache is None:
        return 0.0
    start = time.perf_counter()
    HEAP.after_reconcile()
    return time.perf_counter() - start


def _no_change(world: BenchWorld, name: str, runs: int) -> dict[str, Any]:
    """``runs`` reconciles with nothing new, the clock one second further each time."""
    times, results = [], []
    _reset_peak_rss()
    with counting_signatures() as signatures:
        for _ in range(max(runs, 1)):
            world.clock.tick(1)
            start = time.perf_counter()
            results.append(reconcile_once(world.settings))
            times.append(time.perf_counter() - start)
            _between_reconciles(world)
    if any(r.state_commit is not None or r.desired_refs for r in results):
        raise RuntimeError(f"{name}: a reconcile with nothing new wrote something")
    return {
        "phase": name,
        "seconds": round(statistics.median(times), 4),
        "runs_s": [round(t, 4) for t in times],
        "idle": all(r.idle for r in results),
        "signatures": signatures(),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
    }


def _git_floor(world: BenchWorld, name: str, devices: tuple[str, ...], runs: int) -> dict[str, Any]:
    """fast-import + update-ref --stdin writing the commits the controller just wrote for ``devices``."""
    start = time.perf_counter()
    stream, _, marks = fast_import_stream(world.server, list(devices))
    built = time.perf_counter() - start
    times = []
    for run in range(runs):
        target = world.root / f"{name}-{run}.git"
        seconds, ids = git_write(target, stream, marks)
        if len(ids) != len(devices):
            raise RuntimeError(f"{name}: git wrote {len(ids)} refs, not {len(devices)}")
        times.append(seconds)
        subprocess.run(["rm", "-rf", str(target)], check=True)
    return {
        "phase": name,
        "seconds": round(statistics.median(times), 3),
        "runs_s": [round(t, 3) for t in times],
        "commits": len(devices),
        "stream_bytes": len(stream),
        "stream_built_s": round(built, 2),
    }


def _wave_reports(world: BenchWorld) -> list[StatusReport]:
    """Each wave robot reports every deployment of the bundle it was sent as deployed."""
    import pygit2

    repo = pygit2.Repository(str(world.server))
    at = world.clock.now
    reports = []
    for device in world.wave:
        data = read_blob(repo, delivery_ref(device, namespaces=True), BUNDLE_FILE)
        if data is None:
            raise RuntimeError(f"{device}: no bundle after the wave")
        bundle = Bundle.model_validate_json(data)
        if not any(d.app == "navigator" for d in bundle.deployments):
            raise RuntimeError(f"{device}: the wave sent it nothing")
        deployments = [
            {
                "deployment_id": d.deployment_id,
                "app": d.app,
                "version": d.version,
                "activity": "deployed",
                "error": "none",
                "message": "",
                "updated_at": at,
            }
            for d in bundle.deployments
        ]
        reports.append(
            StatusReport.model_validate(
                {
                    "format": "fleetcd.dev/status/v1",
                    "device": device,
                    "seq": 1,
                    "agent_version": "bench",
                    "reported_at": at,
                    "bundle_serial": bundle.serial,
                    "apps": [
                        {"app": d.app, "current": d.version, "previous": None} for d in bundle.deployments
                    ],
                    "deployments": deployments,
                }
            )
        )
    return reports


def run_size(
    root: Path, robots: int, runs: int, emit: Callable[[dict[str, Any]], None], *, cache: bool = True
) -> None:
    """Every phase of one size, each result handed to ``emit`` as soon as it is known."""
    start = time.perf_counter()
    world = build_world(root, robots, cache=cache)
    emit(
        {
            "phase": "world",
            "seconds": round(time.perf_counter() - start, 2),
            "robots": robots,
            "active": len(world.active),
            "wave_robots": len(world.wave),
            "baseline_rss_mib": round(_status_kib("VmRSS") / 1024, 1),
        }
    )
    emit(_reconcile(world, "bootstrap", moves_at_least=len(world.active)))
    emit(_no_change(world, "no-change", runs))
    world.clock.now = WAVE_AT
    emit(_reconcile(world, "wave", moves_at_least=len(world.wave)))
    emit(_git_floor(world, "wave-git", world.wave, WAVE_BASELINE_RUNS))
    world.clock.tick(REPORT_DELAY_S)
    push_reports(world.server, _wave_reports(world), world.clock.now, author=ROBOT)
    world.clock.tick(REPORT_DELAY_S)
    emit(_reconcile(world, "ingest"))
    world.clock.now = FAN_OUT_AT
    emit(_reconcile(world, "fan-out", moves_at_least=len(world.active)))
    emit(_git_floor(world, "fan-out-git", world.active, 1))
    subprocess.run(["git", "--git-dir", str(world.server), "pack-refs", "--all"], check=True)
    emit(_no_change(world, "no-change-packed", runs))


def _child(robots: int, runs: int, progress: Path, *, cache: bool) -> None:
    with progress.open("a", encoding="utf-8") as out:

        def emit(line: dict[str, Any]) -> None:
            # How busy the shared machine was as the phase ended (seconds are only as good as that).
            line["loadavg_1m"] = round(os.getloadavg()[0], 2)
            out.write(json.dumps(line) + "\n")
            out.flush()

        with tempfile.TemporaryDirectory(prefix=f"fleetcd-reconcile-{robots}-") as tmp:
            run_size(Path(tmp), robots, runs, emit, cache=cache)


# --- the parent: every size, one child each -------------------------------------------------------


def measure_size(
    robots: int, runs: int, phase_timeout_s: float, deadline: float = math.inf, *, cache: bool = True
) -> tuple[dict[str, Any], str | None]:
    """(phase name -> result, why it stopped early or None); a phase past the timeout is killed, and
    so is whatever runs at ``deadline`` (``time.monotonic()``: the run's wall budget)."""
    with tempfile.TemporaryDirectory(prefix="fleetcd-reconcile-progress-") as tmp:
        progress = Path(tmp) / "progress.jsonl"
        progress.touch()
        once = [] if cache else ["--once"]
        argv = python_module(f"bench.{NAME}", "--child", str(robots), "--runs", str(runs), *once)
        child = subprocess.Popen(
            [*argv, "--progress", str(progress)],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its git and gpg children go with it on a timeout
        )
        seen, last, stopped = 0, time.monotonic(), None
        while child.poll() is None:
            time.sleep(min(1.0, phase_timeout_s / 2))
            lines = progress.read_text(encoding="utf-8").splitlines()
            if len(lines) > seen:
                for line in lines[seen:]:
                    done = json.loads(line)
                    print(f"  {robots}: {done['phase']} {done['seconds']} s", file=sys.stderr, flush=True)
                seen, last = len(lines), time.monotonic()
            if time.monotonic() - last > phase_timeout_s or time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                phase = PHASES[min(seen, len(PHASES) - 1)]
                stopped = (
                    f"{phase} did not finish within {phase_timeout_s:.0f} s on this machine: stopped"
                    if time.monotonic() <= deadline
                    else f"{phase} was still running when the run's --max-wall-seconds ran out: stopped"
                )
        stderr = child.stderr.read().decode("utf-8", "replace") if child.stderr else ""
        results = {r["phase"]: r for r in map(json.loads, progress.read_text(encoding="utf-8").splitlines())}
    if stopped is None and child.returncode != 0:
        # E.g. a git command past the controller's own timeout: that size does not fit either.
        phase = PHASES[min(len(results), len(PHASES) - 1)]
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["(no message)"]
        stopped = f"{phase} failed: {last[0].strip()[:600]}"
        print(stderr[-4000:], file=sys.stderr)
    return results, stopped


def _slopes(sizes: list[int], seconds: dict[int, float]) -> list[dict[str, Any]]:
    """Between consecutive measured sizes: seconds per 1,000 more robots and the log-log exponent."""
    known = [n for n in sizes if n in seconds]
    out = []
    for low, high in itertools.pairwise(known):
        a, b = seconds[low], seconds[high]
        exponent = math.log(b / a) / math.log(high / low) if a > 0 and b > 0 else None
        out.append(
            {
                "from": low,
                "to": high,
                "s_per_1000_robots": round((b - a) / ((high - low) / 1000), 4),
                "exponent": round(exponent, 2) if exponent is not None else None,
            }
        )
    return out


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def summarize(sizes: list[int], by_size: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The goals, judged per size, and the slopes."""

    def seconds(phase: str) -> dict[int, float]:
        return {n: r[phase]["seconds"] for n, r in by_size.items() if phase in r}

    measured = [n for n in sizes if n in by_size]
    goals: dict[str, Any] = {"ratio_goal": GOAL_RATIO, "no_change_goal_s": GOAL_NO_CHANGE_S}
    no_change = seconds("no-change-packed")
    goals["no_change"] = {str(n): {"seconds": s, "met": s <= GOAL_NO_CHANGE_S} for n, s in no_change.items()}
    for kind in ("wave", "fan-out"):
        mine, floor = seconds(kind), seconds(f"{kind}-git")
        goals[kind.replace("-", "_")] = {
            str(n): {
                "seconds": mine[n],
                "git_s": floor[n],
                "ratio": round(mine[n] / floor[n], 2),
                "met": mine[n] <= GOAL_RATIO * floor[n],
            }
            for n in mine
            if n in floor and floor[n] > 0
        }
    ingest = seconds("ingest")
    if ingest:
        base = min(ingest)
        goals["ingest"] = {
            "against_size": base,
            **{
                str(n): {
                    "seconds": s,
                    "ratio": round(s / ingest[base], 2),
                    "met": s <= GOAL_RATIO * ingest[base],
                }
                for n, s in ingest.items()
            },
        }
    goals["peak_rss_mib"] = {
        str(n): max((r[p]["peak_rss_mib"] for p in RECONCILES if p in r), default=None)
        for n, r in by_size.items()
    }
    goals["signatures"] = {
        p: {str(n): r[p]["signatures"] for n, r in by_size.items() if p in r} for p in RECONCILES
    }
    slopes = {p: _slopes(measured, seconds(p)) for p in ("no-change-packed", *RECONCILES)}
    return {"goals": goals, "slopes": slopes}


def render(
    sizes: list[int], by_size: dict[int, dict[str, Any]], summary: dict[str, Any], *, once: bool = False
) -> list[str]:
    goals, measured = summary["goals"], [n for n in sizes if n in by_size]

    def cell(n: int, phase: str, key: str = "seconds") -> str:
        found = by_size.get(n, {}).get(phase)
        return "-" if found is None else str(found[key])

    def spread(n: int, phase: str) -> str:
        found = by_size.get(n, {}).get(phase)
        runs = found.get("runs_s") if found is not None else None
        return f"{min(runs)} - {max(runs)}" if runs else "-"

    def judged(name: str, n: int) -> str:
        found = goals.get(name, {}).get(str(n))
        if found is None:
            return "-"
        ratio = f"{found['ratio']}x " if "ratio" in found else ""
        return f"{ratio}{_verdict(found['met'])}"

    against = goals.get("ingest", {}).get("against_size", "-")
    lines = [
        "whole reconcile (reconcile_once, real git and gpg), seconds; one child process per size; "
        + (
            "no cache between reconciles (reconcile --once)"
            if once
            else "one cache for every reconcile and the heap frozen after each (controller run)"
        ),
        *table(
            ["reconcile", *[f"{n} robots" for n in sizes]],
            [
                ["bootstrap (every robot's first desired state)", *[cell(n, "bootstrap") for n in sizes]],
                [
                    f"no-change, median of runs (goal <= {GOAL_NO_CHANGE_S} s)",
                    *[cell(n, "no-change-packed") for n in sizes],
                ],
                ["  goal", *[judged("no_change", n) for n in sizes]],
                ["  before the server's refs were packed", *[cell(n, "no-change") for n in sizes]],
                ["wave: robots dispatched", *[cell(n, "world", "wave_robots") for n in sizes]],
                ["  seconds", *[cell(n, "wave") for n in sizes]],
                ["  git fast-import + update-ref of those", *[cell(n, "wave-git") for n in sizes]],
                ["    its runs, fastest - slowest", *[spread(n, "wave-git") for n in sizes]],
                [f"  ratio (goal <= {GOAL_RATIO}x)", *[judged("wave", n) for n in sizes]],
                ["ingest: the wave's reports", *[cell(n, "ingest") for n in sizes]],
                [
                    f"  against {against} robots (goal <= {GOAL_RATIO}x)",
                    *[judged("ingest", n) for n in sizes],
                ],
                ["fan-out: one release to every robot", *[cell(n, "fan-out") for n in sizes]],
                ["  git fast-import + update-ref of N", *[cell(n, "fan-out-git") for n in sizes]],
                [f"  ratio (goal <= {GOAL_RATIO}x)", *[judged("fan_out", n) for n in sizes]],
                [
                    "peak RSS of the controller, MiB",
                    *[str(goals["peak_rss_mib"].get(str(n), "-")) for n in sizes],
                ],
                [
                    "  of which the bench process at rest",
                    *[cell(n, "world", "baseline_rss_mib") for n in sizes],
                ],
                ["world: fleet generated + fast-import, s", *[cell(n, "world") for n in sizes]],
                [
                    "machine load (1 min) after bootstrap / fan-out",
                    *[
                        f"{cell(n, 'bootstrap', 'loadavg_1m')} / {cell(n, 'fan-out', 'loadavg_1m')}"
                        for n in sizes
                    ],
                ],
            ],
        ),
        "",
        "slope between sizes: seconds per 1,000 more robots; log-log exponent (1 = linear, 0 = flat)",
    ]
    rows = []
    for phase, found in summary["slopes"].items():
        for s in found:
            rows.append([phase, f"{s['from']} -> {s['to']}", s["s_per_1000_robots"], s["exponent"]])
    lines += table(["reconcile", "sizes", "s per 1,000 robots", "exponent"], rows) if rows else ["(one size)"]
    lines += ["", "where each reconcile's time went (seconds per step; write includes its parts below it)"]
    names = ["idle_check", *[s.__name__ for s in steps.STEPS], "write", *[f"write.{p}" for p in WRITE_PARTS]]
    lines += table(
        ["robots", "reconcile", "total", "signatures", "refs moved", "peak MiB", *names],
        [
            [
                n,
                p,
                by_size[n][p]["seconds"],
                by_size[n][p]["signatures"],
                by_size[n][p]["desired_refs_moved"],
                by_size[n][p]["peak_rss_mib"],
                *[by_size[n][p]["steps_s"].get(k, "-") for k in names],
            ]
            for n in measured
            for p in RECONCILES
            if p in by_size[n]
        ],
    )
    return lines


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="robots per size")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="no-change reconciles timed per size")
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=DEFAULT_PHASE_TIMEOUT_S,
        help="seconds one phase may take before the size is stopped (default: %(default)s)",
    )
    parser.add_argument(
        "--max-wall-seconds",
        type=float,
        default=math.inf,
        help="stop the phase running when this much real time has passed and report what finished",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="no cache between reconciles, as `controller reconcile --once` (default: one cache for every "
        "reconcile, as `controller run`)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--progress", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.runs, args.progress, cache=not args.once)
        return
    sizes = sorted(set(args.sizes))
    if any(n < 1 for n in sizes):
        parser.error("--sizes: every size must be at least 1")
    by_size: dict[int, dict[str, Any]] = {}
    not_run: list[dict[str, Any]] = []
    wall: dict[int, float] = {}
    deadline = time.monotonic() + args.max_wall_seconds
    for robots in sizes:
        if not_run:
            not_run.append({"robots": robots, "why": "skipped: an earlier size was stopped"})
            continue
        print(f"bench: {NAME}: {robots} robots", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results, stopped = measure_size(robots, args.runs, args.phase_timeout, deadline, cache=not args.once)
        wall[robots] = round(time.perf_counter() - start, 1)
        by_size[robots] = results
        if stopped is not None:
            not_run.append({"robots": robots, "why": stopped})
    summary = summarize(sizes, by_size)
    lines = render(sizes, by_size, summary, once=args.once)
    if not_run:
        lines += ["", *[f"NOT RUN at {x['robots']} robots: {x['why']}" for x in not_run]]
    lines += ["wall per size: " + ", ".join(f"{n} robots {s} s" for n, s in wall.items())]
    payload = {
        "sizes": sizes,
        "runs": args.runs,
        "phase_timeout_s": args.phase_timeout,
        "controller": "reconcile --once (no cache)"
        if args.once
        else "run (one ReconcileCache for every reconcile)",
        "max_wall_s": None if math.isinf(args.max_wall_seconds) else args.max_wall_seconds,
        "wave_robots": WAVE_ROBOTS,
        **summary,
        "not_run": not_run,
        "wall_s": {str(n): s for n, s in wall.items()},
        "results": {str(n): r for n, r in by_size.items()},
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
