"""Housekeeping of the controller's mirror over many reconciles (fleetcd.git.housekeeping).

A world of N robots (:func:`bench.controller_world.build_world`) is bootstrapped, then reconciled
``--reconciles`` times with housekeeping off, a ``--reporting`` share of the robots pushing a
status report before each (each such fetch lands in the mirror as one more pack). The mirror's
packs and loose objects are counted after every reconcile ("before"). On copies of that mirror the
two ways of bounding it are timed: git's own ``gc --auto`` as :func:`~fleetcd.git.housekeeping.housekeep`
runs it (every reachable object into one pack, the unreachable into a cruft pack), and
``git repack --geometric=2 -d --write-midx`` (only the smallest packs rolled up, a multi-pack
index over the rest), each followed by the time to look up every robot's desired-state commit.
Then housekeeping is turned on and the same reconciles run again ("after"): the counts stay under
the policy's thresholds, and the reconcile that repacked says how long it took.

    python -m bench.git_housekeeping --robots 10000 --reconciles 60 --out /tmp/housekeep-bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pygit2

from bench.controller_world import BenchWorld, build_world
from controller.reconcile.steps import reconcile_once
from fleetcd.compat import UTC
from fleetcd.git.housekeeping import Policy, count
from fleetcd.git.packedrefs import read_refs
from fleetcd.git.refs import NAMESPACES_PREFIX
from fleetcd.reports import StatusReport
from tests.sim.robots import ROBOT, push_reports


def _reports(world: BenchWorld, robots: list[str], seq: int) -> list[StatusReport]:
    at = world.clock.now.astimezone(UTC)
    return [
        StatusReport.model_validate(
            {
                "format": "fleetcd.dev/status/v1",
                "device": device,
                "seq": seq,
                "agent_version": "bench",
                "reported_at": at,
                "bundle_serial": None,
                "deployments": [],
            }
        )
        for device in robots
    ]


def _du_mib(path: Path) -> float:
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return round(int(done.stdout.split()[0]) / 1024, 1)


def _lookups(mirror: Path) -> float:
    """Seconds to read every robot's desired-state commit (a fresh handle: cold pack indexes)."""
    refs = read_refs(mirror, (NAMESPACES_PREFIX,))
    start = time.perf_counter()
    repo = pygit2.Repository(str(mirror))
    for oid in refs.values():
        repo[oid].peel(pygit2.Commit)
    return round(time.perf_counter() - start, 3)


def _strategy(mirror: Path, name: str, argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="housekeep-", dir=mirror.parent) as scratch:
        copy = Path(scratch) / "mirror.git"
        shutil.copytree(mirror, copy, symlinks=True)
        start = time.perf_counter()
        subprocess.run(["git", "--git-dir", str(copy), *argv], check=True, capture_output=True)
        seconds = round(time.perf_counter() - start, 2)
        counts = count(copy)
        return {
            "strategy": name,
            "seconds": seconds,
            "packs_after": counts.packs,
            "loose_after": counts.loose,
            "mib_after": _du_mib(copy / "objects"),
            "lookup_all_s": _lookups(copy),
        }


GC_AUTO = [
    "-c",
    "gc.autoDetach=false",
    "-c",
    "gc.cruftPacks=true",
    "-c",
    "gc.autoPackLimit=1",
    "-c",
    "gc.auto=1",
    "gc",
    "--auto",
    "--quiet",
]
GEOMETRIC = ["repack", "--geometric=2", "-d", "--write-midx", "-q"]


def _round(world: BenchWorld, robots: list[str], seq: int) -> dict[str, Any]:
    world.clock.tick(60)
    push_reports(world.server, _reports(world, robots, seq), world.clock.now, author=ROBOT)
    world.clock.tick(1)
    start = time.perf_counter()
    result = reconcile_once(world.settings)
    seconds = time.perf_counter() - start
    counts = count(world.settings.source.mirror)
    return {
        "seq": seq,
        "seconds": round(seconds, 2),
        "packs": counts.packs,
        "loose": counts.loose,
        "repacks": [r.message for r in result.repacks],
    }


def run(robots: int, reconciles: int, reporting: float, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="housekeep-world-") as root:
        world = build_world(Path(root), robots)
        off = replace(world.settings.source, housekeeping=None)
        world.settings = replace(world.settings, source=off)
        reconcile_once(world.settings)  # the bootstrap: every robot's desired state
        mirror = world.settings.source.mirror
        share = max(1, int(len(world.active) * reporting))
        before = []
        for n in range(reconciles):
            chosen = [world.active[(n * share + i) % len(world.active)] for i in range(share)]
            before.append(_round(world, chosen, n + 1))
            print(json.dumps(before[-1]), flush=True)
        strategies = [
            {
                "strategy": "none",
                "packs_after": count(mirror).packs,
                "mib_after": _du_mib(mirror / "objects"),
                "lookup_all_s": _lookups(mirror),
            },
            _strategy(mirror, "gc --auto (all-into-one + cruft)", GC_AUTO),
            _strategy(mirror, "repack --geometric=2 --write-midx", GEOMETRIC),
        ]
        for line in strategies:
            print(json.dumps(line), flush=True)
        world.settings = replace(
            world.settings, source=replace(off, housekeeping=Policy(background=False))
        )  # timed: waited for
        after = []
        for n in range(reconciles):
            chosen = [world.active[(n * share + i) % len(world.active)] for i in range(share)]
            after.append(_round(world, chosen, reconciles + n + 1))
            print(json.dumps(after[-1]), flush=True)
    summary = {
        "robots": robots,
        "reconciles": reconciles,
        "reporting_per_reconcile": share,
        "before": before,
        "strategies": strategies,
        "after": after,
    }
    (out / f"git_housekeeping_{robots}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robots", type=int, default=10_000)
    parser.add_argument("--reconciles", type=int, default=60)
    parser.add_argument(
        "--reporting", type=float, default=0.01, help="share of robots reporting per reconcile"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if not (1 <= args.robots <= 200_000 and 1 <= args.reconciles <= 10_000 and 0 < args.reporting <= 1):
        parser.error("--robots 1..200000, --reconciles 1..10000, --reporting in (0, 1]")
    run(args.robots, args.reconciles, args.reporting, args.out)


if __name__ == "__main__":
    main()
