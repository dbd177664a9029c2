"""Several processes moving the same refs at once: compare-and-swap loses no update and tears no set.

Two controllers on one repository are a setup mistake, but a person's ``git`` run by hand, a
crashed process restarted while the first still runs, or a test harness can all write refs while
fleetcd does. :func:`fleetcd.git.objects.update_refs` (and :func:`~fleetcd.git.objects.commit`
with a ref) promise compare-and-swap: an update either lands on the value it read or raises
:class:`~fleetcd.errors.RefConflict`, and a set of refs moves all together or not at all. Here real
processes race, each retrying on conflict as the controller's loop does:

* one ref, many writers, each appending a commit on the tip it read: the branch ends as one
  linear history holding every successful commit exactly once (no update lost);
* many refs (past the transaction size where git's own ``update-ref --stdin`` takes over), each
  writer moving all of them to its own commit: after the race all refs hold the same commit, the
  last one that succeeded (no torn set);
* no lock file is left behind and ``git fsck`` finds the repository whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pygit2

from fleetcd.git.objects import LOCKED_REFS_MAX
from tests.gitrepos import git

ROOT = str(Path(__file__).resolve().parents[1])
WRITERS = 3
ROUNDS = 25
WIDE = LOCKED_REFS_MAX + 40  # refs moved together by each writer in the second race
WIDE_ROUNDS = 3

APPENDER = """
import os, sys, time
while not os.path.exists(sys.argv[-1]):  # start together: the test creates this file
    time.sleep(0.001)
from datetime import datetime, timezone
import pygit2
from fleetcd.errors import RefConflict
from fleetcd.git.objects import commit, ref_target, write_tree
repo = pygit2.Repository(sys.argv[1])
name, rounds = sys.argv[2], int(sys.argv[3])
landed = conflicts = 0
while landed < rounds:
    tip = ref_target(repo, "refs/heads/main")
    tree = write_tree(repo, {"who": f"{name} {landed}".encode()})
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        commit(repo, "refs/heads/main", tree, f"{name}-{landed}", [tip] if tip else [], (name, "w@x"), when)
    except RefConflict:
        conflicts += 1
        continue
    landed += 1
print(landed, conflicts)
"""

MOVER = """
import os, sys, time
while not os.path.exists(sys.argv[-1]):  # start together: the test creates this file
    time.sleep(0.001)
from datetime import datetime, timezone
import pygit2
from fleetcd.errors import RefConflict
from fleetcd.git.objects import commit, ref_target, update_refs, write_tree
repo = pygit2.Repository(sys.argv[1])
name, rounds, wide = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
refs = [f"refs/fleetcd/desired/amr-{n:04d}" for n in range(wide)]
landed = []
attempts = 0
while len(landed) < rounds and attempts < 200:
    attempts += 1
    seen = {ref: ref_target(repo, ref) for ref in refs}
    tree = write_tree(repo, {"who": f"{name} {len(landed)}".encode()})
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    new = commit(repo, None, tree, f"{name}-{len(landed)}", [], (name, "w@x"), when)
    try:
        update_refs(repo, {ref: (old, new) for ref, old in seen.items()})
    except RefConflict:
        continue
    landed.append(str(new))
print(" ".join(landed))
"""


def race(script: str, go: Path, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *(a.replace("{n}", str(n)) for a in args), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    time.sleep(0.5)  # every worker imported pygit2 and waits
    go.touch()
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def leftover_locks(path: Path) -> list[Path]:
    return [p for p in path.rglob("*.lock")]


def test_many_writers_appending_to_one_branch_lose_no_commit(tmp_path: Path) -> None:
    path = tmp_path / "repo.git"
    pygit2.init_repository(str(path), bare=True)
    outputs = race(APPENDER, tmp_path / "go", str(path), "w{n}", str(ROUNDS))
    assert all(out.split()[0] == str(ROUNDS) for out in outputs), outputs
    history = git("log", "--format=%s", "refs/heads/main", cwd=path).split()
    assert sorted(history) == sorted(f"w{n}-{r}" for n in range(WRITERS) for r in range(ROUNDS))
    assert git("rev-list", "--merges", "--count", "refs/heads/main", cwd=path).strip() == "0"  # linear
    assert leftover_locks(path) == []
    assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == ""


def test_many_writers_moving_hundreds_of_refs_together_never_tear_the_set(tmp_path: Path) -> None:
    path = tmp_path / "repo.git"
    pygit2.init_repository(str(path), bare=True)
    outputs = race(MOVER, tmp_path / "go", str(path), "w{n}", str(WIDE_ROUNDS), str(WIDE))
    landed = [oid for out in outputs for oid in out.split()]
    assert len(landed) == WRITERS * WIDE_ROUNDS, outputs
    listed = git("for-each-ref", "--format=%(objectname)", "refs/fleetcd/desired/", cwd=path).split()
    assert len(listed) == WIDE
    assert len(set(listed)) == 1, "the refs of one update hold different writers' commits"
    assert listed[0] in landed
    assert leftover_locks(path) == []
