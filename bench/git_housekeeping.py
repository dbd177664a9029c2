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
the policy's thresholds, and the reconcile that repacked says how long it took (the mirror's and
the local server's, which the controller pushes into by hand). With ``--background`` the after
reconciles run as the controller does (:attr:`~fleetcd.git.housekeeping.Policy.background`): each
says whether a repack was running beside it. Every reconcile records the peak RSS of the git
processes this one started meanwhile (sampled from ``/proc``), the server's ``packed-refs``
(rewritten or not) and how long each ``git gc`` ran. ``--no-strategies`` skips the copies (at
100,000 robots, two more repacks of a copy of the mirror).

    python -m bench.git_housekeeping --robots 10000 --reconciles 60 --out /tmp/housekeep-bench
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pygit2

from bench.common import base_parser, own_peak_rss_bytes, table, write_results
from bench.controller_world import BenchWorld, build_world
from controller.reconcile.steps import reconcile_once
from fleetcd.compat import UTC
from fleetcd.git.housekeeping import PACK_LIMIT, Policy, count, running, settle
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


NAME = "git_housekeeping"
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


class GitWatch:
    """Samples ``/proc`` every ``interval`` s for the git processes descended from this one: the
    peak RSS (``VmHWM``) of each, and when each ``git gc`` started and ended (wall seconds)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_kib: dict[int, tuple[int, str]] = {}  # pid -> (VmHWM, what) since the last take
        self.gcs: dict[int, dict[str, Any]] = {}  # pid -> {"git_dir", "started", "ended"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GitWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_bytes()
                except OSError:
                    continue
                parents[int(entry)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
        mine = {os.getpid()}
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in mine} - mine
            grew = bool(more)
            mine |= more
        now = time.monotonic()
        alive = set()
        for pid in mine - {os.getpid()}:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if not argv or not os.path.basename(argv[0]).startswith(b"git"):
                continue
            words = [a.decode("utf-8", "replace") for a in argv if a]
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            what = " ".join(w for w in words[1:] if w[0] not in "/-" and "=" not in w)[:60]
            if hwm > self.peak_kib.get(pid, (0, ""))[0]:
                self.peak_kib[pid] = (hwm, what)
            # only a gc this process started (a forked child is a copy of it until it execs)
            if parents.get(pid) == os.getpid() and "gc" in words and "--auto" in words:
                alive.add(pid)
                git_dir = words[words.index("--git-dir") + 1] if "--git-dir" in words else "?"
                self.gcs.setdefault(pid, {"git_dir": git_dir, "started": now, "ended": None})
        for pid, gc in self.gcs.items():
            if gc["ended"] is None and pid not in alive:
                gc["ended"] = now

    def take(self) -> dict[str, Any]:
        """The largest git process since the last take (MiB, what it ran), and gc runs that ended."""
        self.sample()
        peak = max(self.peak_kib.values(), default=(0, ""))
        self.peak_kib.clear()
        ended = {pid: gc for pid, gc in self.gcs.items() if gc["ended"] is not None}
        for pid in ended:
            del self.gcs[pid]
        return {
            "git_peak_rss_mib": round(peak[0] / 1024, 1),
            "git_peak_what": peak[1],
            "gc_ended": [
                {"where": Path(gc["git_dir"]).name, "seconds": round(gc["ended"] - gc["started"], 1)}
                for gc in ended.values()
            ],
        }


def _packed_refs(git_dir: Path) -> list[int] | None:
    """(inode, size, mtime ns) of ``packed-refs``, None without one: whether something rewrote it."""
    try:
        st = (git_dir / "packed-refs").stat()
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _round(world: BenchWorld, robots: list[str], seq: int, watch: GitWatch) -> dict[str, Any]:
    world.clock.tick(60)
    push_reports(world.server, _reports(world, robots, seq), world.clock.now, author=ROBOT)
    world.clock.tick(1)
    mirror = world.settings.source.mirror
    beside = {"mirror": running(mirror), "server": running(world.server)}
    packed_before = _packed_refs(world.server)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    cpu = time.process_time()
    result = reconcile_once(world.settings)
    seconds = time.perf_counter() - start
    counts = count(mirror)
    server = count(world.server)
    return {
        "seq": seq,
        "seconds": round(seconds, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "packs": counts.packs,
        "loose": counts.loose,
        "server_packs": server.packs,
        "repacks": [f"{r.repository}: {r.message}" for r in result.repacks],
        "repack_beside": [
            n for n, on in beside.items() if on or running(mirror if n == "mirror" else world.server)
        ],
        "server_packed_refs_rewritten": (packed := _packed_refs(world.server)) != packed_before,
        "server_packed_refs_mib": round(packed[1] / 2**20, 1) if packed else 0.0,
        "load_1m": round(max(load, os.getloadavg()[0]), 1),
        **watch.take(),
    }


def run(
    robots: int,
    reconciles: int,
    reporting: float,
    *,
    strategies: bool = True,
    background: bool = False,
    pack_limit: int = PACK_LIMIT,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="housekeep-world-") as root, GitWatch() as watch:
        started = time.perf_counter()
        world = build_world(Path(root), robots)
        off = replace(world.settings.source, housekeeping=None)
        world.settings = replace(world.settings, source=off)
        reconcile_once(world.settings)  # the bootstrap: every robot's desired state
        setup_s = round(time.perf_counter() - started, 1)
        print(json.dumps({"setup_s": setup_s}), flush=True)
        watch.take()
        mirror = world.settings.source.mirror
        share = max(1, int(len(world.active) * reporting))
        before = []
        for n in range(reconciles):
            chosen = [world.active[(n * share + i) % len(world.active)] for i in range(share)]
            before.append(_round(world, chosen, n + 1, watch))
            print(json.dumps(before[-1]), flush=True)
        sizes = {
            "mirror_mib": _du_mib(mirror / "objects"),
            "server_mib": _du_mib(world.server / "objects"),
            "server_packs": count(world.server).packs,
        }
        print(json.dumps(sizes), flush=True)
        compared = [
            {
                "strategy": "none",
                "packs_after": count(mirror).packs,
                "mib_after": sizes["mirror_mib"],
                "lookup_all_s": _lookups(mirror),
            }
        ]
        if strategies:
            compared += [
                _strategy(mirror, "gc --auto (all-into-one + cruft)", GC_AUTO),
                _strategy(mirror, "repack --geometric=2 --write-midx", GEOMETRIC),
            ]
        for line in compared:
            print(json.dumps(line), flush=True)
        # timed: waited for, unless --background (as the controller runs it)
        policy = Policy(pack_limit=pack_limit, background=background)
        world.settings = replace(world.settings, source=replace(off, housekeeping=policy))
        after = []
        for n in range(reconciles):
            chosen = [world.active[(n * share + i) % len(world.active)] for i in range(share)]
            after.append(_round(world, chosen, reconciles + n + 1, watch))
            print(json.dumps(after[-1]), flush=True)
        settled = [str(done) for where in (mirror, world.server) if (done := settle(where, 3600.0))]
        sizes_after = {
            "mirror_mib": _du_mib(mirror / "objects"),
            "server_mib": _du_mib(world.server / "objects"),
            "settled": settled,
            **watch.take(),
        }
        print(json.dumps(sizes_after), flush=True)
    summary = {
        "robots": robots,
        "reconciles": reconciles,
        "reporting_per_reconcile": share,
        "background": background,
        "pack_limit": pack_limit,
        "setup_s": setup_s,
        "peak_rss_mib": round(own_peak_rss_bytes() / 2**20),
        "before": before,
        "sizes_before": sizes,
        "strategies": compared,
        "after": after,
        "sizes_after": sizes_after,
    }
    return summary


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def report(summary: dict[str, Any]) -> list[str]:
    """The text block of one run: packs over the reconciles, each repack, reconciles beside one."""
    before, after = summary["before"], summary["after"]
    loads = [r["load_1m"] for r in before + after if "load_1m" in r]
    lines = [
        f"{summary['robots']} robots, {summary['reconciles']} + {summary['reconciles']} reconciles, "
        f"{summary['reporting_per_reconcile']} reports before each; setup {summary['setup_s']} s; "
        f"housekeeping {'in the background' if summary['background'] else 'waited for'} "
        f"past {summary['pack_limit']} packs; load {min(loads, default=0)}-{max(loads, default=0)}; "
        f"peak RSS {summary['peak_rss_mib']} MiB",
        "",
    ]
    marks = sorted({0, *range(9, len(before), 10), len(before) - 1})
    lines += table(
        ["packs after reconcile", *(str(before[i]["seq"]) for i in marks)],
        [
            ["mirror, no housekeeping", *(before[i]["packs"] for i in marks)],
            ["server, no housekeeping", *(before[i]["server_packs"] for i in marks)],
            ["mirror, housekeeping on", *(after[i]["packs"] for i in marks if i < len(after))],
            ["server, housekeeping on", *(after[i]["server_packs"] for i in marks if i < len(after))],
        ],
    )
    sizes, sizes_after = summary["sizes_before"], summary["sizes_after"]
    lines += [
        "",
        f"objects MiB: mirror {sizes['mirror_mib']} -> {sizes_after['mirror_mib']}, "
        f"server {sizes['server_mib']} -> {sizes_after['server_mib']}",
        "",
    ]
    gcs = [(r["seq"], gc) for r in after for gc in r["gc_ended"]] + [
        ("end", gc) for gc in sizes_after["gc_ended"]
    ]
    lines += table(
        ["ended by reconcile", "git gc in", "seconds"], [[seq, gc["where"], gc["seconds"]] for seq, gc in gcs]
    )
    lines += [""] + [f"reconcile {r['seq']}: {text}" for r in after for text in r["repacks"]]
    beside = [r["seconds"] for r in after if r["repack_beside"]]
    alone = [r["seconds"] for r in after if not r["repack_beside"] and not r["repacks"]]
    rss = max((r["git_peak_rss_mib"] for r in after), default=0.0)
    lines += [
        "",
        f"reconcile seconds, median (max): no housekeeping {_median([r['seconds'] for r in before])} "
        f"({max(r['seconds'] for r in before)}); beside a repack {_median(beside)} "
        f"({max(beside, default=None)}, {len(beside)} reconciles); "
        f"neither {_median(alone)} ({max(alone, default=None)}); largest git process {rss} MiB",
    ]
    return lines


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--robots", type=int, default=10_000)
    parser.add_argument("--reconciles", type=int, default=60)
    parser.add_argument(
        "--reporting", type=float, default=0.01, help="share of robots reporting per reconcile"
    )
    parser.add_argument(
        "--no-strategies", action="store_true", help="skip the two repacks of a copy of the mirror"
    )
    parser.add_argument(
        "--background", action="store_true", help="the after reconciles do not wait for a repack"
    )
    parser.add_argument(
        "--pack-limit", type=int, default=PACK_LIMIT, help="housekeeping's pack threshold (git's: 50)"
    )
    args = parser.parse_args()
    if not (
        1 <= args.robots <= 200_000
        and 1 <= args.reconciles <= 10_000
        and 0 < args.reporting <= 1
        and 1 <= args.pack_limit <= 100_000
    ):
        parser.error(
            "--robots 1..200000, --reconciles 1..10000, --reporting in (0, 1], --pack-limit 1..100000"
        )
    summary = run(
        args.robots,
        args.reconciles,
        args.reporting,
        strategies=not args.no_strategies,
        background=args.background,
        pack_limit=args.pack_limit,
    )
    lines = report(summary)
    write_results(NAME, summary, lines, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
