"""Tree objects read for the state commit (fleetcd.git.hashtree.parse_tree): one regular expression
over a tree git wrote, entry by entry otherwise, the same entries either way.

The state commit reads every bucket tree a change touches (256 of them for 1,000 robots); the
entries it keeps must be exactly the tree's, whatever bytes the 20-byte ids hold (a space, a NUL,
digits that look like a mode), names with spaces, and a mode written with leading zeros (which
libgit2 writes back without them)."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pygit2
import pytest

from fleetcd.errors import SetupError
from fleetcd.git import hashtree
from fleetcd.git.hashtree import TreeMemo, parse_tree, write_tree_hashed


def by_loop(data: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    """The tree's entries walked one by one, as git's format says (the reference)."""
    entries: dict[bytes, tuple[bytes, bytes]] = {}
    at = 0
    while at < len(data):
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        mode = data[at:space]
        if mode[:1] == b"0":
            mode = b"%o" % int(mode, 8)
        entries[data[space + 1 : nul]] = (mode, data[nul + 1 : nul + 21])
        at = nul + 21
    return entries


def tree_bytes(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


HOSTILE_IDS = [b" " * 20, b"\0" * 20, b"100644 x\0" + b"1" * 11, b"40000 a b\0" + b"\0" * 10]


@pytest.mark.parametrize("seed", range(40))
def test_a_tree_with_any_ids_and_names_parses_to_the_entries_walked_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    entries = []
    for n in range(rng.randrange(0, 60)):
        mode = rng.choice([b"100644", b"100755", b"40000", b"120000", b"160000"])
        name = rng.choice([b"amr-%06d.json" % n, b"with space %d" % n, b"%d" % n, b"100644 %d" % n])
        oid = rng.choice([*HOSTILE_IDS, hashlib.sha1(b"%d" % n).digest(), rng.randbytes(20)])
        entries.append((mode, name, oid))
    data = tree_bytes(entries)
    assert parse_tree(data) == by_loop(data)
    assert len(parse_tree(data)) == len(entries)


def test_a_mode_written_with_leading_zeros_reads_as_libgit2_writes_it_back() -> None:
    oid = hashlib.sha1(b"x").digest()
    data = tree_bytes([(b"0100644", b"a.json", oid), (b"100644", b"b.json", oid), (b"040000", b"dir", oid)])
    assert parse_tree(data) == {
        b"a.json": (b"100644", oid),
        b"b.json": (b"100644", oid),
        b"dir": (b"40000", oid),
    }


def test_a_truncated_tree_reads_as_the_walk_reads_it() -> None:
    oid = hashlib.sha1(b"x").digest()
    data = tree_bytes([(b"100644", b"a.json", oid), (b"100644", b"b.json", oid)])[:-5]
    assert parse_tree(data) == by_loop(data)


def test_the_state_commit_over_a_bucket_tree_is_the_tree_libgit2_builds(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    files = {f"devices/{n % 7}/amr-{n:05d}.json": b"%d\n" % n for n in range(700)}
    base = write_tree_hashed(repo, files)
    changed = {f"devices/{n % 7}/amr-{n:05d}.json": b"new %d\n" % n for n in range(0, 700, 13)}
    changed["devices/3/amr-99999.json"] = b"joined\n"
    changed["devices/4/amr-00004.json"] = None
    ours = write_tree_hashed(repo, changed, base)
    index = pygit2.Index()
    index.read_tree(repo[base])
    for path, data in changed.items():
        if data is None:
            index.remove(path)
        else:
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB))
    assert ours == index.write_tree(repo)


# --- a changed tree spliced from its base's bytes (fleetcd.git.hashtree._Spliced) ---------------


def rebuilt_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every directory rebuilt from all its entries (the reference the splice must equal)."""
    monkeypatch.setattr(hashtree._Spliced, "of", classmethod(lambda cls, data: None))


