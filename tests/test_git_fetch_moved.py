"""Fetching from a local server by touching only the refs that moved (fleetcd.git.remote.fetch_moved).

The controller's fetch from the embedded default server must cost what moved, not the fleet: the
server's refs are listed, compared with the mirror's packed-refs, objects the mirror lacks are
copied from the server's object database (each re-hashed), and only the moved refs are set. These
tests hold it to what a fetch promises: the mirror ends up with the server's values and objects,
nothing else is touched, a robot's ref may name any object type, and a damaged server is an error,
never a wrong object under a trusted id.
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
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.remote import copy_objects, fetch_moved
from tests.gitrepos import bare_repo, git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
NAMES = ["refs/heads/main", STATUS_PREFIX]
ROBOTS = [f"amr-{n:03d}" for n in range(100)]


@pytest.fixture
def server(tmp_path: Path) -> pygit2.Repository:
    path = bare_repo(tmp_path / "server.git")
    repo = pygit2.Repository(str(path))
    tree = write_tree(repo, {"fleet.yaml": b"fleet\n"})
    commit(repo, "refs/heads/main", tree, "main", [], ROBOT, WHEN)
    for robot in ROBOTS:
        report(repo, robot, b'{"seq": 1}')
    return repo


@pytest.fixture
def mirror(tmp_path: Path) -> LockedRepository:
    return open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)


def report(repo: pygit2.Repository, robot: str, body: bytes) -> pygit2.Oid:
    ref = status_ref(robot)
    parent = ref_target(repo, ref)
    tree = write_tree(repo, {"status.json": body})
    return commit(repo, ref, tree, f"status of {robot}", [parent] if parent else [], ROBOT, WHEN)


def server_refs(repo: pygit2.Repository) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=Path(repo.path))
    return {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}


def test_a_first_fetch_brings_every_ref_and_its_objects(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    found = fetch_moved(mirror, server.path, NAMES)
    assert {ref: str(oid) for ref, oid in found.items()} == server_refs(server)
    assert server_refs(mirror) == server_refs(server)
    assert git("fsck", "--no-progress", cwd=Path(mirror.path)) == ""
    assert not list((Path(mirror.path) / "refs").rglob("amr-*"))  # 100 refs: one packed-refs rewrite


def test_a_fetch_with_nothing_new_touches_nothing(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    packed = Path(mirror.path) / "packed-refs"
    before = packed.stat().st_mtime_ns, sorted((Path(mirror.path) / "objects").rglob("*"))
    found = fetch_moved(mirror, server.path, NAMES)
    assert len(found) == len(ROBOTS) + 1
    assert (packed.stat().st_mtime_ns, sorted((Path(mirror.path) / "objects").rglob("*"))) == before


def test_three_new_reports_copy_three_reports_worth_of_objects(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    moved = {
        status_ref(robot): report(server, robot, f'{{"seq": 2, "r": "{robot}"}}'.encode())
        for robot in ROBOTS[:3]
    }
    before = {ref: ref_target(mirror, ref) for ref in server_refs(server)}
    found = fetch_moved(mirror, server.path, NAMES)
    for ref, oid in moved.items():
        assert found[ref] == oid == ref_target(mirror, ref)
        assert mirror[oid].parents[0].id == before[ref]  # the history is whole: the parent was here
    unchanged = {ref for ref in before if ref not in moved}
    assert all(ref_target(mirror, ref) == before[ref] for ref in unchanged)
    assert git("fsck", "--no-progress", cwd=Path(mirror.path)) == ""


def test_copy_stops_at_objects_the_mirror_already_has(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    tip = report(server, ROBOTS[0], b'{"seq": 2}')
    assert copy_objects(server, mirror, [tip]) == 3  # the commit, its tree, its blob; not the history
    assert copy_objects(server, mirror, [tip]) == 0


def test_a_ref_whose_object_the_mirror_has_is_set_without_copying(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    main = ref_target(server, "refs/heads/main")
    assert main is not None
    update_refs(server, {status_ref(ROBOTS[5]): (ref_target(server, status_ref(ROBOTS[5])), main)})
    objects = sorted((Path(mirror.path) / "objects").rglob("*"))
    found = fetch_moved(mirror, server.path, NAMES)
    assert found[status_ref(ROBOTS[5])] == main == ref_target(mirror, status_ref(ROBOTS[5]))
    assert sorted((Path(mirror.path) / "objects").rglob("*")) == objects


@pytest.mark.parametrize("kind", ["blob", "tree", "annotated tag"])
def test_a_robot_ref_naming_any_object_type_is_mirrored_not_fatal(
    server: pygit2.Repository, mirror: LockedRepository, kind: str
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    victim = status_ref(ROBOTS[7])
    if kind == "blob":
        target = server.create_blob(b"not a report")
    elif kind == "tree":
        target = write_tree(server, {"x": b"y"})
    else:
        main = ref_target(server, "refs/heads/main")
        target = server.create_tag("t", main, pygit2.enums.ObjectType.COMMIT, ROBOT_SIG, "tag")
    update_refs(server, {victim: (ref_target(server, victim), target)})
    report(server, ROBOTS[8], b'{"seq": 2}')
    found = fetch_moved(mirror, server.path, NAMES)
    assert found[victim] == target == ref_target(mirror, victim)
    assert found[status_ref(ROBOTS[8])] == ref_target(server, status_ref(ROBOTS[8]))
    assert fetch_moved(mirror, server.path, NAMES) == found  # and the next fetch still works


ROBOT_SIG = pygit2.Signature("robot", "robot@fleet.test", 1714564800, 0)


def test_a_server_object_that_does_not_hash_to_its_id_is_refused(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    forged = pygit2.Oid(hex="1" * 40)
    body = b"blob 6\x00forged"
    loose = Path(server.path) / "objects" / "11" / ("1" * 38)
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(zlib.compress(body))
    (Path(server.path) / status_ref(ROBOTS[9])).write_text(f"{forged}\n")  # the ref names the forged id
    with pytest.raises(TransportError, match="1111111111"):
        fetch_moved(mirror, server.path, NAMES)
    assert forged not in mirror
    assert ref_target(mirror, status_ref(ROBOTS[9])) != forged


def test_a_ref_to_an_object_the_server_lacks_is_a_transport_error(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    (Path(server.path) / status_ref(ROBOTS[2])).write_text(f"{'2' * 40}\n")
    with pytest.raises(TransportError, match="2222222222"):
        fetch_moved(mirror, server.path, NAMES)
    assert ref_target(mirror, status_ref(ROBOTS[2])) is None  # nothing set: the update never ran


def test_only_local_servers_are_read_directly(mirror: LockedRepository) -> None:
    with pytest.raises(ValueError, match="local"):
        fetch_moved(mirror, "ssh://git@example.com/fleet", NAMES)


def test_a_status_ref_deleted_on_the_server_is_deleted_from_the_mirror(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    gone = status_ref(ROBOTS[7])
    git("update-ref", "-d", gone, cwd=Path(server.path))
    found = fetch_moved(mirror, server.path, NAMES)
    assert gone not in found
    assert mirror.references.get(gone) is None
    assert server_refs(mirror) == server_refs(server)
    assert git("fsck", "--no-progress", "--no-dangling", cwd=Path(mirror.path)) == ""


def test_refs_deleted_on_the_server_as_loose_and_packed_files_all_go_in_one_fetch(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)  # packed in the mirror (one packed-refs rewrite)
    report(server, ROBOTS[1], b'{"seq": 2}')
    fetch_moved(mirror, server.path, NAMES)
    loose = Path(mirror.path) / status_ref(ROBOTS[1])
    assert loose.is_file()  # one moved ref: a loose file over its packed value
    for robot in ROBOTS[:50]:
        git("update-ref", "-d", status_ref(robot), cwd=Path(server.path))
    fetch_moved(mirror, server.path, NAMES)
    assert not loose.exists()
    assert b"amr-000/" not in (Path(mirror.path) / "packed-refs").read_bytes()
    assert server_refs(mirror) == server_refs(server)
    assert len([r for r in server_refs(mirror) if r.startswith(STATUS_PREFIX)]) == 50


def test_a_ref_outside_the_fetched_names_is_never_deleted(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    fetch_moved(mirror, server.path, NAMES)
    main = ref_target(mirror, "refs/heads/main")
    assert main is not None
    update_refs(mirror, {"refs/heads/mainline": (None, main), "refs/keep/x": (None, main)})
    git("update-ref", "-d", status_ref(ROBOTS[0]), cwd=Path(server.path))
    fetch_moved(mirror, server.path, NAMES)
    assert ref_target(mirror, "refs/heads/mainline") == main  # "refs/heads/main" is exact, no prefix
    assert ref_target(mirror, "refs/keep/x") == main
    assert mirror.references.get(status_ref(ROBOTS[0])) is None
