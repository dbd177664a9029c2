"""A repository's refs parsed again only where their bytes changed (fleetcd.git.reflisting), and the
fetch built on it (fleetcd.git.remote.fetch_moved with a memo; controller.reconcile.source.fetch_all).

A :class:`RefReader` keeps what it parsed from ``packed-refs`` with the bytes it came from. Every
shortcut is held to a cold read (:func:`fleetcd.git.packedrefs.read_refs`) of the same repository:
bytes unchanged, one line changed, refs deleted, loose files shadowing packed ones, a symbolic
ref, a name that is not UTF-8, ``packed-refs`` replaced while the loose files were read. Real git
throughout; the one stand-in is ``os.walk`` of the reader's module, to land a ``git pack-refs``
exactly between reading ``packed-refs`` and the loose files.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git import reflisting
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import Identity, commit, ref_target, write_tree
from fleetcd.git.packedrefs import read_ref_storage, read_refs
from fleetcd.git.reflisting import RefListingMemo, RefReader
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.remote import fetch_moved
from tests.gitrepos import bare_repo, git
from tests.gpgkeys import KeyFactory
from tests.sim.world import make_world

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
NAMES = ("refs/heads/main", STATUS_PREFIX)
ROBOTS = [f"amr-{n:03d}" for n in range(40)]


def report(repo: pygit2.Repository, robot: str, body: bytes) -> pygit2.Oid:
    ref = status_ref(robot)
    parent = ref_target(repo, ref)
    tree = write_tree(repo, {"status.json": body})
    return commit(repo, ref, tree, f"status of {robot}", [parent] if parent else [], ROBOT, WHEN)


@pytest.fixture
def server(tmp_path: Path) -> pygit2.Repository:
    path = bare_repo(tmp_path / "server.git")
    repo = pygit2.Repository(str(path))
    commit(repo, "refs/heads/main", write_tree(repo, {"fleet.yaml": b"fleet\n"}), "main", [], ROBOT, WHEN)
    for robot in ROBOTS:
        report(repo, robot, b'{"seq": 1}')
    git("pack-refs", "--all", cwd=path)
    return repo


@pytest.fixture
def mirror(tmp_path: Path) -> LockedRepository:
    return open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)


def path_of(repo: pygit2.Repository) -> Path:
    return Path(repo.path)


def cold(repo: pygit2.Repository) -> dict[str, str]:
    return read_refs(path_of(repo), NAMES)


def test_unchanged_packed_refs_are_not_parsed_again_and_give_the_cold_answer(
    server: pygit2.Repository,
) -> None:
    reader = RefReader(NAMES)
    first = reader.read(path_of(server))
    assert first == cold(server) and len(first or {}) == len(ROBOTS) + 1
    assert (reader.full, reader.diffed, reader.same) == (1, 0, 0)
    first = dict(first or {})
    first.clear()  # the caller's own dict: emptying it changes nothing kept
    assert reader.read(path_of(server)) == cold(server)
    assert (reader.full, reader.diffed, reader.same) == (1, 0, 1)


def test_one_changed_line_is_diffed_and_a_deleted_ref_is_gone(server: pygit2.Repository) -> None:
    reader = RefReader(NAMES)
    reader.read(path_of(server))
    report(server, "amr-007", b'{"seq": 2}')
    server.references.delete(status_ref("amr-011"))
    git("pack-refs", "--all", cwd=path_of(server))
    got = reader.read(path_of(server))
    assert (reader.walked, reader.diffed, reader.blocks, reader.full) == (1, 0, 0, 1)  # not split whole
    assert got == cold(server)
    assert status_ref("amr-011") not in (got or {})
    assert (got or {})[status_ref("amr-007")] == str(ref_target(server, status_ref("amr-007")))


def test_a_loose_ref_shadows_its_packed_value(server: pygit2.Repository) -> None:
    reader = RefReader(NAMES)
    reader.read(path_of(server))
    moved = report(server, "amr-003", b'{"seq": 9}')  # loose now, the packed line still the old one
    got = reader.read(path_of(server)) or {}
    assert reader.same == 1  # packed-refs itself did not change
    assert got[status_ref("amr-003")] == str(moved)
    assert got == cold(server)


def test_a_status_ref_made_symbolic_on_the_server_is_listed_by_git_under_its_targets_id(
    server: pygit2.Repository, tmp_path: Path
) -> None:
    """A symbolic loose ref is git's to resolve: the reader gives up (None) rather than hide it, and
    the fetch lists the server through ``git ls-remote``, which names it with its target's object
    id; the mirror gets that commit under the robot's status ref, for the ingest to refuse (no
    status.json), as before the refs were read from their bytes."""
    reader = RefReader(NAMES)
    assert reader.read(path_of(server)) is not None
    symbolic = path_of(server) / status_ref("amr-004")
    symbolic.parent.mkdir(parents=True, exist_ok=True)
    symbolic.write_text("ref: refs/heads/main\n")
    assert reader.read(path_of(server)) is None
    mirror = pygit2.init_repository(str(tmp_path / "mirror.git"), bare=True)
    moved = fetch_moved(mirror, str(path_of(server)), NAMES, memo=RefListingMemo())
    assert str(moved[status_ref("amr-004")]) == str(ref_target(server, "refs/heads/main"))
    assert ref_target(mirror, status_ref("amr-004")) == ref_target(server, "refs/heads/main")


def test_a_name_that_is_not_utf8_is_left_out_and_the_rest_still_read(server: pygit2.Repository) -> None:
    packed = path_of(server) / "packed-refs"
    data = packed.read_bytes()
    oid = str(ref_target(server, "refs/heads/main")).encode()
    packed.write_bytes(data + oid + b" refs/fleetcd/status/amr-\xff/report\n")
    got = RefReader(NAMES).read(path_of(server)) or {}
    assert len(got) == len(ROBOTS) + 1 and all("\ufffd" not in ref for ref in got)


def test_a_reftable_repository_is_not_read_here(server: pygit2.Repository) -> None:
    (path_of(server) / "reftable").mkdir()
    assert RefReader(NAMES).read(path_of(server)) is None


@pytest.fixture
def pack_refs_mid_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every git dir put in the list has ``git pack-refs --all`` run on it the first time the
    reader starts walking its loose files (after it read ``packed-refs``)."""
    due: list[Path] = []
    real = os.walk

    def walk(top: str | os.PathLike[str], *args: object, **kwargs: object) -> Iterator[object]:
        for git_dir in list(due):
            if str(top).startswith(str(git_dir)):
                due.remove(git_dir)
                git("pack-refs", "--all", cwd=git_dir)
        return real(top)

    monkeypatch.setattr(reflisting.os, "walk", walk)
    yield due


