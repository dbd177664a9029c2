"""A writer killed at seeded random instants never leaves the mirror unreadable or holding a third value.

The controller's mirror is written by one process under its lock; ``kill -9``, an OOM kill or a
power cut can stop it anywhere inside :func:`fleetcd.git.objects.update_refs` (libgit2's
transaction of loose refs, or one rewrite of ``packed-refs``), leaving lock files and half a fan-out.
The mirror is a cache, so a torn fan-out is allowed (the next fetch refreshes it, see
:mod:`fleetcd.git.packedrefs`), but what is there must stay a repository:

* after the next :func:`~fleetcd.git.mirror.open_locked_mirror` (which heals what a killed holder
  left) no lock file remains and ``git fsck`` finds nothing wrong;
* every ref holds one of the two values the writer moved it between, never a third one or garbage,
  and git, :func:`~fleetcd.git.packedrefs.read_refs` and
  :class:`~fleetcd.git.packedrefs.RefStorage` list the same values;
* the next update of every ref, compare-and-swapped from what is there, goes through.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git import objects
from fleetcd.git.gitcli import git_binary
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import (
    PACKED_REFS_FROM,
    Identity,
    commit,
    delete_refs,
    ref_target,
    update_refs,
    write_tree,
)
from fleetcd.git.packedrefs import read_ref_storage, read_refs
from tests.gitrepos import git

ROOT = str(Path(__file__).resolve().parents[1])
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
WHEN = datetime(2026, 5, 1, tzinfo=UTC)
PREFIX = "refs/namespaces/"
KILLS = 8

WRITER = """
import sys
from pathlib import Path
import pygit2
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import ref_target, update_refs
first, second = pygit2.Oid(hex=sys.argv[2]), pygit2.Oid(hex=sys.argv[3])
wide = int(sys.argv[4])
mirror = open_locked_mirror(Path(sys.argv[1]), wait_seconds=30)
refs = [f"refs/namespaces/amr-{n:04d}/refs/fleetcd/desired/amr-{n:04d}" for n in range(wide)]
print("ready", flush=True)
turn = 0
while True:
    turn += 1
    count = wide if turn % 2 else 5  # a packed-refs rewrite, then a libgit2 transaction of loose refs
    moving = refs[:count]
    now = {ref: ref_target(mirror, ref) for ref in moving}
    update_refs(mirror, {ref: (old, second if old == first else first) for ref, old in now.items()})
"""


def two_commits(path: Path) -> tuple[str, str]:
    with open_locked_mirror(path, wait_seconds=30) as mirror:
        tree = write_tree(mirror, {"bundle.json": b"{}"})
        first = commit(mirror, None, tree, "first", [], AUTHOR, WHEN)
        second = commit(mirror, None, tree, "second", [first], AUTHOR, WHEN)
        return str(first), str(second)


def listed(path: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", PREFIX, cwd=path)
    return {ref: oid for oid, ref in (line.split(" ", 1) for line in out.splitlines())}


@pytest.mark.parametrize("seed", [21])
def test_a_writer_killed_anywhere_leaves_a_repository_every_reader_agrees_on(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "mirror.git"
    first, second = two_commits(path)
    wide = PACKED_REFS_FROM + 36
    env = {**os.environ, "PYTHONPATH": ROOT}
    for kill in range(KILLS):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), first, second, str(wide)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read() if writer.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL, writer.stderr.read() if writer.stderr else ""
        where = f"kill {kill}"

        with open_locked_mirror(path, wait_seconds=30) as mirror:  # heals what the killed holder left
            assert not list(path.rglob("*.lock")), where
            assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == "", where
            seen = listed(path)
            assert set(seen.values()) <= {first, second}, f"{where}: a third value"
            assert read_refs(path, (PREFIX,)) == seen, where
            storage = read_ref_storage(path)
            assert storage is not None and storage.refs((PREFIX,)) == seen, where
            flip = {ref: pygit2.Oid(hex=second if oid == first else first) for ref, oid in seen.items()}
            update_refs(mirror, {ref: (ref_target(mirror, ref), new) for ref, new in flip.items()})
            assert listed(path) == {ref: str(oid) for ref, oid in flip.items()}, where


STUCK_GIT = """#!/bin/bash
# git, but update-ref --stdin gets its input only up to "prepare" and then nothing more: it holds
# every lock it took, waiting, until the caller's timeout SIGKILLs it.
for arg in "$@"; do
  if [ "$arg" = update-ref ]; then exec "REAL" "$@" < <(sed '/^prepare$/q'; exec sleep 5 2>/dev/null); fi
done
exec "REAL" "$@"
"""


def test_attack_git_killed_at_the_timeout_of_a_ref_deletion_leaves_no_lock_that_blocks_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror's refs a server deleted go in one ``git update-ref --stdin``, SIGKILLed at its
    timeout (a stalled disk) with ``packed-refs.lock`` and the refs' locks held. The reconcile then
    released the mirror cleanly, so its next holder did not look for locks: every later update of
    those refs, and every rewrite of ``packed-refs``, failed as "locked by another writer" for good."""
    path = tmp_path / "mirror.git"
    first, _second = two_commits(path)
    gone = {
        f"refs/namespaces/amr-{n:04d}/refs/fleetcd/desired/amr-{n:04d}": pygit2.Oid(hex=first)
        for n in range(3)
    }
    with open_locked_mirror(path, wait_seconds=30) as mirror:
        update_refs(mirror, {ref: (None, oid) for ref, oid in gone.items()})
    git("pack-refs", "--all", cwd=path)  # a deletion of a packed ref takes packed-refs.lock too
    stuck = tmp_path / "bin" / "git"
    stuck.parent.mkdir()
    stuck.write_text(STUCK_GIT.replace("REAL", git_binary()))
    stuck.chmod(0o755)
    with monkeypatch.context() as patched:
        patched.setenv("PATH", f"{stuck.parent}:{os.environ['PATH']}")
        patched.setattr(objects, "UPDATE_REFS_TIMEOUT_S", 2.0)
        with open_locked_mirror(path, wait_seconds=30) as mirror:
            with pytest.raises(TransportError, match="took over"):
                delete_refs(mirror, gone, message="gone from the server")
            assert not list(path.rglob("*.lock"))
            assert not (path / "packed-refs.new").exists()  # git's new packed-refs, also exclusive
    assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == ""
    with open_locked_mirror(path, wait_seconds=30) as mirror:  # released cleanly: not searched
        delete_refs(mirror, gone, message="gone from the server")
        moved = {f"refs/namespaces/amr-{n:04d}/refs/fleetcd/desired/amr-{n:04d}": n for n in range(70)}
        update_refs(mirror, {ref: (None, pygit2.Oid(hex=first)) for ref in moved})  # packed-refs rewritten
    assert len(listed(path)) == 70
