"""What the controller's mirror keeps of each reconcile, by kind of object (docs/scaling.md "What the
history holds").

A world of N robots (:func:`bench.controller_world.build_world`, housekeeping off) is bootstrapped
and its mirror's refs noted; then ``--reconciles`` reconciles run, a ``--reporting`` share of the
robots pushing a status report before each. With ``--heartbeat-period P`` the same robots report
again every P reconciles (after P reconciles that bring them online, not counted): heartbeats, which
move only a device file's ``last_seen`` and report fields. Without it each robot reports once (as
``bench/git_housekeeping.py`` pushes them): each comes online, which is an audit line. Then the
mirror is repacked whole (``git repack -adfk``; ``--aggressive`` adds ``--window=250 --depth=50``)
and every object reachable from the moved refs but not from the noted ones is weighed:
``objectsize:disk`` (its bytes in the pack, a delta where git found one) by the path it first
appears under (:func:`classify`).

    python -m bench.git_history --robots 10000 --reconciles 30 --heartbeat-period 5 --out /tmp/hist
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import base_parser, table, write_results
from bench.controller_world import build_world
from bench.git_housekeeping import _reports
from controller.reconcile.steps import reconcile_once
from fleetcd.git.refs import STATE_BRANCH, STATUS_PREFIX
from tests.sim.robots import ROBOT, push_reports

NAME = "git_history"
REPORTS = "status reports"
STATE = "state branch"
OTHER = "other refs"


def classify(kind: str, path: str) -> str:
    """The class of one object of the state branch or a report: by its type and first path."""
    if kind == "commit":
        return "commit"
    if not path:
        return "root tree"
    top = path.split("/")[0]
    if kind == "tree":
        if top == "devices":
            return "devices top tree" if path == "devices" else "devices bucket tree"
        return f"{top} trees"
    if top == "devices":
        return "device file"
    if top == "audit":
        return "audit day file"
    if top in ("audit-heads", "rollouts", "receipts"):
        return f"{top} file"
    return path


def _git(git_dir: Path, *argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(git_dir), *argv], input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout


def _refs(git_dir: Path) -> dict[str, str]:
    lines = _git(git_dir, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def weigh(git_dir: Path, tips: list[str], known: list[str]) -> dict[str, list[int]]:
    """Objects reachable from ``tips`` and not from ``known``: class -> [count, raw bytes, disk bytes]."""
    if not tips:
        return {}
    listed = _git(
        git_dir, "rev-list", "--objects", "--stdin", stdin="\n".join(tips + [f"^{k}" for k in known]) + "\n"
    )
    paths = dict(line.partition(" ")[::2] for line in listed.splitlines())
    batch = "%(objectname) %(objecttype) %(objectsize) %(objectsize:disk)"
    sizes = _git(git_dir, "cat-file", f"--batch-check={batch}", stdin="\n".join(paths) + "\n")
    classes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in sizes.splitlines():
        oid, kind, raw, disk = line.split()
        counts = classes[classify(kind, paths[oid])]
        counts[0] += 1
        counts[1] += int(raw)
        counts[2] += int(disk)
    return dict(classes)


def _group(ref: str) -> str:
    return STATE if ref == STATE_BRANCH else REPORTS if ref.startswith(STATUS_PREFIX) else OTHER


def run(robots: int, reconciles: int, reporting: float, period: int, aggressive: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="history-") as root:
        world = build_world(Path(root), robots)
        world.settings = replace(world.settings, source=replace(world.settings.source, housekeeping=None))
        reconcile_once(world.settings)
        mirror = world.settings.source.mirror
        share = max(1, int(len(world.active) * reporting))
        before, loads = _refs(mirror), []
        for n in range(period + reconciles):
            if period and n == period:
                before = _refs(mirror)  # the first P reconciles brought the robots online
            first = (n % period if period else n) * share
            chosen = [world.active[(first + i) % len(world.active)] for i in range(share)]
            world.clock.tick(60)
            push_reports(world.server, _reports(world, chosen, n + 1), world.clock.now, author=ROBOT)
            world.clock.tick(1)
            reconcile_once(world.settings)
            loads.append(round(os.getloadavg()[0], 1))
        after = _refs(mirror)
        started = time.perf_counter()
        window = ["--window=250", "--depth=50"] if aggressive else []
        _git(mirror, "repack", "-adfk", "-q", *window)
        repack_s = round(time.perf_counter() - started, 1)
        moved: dict[str, list[str]] = defaultdict(list)
        for ref, oid in after.items():
            if before.get(ref) != oid:
                moved[_group(ref)].append(oid)
        known = sorted(set(before.values()))
        classes = {}
        for group in (STATE, REPORTS, OTHER):  # what the state branch holds is not counted again
            classes[group] = weigh(mirror, moved[group], known)
            known += moved[group]
    return {
        "robots": robots,
        "reconciles": reconciles,
        "reports_per_reconcile": share,
        "heartbeat_period": period,
        "repack": " ".join(["repack", "-adfk", *window]),
        "repack_s": repack_s,
        "load_1m": [min(loads), max(loads)],
        "moved_refs": {group: len(oids) for group, oids in moved.items()},
        "classes": classes,
        "disk_bytes": sum(c[2] for group in classes.values() for c in group.values()),
    }


def report(summary: dict[str, Any]) -> list[str]:
    """One row per class: objects and bytes on disk a reconcile and a report, largest first."""
    n, k = summary["reconciles"], summary["reports_per_reconcile"]
    total = summary["disk_bytes"]
    kind = f"each robot again every {summary['heartbeat_period']}" if summary["heartbeat_period"] else "first"
    rows = sorted(
        (
            (c[2], group, name, c)
            for group, classes in summary["classes"].items()
            for name, c in classes.items()
        ),
        reverse=True,
    )
    lines = [
        f"{summary['robots']} robots, {n} reconciles of {k} reports ({kind}); {summary['repack']} "
        f"{summary['repack_s']} s; load {summary['load_1m'][0]}-{summary['load_1m'][1]}; "
        f"{total / n / 1024:.1f} KiB a reconcile, {total / n / k:.0f} B a report",
        "",
    ]
    return lines + table(
        ["refs", "class", "objects", "raw B each", "disk B each", "KiB a reconcile", "B a report", "%"],
        [
            [
                group,
                name,
                c[0],
                round(c[1] / c[0]),
                round(c[2] / c[0]),
                round(disk / n / 1024, 2),
                round(disk / n / k),
                round(100 * disk / total, 1),
            ]
            for disk, group, name, c in rows
        ],
    )


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--robots", type=int, default=10_000)
    parser.add_argument("--reconciles", type=int, default=30)
    parser.add_argument(
        "--reporting", type=float, default=0.01, help="share of robots reporting per reconcile"
    )
    parser.add_argument(
        "--heartbeat-period",
        type=int,
        default=0,
        help="the same robots report again every P reconciles (0: once)",
    )
    parser.add_argument("--aggressive", action="store_true", help="repack with --window=250 --depth=50")
    args = parser.parse_args()
    if not (
        1 <= args.robots <= 200_000
        and 1 <= args.reconciles <= 10_000
        and 0 < args.reporting <= 1
        and 0 <= args.heartbeat_period <= 1_000
    ):
        parser.error(
            "--robots 1..200000, --reconciles 1..10000, --reporting in (0, 1], --heartbeat-period 0..1000"
        )
    summary = run(args.robots, args.reconciles, args.reporting, args.heartbeat_period, args.aggressive)
    lines = report(summary)
    write_results(NAME, summary, lines, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