def test_packed_refs_replaced_while_the_loose_files_are_read_is_no_answer_and_the_fetch_lists_via_git(
    server: pygit2.Repository, mirror: LockedRepository, pack_refs_mid_read: list[Path]
) -> None:
    """A robot's report lands as a loose file, then the server packs its refs right between the
    reader's two reads: the loose file is gone and its packed line is not in the bytes read. The
    reader says it cannot tell; the fetch asks git instead and still brings the report."""
    memo = RefListingMemo()
    fetch_moved(mirror, str(path_of(server)), NAMES, memo=memo)
    new = report(server, "amr-020", b'{"seq": 5}')
    pack_refs_mid_read.append(path_of(server))
    assert memo.server_reader(NAMES).read(path_of(server)) is None
    pack_refs_mid_read.append(path_of(server))
    found = fetch_moved(mirror, str(path_of(server)), NAMES, memo=memo)
    assert found[status_ref("amr-020")] == new
    assert ref_target(mirror, status_ref("amr-020")) == new
    assert dict(found) == {ref: pygit2.Oid(hex=oid) for ref, oid in cold(server).items()}


def test_a_server_that_is_not_there_is_a_transport_error_with_a_memo_too(
    tmp_path: Path, mirror: LockedRepository
) -> None:
    with pytest.raises(TransportError):
        fetch_moved(mirror, str(tmp_path / "nowhere.git"), NAMES, memo=RefListingMemo())


