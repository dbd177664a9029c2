"""Processes that create the same bare repository at the same instant all end up in one repository.

:func:`fleetcd.git.repo.open_or_init_bare` makes a repository aside and renames it into place, so
that two processes starting at once (a controller restarted while the first still runs, two
agents on one host after a misconfiguration) never write into a repository that is then replaced.
Here several real processes start together on the same path, some where nothing exists and some
where an empty directory waits (made by ``mkdir -p`` of a parent), and each writes its own ref:

* every process's ref is in the one repository at the end (none wrote into a replaced one);
* no scratch directory (``.<name>.new-*``) is left beside it, and ``git fsck`` is clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gitrepos import git

ROOT = str(Path(__file__).resolve().parents[1])
PROCESSES = 6

CREATOR = """
import os, sys, time
from datetime import datetime, timezone
from pathlib import Path
while not os.path.exists(sys.argv[3]):  # start together
    time.sleep(0.001)
from fleetcd.git.objects import commit, write_tree
from fleetcd.git.repo import open_or_init_bare
repo = open_or_init_bare(Path(sys.argv[1]))
tree = write_tree(repo, {"who": sys.argv[2].encode()})
when = datetime(2026, 1, 1, tzinfo=timezone.utc)
commit(repo, f"refs/heads/{sys.argv[2]}", tree, sys.argv[2], [], ("w", "w@x"), when)
"""


@pytest.mark.parametrize("empty_directory_first", [False, True], ids=["nothing-there", "empty-directory"])
def test_racing_creators_share_one_repository(tmp_path: Path, empty_directory_first: bool) -> None:
    path = tmp_path / "cache" / "mirror.git"
    if empty_directory_first:
        path.mkdir(parents=True)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": ROOT}
    names = [f"p{n}" for n in range(PROCESSES)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(path), name, str(go)], env=env, stderr=subprocess.PIPE
        )
        for name in names
    ]
    time.sleep(0.5)
    go.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=path).split()
    assert sorted(branches) == names, "a process wrote into a repository that was replaced"
    assert [p.name for p in path.parent.iterdir()] == ["mirror.git"], "a scratch directory was left"
    assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == ""
