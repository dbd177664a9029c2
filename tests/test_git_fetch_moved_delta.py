"""fetch_moved with a kept memo compares only the refs that may have moved, and still misses none.

With a :class:`~fleetcd.git.reflisting.RefListingMemo`, :func:`fleetcd.git.remote.fetch_moved`
compares the server's listing with the mirror's only at the refs either reader saw change since
the last fetch and the refs that fetch moved or deleted. Here a server of a few hundred refs (so
that a step moving many of them makes the mirror's own ``packed-refs`` rewrite,
:func:`fleetcd.git.packedrefs.update_packed`) lives a seeded random life: refs moved, added and
deleted, loose and packed, packed by ``git pack-refs``, a robot's ref made symbolic or pointed at a
blob. And the mirror is written behind the memo's back, as someone running git in it would: a ref
moved, deleted or added there by ``git update-ref``, its refs packed, a line of its
``packed-refs`` edited in place to another id of the same length.

After every fetch the answer is a cold fetch's (no memo, a fresh mirror), the mirror holds exactly
the server's refs under the names, and the refs whose value differs from the last fetch's answer
are among those the answer names as changed.
"""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git import remote
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.remote import ListedRefs, fetch_moved
from tests.gitrepos import bare_repo, git

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
NAMES = ["refs/heads/main", STATUS_PREFIX]
ROBOTS = [f"amr-{n:03d}" for n in range(240)]
SEEDS = (11, 12, 13)
STEPS = 16


def git_refs(path: Path) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
    return {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}


def under_names(refs: dict[str, str]) -> dict[str, str]:
    return {ref: oid for ref, oid in refs.items() if ref in NAMES or ref.startswith(STATUS_PREFIX)}


class Server:
    def __init__(self, path: Path) -> None:
        self.path = bare_repo(path)
        self.repo = pygit2.Repository(str(self.path))
        self.when = START
        self.move(["refs/heads/main"], "main")

    def move(self, refs: list[str], text: str) -> None:
        """Each ref one commit further, all in one update (a big one writes loose files by git)."""
        self.when += timedelta(seconds=1)
        updates = {}
        tree = write_tree(self.repo, {"status.json": text.encode()})
        for ref in refs:
            old = ref_target(self.repo, ref)
            parents = [old] if old is not None and isinstance(self.repo.get(old), pygit2.Commit) else []
            new = commit(self.repo, None, tree, f"{ref} {text}", parents, ROBOT, self.when)
            updates[ref] = (old, new)
        update_refs(self.repo, updates)


def present(server: Server) -> list[str]:
    return sorted(ref for ref in under_names(git_refs(server.path)) if ref.startswith(STATUS_PREFIX))


def happen(server: Server, mirror: Path, rng: random.Random, step: int) -> str:
    op = rng.choice(
        (
            "move-many",
            "move-many",
            "move-few",
            "add",
            "delete",
            "server-pack",
            "symbolic",
            "blob",
            "mirror-update",
            "mirror-delete",
            "mirror-add",
            "mirror-pack",
            "mirror-edit",
        )
    )
    refs = present(server)
    text = f"step {step}"
    if op == "move-many" and refs:
        server.move(rng.sample(refs, min(len(refs), rng.randrange(64, 150))), text)
    elif op == "move-few" and refs:
        server.move(rng.sample(refs, min(len(refs), 3)), text)
    elif op == "add":
        fresh = [status_ref(robot) for robot in ROBOTS if status_ref(robot) not in refs]
        server.move(rng.sample(fresh, min(len(fresh), rng.choice((1, 70)))), text)
    elif op == "delete" and refs:
        gone = rng.sample(refs, min(len(refs), rng.choice((1, 5))))
        for ref in gone:
            git("update-ref", "-d", "--no-deref", ref, cwd=server.path)
    elif op == "server-pack":
        git("pack-refs", "--all", cwd=server.path)
    elif op == "symbolic" and refs:  # git lists it under its target's id (ls-remote, not the reader)
        git("symbolic-ref", rng.choice(refs), "refs/heads/main", cwd=server.path)
    elif op == "blob" and refs:
        blob = server.repo.create_blob(f"not a report {step}".encode())
        ref = rng.choice(refs)
        update_refs(server.repo, {ref: (ref_target(server.repo, ref), blob)})
    elif op == "mirror-update":
        held = under_names(git_refs(mirror))
        if len(held) >= 2:
            ref, other = rng.sample(sorted(held), 2)
            git("update-ref", ref, held[other], cwd=mirror)
    elif op == "mirror-delete":
        held = under_names(git_refs(mirror))
        if held:
            git("update-ref", "-d", rng.choice(sorted(held)), cwd=mirror)
    elif op == "mirror-add":
        main = git_refs(mirror).get("refs/heads/main")
        if main:
            git("update-ref", f"{STATUS_PREFIX}not-on-the-server-{step}", main, cwd=mirror)
    elif op == "mirror-pack":
        git("pack-refs", "--all", cwd=mirror)
    elif op == "mirror-edit":
        edit_packed_line(mirror, rng)
    if not op.startswith("mirror-") and rng.random() < 0.5:  # as a push by hand folds loose refs
        git("pack-refs", "--all", cwd=server.path)
    return op


