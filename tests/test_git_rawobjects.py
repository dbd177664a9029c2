"""Desired-state commits built as git's bytes in Python (fleetcd.git.rawobjects) against libgit2.

:func:`controller.delivery.write.write_desired_state` hashes every robot's blobs, tree and commit
itself; each id must be the one libgit2 (:func:`fleetcd.git.objects.write_tree` and
:func:`~fleetcd.git.objects.commit`) gives for the same input, or a robot's commit id would
change with the way it was written. Built both ways, under odd names, identities and time zones,
landed as a pack and as loose objects, and read back with ``git fsck``.
"""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git.objects import PACK_FROM_OBJECTS, commit, land_objects, write_tree
from fleetcd.git.rawobjects import Objects, add_blob, add_commit, add_flat_tree
from tests.gitrepos import bare_repo

WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FILES = ["bundle.json", "proof.json", "root.json", "root.json.asc", "trust.json"]


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))


def both(
    repo: pygit2.Repository,
    files: dict[str, bytes],
    author: tuple[str, str],
    when: datetime,
    message: str,
    parents: list[pygit2.Oid] | None = None,
) -> tuple[pygit2.Oid, pygit2.Oid]:
    """The commit of ``files`` as rawobjects builds it (not landed) and as libgit2 writes it."""
    objects: Objects = {}
    blobs = {name: add_blob(objects, data) for name, data in files.items()}
    tree = add_flat_tree(objects, blobs)
    raw = add_commit(objects, tree, [p.raw for p in parents or []], author, when, message)
    theirs_tree = write_tree(repo, files)
    theirs = commit(repo, None, theirs_tree, message, parents or [], author, when)
    assert pygit2.Oid(raw=tree) == theirs_tree
    return pygit2.Oid(raw=raw), theirs


def test_a_robots_desired_state_commit_has_libgit2s_id(repo: pygit2.Repository) -> None:
    files = {name: f"{name} bytes\n".encode() for name in FILES}
    ours, theirs = both(repo, files, ("fleetcd controller", "controller@fleetcd.invalid"), WHEN, "fleetcd: x")
    assert ours == theirs


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(0),
        timedelta(hours=2),
        timedelta(hours=-5),
        timedelta(hours=5, minutes=30),
        timedelta(minutes=-30),
    ],
    ids=["utc", "plus-2", "minus-5", "plus-5-30", "minus-0-30"],
)
def test_the_commit_time_zone_is_written_as_libgit2_writes_it(
    repo: pygit2.Repository, offset: timedelta
) -> None:
    when = WHEN.astimezone(timezone(offset))
    ours, theirs = both(repo, {"a": b"x"}, ("A Name", "a@b.invalid"), when, "message without newline")
    assert ours == theirs


@pytest.mark.parametrize("seed", range(12))
def test_random_file_names_bytes_messages_and_parents_give_libgit2s_ids(
    repo: pygit2.Repository, seed: int
) -> None:
    """Names that sort differently as text and as bytes (``a.b`` / ``a-b`` / ``é``), empty and
    binary files, multi-line and unicode messages, with and without parents."""
    rng = random.Random(seed)
    names = ["a", "a.b", "a-b", "a0", "a_b", "ab", "B", "é", "z.json", "0", "a b", "root.json.asc"]
    files = {
        name: rng.randbytes(rng.randrange(0, 300)) for name in rng.sample(names, rng.randrange(1, len(names)))
    }
    message = rng.choice(["one line", "two\nlines\n", "ünïcode ✓\n\nbody", "ends\n"])
    parents = [commit(repo, None, write_tree(repo, {"p": b"%d" % seed}), "p", [], ("P", "p@p.invalid"), WHEN)]
    ours, theirs = both(
        repo, files, ("Ann O'Neil", "ann@x.invalid"), WHEN, message, parents if seed % 2 else None
    )
    assert ours == theirs


@pytest.mark.parametrize(
    "author",
    [
        (" padded", "a@b.invalid"),
        ("name.", "a@b.invalid"),
        ("a<b", "a@b.invalid"),
        ("name", "a@b>"),
        ("", "a@b"),
    ],
    ids=["leading-space", "trailing-dot", "angle-in-name", "angle-in-email", "empty"],
)
def test_an_identity_libgit2_would_alter_or_refuse_is_refused(author: tuple[str, str]) -> None:
    """Identities libgit2 trims or refuses would give another id than its own: refused, not guessed."""
    with pytest.raises(ValueError):
        add_commit({}, b"\0" * 20, [], author, WHEN, "m")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", ".git", ".GIT", "a\0b"])
def test_a_name_that_is_not_a_plain_file_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        add_flat_tree({}, {name: b"\0" * 20})


def test_a_naive_commit_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        add_commit({}, b"\0" * 20, [], ("A", "a@b.invalid"), WHEN.replace(tzinfo=None), "m")


@pytest.mark.parametrize("robots", [3, PACK_FROM_OBJECTS], ids=["loose", "pack"])
def test_landed_commits_read_back_whole_with_git(tmp_path: Path, robots: int) -> None:
    """Many robots' commits landed at once (loose objects for a few, one pack for many): git
    finds every commit with its files, and fsck finds nothing wrong."""
    path = bare_repo(tmp_path / "landed.git")
    repo = pygit2.Repository(str(path))
    objects: Objects = {}
    shared = {name: add_blob(objects, name.encode()) for name in FILES[2:]}
    heads = []
    for n in range(robots):
        files = {
            "bundle.json": add_blob(objects, b'{"n":%d}' % n),
            "proof.json": add_blob(objects, b"[]"),
            **shared,
        }
        heads.append(
            add_commit(objects, add_flat_tree(objects, files), [], ("C", "c@c.invalid"), WHEN, f"robot {n}")
        )
    land_objects(repo, {pygit2.Oid(raw=oid): entry for oid, entry in objects.items()})
    for n, head in enumerate(heads):
        shown = subprocess.run(
            ["git", "--git-dir", str(path), "show", f"{head.hex()}:bundle.json"],
            capture_output=True,
            check=True,
        )
        assert shown.stdout == b'{"n":%d}' % n
    for n, head in enumerate(heads[:3]):
        subprocess.run(["git", "--git-dir", str(path), "update-ref", f"refs/r/{n}", head.hex()], check=True)
    subprocess.run(
        ["git", "--git-dir", str(path), "fsck", "--strict", "--no-dangling"], check=True, capture_output=True
    )
