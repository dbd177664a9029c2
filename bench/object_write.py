"""Micro-benchmark: writing a fan-out's objects (5 files, a tree and a commit per robot) into a bare
repository through :func:`fleetcd.git.objects.object_batch`, against ``git fast-import`` writing
the same objects (the same commit ids, checked) into another.

The files look like the controller's (``controller.delivery.write``): a per-robot ``bundle.json``
and ``proof.json``, and ``root.json``, ``root.json.asc`` and ``trust.json`` shared by every robot.
Times are CPU seconds (this process for fleetcd; the ``git`` child for fast-import, whose input
stream is built before the clock starts) and wall seconds; the machine is shared, so CPU is the
number to compare.

    python -m bench.object_write [--robots 10000 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pygit2

from fleetcd.git.objects import Identity, commit, object_batch, write_tree

WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
AUTHOR = Identity("fleetcd controller", "controller@fleetcd.invalid")
SHARED = {
    "root.json": json.dumps({"merkle_root": "ab" * 32, "serial": 7, "signed": ["x" * 64] * 12}).encode(),
    "root.json.asc": b"-----BEGIN PGP SIGNATURE-----\n" + b"A" * 600 + b"\n-----END PGP SIGNATURE-----\n",
    "trust.json": json.dumps({"keys": [{"fingerprint": "F" * 40, "armored": "K" * 2400}]}).encode(),
}


def robot_files(n: int) -> dict[str, bytes]:
    digest = hashlib.sha256(b"%d" % n).hexdigest()
    bundle = {
        "device": f"robot-{n:06d}",
        "serial": 7,
        "deployments": [
            {"app": app, "version": f"1.{n % 7}.{i}", "image": f"registry/{app}@sha256:{digest}"}
            for i, app in enumerate(("navigator", "telemetry", "lidar"))
        ],
    }
    proof = {"leaf": digest, "path": [hashlib.sha256(b"%d-%d" % (n, i)).hexdigest() for i in range(17)]}
    return {"bundle.json": json.dumps(bundle).encode(), "proof.json": json.dumps(proof).encode(), **SHARED}


def message(n: int) -> str:
    return f"fleetcd: desired state of robot-{n:06d}, serial 7\n"


def fleetcd_write(path: Path, robots: int) -> tuple[float, float, list[str]]:
    repo = pygit2.init_repository(str(path), bare=True)
    files = [robot_files(n) for n in range(robots)]
    cpu, wall = time.process_time(), time.perf_counter()
    with object_batch(repo) as staged:
        ids = [
            str(commit(staged, None, write_tree(staged, files[n]), message(n), [], AUTHOR, WHEN))
            for n in range(robots)
        ]
    return time.process_time() - cpu, time.perf_counter() - wall, ids


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def fast_import_write(path: Path, robots: int) -> tuple[float, float, list[str]]:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    who = f"{AUTHOR.name} <{AUTHOR.email}> {int(WHEN.timestamp())} +0000".encode()
    chunks = [b"blob\nmark :%d\n%s" % (i + 1, _data(data)) for i, data in enumerate(SHARED.values())]
    shared = {name: i + 1 for i, name in enumerate(SHARED)}
    for n in range(robots):
        files = robot_files(n)
        entries = b"".join(
            b"M 100644 :%d %s\n" % (shared[name], name.encode())
            if name in shared
            else b"M 100644 inline %s\n%s" % (name.encode(), _data(files[name]))
            for name in sorted(files)
        )
        chunks.append(b"reset refs/heads/scratch\ncommit refs/heads/scratch\nmark :%d\n" % (1_000_000 + n))
        chunks.append(b"author %s\ncommitter %s\n%s%s\n" % (who, who, _data(message(n).encode()), entries))
    stream = b"".join(chunks)
    marks = path / "marks"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    argv = ["git", "-C", str(path), "fast-import", "--quiet", f"--export-marks={marks}"]
    subprocess.run(argv, input=stream, check=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    found = dict(line.split() for line in marks.read_text().splitlines())
    return cpu, wall, [found[f":{1_000_000 + n}"] for n in range(robots)]


def pack_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "objects" / "pack").glob("*.pack"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", type=int, nargs="+", default=[10_000])
    args = parser.parse_args()
    print("robots  fleetcd cpu s  wall s  pack MiB  fast-import cpu s  wall s  pack MiB  cpu ratio")
    for robots in args.robots:
        with tempfile.TemporaryDirectory(prefix="object-write-") as tmp:
            ours_cpu, ours_wall, ours = fleetcd_write(Path(tmp) / "fleetcd.git", robots)
            git_cpu, git_wall, theirs = fast_import_write(Path(tmp) / "git.git", robots)
            if ours != theirs:
                raise RuntimeError("fleetcd and git fast-import wrote different commits")
            sizes = [pack_bytes(Path(tmp) / name) / 2**20 for name in ("fleetcd.git", "git.git")]
            print(
                f"{robots:<7} {ours_cpu:<14.2f} {ours_wall:<7.2f} {sizes[0]:<9.1f} "
                f"{git_cpu:<18.2f} {git_wall:<7.2f} {sizes[1]:<9.1f} {ours_cpu / git_cpu:.2f}x"
            )


if __name__ == "__main__":
    main()