def edit_packed_line(mirror: Path, rng: random.Random) -> None:
    """One status ref's line of the mirror's packed-refs given another id the mirror has (the
    file keeps its length): what a hand edit, or a disk handing back other bytes, looks like."""
    packed = mirror / "packed-refs"
    if not packed.exists():
        return
    lines = packed.read_bytes().split(b"\n")
    status = [n for n, line in enumerate(lines) if b" " + STATUS_PREFIX.encode() in line]
    if len(status) < 2:
        return
    one, other = rng.sample(status, 2)
    oid = lines[other].split(b" ", 1)[0]
    lines[one] = oid + lines[one][len(oid) :]
    packed.write_bytes(b"\n".join(lines))


def cold(server: Server, where: Path) -> dict[str, str]:
    mirror = open_locked_mirror(where, wait_seconds=5)
    try:
        return {ref: str(oid) for ref, oid in fetch_moved(mirror, str(server.path), NAMES).items()}
    finally:
        mirror.close()


def fsck(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "fsck", "--no-dangling", "--no-progress", "--connectivity-only"],
        cwd=path,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def ref_by_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refs compared one by one however many may have changed (a few hundred refs here: a step
    moving 64 or more would otherwise be compared whole)."""
    monkeypatch.setattr(remote, "WHOLE_FROM_SHARE", 1)


@pytest.mark.usefixtures("ref_by_ref")
@pytest.mark.parametrize("seed", SEEDS)
def test_a_kept_memo_fetches_what_a_cold_fetch_does_through_a_random_life(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    server = Server(tmp_path / "server.git")
    server.move([status_ref(robot) for robot in ROBOTS[:200]], "first")
    git("pack-refs", "--all", cwd=server.path)
    mirror: LockedRepository = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    mirror_path = Path(mirror.path)
    memo = RefListingMemo()
    before = {ref: str(oid) for ref, oid in fetch_moved(mirror, str(server.path), NAMES, memo=memo).items()}
    deltas = 0
    for step in range(STEPS):
        op = happen(server, mirror_path, rng, step)
        where = f"seed {seed} step {step} ({op})"
        found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
        assert isinstance(found, ListedRefs)
        answer = {ref: str(oid) for ref, oid in found.items()}
        assert answer == cold(server, tmp_path / f"cold-{step}.git"), where
        assert under_names(git_refs(mirror_path)) == answer, where
        assert fsck(mirror_path).returncode == 0, where
        if found.changed is not None:
            deltas += 1
            differ = {ref for ref in before.keys() | answer.keys() if before.get(ref) != answer.get(ref)}
            assert differ <= found.changed, f"{where}: {sorted(differ - found.changed)}"
        before = answer
    # the memo's way was taken (a symbolic ref on the server makes every later listing git's own)
    assert deltas >= 4


def test_a_ref_moved_in_the_mirror_behind_the_memo_is_set_back_to_the_servers(tmp_path: Path) -> None:
    """git run by hand in the mirror moves a packed ref (a rewrite of packed-refs of one length):
    the next fetch sees the mirror's bytes changed and puts the server's value back, though the
    server did not change at all."""
    server, refs, mirror, memo = fetched_once(tmp_path, NAMES)
    git("pack-refs", "--all", cwd=Path(mirror.path))
    fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    held = git_refs(Path(mirror.path))
    main = held["refs/heads/main"]
    git("update-ref", "--no-deref", refs[7], main, cwd=Path(mirror.path))
    git("pack-refs", "--all", cwd=Path(mirror.path))
    assert git_refs(Path(mirror.path))[refs[7]] == main
    found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is not None  # the memo's way
    assert refs[7] in found.changed
    assert git_refs(Path(mirror.path))[refs[7]] == held[refs[7]] == git_refs(server.path)[refs[7]]
    assert memo.mirror is not None and memo.mirror.blocks >= 1


@pytest.mark.usefixtures("ref_by_ref")
def test_a_fetch_that_failed_leaves_the_next_one_comparing_every_ref(tmp_path: Path) -> None:
    """A fetch that raised (here: a moved ref's object is missing on the server) may have left the
    mirror half done: the next one does not trust what the memo knew and compares the listings whole."""
    server = Server(tmp_path / "server.git")
    refs = [status_ref(robot) for robot in ROBOTS[:10]]
    server.move(refs, "first")
    mirror = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    memo = RefListingMemo()
    fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert memo.touched is not None
    missing = "1" * 40
    (server.path / refs[0]).write_text(missing + "\n")
    with pytest.raises(Exception, match=missing):
        fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert memo.touched is None
    server.move([refs[0]], "again")
    found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is None  # compared whole
    assert under_names(git_refs(Path(mirror.path))) == under_names(git_refs(server.path))
    found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is not None  # and the memo's way after


def fetched_once(
    tmp_path: Path, names: list[str]
) -> tuple[Server, list[str], LockedRepository, RefListingMemo]:
    """A server holding 100 robots' status refs, packed (loose refs would be read as changed each
    time), and a mirror fetched from it once through a new memo."""
    server = Server(tmp_path / "server.git")
    refs = [status_ref(robot) for robot in ROBOTS[:100]]
    server.move(refs, "first")
    git("pack-refs", "--all", cwd=server.path)
    mirror = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    memo = RefListingMemo()
    fetch_moved(mirror, str(server.path), names, memo=memo)
    return server, refs, mirror, memo


def packed_pair(
    tmp_path: Path, names: list[str]
) -> tuple[Server, list[str], LockedRepository, RefListingMemo]:
    """:func:`fetched_once`, then the mirror's refs packed and fetched again: the memo's reader
    knows the mirror's packed-refs bytes."""
    server, refs, mirror, memo = fetched_once(tmp_path, names)
    git("pack-refs", "--all", cwd=Path(mirror.path))
    fetch_moved(mirror, str(server.path), names, memo=memo)
    return server, refs, mirror, memo