def raw_tree(repo: pygit2.Repository, entries: list[tuple[bytes, bytes, bytes]]) -> pygit2.Oid:
    """A tree object of exactly these entries, in this order (not necessarily git's)."""
    return repo.odb.write(pygit2.enums.ObjectType.TREE, tree_bytes(entries))


def random_entries(rng: random.Random, repo: pygit2.Repository) -> list[tuple[bytes, bytes, bytes]]:
    """A bucket-like tree in git's order: files and directories, hostile ids, names with spaces,
    names that sort around a directory's ``name/`` (``a.b`` < ``a/`` < ``a0``)."""
    inner = repo.odb.write(pygit2.enums.ObjectType.TREE, tree_bytes([(b"100644", b"x", b"\1" * 20)]))
    chosen: dict[bytes, tuple[bytes, bytes, bytes]] = {}
    for n in range(rng.randrange(1, 80)):
        name = rng.choice(
            [b"amr-%05d.json" % n, b"with space %d" % n, b"a", b"a.b", b"a0", b"a-b", b"%d" % n]
        )
        if rng.random() < 0.2:
            entry = (b"40000", name, inner.raw)
        else:
            mode = rng.choice([b"100644", b"100644", b"100755", b"120000"])
            entry = (mode, name, rng.choice([*HOSTILE_IDS, rng.randbytes(20)]))
        chosen[name] = entry
    return sorted(chosen.values(), key=lambda e: e[1] + b"/" if e[0] == b"40000" else e[1])


def random_changes(rng: random.Random, entries: list[tuple[bytes, bytes, bytes]]) -> dict[str, bytes | None]:
    """Files added, replaced and deleted; directories deleted, replaced by files, files replaced
    by directories, and paths deleted under files (which stay)."""
    names = [e[1].decode() for e in entries]
    changes: dict[str, bytes | None] = {}
    for _ in range(rng.randrange(1, 12)):
        name = rng.choice([*names, f"new-{rng.randrange(99)}", "a", "a0", "zz z"])
        kind = rng.random()
        if kind < 0.4:
            changes[name] = rng.randbytes(rng.randrange(0, 30))
        elif kind < 0.7:
            changes[name] = None
        elif kind < 0.85:
            changes[f"{name}/inner-{rng.randrange(9)}"] = rng.randbytes(5)
        else:
            changes[f"{name}/x"] = None  # a file of the directory, or nothing under a file
    return consistent(changes)


