"""Every way fleetcd writes to git, on a disk that is full: a setup error, nothing half-written.

The controller's mirror and state live on a disk other processes fill too (logs, images). When it
is full, each writer in :mod:`fleetcd.git.objects` must raise :class:`~fleetcd.errors.SetupError`
naming the repository (exit 4, retried by ``controller run``), never a raw ``GitError``/``OSError``
(exit 70, "a bug"), and must leave the repository as it was: the same refs, no lock file that
would block the next writer, nothing ``git fsck`` objects to. Once space is back the same write
succeeds. A real tmpfs is filled for each case, the way tests/test_cli_operator_faults.py does
for the whole CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import SetupError
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import (
    AUTO_BATCH_FILES,
    LOCKED_REFS_MAX,
    PACKED_REFS_FROM,
    Identity,
    commit,
    ref_target,
    update_refs,
    write_tree,
)
from tests.disks import fill, mounted
from tests.gitrepos import git

AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
WHEN = datetime(2026, 5, 1, tzinfo=UTC)
Write = Callable[[pygit2.Repository, pygit2.Oid], object]


def refs_of(path: Path) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
    return {ref: oid for oid, ref in (line.split(" ", 1) for line in listed.splitlines())}


def tree_of_files(count: int, tag: str) -> dict[str, bytes]:
    return {f"devices/amr-{n:04d}.yaml": f"id: amr-{n:04d}\n# {tag}\n".encode() * 20 for n in range(count)}


def a_few_files(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    return write_tree(repo, tree_of_files(3, "few"), base)


def one_pack_of_files(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    return write_tree(repo, tree_of_files(AUTO_BATCH_FILES + 10, "batch"), base)


def a_commit_on_main(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    tip = ref_target(repo, "refs/heads/main")
    return commit(repo, "refs/heads/main", base, "state", [tip] if tip else [], AUTHOR, WHEN)


def a_few_refs(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    new = _existing_commit(repo)
    return update_refs(repo, {f"refs/fleetcd/desired/amr-{n}": (None, new) for n in range(5)})


def a_fan_out_of_packed_refs(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    new = _existing_commit(repo)
    return update_refs(
        repo, {f"refs/fleetcd/desired/amr-{n:04d}": (None, new) for n in range(PACKED_REFS_FROM + 5)}
    )


def a_fan_out_through_git(repo: pygit2.Repository, base: pygit2.Oid) -> object:
    new = _existing_commit(repo)
    return update_refs(
        repo, {f"refs/fleetcd/desired/amr-{n:04d}": (None, new) for n in range(LOCKED_REFS_MAX + 5)}
    )


def _existing_commit(repo: pygit2.Repository) -> pygit2.Oid:
    found = ref_target(repo, "refs/heads/main")
    assert found is not None
    return found


WRITES: dict[str, Write] = {
    "a-few-files": a_few_files,
    "one-pack-of-files": one_pack_of_files,
    "a-commit-on-main": a_commit_on_main,
    "a-few-refs": a_few_refs,
    "a-fan-out-of-packed-refs": a_fan_out_of_packed_refs,
    "a-fan-out-through-git": a_fan_out_through_git,
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_write_on_a_full_disk_is_a_setup_error_and_leaves_the_repository_as_it_was(
    tmp_path: Path, write: Write
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=2m", "tmpfs"):
        path = disk / "mirror.git"
        repo = open_locked_mirror(path, wait_seconds=5)
        base = write_tree(repo, {"fleet.yaml": b"fleet\n"})
        commit(repo, "refs/heads/main", base, "first", [], AUTHOR, WHEN)
        before = refs_of(path)
        filler = fill(disk)
        with pytest.raises(SetupError) as raised:
            write(repo, base)
        assert "No space left on device" in str(raised.value)
        assert str(disk) in str(raised.value)  # the disk is named, so the operator knows where
        assert refs_of(path) == before
        assert not list(path.rglob("*.lock")), "a lock file would block the next writer"
        filler.unlink()
        assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == ""
        write(repo, base)  # space is back: the same write goes through
        assert git("fsck", "--no-dangling", "--no-progress", cwd=path) == ""
        del repo
