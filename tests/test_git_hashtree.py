"""Trees whose objects are hashed in Python (fleetcd.git.hashtree) against libgit2's TreeBuilder.

The state branch is written through :func:`write_tree_hashed`; every id it gives must be the id
:func:`fleetcd.git.objects.write_tree` (libgit2) gives for the same files on the same base, or
the state branch's bytes would change. These tests build both, from random file sets and from
the edges of git's tree format (entry order, directories replacing files and back, deletions
that empty a directory, modes the controller never writes), and read the result back with git.
"""

from __future__ import annotations

import random
import subprocess
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.statebranch import StateCache, dump, load_state, write_state
from controller.records.model import Connectivity, DeviceState
from controller.state.layout import META_FILE, device_file
from controller.state.model import ControllerMeta, DeviceFile
from fleetcd.compat import UTC
from fleetcd.git.hashtree import write_tree_hashed
from fleetcd.git.objects import PACK_FROM_OBJECTS, Identity, commit, write_tree
from tests.gitrepos import bare_repo, git

WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
NAMES = ["a", "a.b", "a-b", "a0", "a_b", "ab", "b", "A", "é", "z.json", "0", "a b"]


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))


@pytest.fixture
def other(tmp_path: Path) -> pygit2.Repository:
    """A second repository, so the libgit2 build never finds the hashed build's objects."""
    return pygit2.Repository(str(bare_repo(tmp_path / "other.git")))


def fsck(repo: pygit2.Repository) -> None:
    done = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"], cwd=repo.path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "error" not in done.stderr, done.stderr


def files_of(repo: pygit2.Repository, tree: pygit2.Oid) -> dict[str, bytes]:
    """Every file of ``tree`` read back through git (not libgit2): one listing, one batch read."""
    listing = git("ls-tree", "-r", "-z", str(tree), cwd=Path(repo.path))
    entries = [line.split("\t", 1) for line in filter(None, listing.split("\0"))]
    ids = [meta.split()[2] for meta, _ in entries]
    done = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=repo.path, input="".join(f"{i}\n" for i in ids).encode(),
        capture_output=True, check=True,
    )  # fmt: skip
    out, data = {}, done.stdout
    for _, path in entries:
        header, data = data.split(b"\n", 1)
        size = int(header.split()[2])
        out[path], data = data[:size], data[size + 1 :]
    return out


def both(
    repo: pygit2.Repository,
    other: pygit2.Repository,
    files: dict[str, bytes | None],
    base: tuple[pygit2.Oid, pygit2.Oid] | None = None,
) -> tuple[pygit2.Oid, pygit2.Oid]:
    """(hashed in ``repo``, libgit2's in ``other``) for the same files on the same base; equal."""
    hashed = write_tree_hashed(repo, files, base[0] if base else None)
    built = write_tree(other, files, base[1] if base else None)
    assert hashed == built
    return hashed, built


def random_files(rng: random.Random, count: int) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {}
    for _ in range(count):
        depth = rng.randint(1, 3)
        path = "/".join(rng.choice(NAMES) for _ in range(depth))
        files[path] = rng.randbytes(rng.randint(0, 40))
    return files