def consistent(changes: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """Without a path that is both a file and a directory in one update (refused either way)."""
    dirs = {path.split("/")[0] for path in changes if "/" in path}
    return {p: d for p, d in changes.items() if "/" in p or p not in dirs}


@pytest.mark.parametrize("seed", range(60))
def test_a_tree_spliced_from_its_base_is_the_tree_rebuilt_from_all_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random bases in git's order (hostile ids, spaces, files and directories whose names sort
    around each other) and random changes: the spliced tree has the id, and the repository the
    objects, that rebuilding every entry gives; and git reads it as a valid tree."""
    rng = random.Random(seed)
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    entries = random_entries(rng, repo)
    base = raw_tree(repo, entries)
    changes = random_changes(rng, entries)
    assert hashtree._Spliced.of(tree_bytes(entries)) is not None  # the splice is what runs
    spliced = write_tree_hashed(repo, changes, base)
    with monkeypatch.context() as patched:
        rebuilt_only(patched)
        assert write_tree_hashed(repo, changes, base) == spliced
    keys = entry_keys(repo[spliced].read_raw())
    assert keys == sorted(set(keys))


def entry_keys(data: bytes) -> list[bytes]:
    """The names of a tree's entries, in its order, a directory's with ``/`` (git's sort key)."""
    return [name + b"/" if mode == b"40000" else name for name, (mode, _) in parse_tree(data).items()]


@pytest.mark.parametrize("seed", range(10))
def test_a_bucket_tree_spliced_over_several_commits_is_the_tree_libgit2_builds(
    tmp_path: Path, seed: int
) -> None:
    """The state branch's shape (buckets of device files) changed commit after commit, a few
    robots each time (replaced, joined, gone): every tree equals libgit2's index over the same
    files, and git fsck finds nothing wrong."""
    rng = random.Random(seed)
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    robots = [f"amr-{n:05d}" for n in range(400)]
    files = {f"devices/{n % 5:02x}/{r}.json": b"%d\n" % n for n, r in enumerate(robots)}
    tree = write_tree_hashed(repo, files)
    for step in range(4):
        changed: dict[str, bytes | None] = {}
        for path in rng.sample(sorted(files), 12):
            changed[path] = None if rng.random() < 0.2 else b"step %d\n" % step
        changed[f"devices/{rng.randrange(6):02x}/joined-{step}.json"] = b"joined\n"
        index = pygit2.Index()
        index.read_tree(repo[tree])
        for path, data in changed.items():
            if data is None:
                index.remove(path)
                files.pop(path)
            else:
                index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
                files[path] = data
        tree = write_tree_hashed(repo, changed, tree)
        assert tree == index.write_tree(repo), step
    done = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo.path, capture_output=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "case",
    ["out-of-order", "a-name-twice", "file-and-directory-of-one-name", "leading-zero-mode", "truncated"],
)
def test_a_base_not_as_git_writes_it_is_rebuilt_not_spliced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """A base tree someone else wrote out of git's order, with a name twice (as two files, or as a
    file and a directory), a mode with leading zeros, or cut short: no splice (its unchanged
    entries would be copied as they are); the tree is rebuilt from its entries, as before."""
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    one, two = hashlib.sha1(b"1").digest(), hashlib.sha1(b"2").digest()
    inner = repo.odb.write(pygit2.enums.ObjectType.TREE, tree_bytes([(b"100644", b"x", one)])).raw
    entries = {
        "out-of-order": [(b"100644", b"b", one), (b"100644", b"a", two)],
        "a-name-twice": [(b"100644", b"a", one), (b"100644", b"a", two)],
        "file-and-directory-of-one-name": [(b"100644", b"a", one), (b"40000", b"a", inner)],
        "leading-zero-mode": [(b"0100644", b"a", one), (b"100644", b"b", two)],
        "truncated": [(b"100644", b"a", one), (b"100644", b"b", two)],
    }[case]
    data = tree_bytes(entries)[: -5 if case == "truncated" else None]
    assert hashtree._Spliced.of(data) is None
    if case == "truncated":
        return  # not a tree git or libgit2 would store
    base = repo.odb.write(pygit2.enums.ObjectType.TREE, data)
    ours = write_tree_hashed(repo, {"c": b"new"}, base)
    with monkeypatch.context() as patched:
        rebuilt_only(patched)
        assert write_tree_hashed(repo, {"c": b"new"}, base) == ours
    names = [name for name, _ in sorted(parse_tree(repo[ours].read_raw()).items())]
    assert names == sorted({e[1] for e in entries} | {b"c"})


# --- the directories a write leaves, kept for the next write (fleetcd.git.hashtree.TreeMemo) -----


def bucket_history(rng: random.Random, files: dict[str, bytes], step: int) -> dict[str, bytes | None]:
    """A few robots' files replaced, joined or gone, now and then a whole bucket deleted or made a
    file, or a file of the root replaced."""
    changed: dict[str, bytes | None] = {}
    for path in rng.sample(sorted(files), min(len(files), rng.randrange(1, 15))):
        changed[path] = None if rng.random() < 0.2 else b"step %d %d\n" % (step, rng.randrange(9))
    changed[f"devices/{rng.randrange(8):02x}/joined-{step}.json"] = b"joined\n"
    roll = rng.random()
    if roll < 0.1:
        changed = {p: d for p, d in changed.items() if not p.startswith("devices/03/")}
        changed["devices/03"] = None  # a whole bucket gone
    elif roll < 0.15:
        changed = {p: d for p, d in changed.items() if not p.startswith("devices/04/")}
        changed["devices/04"] = b"a file where a bucket was\n"
    elif roll < 0.3:
        changed["state.json"] = b"%d\n" % step
    return changed


