"""A ref update larger than the process may hold lock files for: all or none, through git itself.

libgit2's transaction keeps each ref's lock file open until it commits, so a fan-out to more robots
than ``RLIMIT_NOFILE`` allows (20,000 on the development machine, 1,024 on many hosts) failed with
"Too many open files". Updates over :data:`LOCKED_REFS_MAX` refs go through ``git update-ref
--stdin`` instead, which closes each lock file once written; these tests hold it to the same
contract as the small path (tests/test_git_objects.py): compare-and-swap, all or none, a replay is a
no-op, a held lock is a conflict naming the ref.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import RefConflict
from fleetcd.git import refs
from fleetcd.git.objects import LOCKED_REFS_MAX, Identity, commit, list_refs, update_refs, write_tree
from tests.gitrepos import bare_repo, git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
MANY = LOCKED_REFS_MAX + 300


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    path = bare_repo(tmp_path / "repo.git")
    git("config", "core.logAllRefUpdates", "always", cwd=path)  # reflogs say what was written
    return pygit2.Repository(str(path))


def two_commits(repo: pygit2.Repository) -> tuple[pygit2.Oid, pygit2.Oid]:
    tree = write_tree(repo, {"bundle.json": b"{}"})
    old = commit(repo, None, tree, "old", [], AUTHOR, WHEN)
    return old, commit(repo, None, tree, "new", [old], AUTHOR, WHEN)


def desired(n: int) -> str:
    return refs.desired_ref(f"amr-{n:05d}")


@contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_fan_out_to_more_robots_than_open_files_allowed_moves_every_ref(repo: pygit2.Repository) -> None:
    old, new = two_commits(repo)
    with open_files_limit(256):  # fewer than MANY: holding every lock at once would fail
        update_refs(repo, {desired(n): (None, old) for n in range(MANY)})
        update_refs(repo, {desired(n): (old, new) for n in range(MANY)})
    assert list_refs(repo, refs.DESIRED_PREFIX) == {desired(n): new for n in range(MANY)}
    reflog = git("reflog", "show", "--format=%gs", desired(7), cwd=Path(repo.path))
    assert reflog.splitlines()[0] == "fleetcd: update refs"


def test_many_refs_one_moved_by_another_writer_moves_none(repo: pygit2.Repository) -> None:
    old, new = two_commits(repo)
    update_refs(repo, {desired(n): (None, old) for n in range(MANY)})
    git("update-ref", desired(MANY - 1), str(new), str(old), cwd=Path(repo.path))  # a rival won one
    rival = {desired(n): (old, new) for n in range(MANY - 1)} | {desired(MANY - 1): (old, old)}
    with pytest.raises(RefConflict) as caught:
        update_refs(repo, rival)
    assert (caught.value.ref, caught.value.expected, caught.value.actual) == (
        desired(MANY - 1),
        str(old),
        str(new),
    )
    moved = {ref for ref, oid in list_refs(repo, refs.DESIRED_PREFIX).items() if oid == new}
    assert moved == {desired(MANY - 1)}


def test_many_refs_one_locked_by_a_concurrent_git_is_a_conflict_naming_it_and_moves_none(
    repo: pygit2.Repository,
) -> None:
    old, new = two_commits(repo)
    update_refs(repo, {desired(n): (None, old) for n in range(MANY)})
    git("pack-refs", "--all", cwd=Path(repo.path))
    held = desired(MANY // 2)
    lock = Path(repo.path) / f"{held}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("held by a concurrent git process\n")
    with pytest.raises(RefConflict) as caught:
        update_refs(repo, {desired(n): (old, new) for n in range(MANY)})
    assert caught.value.ref == held
    assert "lock" in str(caught.value)
    assert set(list_refs(repo, refs.DESIRED_PREFIX).values()) == {old}  # all or none
    lock.unlink()
    update_refs(repo, {desired(n): (old, new) for n in range(MANY)})  # the next run goes through
    assert set(list_refs(repo, refs.DESIRED_PREFIX).values()) == {new}


def test_replaying_a_large_update_after_a_crash_is_a_no_op(repo: pygit2.Repository) -> None:
    old, new = two_commits(repo)
    updates = {desired(n): (None, old) for n in range(MANY)}
    update_refs(repo, updates)
    before = git("reflog", "show", "--format=%H", desired(3), cwd=Path(repo.path))
    update_refs(repo, updates)  # every ref already at its new value: nothing written
    assert git("reflog", "show", "--format=%H", desired(3), cwd=Path(repo.path)) == before
    half = {desired(n): (old, new) for n in range(MANY)}
    update_refs(repo, {ref: half[ref] for ref in list(half)[: MANY // 2]})  # killed halfway (small path)
    update_refs(repo, half)  # the replay finishes the rest and skips what is done
    assert set(list_refs(repo, refs.DESIRED_PREFIX).values()) == {new}
