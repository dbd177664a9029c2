"""Tree objects read for the state commit (fleetcd.git.hashtree.parse_tree): one regular expression
over a tree git wrote, entry by entry otherwise, the same entries either way.

The state commit reads every bucket tree a change touches (256 of them for 1,000 robots); the
entries it keeps must be exactly the tree's, whatever bytes the 20-byte ids hold (a space, a NUL,
digits that look like a mode), names with spaces, and a mode written with leading zeros (which
libgit2 writes back without them)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pygit2
import pytest

from fleetcd.git.hashtree import parse_tree, write_tree_hashed


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
