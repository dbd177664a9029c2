"""Benchmark: the controller's reconcile at fleet scale — gpg signatures per reconcile, and the
reconcile that finds nothing new.

For each size (10, 1,000 and 10,000 robots by default) a generated fleet is pushed to a bare
server (:mod:`bench.controller_world`) and the real ``reconcile_once`` runs, real gpg and git:

1. **fan-out** — creates both rollouts, dispatches their first waves, writes and pushes every
   robot's desired state under one signed root;
2. **ingest** — every robot pushes a status report (deployed, or nothing to report) and the
   reconcile ingests them: waves start soaking;
3. **steady** — one more reconcile with nothing new;

then ``--runs`` more reconciles with nothing new (the clock one second further each time) are timed:
the no-change reconcile, goal at most 0.5 s at 10,000 robots — once with the server's refs as the
controller's last push left them (it packs a local server's refs after every push) and once more
after an explicit ``git pack-refs --all``, as a remote server's scheduled packing would leave them
(the goal is judged on the latter; both are reported). Signatures are
counted around every reconcile (goal: whatever the fleet size, one over the desired state's root
when it changes plus one over the audit log's new head when lines were appended — so two per
fan-out — and none for a reconcile with nothing new). For context: the full reconcile path with
nothing to do (fetch, verify, validate, ingest, plan, deliver: what every tick cost before the idle
fast path), the ref listing alone, and the idle reconcile's profile.

    python -m bench.controller_reconcile [--sizes 10 1000 10000] [--runs 5]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, base_parser, table, write_results
from bench.controller_world import (
    BenchWorld,
    build_world,
    counting_signatures,
    device_files,
)
from controller.reconcile import steps
from controller.reconcile.idle import LISTED
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.steps import reconcile_once
from fleetcd.git.remote import list_remote
from tests.sim.robots import push_reports, reports_for

NAME = "controller_reconcile"
DEFAULT_SIZES = (10, 1_000, 10_000)
DEFAULT_RUNS = 5
GOAL_NO_CHANGE_S = 0.5
SIGNATURES_PER_FAN_OUT = 2  # the desired-state root and the audit head, at any fleet size
PROFILE_LINES = 12


def _step(world: BenchWorld, name: str) -> dict[str, Any]:
    with counting_signatures() as signatures:
        start = time.perf_counter()
        result = reconcile_once(world.settings)
        seconds = time.perf_counter() - start
    if result.stalled is not None:
        raise RuntimeError(f"{name}: the reconcile stalled: {result.stalled}")
    return {
        "name": name,
        "seconds": round(seconds, 3),
        "signatures": signatures(),
        "desired_refs_moved": result.desired_refs,
        "state_commit": result.state_commit is not None,
        "idle": result.idle,
        "events": len(result.events),
    }


def _no_change(world: BenchWorld, runs: int) -> dict[str, Any]:
    """``runs`` reconciles with nothing new, the clock one second further each time."""
    times, results = [], []
    with counting_signatures() as signatures:
        for _ in range(runs):
            world.clock.tick(1)
            start = time.perf_counter()
            results.append(reconcile_once(world.settings))
            times.append(time.perf_counter() - start)
    if any(r.state_commit is not None or r.events for r in results):
        raise RuntimeError("a reconcile with nothing new wrote something")
    return {
        "median_s": round(sorted(times)[len(times) // 2], 4),
        "runs_s": [round(t, 4) for t in times],
        "idle": all(r.idle for r in results),
        "signatures": signatures(),
    }


def _profile(world: BenchWorld) -> list[str]:
    world.clock.tick(1)
    profiler = cProfile.Profile()
    profiler.runcall(reconcile_once, world.settings)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_LINES)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    prefixes = (
        f"{REPO_ROOT}/",
        f"{Path(sys.base_prefix)}/lib/python{sys.version_info.major}.{sys.version_info.minor}/",
    )
    cleaned = []
    for line in lines[start:]:
        for prefix in prefixes:
            line = line.replace(prefix, "")
        if line.strip():
            cleaned.append(line.rstrip())
    return cleaned


def _full_path(world: BenchWorld) -> dict[str, float]:
    """The whole reconcile with nothing to do, as every tick ran before the idle fast path."""
    world.clock.tick(1)
    with open_mirror(world.settings.source) as repo:
        start = time.perf_counter()
        fetch_all(repo, world.settings.source)  # the fetch step alone, for the split below
        fetched_s = time.perf_counter() - start
        start = time.perf_counter()
        result = steps._reconcile(repo, world.settings)  # every step from its own fetch on
        total = time.perf_counter() - start
        if result.state_commit is not None or result.events:
            raise RuntimeError("the full path with nothing new wrote something")
        start = time.perf_counter()
        list_remote(repo, world.settings.source.url, LISTED)
        listed_s = time.perf_counter() - start
    return {
        "full_path_s": round(total, 3),
        "fetch_s": round(fetched_s, 3),
        "list_remote_s": round(listed_s, 4),
    }


def run_size(root: Path, robots: int, runs: int, profile: bool) -> dict[str, Any]:
    start = time.perf_counter()
    world = build_world(root, robots)
    setup_s = time.perf_counter() - start
    steps_done = [_step(world, "fan-out")]
    files = device_files(world)
    world.clock.tick(5)
    reports = reports_for(files, 1, "deployed", world.clock.now, agent_version="bench")
    push_reports(world.server, reports, world.clock.now)
    world.clock.tick(5)
    steps_done.append(_step(world, "ingest"))
    world.clock.tick(10)
    steps_done.append(_step(world, "steady"))
    as_pushed = _no_change(world, runs)
    # A remote server packs on its own schedule (docs/git-server.md); loose, 20,000 ref files
    # would cost every listing.
    subprocess.run(["git", "pack-refs", "--all"], cwd=world.server, check=True)
    out: dict[str, Any] = {
        "robots": robots,
        "setup_s": round(setup_s, 1),
        "reconciles": steps_done,
        "no_change": as_pushed,
        "no_change_server_refs_packed": _no_change(world, runs),
        **_full_path(world),
    }
    if profile:
        out["idle_profile"] = _profile(world)
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="robots per run")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed no-change reconciles per size")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    by_size: dict[int, dict[str, Any]] = {}
    for robots in sizes:
        with tempfile.TemporaryDirectory(prefix=f"fleetcd-reconcile-{robots}-") as tmp:
            by_size[robots] = run_size(Path(tmp), robots, args.runs, profile=robots == sizes[-1])
    largest = by_size[sizes[-1]]
    fan_out = {n: by_size[n]["reconciles"][0]["signatures"] for n in sizes}
    packed = largest["no_change_server_refs_packed"]["median_s"]
    goals = {
        "no_change_s_at_largest": packed,
        "no_change_s_at_largest_loose_server_refs": largest["no_change"]["median_s"],
        "no_change_goal_s": GOAL_NO_CHANGE_S,
        "no_change_goal_met": packed <= GOAL_NO_CHANGE_S,
        "signatures_per_fan_out": fan_out,
        # one over the desired-state root + one over the audit head (issue 13), at every size
        "signatures_constant": set(fan_out.values()) == {SIGNATURES_PER_FAN_OUT},
    }
    lines = ["signatures and wall time per reconcile (real gpg, real git; idle = fast path taken)"]
    lines += table(
        ["robots", "reconcile", "seconds", "signatures", "desired refs moved", "commit", "idle"],
        [
            [
                n,
                s["name"],
                s["seconds"],
                s["signatures"],
                s["desired_refs_moved"],
                s["state_commit"],
                s["idle"],
            ]
            for n in sizes
            for s in by_size[n]["reconciles"]
        ],
    )
    lines += [
        "",
        f"no-change reconcile, median of {args.runs} (goal <= {GOAL_NO_CHANGE_S} s at {sizes[-1]}); "
        "server refs as the controller's last push left them / after git pack-refs --all",
    ]
    lines += table(
        [
            "robots",
            "as left s",
            "packed s",
            "idle",
            "signatures",
            "full path s",
            "of which fetch s",
            "listing s",
        ],
        [
            [
                n,
                by_size[n]["no_change"]["median_s"],
                by_size[n]["no_change_server_refs_packed"]["median_s"],
                by_size[n]["no_change"]["idle"] and by_size[n]["no_change_server_refs_packed"]["idle"],
                by_size[n]["no_change"]["signatures"]
                + by_size[n]["no_change_server_refs_packed"]["signatures"],
                by_size[n]["full_path_s"],
                by_size[n]["fetch_s"],
                by_size[n]["list_remote_s"],
            ]
            for n in sizes
        ],
    )
    lines += [
        "",
        f"profile of one idle reconcile at {sizes[-1]} robots (cumulative)",
        *largest["idle_profile"],
    ]
    payload = {
        "sizes": sizes,
        "runs": args.runs,
        "goals": goals,
        "results": {str(n): by_size[n] for n in sizes},
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