@pytest.mark.parametrize("seed", range(20))
def test_writes_through_a_tree_memo_give_the_trees_of_writes_without_it(tmp_path: Path, seed: int) -> None:
    """Random bucket histories (robots' files replaced, joined, gone; buckets deleted whole or
    replaced by a file; an older base written on again, as after a lost race): every tree written
    with the memo has the id of the tree written without it from the same base, and git fsck
    finds nothing wrong."""
    rng = random.Random(seed)
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    files = {f"devices/{n % 7:02x}/amr-{n:05d}.json": b"%d\n" % n for n in range(300)}
    memo = TreeMemo()
    tree = write_tree_hashed(repo, {**files, "state.json": b"{}\n"}, memo=memo)
    older = [tree]
    for step in range(8):
        base = rng.choice(older) if rng.random() < 0.2 else tree
        changed = bucket_history(rng, files, step)
        ours = write_tree_hashed(repo, changed, base, memo=memo)
        assert ours == write_tree_hashed(repo, changed, base), step
        older.append(ours)
        tree = ours
        for path, data in changed.items():
            if data is not None and "/" in path and path.count("/") == 2:
                files[path] = data
            else:
                files = {p: d for p, d in files.items() if p != path and not p.startswith(path + "/")}
    done = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo.path, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_a_write_through_the_memo_reads_only_the_directories_it_does_not_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a write that spliced them, the changed directories are in the memo: the next write on
    top of that tree reads none of them from the repository (a directory the memo lacks still is)."""
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    files = {f"devices/{n % 5:02x}/amr-{n:05d}.json": b"%d\n" % n for n in range(100)}
    memo = TreeMemo()
    base = write_tree_hashed(repo, files, memo=memo)
    first = {f"devices/{n:02x}/amr-{n:05d}.json": b"first\n" for n in range(5)}
    tree = write_tree_hashed(repo, first, base, memo=memo)
    reads: list[bytes] = []
    real = hashtree._read_tree
    monkeypatch.setattr(hashtree, "_read_tree", lambda r, oid: reads.append(oid) or real(r, oid))
    write_tree_hashed(
        repo, {f"devices/{n:02x}/amr-{n:05d}.json": b"second\n" for n in range(5)}, tree, memo=memo
    )
    assert reads == []
    write_tree_hashed(repo, {"devices/09/new.json": b"new\n"}, base)  # no memo: reads the root and devices/
    assert len(reads) == 2


def test_a_write_that_fails_leaves_the_memo_empty_not_half_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails while landing its objects (a full disk) has already spliced the memo's
    directories: the memo is left empty, so the next write reads them again and gives the tree a
    write without the memo gives."""
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    files = {f"devices/{n % 5:02x}/amr-{n:05d}.json": b"%d\n" % n for n in range(100)}
    memo = TreeMemo()
    base = write_tree_hashed(repo, files, memo=memo)
    tree = write_tree_hashed(repo, {"devices/00/amr-00000.json": b"a\n"}, base, memo=memo)
    assert memo.trees
    changed: dict[str, bytes | None] = {
        "devices/00/amr-00005.json": b"b\n",
        "devices/01/amr-00001.json": None,
    }

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(hashtree, "land_objects", full)
        with pytest.raises(SetupError, match="No space left"):
            write_tree_hashed(repo, changed, tree, memo=memo)
    assert memo.trees == {}
    assert write_tree_hashed(repo, changed, tree, memo=memo) == write_tree_hashed(repo, changed, tree)