def consistent(files: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """Drop paths that are both a file and a directory (write_tree refuses those)."""
    kept: dict[str, bytes | None] = {}
    for path in sorted(files, key=len):
        parts = path.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if prefixes & kept.keys() or any(k.startswith(path + "/") for k in kept):
            continue
        kept[path] = files[path]
    return kept


@pytest.mark.parametrize("seed", range(12))
def test_random_trees_and_their_updates_get_libgit2s_ids(
    repo: pygit2.Repository, other: pygit2.Repository, seed: int
) -> None:
    rng = random.Random(seed)
    first = consistent(random_files(rng, rng.choice([5, 40, 300])))
    base = both(repo, other, first)
    tree = base
    for _ in range(3):
        update = random_files(rng, rng.randint(1, 80))
        existing = files_of(repo, tree[0])
        for path in rng.sample(sorted(existing), min(len(existing), rng.randint(0, 10))):
            update[path] = None  # delete files the tree has
        for path in list(update):
            if rng.random() < 0.05:
                update[path.split("/")[0]] = None  # a whole directory (or a file of that name)
        update = consistent(update)
        try:
            write_tree(other, update, tree[1])
        except ValueError:
            continue  # a path libgit2 refuses here (a file where a directory is, in the same update)
        tree = both(repo, other, update, tree)
    fsck(repo)
    assert files_of(repo, tree[0]) == files_of(other, tree[1])


def test_entries_are_in_gits_order_with_directories_sorted_as_if_ending_in_a_slash(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    files: dict[str, bytes | None] = {"a/x": b"1", "a.b": b"2", "a-b": b"3", "a0": b"4", "ab/c": b"5"}
    tree, _ = both(repo, other, files)
    names = [entry.name for entry in repo[tree]]  # type: ignore[attr-defined]
    assert names == ["a-b", "a.b", "a", "a0", "ab"]  # "a/" sorts after "a.b" and before "a0"
    fsck(repo)


def test_a_deletion_that_empties_a_directory_removes_it_and_nothing_left_is_the_empty_tree(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    base = both(repo, other, {"devices/00/a.json": b"a", "state.json": b"{}"})
    emptied, _ = both(repo, other, {"devices/00/a.json": None}, base)
    assert files_of(repo, emptied) == {"state.json": b"{}"}
    nothing, _ = both(repo, other, {"state.json": None, "devices/00/a.json": None}, base)
    assert str(nothing) == EMPTY_TREE and EMPTY_TREE in repo
    assert str(write_tree_hashed(repo, {})) == EMPTY_TREE


def test_a_directory_replaces_a_file_and_a_file_replaces_a_directory(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    base = both(repo, other, {"x": b"file", "d/inner": b"in"})
    swapped = both(repo, other, {"x": None, "d": None}, base)
    again = both(repo, other, {"x/now": b"a directory", "d": b"a file"}, swapped)
    assert files_of(repo, again[0]) == {"x/now": b"a directory", "d": b"a file"}
    # Deleting under a path that is a file leaves the file (as libgit2 does).
    kept, _ = both(repo, other, {"d/missing": None}, again)
    assert kept == again[0]
    fsck(repo)


def test_entries_the_update_does_not_touch_keep_their_mode(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    """An executable or a symlink the controller never writes, on a base written by someone else."""
    for target in (repo, other):
        blob = target.create_blob(b"#!/bin/sh\n")
        link = target.create_blob(b"state.json")
        builder = target.TreeBuilder()
        builder.insert("run.sh", blob, pygit2.enums.FileMode.BLOB_EXECUTABLE)
        builder.insert("link", link, pygit2.enums.FileMode.LINK)
        base_id = builder.write()
    updated = both(repo, other, {"state.json": b"{}"}, (base_id, base_id))
    modes = {entry.name: entry.filemode for entry in repo[updated[0]]}  # type: ignore[attr-defined]
    assert modes["run.sh"] == pygit2.enums.FileMode.BLOB_EXECUTABLE
    assert modes["link"] == pygit2.enums.FileMode.LINK


def test_a_large_update_lands_as_one_pack_git_reads(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    files: dict[str, bytes | None] = {
        f"devices/{i % 7:02x}/robot-{i:05d}.json": b'{\n "n": %d\n}\n' % i
        for i in range(PACK_FROM_OBJECTS * 2)
    }
    before = set((Path(repo.path) / "objects" / "pack").glob("*.pack"))
    tree, _ = both(repo, other, files)
    after = set((Path(repo.path) / "objects" / "pack").glob("*.pack"))
    assert len(after - before) == 1
    fsck(repo)
    assert files_of(repo, tree) == files


def test_content_that_is_not_bytes_is_refused(repo: pygit2.Repository) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        write_tree_hashed(repo, {"a": "text"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="plain names"):
        write_tree_hashed(repo, {"../a": b"x"})
    with pytest.raises(ValueError, match="plain names"):
        write_tree_hashed(repo, {"a/.git/config": b"x"})


def device(i: int, connectivity: Connectivity = Connectivity.ONLINE) -> DeviceFile:
    return DeviceFile(
        state=DeviceState(device=f"robot-{i:05d}", connectivity=connectivity, last_seen=WHEN),
        last_report_seq=i,
    )


def test_the_state_branch_commit_is_the_one_libgit2s_trees_give(
    repo: pygit2.Repository, other: pygit2.Repository
) -> None:
    """write_state (hashed trees) against the same commits built with write_tree, over a bootstrap,
    a fan-out that rewrites every device file and a reconcile that changes a few and removes one."""
    steps: list[dict[str, bytes | None]] = [
        {
            META_FILE: dump(ControllerMeta()),
            **{device_file(f"robot-{i:05d}"): dump(device(i)) for i in range(600)},
        },
        {device_file(f"robot-{i:05d}"): dump(device(i, Connectivity.OFFLINE)) for i in range(600)},
        {device_file("robot-00007"): dump(device(7)), device_file("robot-00008"): None},
    ]
    cache, parent = StateCache(), None
    for n, changes in enumerate(steps):
        snapshot = load_state(repo, cache=cache)
        written = write_state(repo, snapshot, changes, f"step {n}", WHEN, cache=cache)
        assert written is not None
        base = other.get(parent).tree_id if parent is not None else None  # type: ignore[union-attr]
        tree = write_tree(other, changes, base)
        parent = commit(other, None, tree, f"step {n}", [parent] if parent else [], Identity(
            "fleetcd controller", "controller@fleetcd.invalid"
        ), WHEN)  # fmt: skip
        assert written == parent, f"step {n}"
    fsck(repo)
    assert load_state(repo).devices == load_state(repo, cache=StateCache()).devices
