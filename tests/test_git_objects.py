"""Trees, commits and refs written straight into the object database, checked with the real git CLI."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import RefConflict, TransportError
from fleetcd.git import refs
from fleetcd.git.objects import (
    Identity,
    StagingRepository,
    commit,
    list_refs,
    object_batch,
    read_blob,
    update_refs,
    write_blob,
    write_tree,
)
from tests.gitrepos import bare_repo, commit_files, git, rev_parse, work_repo

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))


def nested_files(count: int) -> dict[str, bytes]:
    return {f"d{i % 10}/e{i % 7}/f{i:04d}.yaml": f"value: {i}\n".encode() for i in range(count)}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def ls_tree(repo: pygit2.Repository, tree: pygit2.Oid) -> dict[str, str]:
    """path → blob id of every file, as the real git CLI reads the tree."""
    out = git("ls-tree", "-r", str(tree), cwd=Path(repo.path))
    return {line.split("\t", 1)[1]: line.split()[2] for line in out.splitlines()}


def loose_object_count(repo: pygit2.Repository) -> int:
    return int(git("count-objects", "-v", cwd=Path(repo.path)).split("count: ")[1].split()[0])


# --- trees ----------------------------------------------------------------------------------------


def test_write_tree_round_trips_1000_nested_files(repo: pygit2.Repository) -> None:
    files = nested_files(1000)
    tree = write_tree(repo, files)
    assert ls_tree(repo, tree) == {path: git_blob_id(data) for path, data in files.items()}
    assert (
        read_blob(repo, commit(repo, None, tree, "all", [], AUTHOR, WHEN), "d3/e5/f0033.yaml")
        == b"value: 33\n"
    )
    git("fsck", "--full", "--strict", cwd=Path(repo.path))


def test_updating_one_file_keeps_every_untouched_subtree(repo: pygit2.Repository) -> None:
    base = repo[write_tree(repo, nested_files(1000))]
    assert isinstance(base, pygit2.Tree)
    updated = repo[write_tree(repo, {"d3/e2/f0003.yaml": b"value: changed\n"}, base)]
    assert isinstance(updated, pygit2.Tree)
    for top in (f"d{i}" for i in range(10)):
        assert (updated[top].id == base[top].id) is (top != "d3"), top
    for sub in (f"d3/e{i}" for i in range(7)):
        assert (updated[sub].id == base[sub].id) is (sub != "d3/e2"), sub
    assert ls_tree(repo, updated.id)["d3/e2/f0003.yaml"] == git_blob_id(b"value: changed\n")


def test_rewriting_identical_content_gives_the_identical_tree(repo: pygit2.Repository) -> None:
    files = nested_files(50)
    first = write_tree(repo, files)
    assert write_tree(repo, {"d1/e1/f0001.yaml": files["d1/e1/f0001.yaml"]}, first) == first
    assert write_tree(repo, dict(reversed(list(files.items())))) == first


def test_a_blob_id_stands_for_its_bytes_and_an_unknown_id_is_refused(repo: pygit2.Repository) -> None:
    files = nested_files(50)
    shared = write_blob(repo, files["d1/e1/f0001.yaml"])
    assert str(shared) == git_blob_id(files["d1/e1/f0001.yaml"])
    assert write_tree(repo, {**files, "d1/e1/f0001.yaml": shared}) == write_tree(repo, files)
    unknown = pygit2.Oid(hex=git_blob_id(b"never written"))
    with pytest.raises(pygit2.GitError):
        write_tree(repo, {"a.yaml": unknown})


def test_none_deletes_a_file_and_drops_directories_left_empty(repo: pygit2.Repository) -> None:
    base = write_tree(repo, {"a/b/only.yaml": b"1", "a/keep.yaml": b"2", "top.yaml": b"3"})
    updated = write_tree(repo, {"a/b/only.yaml": None, "never/existed.yaml": None}, base)
    assert sorted(ls_tree(repo, updated)) == ["a/keep.yaml", "top.yaml"]


def test_none_deletes_a_whole_directory(repo: pygit2.Repository) -> None:
    base = write_tree(repo, nested_files(100))
    updated = write_tree(repo, {"d4": None}, base)
    remaining = ls_tree(repo, updated)
    assert remaining and not any(p.startswith("d4/") for p in remaining)
    assert len(remaining) == 90


def test_deleting_everything_leaves_the_empty_tree(repo: pygit2.Repository) -> None:
    base = write_tree(repo, {"x/y.yaml": b"1"})
    assert str(write_tree(repo, {"x": None}, base)) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.mark.parametrize(
    "files",
    [
        {"../escape.yaml": b"x"},
        {"/abs.yaml": b"x"},
        {"a//b.yaml": b"x"},
        {"a/./b.yaml": b"x"},
        {".git/config": b"x"},
        {"a/.GIT/hooks/post-update": b"x"},
        {"a": b"file", "a/b": b"and a directory"},
        {"a/b": b"directory first", "a": b"then a file"},
    ],
    ids=[
        "dotdot",
        "absolute",
        "empty-segment",
        "dot",
        "dot-git",
        "dot-git-any-case",
        "file-then-dir",
        "dir-then-file",
    ],
)
def test_paths_that_escape_or_collide_are_refused(repo: pygit2.Repository, files: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        write_tree(repo, files)


# --- commits --------------------------------------------------------------------------------------


def test_same_inputs_give_the_same_commit_id_even_in_another_repository(tmp_path: Path) -> None:
    ids = []
    for name in ("first.git", "second.git"):
        repo = pygit2.Repository(str(bare_repo(tmp_path / name)))
        tree = write_tree(repo, {"bundle.yaml": b"serial: 7\n"})
        ids.append(commit(repo, None, tree, "desired state for dev-1", [], AUTHOR, WHEN))
    assert ids[0] == ids[1]
    later = commit(repo, None, tree, "desired state for dev-1", [], AUTHOR, WHEN + timedelta(seconds=1))
    assert later != ids[0]


def test_commit_time_zone_is_recorded_and_a_naive_time_is_refused(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {})
    berlin = WHEN.astimezone(timezone(timedelta(hours=2)))
    oid = commit(repo, None, tree, "x", [], ("a", "a@b"), berlin)
    assert git("log", "-1", "--format=%ad", "--date=iso-strict", str(oid), cwd=Path(repo.path)).strip() == (
        "2024-05-01T14:00:00+02:00"
    )
    with pytest.raises(ValueError, match="time zone"):
        commit(repo, None, tree, "x", [], ("a", "a@b"), datetime(2024, 5, 1, 12, 0))


def test_commit_to_a_ref_leaves_head_index_and_work_tree_alone(tmp_path: Path) -> None:
    work = work_repo(tmp_path / "work")
    head = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    repo = pygit2.Repository(str(work))
    tree = write_tree(repo, {"records/dev-1.yaml": b"status: queued\n"})
    oid = commit(repo, refs.STATE_BRANCH, tree, "records", [], AUTHOR, WHEN)
    assert rev_parse(work, "HEAD") == head
    assert rev_parse(work, refs.STATE_BRANCH) == str(oid)
    assert git("status", "--porcelain", cwd=work) == ""
    assert not (work / "records").exists()


def test_commit_on_a_ref_that_moved_meanwhile_raises_ref_conflict(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {"a": b"1"})
    first = commit(repo, refs.STATE_BRANCH, tree, "first", [], AUTHOR, WHEN)
    second = commit(repo, refs.STATE_BRANCH, tree, "second", [first], AUTHOR, WHEN)
    with pytest.raises(RefConflict):
        commit(repo, refs.STATE_BRANCH, tree, "stale writer", [first], AUTHOR, WHEN + timedelta(minutes=1))
    assert repo.references[refs.STATE_BRANCH].target == second


# --- refs -----------------------------------------------------------------------------------------


def test_compare_and_swap_ref_update_detects_a_concurrent_change(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {"bundle.yaml": b"1"})
    ref = refs.desired_ref("dev-1")
    seen = commit(repo, ref, tree, "v1", [], AUTHOR, WHEN)
    ours = commit(repo, None, tree, "v2 (ours)", [seen], AUTHOR, WHEN)
    theirs = commit(repo, None, tree, "v2 (theirs)", [seen], AUTHOR, WHEN)
    git("update-ref", ref, str(theirs), str(seen), cwd=Path(repo.path))  # another writer wins the race
    with pytest.raises(RefConflict) as caught:
        update_refs(repo, {ref: (seen, ours)})
    assert (caught.value.ref, caught.value.expected, caught.value.actual) == (ref, str(seen), str(theirs))
    assert isinstance(caught.value, TransportError)
    assert rev_parse(Path(repo.path), ref) == str(theirs)


def test_updating_several_refs_is_all_or_nothing(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {"x": b"1"})
    old = commit(repo, None, tree, "old", [], AUTHOR, WHEN)
    new = commit(repo, None, tree, "new", [old], AUTHOR, WHEN)
    update_refs(repo, {refs.desired_ref("dev-1"): (None, old)})
    with pytest.raises(RefConflict) as caught:
        update_refs(repo, {refs.desired_ref("dev-1"): (old, new), refs.desired_ref("dev-2"): (old, new)})
    assert caught.value.ref == refs.desired_ref("dev-2")
    assert list_refs(repo, refs.DESIRED_PREFIX) == {refs.desired_ref("dev-1"): old}


def test_replaying_a_ref_update_after_a_crash_is_a_no_op(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {"x": b"1"})
    oid = commit(repo, None, tree, "x", [], AUTHOR, WHEN)
    update_refs(repo, {refs.STATE_BRANCH: (None, oid)})
    update_refs(repo, {refs.STATE_BRANCH: (None, oid)})
    assert repo.references[refs.STATE_BRANCH].target == oid


def test_a_ref_locked_by_another_writer_is_a_conflict(repo: pygit2.Repository) -> None:
    oid = commit(repo, None, write_tree(repo, {}), "x", [], AUTHOR, WHEN)
    lock = Path(repo.path) / "refs" / "heads" / "fleetcd" / "state.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("held by a concurrent git process\n")
    with pytest.raises(RefConflict, match="locked"):
        update_refs(repo, {refs.STATE_BRANCH: (None, oid)})
    lock.unlink()
    assert repo.references.get(refs.STATE_BRANCH) is None


# --- batches --------------------------------------------------------------------------------------


def test_object_batch_writes_one_pack_and_no_loose_objects(repo: pygit2.Repository) -> None:
    updates: dict[str, tuple[pygit2.Oid | None, pygit2.Oid]] = {}
    with object_batch(repo) as staged:
        for n in range(200):
            tree = write_tree(staged, {"bundle.yaml": f"device: dev-{n}\n".encode()})
            updates[refs.desired_ref(f"dev-{n}")] = (
                None,
                commit(staged, None, tree, "desired", [], AUTHOR, WHEN),
            )
        with pytest.raises(ValueError, match="batch"):
            update_refs(staged, updates)
    update_refs(repo, updates)
    assert loose_object_count(repo) == 0
    assert len(list((Path(repo.path) / "objects" / "pack").glob("*.pack"))) == 1
    assert read_blob(repo, refs.desired_ref("dev-7"), "bundle.yaml") == b"device: dev-7\n"
    git("fsck", "--full", "--strict", cwd=Path(repo.path))


def test_object_batch_that_fails_writes_nothing(repo: pygit2.Repository) -> None:
    with pytest.raises(RuntimeError), object_batch(repo) as staged:
        assert isinstance(staged, StagingRepository)
        write_tree(staged, nested_files(100))
        raise RuntimeError("planning failed half way")
    assert loose_object_count(repo) == 0
    assert not list((Path(repo.path) / "objects" / "pack").glob("*.pack"))


# --- reading --------------------------------------------------------------------------------------


def test_read_blob_answers_none_for_whatever_is_not_there(repo: pygit2.Repository) -> None:
    tree = write_tree(repo, {"status/report.yaml": b"ok\n"})
    oid = commit(repo, refs.status_ref("dev-1"), tree, "report", [], AUTHOR, WHEN)
    assert read_blob(repo, refs.status_ref("dev-1"), "status/report.yaml") == b"ok\n"
    assert read_blob(repo, oid, "status/report.yaml") == b"ok\n"
    assert read_blob(repo, refs.status_ref("dev-1"), "status") is None
    assert read_blob(repo, refs.status_ref("dev-1"), "status/other.yaml") is None
    assert read_blob(repo, refs.status_ref("dev-2"), "status/report.yaml") is None


def test_list_refs_returns_only_refs_under_the_prefix(repo: pygit2.Repository) -> None:
    oid = commit(repo, None, write_tree(repo, {}), "x", [], AUTHOR, WHEN)
    wanted = {refs.status_ref(d): oid for d in ("dev-1", "dev-10", "dev-2")}
    update_refs(repo, {**{r: (None, oid) for r in wanted}, refs.desired_ref("dev-1"): (None, oid)})
    assert list_refs(repo, refs.STATUS_PREFIX) == wanted
    assert list_refs(repo, refs.status_prefix("dev-1")) == {refs.status_ref("dev-1"): oid}


# --- ref names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "ok"),
    [
        ("dev-0001", True),
        ("amr.berlin_7", True),
        ("../main", False),
        ("dev/1", False),
        ("dev 1", False),
        ("-dev", False),
        ("dev..1", False),
        ("", False),
        ("x" * 65, False),
    ],
    ids=[
        "plain",
        "dots-underscores",
        "traversal",
        "slash",
        "space",
        "leading-dash",
        "double-dot",
        "empty",
        "too-long",
    ],
)
def test_device_ids_that_cannot_name_a_ref_are_refused(device: str, ok: bool) -> None:
    if ok:
        assert refs.desired_ref(device) == f"refs/fleetcd/desired/{device}"
        assert pygit2.reference_is_valid_name(refs.status_ref(device))
    else:
        for make in (refs.desired_ref, refs.status_ref, refs.namespace_prefix):
            with pytest.raises(ValueError):
                make(device)


def test_status_refs_sit_below_the_device_so_acls_cannot_leak_to_longer_ids() -> None:
    assert refs.status_ref("dev-1") == "refs/fleetcd/status/dev-1/report"
    assert not refs.status_ref("dev-10").startswith(refs.status_prefix("dev-1"))
    assert refs.device_of_status_ref(refs.status_ref("dev-10")) == "dev-10"
    assert refs.device_of_status_ref("refs/fleetcd/status/dev-1/other") is None
    assert refs.device_of_desired_ref(refs.desired_ref("dev-1")) == "dev-1"
    assert refs.device_of_desired_ref(refs.STATE_BRANCH) is None
    assert refs.namespaced("dev-1", refs.desired_ref("dev-1")) == (
        "refs/namespaces/dev-1/refs/fleetcd/desired/dev-1"
    )
