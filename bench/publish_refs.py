"""Benchmark: the controller's publish step alone, into a local server holding 2N refs.

Issue 12: the ``write.publish`` column of ``bench/results/controller_reconcile.txt`` at 100,000
robots (1.3 s in a wave of 1,000, 2.4 s in an ingest that moves only the state branch). This
times :func:`controller.reconcile.source.publish` with nothing else around it, per size N:

* the world: a mirror and a bare server holding the same 2N + 2 refs as one sorted
  ``packed-refs`` (per robot a namespaced desired-state ref and a status ref, main and the state
  branch), every ref at one of a few commits: refs, not objects, are what this measures;
* ``wave``: 1,000 robots' desired refs and the state branch moved in the mirror (as the controller's
  write step leaves them), then published;
* ``ingest``: 1,000 robots' status pushes left as loose files on the server (what receive-pack
  writes), a new state commit in the mirror, then published (the state branch alone);
* ``pack_refs``: ``git pack-refs --all`` on a server holding those 1,000 loose refs, alone;
* ``real_push`` / ``by_hand``: the state branch alone pushed through ``git push`` and by hand
  (:func:`fleetcd.git.localpush.push_by_hand`), the server fully packed, to choose where the
  state push goes by hand.

``python -m bench.publish_refs --sizes 1000 10000 100000 --runs 3``; medians of the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pygit2

from controller.reconcile.source import Source, publish
from fleetcd.git import refs
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.packedrefs import HEADER, update_packed
from fleetcd.git.refs import MAIN_BRANCH, STATE_BRANCH, desired_ref
from fleetcd.git.remote import push

WAVE = 1000
SIGNATURE = pygit2.Signature("bench", "bench@fleet.test", 1700000000, 0)


def _commit(repo: pygit2.Repository, text: str, parents: list[pygit2.Oid] | None = None) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    builder.insert("f", repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    return repo.create_commit(None, SIGNATURE, SIGNATURE, text, builder.write(), parents or [])


def namespaced(n: int) -> str:
    device = f"amr-{n:06d}"
    return f"refs/namespaces/{device}/{desired_ref(device)}"


def status_ref(n: int) -> str:
    return refs.status_ref(f"amr-{n:06d}")


class World:
    def __init__(self, root: Path, robots: int) -> None:
        self.root = root
        self.mirror_dir = root / "mirror.git"
        self.server = root / "server.git"
        self.repo = pygit2.init_repository(str(self.mirror_dir), bare=True)
        self.robots = robots
        bundle, report = _commit(self.repo, "bundle"), _commit(self.repo, "report")
        self.report = _commit(self.repo, "report 2")
        self.state = _commit(self.repo, "state 0")
        lines = {namespaced(n): bundle for n in range(robots)}
        lines |= {status_ref(n): report for n in range(robots)}
        lines |= {MAIN_BRANCH: bundle, STATE_BRANCH: self.state}
        packed = HEADER + b"".join(f"{oid} {ref}\n".encode() for ref, oid in sorted(lines.items()))
        (self.mirror_dir / "packed-refs").write_bytes(packed)
        subprocess.run(["git", "init", "-q", "--bare", str(self.server)], check=True)
        shutil.rmtree(self.server / "objects")
        shutil.copytree(self.mirror_dir / "objects", self.server / "objects")
        (self.server / "packed-refs").write_bytes(packed)
        self.source = Source(str(self.server), root / "cache")
        self.version = 0

    def next_state(self) -> pygit2.Oid:
        """A new state commit on the mirror's state branch; returns the base it replaced."""
        base = self.state
        self.version += 1
        self.state = _commit(self.repo, f"state {self.version}", [base])
        update_packed(self.repo, {STATE_BRANCH: (base, self.state)})
        return base

    def wave(self) -> dict[str, pygit2.Oid]:
        self.version += 1
        robots = range(min(WAVE, self.robots))
        moved = {namespaced(n): _commit(self.repo, f"bundle {n} {self.version}") for n in robots}
        current = {ref: self.repo.references[ref].target for ref in moved}
        update_packed(self.repo, {ref: (current[ref], oid) for ref, oid in moved.items()})
        return moved

    def status_pushes(self) -> None:
        """What 1,000 robots' status pushes leave on the server: loose ref files."""
        for n in range(min(WAVE, self.robots)):
            path = self.server / status_ref(n)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{self.report}\n")


class Timings:
    def __init__(self) -> None:
        self.found: dict[str, list[float]] = {}

    def time(self, name: str, action: Callable[[], object]) -> None:
        start = time.perf_counter()
        action()
        self.found.setdefault(name, []).append(time.perf_counter() - start)


def one_run(world: World, timings: Timings) -> None:
    base = world.next_state()
    desired = world.wave()
    timings.time("wave", partial(publish, world.repo, world.source, state_base=base, desired=desired))
    world.status_pushes()
    base = world.next_state()
    timings.time("ingest", partial(publish, world.repo, world.source, state_base=base, desired={}))
    world.status_pushes()
    pack = ["git", "-C", str(world.server), "pack-refs", "--all"]
    timings.time("pack_refs", partial(subprocess.run, pack, check=True))
    base = world.next_state()
    spec = [f"{STATE_BRANCH}:{STATE_BRANCH}"]
    real = partial(push, world.repo, str(world.server), spec, leases={STATE_BRANCH: str(base)}, atomic=True)
    timings.time("real_push", real)
    base = world.next_state()
    state = {STATE_BRANCH: world.state}
    timings.time(
        "by_hand",
        partial(push_by_hand, world.repo, world.server, state, leases={STATE_BRANCH: base}, timeout_s=60),
    )


def run(robots: int, runs: int) -> dict[str, float]:
    timings = Timings()
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="publish-refs-") as tmp:
            one_run(World(Path(tmp), robots), timings)
    return {name: round(statistics.median(times), 3) for name, times in timings.found.items()}


COLUMNS = ("wave", "ingest", "pack_refs", "real_push", "by_hand")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}; seconds, median of {args.runs} runs")
    print(
        f"{'robots':>8} {'refs':>8} "
        + " ".join(f"{c:>10}" for c in ("wave", "ingest", "pack_refs", "real_push", "by_hand"))
    )
    for robots in args.sizes:
        result = run(robots, args.runs)
        print(f"{robots:>8} {2 * robots + 2:>8} " + " ".join(f"{result[c]:>10}" for c in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
