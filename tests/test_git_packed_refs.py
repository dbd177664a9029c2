"""Many refs moved in the controller's mirror by one rewrite of packed-refs (fleetcd.git.packedrefs).

The contract is update_refs' (tests/test_git_objects.py, tests/test_git_update_refs_many.py):
compare-and-swap, all or none, a replay is a no-op, a held lock is a conflict naming a ref. On top:
no loose file is left (that was the point: a fan-out's loose refs cost more than the fan-out), git
itself reads back every value, a loose file that would shadow a moved ref is gone, and refs the
update did not name (annotated tags with their peeled lines included) are untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import RefConflict
from fleetcd.git import refs
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import PACKED_REFS_FROM, Identity, commit, update_refs, write_tree
from fleetcd.git.packedrefs import read_packed, read_ref_storage, update_packed
from tests.gitrepos import git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
MANY = PACKED_REFS_FROM + 36


@pytest.fixture
def mirror(tmp_path: Path) -> LockedRepository:
    return open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)


def two_commits(repo: pygit2.Repository) -> tuple[pygit2.Oid, pygit2.Oid]:
    tree = write_tree(repo, {"bundle.json": b"{}"})
    old = commit(repo, None, tree, "old", [], AUTHOR, WHEN)
    return old, commit(repo, None, tree, "new", [old], AUTHOR, WHEN)


def namespaced(n: int) -> str:
    device = f"amr-{n:05d}"
    return f"refs/namespaces/{device}/{refs.desired_ref(device)}"


def git_refs(repo: pygit2.Repository) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=Path(repo.path))
    return {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}


def loose_files(repo: pygit2.Repository) -> list[Path]:
    return [p for p in (Path(repo.path) / "refs").rglob("*") if p.is_file()]


def test_a_fan_out_in_the_mirror_leaves_no_loose_ref_and_git_reads_every_value(
    mirror: LockedRepository,
) -> None:
    _, new = two_commits(mirror)
    update_refs(mirror, {namespaced(n): (None, new) for n in range(MANY)})
    assert loose_files(mirror) == []
    listed = git_refs(mirror)
    assert all(listed[namespaced(n)] == str(new) for n in range(MANY))
    assert git("fsck", "--no-progress", cwd=Path(mirror.path)) == ""
    assert not (Path(mirror.path) / "refs" / "namespaces").exists()  # no empty directories made either


def test_a_second_wave_moves_its_refs_and_leaves_the_others(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    update_refs(mirror, {namespaced(n): (None, old) for n in range(MANY)})
    wave = {namespaced(n): (old, new) for n in range(0, MANY, 2)}
    assert update_packed(mirror, wave) == len(wave)
    listed = git_refs(mirror)
    assert {ref for ref, oid in listed.items() if oid == str(new)} == set(wave)
    assert sum(oid == str(old) for oid in listed.values()) == MANY - len(wave)


def test_a_stale_expected_value_moves_nothing_and_names_the_ref(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    update_refs(mirror, {namespaced(n): (None, old) for n in range(MANY)})
    before = (Path(mirror.path) / "packed-refs").read_bytes()
    lied = {namespaced(n): (old, new) for n in range(MANY)}
    lied[namespaced(7)] = (None, new)  # the caller thinks robot 7 has no ref yet
    with pytest.raises(RefConflict) as raised:
        update_refs(mirror, lied)
    assert raised.value.ref == namespaced(7)
    assert (Path(mirror.path) / "packed-refs").read_bytes() == before


def test_a_replayed_update_after_a_crash_is_a_no_op(mirror: LockedRepository) -> None:
    _, new = two_commits(mirror)
    updates = {namespaced(n): (None, new) for n in range(MANY)}
    update_refs(mirror, updates)
    stamp = (Path(mirror.path) / "packed-refs").stat().st_mtime_ns
    assert update_packed(mirror, updates) == 0
    assert (Path(mirror.path) / "packed-refs").stat().st_mtime_ns == stamp


def test_a_loose_ref_that_would_shadow_the_new_value_is_deleted(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    shadowed = namespaced(3)
    update_refs(mirror, {shadowed: (None, old)})  # one ref: written loose, as libgit2 does
    assert (Path(mirror.path) / shadowed).is_file()
    update_refs(mirror, {namespaced(n): ((old if n == 3 else None), new) for n in range(MANY)})
    assert not (Path(mirror.path) / shadowed).exists()
    assert not (Path(mirror.path) / "refs" / "namespaces").exists()
    assert git("rev-parse", shadowed, cwd=Path(mirror.path)).strip() == str(new)
    assert mirror.references[shadowed].target == new  # the open handle sees it too


def test_annotated_tags_and_their_peeled_lines_survive_a_rewrite(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    path = Path(mirror.path)
    git("tag", "-a", "-m", "release", "v1", str(old), cwd=path)
    git("pack-refs", "--all", cwd=path)
    assert any(line.startswith(b"^") for lines in read_packed(path).values() for line in lines)
    update_refs(mirror, {namespaced(n): (None, new) for n in range(MANY)})
    assert git("rev-parse", "v1^{commit}", cwd=path).strip() == str(old)
    assert git("for-each-ref", "--format=%(*objectname)", "refs/tags/v1", cwd=path).strip() == str(old)
    assert git("fsck", "--no-progress", cwd=path) == ""


def test_a_packed_refs_lock_left_by_a_killed_writer_is_a_conflict_then_healed_by_the_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mirror.git"
    with open_locked_mirror(path, wait_seconds=5) as mirror:
        _, new = two_commits(mirror)
        (path / "packed-refs.lock").write_bytes(b"half a file")  # as a writer dying mid-rewrite leaves it
        with pytest.raises(RefConflict) as raised:
            update_refs(mirror, {namespaced(n): (None, new) for n in range(MANY)})
        assert "packed-refs.lock" in (raised.value.actual or "")
        assert (path / "packed-refs.lock").read_bytes() == b"half a file"  # not ours to remove here
    # A process that holds the mirror's lock while the lock file is left, then is killed.
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path)], env={**os.environ, "PYTHONPATH": ROOT}, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    with open_locked_mirror(path, wait_seconds=5) as mirror:  # the next process takes the lock: healed
        assert not (path / "packed-refs.lock").exists()
        update_refs(mirror, {namespaced(n): (None, new) for n in range(MANY)})
        assert len(git_refs(mirror)) == MANY


ROOT = str(Path(__file__).resolve().parents[1])
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from fleetcd.git.mirror import open_locked_mirror
mirror = open_locked_mirror(Path(sys.argv[1]), wait_seconds=5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_small_updates_and_plain_repositories_keep_git_s_own_loose_refs(tmp_path: Path) -> None:
    with open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5) as mirror:
        _, new = two_commits(mirror)
        update_refs(mirror, {namespaced(n): (None, new) for n in range(PACKED_REFS_FROM - 1)})
        assert len(loose_files(mirror)) == PACKED_REFS_FROM - 1
    plain = pygit2.init_repository(str(tmp_path / "plain.git"), bare=True)  # not a mirror: not ours alone
    _, new = two_commits(plain)
    update_refs(plain, {namespaced(n): (None, new) for n in range(MANY)})
    assert len(loose_files(plain)) == MANY


def test_an_unreadable_packed_refs_line_is_refused_not_dropped(mirror: LockedRepository) -> None:
    _, new = two_commits(mirror)
    (Path(mirror.path) / "packed-refs").write_bytes(HEADER_LINE + b"garbage-without-a-space\n")
    with pytest.raises(ValueError, match="unreadable line"):
        update_packed(mirror, {namespaced(n): (None, new) for n in range(MANY)})


HEADER_LINE = b"# pack-refs with: peeled fully-peeled sorted \n"


def test_ref_storage_lists_what_git_ls_remote_lists_packed_and_loose_alike(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    path = Path(mirror.path)
    update_refs(mirror, {namespaced(n): (None, old) for n in range(MANY)})  # packed
    update_refs(mirror, {namespaced(1): (old, new), "refs/heads/main": (None, new)})  # loose over packed
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=path)
    storage = read_ref_storage(path)
    assert storage is not None
    listed = git("ls-remote", "--refs", str(path), cwd=path)
    expected = {ref: oid for oid, ref in (line.split("\t") for line in listed.splitlines())}
    expected.pop("refs/heads/alias")  # git resolves a symbolic ref; the storage has no value for it
    assert storage.refs(("refs/heads/", "refs/namespaces/")) == expected
    assert storage.refs(("refs/heads/main",)) == {"refs/heads/main": str(new)}


def test_ref_storage_fingerprint_changes_with_any_ref_and_not_otherwise(mirror: LockedRepository) -> None:
    old, new = two_commits(mirror)
    path = Path(mirror.path)
    update_refs(mirror, {namespaced(n): (None, old) for n in range(MANY)})
    first = read_ref_storage(path)
    assert first is not None and read_ref_storage(path) == first
    update_refs(mirror, {namespaced(5): (old, new)})
    moved = read_ref_storage(path)
    assert moved is not None and moved.fingerprint != first.fingerprint
    update_refs(mirror, {namespaced(5): (new, old)})  # back where it was, still a loose file
    back = read_ref_storage(path)
    assert back is not None and back.fingerprint not in (first.fingerprint, moved.fingerprint)
    assert back.refs(("refs/namespaces/",)) == first.refs(("refs/namespaces/",))