def test_a_kept_memo_after_the_mirror_was_changed_behind_it_still_makes_the_mirror_the_server(
    server: pygit2.Repository, mirror: LockedRepository
) -> None:
    """The memo holds parsed bytes, not beliefs about the mirror: refs set, deleted or packed in
    the mirror between two fetches (a crash after writing, a ``git pack-refs`` by hand) are seen."""
    memo = RefListingMemo()
    fetch_moved(mirror, str(path_of(server)), NAMES, memo=memo)
    main = ref_target(server, "refs/heads/main")
    assert main is not None
    mirror.references.create(status_ref("amr-001"), main, force=True)  # wrong value
    mirror.references.delete(status_ref("amr-002"))
    mirror.references.create(status_ref("ghost"), main)  # the server has none
    git("pack-refs", "--all", cwd=Path(mirror.path))
    fetch_moved(mirror, str(path_of(server)), NAMES, memo=memo)
    assert read_refs(Path(mirror.path), NAMES) == cold(server)


def test_the_desired_refs_check_judges_each_name_once_and_still_deletes_a_bad_one_every_fetch(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A ref under the desired-state prefixes that is no desired-state ref (a hostile push into
    ``refs/namespaces/``) is deleted from the mirror after every fetch, memo or not; a desired
    ref the mirror holds but the server lacks (written, never pushed) is gone after the fetch."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    server = pygit2.Repository(str(world.server))
    main = ref_target(server, "refs/heads/main")
    assert main is not None
    evil = "refs/namespaces/stg-1/refs/heads/evil"
    server.references.create(evil, main)
    memo = RefListingMemo()
    for _ in range(2):
        with open_mirror(world.settings.source) as repo:
            repo.references.create("refs/fleetcd/desired/unpushed-1", main, force=True)
            fetched = fetch_all(repo, world.settings.source, memo=memo)
            assert repo.references.get(evil) is None
            assert repo.references.get("refs/fleetcd/desired/unpushed-1") is None
            assert fetched.main == main
    assert evil not in memo.judged
    assert any(ref.startswith("refs/namespaces/") for ref in memo.judged)
    listed = subprocess.run(
        ["git", "--git-dir", str(world.server), "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert evil in listed  # the server keeps it: only the mirror drops it


def test_the_idle_checks_listing_from_the_kept_reader_is_what_the_storage_itself_parses(
    server: pygit2.Repository,
) -> None:
    """The idle check hands the reader the very bytes it fingerprinted (not a second read, which
    could see other refs than the fingerprint names): the reader's refs are the storage's own parse,
    before and after reports, a symbolic loose ref, a deletion and a pack."""
    names = ("refs/heads/main", "refs/heads/fleetcd/state", STATUS_PREFIX, "refs/namespaces/")
    reader = RefReader(names)
    storage = read_ref_storage(path_of(server))
    assert storage is not None
    assert reader.from_bytes(storage.packed, storage.loose) == storage.refs(names)
    report(server, "amr-005", b'{"seq": 3}')  # loose over its packed line
    server.references.delete(status_ref("amr-006"))
    symbolic = path_of(server) / status_ref("amr-008")
    symbolic.parent.mkdir(parents=True, exist_ok=True)
    symbolic.write_text("ref: refs/heads/main\n")
    changed = read_ref_storage(path_of(server))
    assert changed is not None and changed.fingerprint != storage.fingerprint
    assert reader.from_bytes(changed.packed, changed.loose) == changed.refs(names)
    git("pack-refs", "--all", cwd=path_of(server))
    packed = read_ref_storage(path_of(server))
    assert packed is not None
    assert reader.from_bytes(packed.packed, packed.loose) == packed.refs(names)
    assert (reader.full, reader.diffed + reader.blocks + reader.walked) == (1, 2)


def test_with_a_kept_reader_the_idle_check_still_sees_every_report_and_a_pack_alone_stays_idle(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """``controller run``'s idle check parses the server's refs through the reader the fetch keeps:
    a robot's heartbeat (one loose ref) still ends idleness at the next reconcile, every time, and
    the server packing its refs (new bytes, the same refs) does not."""
    world = make_world(tmp_path, keys)
    world.settings = replace(world.settings, cache=ReconcileCache())
    world.reconcile()
    world.clock.tick(1)
    assert world.reconcile().idle
    for _ in range(3):
        world.sim.push_report("stg-1", world.clock.now)
        world.clock.tick(1)
        assert not world.reconcile().idle
        world.clock.tick(1)
        assert world.reconcile().idle
    git("pack-refs", "--all", cwd=world.server)
    world.clock.tick(1)
    assert world.reconcile().idle
    assert world.settings.cache is not None and world.settings.cache.refs.server is not None
    server = world.settings.cache.refs.server
    assert server.diffed + server.blocks + server.walked >= 1
