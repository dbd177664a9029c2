"""``read_tree_since`` (fleetcd.git.trees): main's files read from the previous read and the entries
that changed, on real git repositories.

``controller run`` uses it for every new main commit, so it must return exactly what a full
``read_tree`` returns, whatever the commit did: edit, add, delete, a symlink planted or replaced, a
file that becomes a directory, unmanaged files and READMEs, a submodule entry, a blob over
the read cap; and a base tree the repository lost is a full read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

from fleetcd.git.trees import commit_tree_id, read_tree, read_tree_since
from fleetcd.limits import READ_CAP_BYTES
from tests.gitrepos import commit_files, git, work_repo

DEVICE = b"apiVersion: fleetcd.dev/v1\nkind: Device\n"
Change = Callable[[Path], None]


def files(change: dict[str, bytes | None]) -> Change:
    return lambda work: commit_files(work, change) and None


def symlink(path: str, target: str) -> Change:
    def plant(work: Path) -> None:
        (work / path).unlink(missing_ok=True)
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / path)
        git("add", "--", path, cwd=work)
        git("commit", "-q", "-m", f"symlink {path}", cwd=work)

    return plant


def submodule(path: str) -> Change:
    def plant(work: Path) -> None:
        head = git("rev-parse", "HEAD", cwd=work).strip()
        git("update-index", "--add", "--cacheinfo", f"160000,{head},{path}", cwd=work)
        git("commit", "-q", "-m", f"submodule {path}", cwd=work)

    return plant


CHANGES: dict[str, Change] = {
    "edit": files({"devices/a.yaml": DEVICE + b"site: ber\n"}),
    "add": files({"devices/c.yaml": DEVICE, "cohorts/all.yaml": b"kind: Cohort\n"}),
    "delete": files({"devices/b.yaml": None}),
    "symlink-planted": symlink("devices/evil.yaml", "/etc/passwd"),
    "file-becomes-symlink": symlink("devices/a.yaml", "/etc/shadow"),
    "unmanaged-and-readme": files({"docs/x.md": b"#", "devices/README.md": b"n", "README.md": b"r"}),
    "file-becomes-directory": files({"devices/a.yaml": None, "devices/a.yaml/x.yaml": DEVICE}),
    "oversized": files({"devices/big.yaml": b"#" * (READ_CAP_BYTES + 10)}),
    "submodule": submodule("devices/sub"),
    "keys-and-fleet": files({"keys/alice.asc": b"key", "fleet.yaml": b"name: other\n"}),
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = work_repo(tmp_path / "fleet")
    commit_files(path, {"fleet.yaml": b"name: demo\n", "devices/a.yaml": DEVICE, "devices/b.yaml": DEVICE})
    return path


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_read_since_the_previous_tree_equals_a_full_read(work: Path, name: str) -> None:
    repo = pygit2.Repository(str(work))
    before = commit_tree_id(repo, git("rev-parse", "HEAD", cwd=work).strip())
    base, base_problems = read_tree(repo, "main")
    CHANGES[name](work)
    full = read_tree(repo, "main")
    since = read_tree_since(repo, "main", before, base, base_problems)
    assert since is not None
    assert since[0] == full[0] and sorted(since[1]) == sorted(full[1])


def test_every_change_in_turn_each_read_from_the_last(work: Path) -> None:
    """A controller reads commit after commit, each from the previous read, never a full one."""
    repo = pygit2.Repository(str(work))
    tree = commit_tree_id(repo, git("rev-parse", "HEAD", cwd=work).strip())
    read = read_tree(repo, "main")
    for change in CHANGES.values():
        change(work)
        found = read_tree_since(repo, "main", tree, *read)
        assert found is not None
        read, tree = found, commit_tree_id(repo, git("rev-parse", "HEAD", cwd=work).strip())
        full = read_tree(repo, "main")
        assert read[0] == full[0] and sorted(read[1]) == sorted(full[1])
    assert "devices/evil.yaml" in {p.file for p in read[1]} and "devices/evil.yaml" not in read[0]


def test_a_base_tree_the_repository_does_not_hold_is_a_full_read(work: Path) -> None:
    repo = pygit2.Repository(str(work))
    assert read_tree_since(repo, "main", "0" * 40, {}, []) is None
