"""Loose-object writes beside a background ``git gc`` (fleetcd.git.objects.beside_prune).

libgit2 writes a loose object to a temporary file, makes its ``objects/xx/`` directory, then
renames the file into it; ``git prune-packed`` and ``git prune``, which a background ``git gc``
runs (fleetcd.git.housekeeping), remove every empty ``objects/xx/`` meanwhile. Found by the
housekeeping benchmark: a reconcile beside the mirror's background repack failed with "failed to
rename lockfile to '.../objects/ef/...': No such file or directory". Before the fix a loop of
``git prune-packed`` beside 21,000 blob writes failed 2 of them in 10 s on this machine.
"""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git.objects import PRUNE_RACE_TRIES, beside_prune, commit, land_objects, write_blob, write_tree

WHEN = datetime(2026, 5, 1, tzinfo=UTC)
RACE = "failed to rename lockfile to '/x/objects/ef/5e83': No such file or directory"


def pruning(git_dir: Path, stop: threading.Event, runs: list[int]) -> None:
    while not stop.is_set():
        subprocess.run(["git", "--git-dir", str(git_dir), "prune-packed"], check=True)
        runs[0] += 1


@pytest.mark.slow
def test_loose_writes_beside_a_looping_git_prune_packed_all_land(tmp_path: Path) -> None:
    git_dir = tmp_path / "r.git"
    repo = pygit2.init_repository(str(git_dir), bare=True)
    stop, runs = threading.Event(), [0]
    pruner = threading.Thread(target=pruning, args=(git_dir, stop, runs))
    pruner.start()
    written: list[pygit2.Oid] = []
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 6
        n = 0
        while time.monotonic() < deadline and n < 40_000:
            n += 1
            try:
                if n % 4 == 0:  # a batch below PACK_FROM_OBJECTS: loose objects
                    blobs = [f"landed {n} {i}".encode() for i in range(3)]
                    objects = {pygit2.hash(b): (pygit2.enums.ObjectType.BLOB.value, b) for b in blobs}
                    land_objects(repo, objects)
                    written += objects
                elif n % 4 == 1:
                    written.append(write_blob(repo, f"blob {n}".encode()))
                elif n % 4 == 2:
                    written.append(write_tree(repo, {f"d{n}/a.yaml": f"a {n}".encode(), "b": b"b"}))
                else:
                    written.append(commit(repo, None, written[-1], f"c {n}", [], ("t", "t@t"), WHEN))
            except Exception as exc:  # every write must land: any failure is one too many
                failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()
        pruner.join()

    assert runs[0] >= 3, "git prune-packed never ran beside the writes"
    assert failures == []
    fresh = pygit2.Repository(str(git_dir))
    assert all(oid in fresh for oid in written)
    assert not [p.name for p in (git_dir / "objects").iterdir() if p.name.startswith("tmp_")]
    fsck = subprocess.run(
        ["git", "--git-dir", str(git_dir), "fsck", "--no-dangling"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_a_write_that_lost_its_directory_is_tried_again_and_its_result_returned() -> None:
    calls = []

    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError(RACE)
        return "landed"

    assert beside_prune(write) == "landed" and len(calls) == 3


def test_a_write_that_keeps_losing_its_directory_fails_after_the_last_try() -> None:
    calls = []

    def write() -> None:
        calls.append(1)
        raise pygit2.GitError(RACE)

    with pytest.raises(pygit2.GitError, match="failed to rename lockfile"):
        beside_prune(write)
    assert len(calls) == PRUNE_RACE_TRIES


@pytest.mark.parametrize(
    "error",
    [
        OSError("failed to write out file: No space left on device"),
        OSError("failed to rename lockfile to '/x/objects/ef/5e83': Permission denied"),
        pygit2.GitError("object not found - no match for id"),
        ValueError("No such file or directory"),
    ],
)
def test_any_other_failure_is_raised_at_once(error: Exception) -> None:
    calls = []

    def write() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        beside_prune(write)
    assert len(calls) == 1
