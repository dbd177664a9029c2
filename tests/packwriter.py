"""A batch of robots' desired-state objects written by fleetcd.git.objects, in this process or in a
child that tests/test_git_packfile.py SIGKILLs at a chosen instant (kept apart from the test module
so the child starts in a fraction of a second: it imports fleetcd.git alone)."""

from __future__ import annotations

import hashlib
import os
import signal
from datetime import datetime, timezone
from pathlib import Path

import pygit2

from fleetcd.git import objects, packfile
from fleetcd.git.objects import Identity, commit, object_batch, update_refs, write_tree

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")


RELEASE = b"".join(hashlib.sha256(b"release %d" % n).hexdigest().encode() for n in range(10))


def robot_files(n: int) -> dict[str, bytes]:
    return {
        # Like a real bundle: mostly the release every robot shares, a few bytes of its own.
        "bundle.json": b'{"device": "robot-%d", "release": "%s", "version": "1.%d.0"}\n'
        % (n, RELEASE, n % 5),
        "proof.json": hashlib.sha256(b"%d" % n).hexdigest().encode(),
        "root.json": b'{"serial": 3}\n',
        "root.json.asc": b"signature\n",
        "trust.json": b"{}\n" * 100,
    }


def write_robots(repo: pygit2.Repository, robots: range) -> dict[str, pygit2.Oid]:
    """One batch: each robot's files, tree and parentless commit; its ref, after the batch."""
    written = {}
    with object_batch(repo) as staged:
        for n in robots:
            tree = write_tree(staged, robot_files(n))
            ref = f"refs/fleetcd/desired/robot-{n}"
            written[ref] = commit(staged, None, tree, f"robot {n}", [], AUTHOR, WHEN)
    update_refs(repo, {ref: (objects.ref_target(repo, ref), oid) for ref, oid in written.items()})
    return written


def writer_main(argv: list[str]) -> None:
    """Subprocess entry: one batch of ``robots`` robots into ``repo``, then its refs. ``instant``:
    ``run`` (no kill), ``fsync`` (SIGKILL at the pack's fsync), ``rename`` (between the pack's
    rename and its index's); with ``run`` the parent may kill it at a random instant."""
    path, robots, instant = argv
    if instant in ("fsync", "rename"):
        calls = {"n": 0}
        real_fsync, real_replace = os.fsync, Path.replace

        def fsync(fd: int) -> None:  # the pack is written, not yet synced or renamed
            os.kill(os.getpid(), signal.SIGKILL)
            real_fsync(fd)

        def replace(self: Path, target: Path) -> Path:  # the pack is renamed, its index not yet
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(self, target)

        if instant == "fsync":
            setattr(packfile.os, "fsync", fsync)  # noqa: B010 - this process only
        else:
            setattr(Path, "replace", replace)  # noqa: B010
    write_robots(pygit2.Repository(path), range(int(robots)))
    print("done", flush=True)
