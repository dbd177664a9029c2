"""copy_objects: what the mirror lacks, re-hashed, landed at once, without asking for small blobs.

:func:`fleetcd.git.remote.copy_objects` walks from the moved tips and stops at objects the mirror
has; it collects the objects itself (hashing each one: git's header and bytes) and lands them in
one write, instead of libgit2's write that looked each one up again. A blob of at most
:data:`~fleetcd.git.remote.UNCHECKED_BLOB_BYTES` under a tree the mirror lacked is copied without
asking the mirror first (a duplicate costs git nothing, a lookup that misses ~35 us); a larger one
is asked for, so a robot's tree naming the mirror's big blobs does not make each fetch copy them.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import PACK_FROM_OBJECTS, Identity, commit, ref_target, write_tree
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.remote import UNCHECKED_BLOB_BYTES, copy_objects, fetch_moved
from tests.gitrepos import bare_repo, git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
NAMES = ["refs/heads/main", STATUS_PREFIX]
BIG = b"x" * (UNCHECKED_BLOB_BYTES + 1)


@pytest.fixture
def server(tmp_path: Path) -> pygit2.Repository:
    repo = pygit2.Repository(str(bare_repo(tmp_path / "server.git")))
    commit(repo, "refs/heads/main", write_tree(repo, {"fleet.yaml": b"fleet\n"}), "main", [], ROBOT, WHEN)
    return repo


@pytest.fixture
def mirror(tmp_path: Path) -> LockedRepository:
    return open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)


def report(repo: pygit2.Repository, robot: str, files: dict[str, bytes]) -> pygit2.Oid:
    ref = status_ref(robot)
    parent = ref_target(repo, ref)
    return commit(
        repo, ref, write_tree(repo, files), f"status of {robot}", [parent] if parent else [], ROBOT, WHEN
    )


def packs(repo: pygit2.Repository) -> set[str]:
    return {path.name for path in (Path(repo.path) / "objects" / "pack").glob("*.pack")}


def test_a_big_blob_the_mirror_has_is_not_copied_again_under_a_new_tree(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    report(server, "amr-1", {"status.json": b"1", "log": BIG})
    fetch_moved(mirror, server.path, NAMES)
    tip = report(server, "amr-1", {"status.json": b"2", "log": BIG})
    assert copy_objects(server, mirror, [tip]) == 3  # the commit, its tree, the new small blob


def test_a_small_blob_the_mirror_has_is_copied_again_and_git_reads_the_mirror_whole(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    report(server, "amr-1", {"status.json": b"same"})
    fetch_moved(mirror, server.path, NAMES)
    tip = report(server, "amr-1", {"status.json": b"same", "other": b"new"})
    assert copy_objects(server, mirror, [tip]) == 4  # commit, tree, new blob and the known one again
    assert git("fsck", "--no-progress", "--no-dangling", "--strict", cwd=Path(mirror.path)) == ""
    assert git("cat-file", "-p", f"{tip}:status.json", cwd=Path(mirror.path)) == "same"


def test_a_forged_small_blob_under_a_new_tree_is_refused_though_never_looked_up(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    """The blob is copied without asking the mirror for it, not without hashing it."""
    fetch_moved(mirror, server.path, NAMES)
    forged = "1" * 40
    loose = Path(server.path) / "objects" / forged[:2] / forged[2:]
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(zlib.compress(b"blob 6\x00forged"))
    tree = server.odb.write(pygit2.enums.ObjectType.TREE, b"100644 status.json\x00" + bytes.fromhex(forged))
    tip = server.create_commit(status_ref("amr-1"), ROBOT_SIG, ROBOT_SIG, "forged", tree, [])
    with pytest.raises(TransportError, match=forged[:10]):
        fetch_moved(mirror, server.path, NAMES)
    assert tip not in mirror.odb
    assert ref_target(mirror, status_ref("amr-1")) is None


ROBOT_SIG = pygit2.Signature("robot", "robot@fleet.test", 1714564800, 0)


def test_many_reports_land_as_one_pack_that_git_verifies(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    before = packs(mirror)
    tips = [
        report(server, f"amr-{n}", {"status.json": f"{n}".encode()})
        for n in range(PACK_FROM_OBJECTS // 3 + 5)
    ]
    assert copy_objects(server, mirror, tips) == 3 * len(tips)
    new = packs(mirror) - before
    assert len(new) == 1
    git("verify-pack", str(Path(mirror.path) / "objects" / "pack" / new.pop()), cwd=Path(mirror.path))
    assert git("fsck", "--no-progress", "--no-dangling", cwd=Path(mirror.path)) == ""
    assert all(tip in mirror.odb for tip in tips)
    assert copy_objects(server, mirror, tips) == 0  # the tips are there now: nothing below is walked


def test_a_few_objects_are_written_loose_and_nothing_when_the_tips_are_there(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    before = packs(mirror)
    tip = report(server, "amr-1", {"status.json": b"1"})
    assert copy_objects(server, mirror, [tip]) == 3
    assert packs(mirror) == before
    assert mirror[tip].tree["status.json"].data == b"1"  # type: ignore[union-attr]
    assert copy_objects(server, mirror, []) == 0


def test_a_blob_the_server_lacks_under_a_new_tree_is_a_transport_error_naming_it(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    missing = "3" * 40
    tree = server.odb.write(pygit2.enums.ObjectType.TREE, b"100644 status.json\x00" + bytes.fromhex(missing))
    server.create_commit(status_ref("amr-2"), ROBOT_SIG, ROBOT_SIG, "missing blob", tree, [])
    with pytest.raises(TransportError, match=missing[:10]):
        fetch_moved(mirror, server.path, NAMES)
    assert ref_target(mirror, status_ref("amr-2")) is None