@pytest.mark.usefixtures("ref_by_ref")
def test_a_mirror_whose_old_packed_refs_is_put_back_is_fetched_again(tmp_path: Path) -> None:
    """The mirror's packed-refs from before a fetch is put back after it (a backup restored): the
    mirror's reader sees the very bytes it last read, so only what the last fetch moved tells
    that those refs are behind the server again."""
    server, refs, mirror, memo = packed_pair(tmp_path, NAMES)
    mirror_path = Path(mirror.path)
    backup = (mirror_path / "packed-refs").read_bytes()
    server.move(refs[:80], "second")  # >= 64 refs: one rewrite of the mirror's packed-refs
    git("pack-refs", "--all", cwd=server.path)  # no loose ref on the server, read as changed each time
    fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert under_names(git_refs(mirror_path)) == under_names(git_refs(server.path))
    (mirror_path / "packed-refs").write_bytes(backup)
    assert under_names(git_refs(mirror_path)) != under_names(git_refs(server.path))
    found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is not None  # the memo's way
    assert set(refs[:80]) <= found.changed < set(refs)  # what the last fetch moved, not every ref
    assert under_names(git_refs(mirror_path)) == under_names(git_refs(server.path))


def test_a_fetch_where_most_refs_may_have_changed_compares_the_listings_whole(tmp_path: Path) -> None:
    """A fan-out (here: 70 of 100 refs moved) is compared whole, in C, and says so (no changed
    refs named: the caller rebuilds what it keeps); so is the next fetch, which must look again at
    the fan-out's refs too; the one after is the memo's."""
    server, refs, mirror, memo = fetched_once(tmp_path, NAMES)
    server.move(refs[:70], "fan-out")  # >= 64: one rewrite of the mirror's packed-refs, no loose file
    git("pack-refs", "--all", cwd=server.path)
    found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is None
    assert under_names(git_refs(Path(mirror.path))) == under_names(git_refs(server.path))
    for text in ("a few", "a few more"):
        server.move(refs[:3], text)
        git("pack-refs", "--all", cwd=server.path)
        found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is not None
    assert set(refs[:3]) <= found.changed and len(found.changed) * remote.WHOLE_FROM_SHARE <= len(found)
    assert under_names(git_refs(Path(mirror.path))) == under_names(git_refs(server.path))
