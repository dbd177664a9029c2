"""A state commit pushed by hand sends the pack its tree was written as (fleetcd.git.localpush._send_landed).

``write_tree_hashed`` lands every object a new tree has and its base tree lacks as one pack; a push
by hand of a commit of that tree on a parent of that base links that pack into the server instead
of walking both trees with ``git pack-objects`` and hashing it again with ``git index-pack``. The
server must end up exactly as the walk would leave it: every object reachable (``git fsck
--connectivity-only``), the same files, no ``.keep`` left. Anything else (a tree landed on another
base, a pack repacked away, a merge, loose objects) is walked as before; a seeded random history of
writes, lost pushes and repacks holds the server connected after every push.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git import refs
from fleetcd.git.hashtree import write_tree_hashed
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.objects import Identity, commit, landed_tree
from tests.gitrepos import git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
STATE = refs.STATE_BRANCH
ROBOTS = 700  # more than PACK_FROM_OBJECTS objects change in a half write: a pack


def robot_file(n: int) -> str:
    return f"devices/{n % 16:02x}/robot-{n:04d}.json"


class Fleet:
    """A mirror writing state commits with write_tree_hashed, and a bare server pushed by hand."""

    def __init__(self, root: Path) -> None:
        self.mirror = pygit2.init_repository(str(root / "mirror.git"), bare=True)
        self.server = root / "server.git"
        git("init", "-q", "--bare", str(self.server), cwd=root)
        self.files: dict[str, bytes] = {}  # what the server's state branch holds
        self.steps = 0

    def server_state(self) -> pygit2.Oid | None:
        found = pygit2.Repository(str(self.server)).references.get(STATE)
        return None if found is None else found.target

    def write(self, changes: dict[str, bytes | None], parent: pygit2.Oid | None = None) -> pygit2.Oid:
        """A state commit in the mirror: the server's state (or ``parent``) with ``changes``."""
        parent = self.server_state() if parent is None else parent
        base = self.mirror[parent].peel(pygit2.Tree).id if parent is not None else None
        tree = write_tree_hashed(self.mirror, changes, base)
        self.steps += 1
        when = WHEN + timedelta(minutes=self.steps)
        return commit(
            self.mirror, None, tree, f"state {self.steps}", [parent] if parent else [], AUTHOR, when
        )

    def push(self, state: pygit2.Oid) -> None:
        lease = self.server_state()
        push_by_hand(self.mirror, self.server, {STATE: state}, leases={STATE: lease}, timeout_s=60)

    def served_files(self) -> dict[str, bytes]:
        repo = pygit2.Repository(str(self.server))
        tree = repo.references[STATE].peel(pygit2.Tree)
        found: dict[str, bytes] = {}

        def walk(node: pygit2.Tree, prefix: str) -> None:
            for entry in node:
                if isinstance(entry, pygit2.Tree):
                    walk(entry, f"{prefix}{entry.name}/")
                else:
                    found[f"{prefix}{entry.name}"] = entry.read_raw()  # type: ignore[attr-defined]

        walk(tree, "")
        return found

    def assert_whole(self) -> None:
        git("fsck", "--connectivity-only", "--no-dangling", cwd=self.server)
        assert self.served_files() == self.files
        assert not list((self.server / "objects" / "pack").glob("*.keep"))


def apply(files: dict[str, bytes], changes: dict[str, bytes | None]) -> None:
    for path, data in changes.items():
        if data is None:
            files.pop(path, None)
        else:
            files[path] = data


def served_packs(fleet: Fleet) -> set[str]:
    return {path.name for path in (fleet.server / "objects" / "pack").glob("pack-*.idx")}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    made = Fleet(tmp_path)
    first: dict[str, bytes | None] = {robot_file(n): b'{"robot": %d}\n' % n for n in range(ROBOTS)}
    made.push(made.write(first))
    apply(made.files, first)
    return made


def test_a_state_commit_written_as_one_pack_is_sent_as_that_pack_and_the_server_is_whole(
    fleet: Fleet,
) -> None:
    fleet.assert_whole()
    changes: dict[str, bytes | None] = {
        robot_file(n): b'{"robot": %d, "v": 2}\n' % n for n in range(0, ROBOTS, 2)
    }
    changes[robot_file(1)] = None
    state = fleet.write(changes)
    landed = landed_tree(fleet.mirror, fleet.mirror[state].peel(pygit2.Tree).id)
    assert landed is not None
    fleet.push(state)
    apply(fleet.files, changes)
    fleet.assert_whole()
    assert landed.index.name in served_packs(fleet)  # the very pack, not one made by pack-objects
    assert (fleet.server / "objects" / "pack" / landed.index.name).stat().st_mode & 0o777 == 0o444


def test_attack_a_tree_landed_on_another_base_is_walked_so_the_objects_only_that_base_had_go_too(
    fleet: Fleet,
) -> None:
    """The mirror holds a commit the server never got (a push lost, a reconcile killed); a tree
    landed on top of it, committed on the server's state instead, lacks in its pack what only that
    commit added: trusting the pack would leave the server without it."""
    lost: dict[str, bytes | None] = {"only-in-the-lost-commit.json": b"not on the server\n"}
    unpushed = fleet.write(lost)
    many: dict[str, bytes | None] = {robot_file(n): b'{"robot": %d, "v": 3}\n' % n for n in range(ROBOTS)}
    on_top = fleet.write(many, parent=unpushed)
    tree = fleet.mirror[on_top].peel(pygit2.Tree).id
    assert landed_tree(fleet.mirror, tree) is not None
    served = fleet.server_state()
    assert served is not None
    grafted = commit(fleet.mirror, None, tree, "on the server's state", [served], AUTHOR, WHEN)
    before = served_packs(fleet)
    fleet.push(grafted)
    apply(fleet.files, {**lost, **many})
    fleet.assert_whole()
    assert landed_tree(fleet.mirror, tree).index.name not in served_packs(fleet) - before  # type: ignore[union-attr]


def test_a_landed_pack_repacked_away_in_the_mirror_is_walked_instead(fleet: Fleet) -> None:
    changes: dict[str, bytes | None] = {robot_file(n): b'{"robot": %d, "v": 4}\n' % n for n in range(ROBOTS)}
    state = fleet.write(changes)
    git("repack", "-a", "-d", "--keep-unreachable", "-q", cwd=Path(fleet.mirror.path))
    landed = landed_tree(fleet.mirror, fleet.mirror[state].peel(pygit2.Tree).id)
    assert landed is not None and not landed.index.exists()
    fleet.push(state)
    apply(fleet.files, changes)
    fleet.assert_whole()


def test_a_push_killed_after_linking_the_pack_is_replayed_and_the_keep_it_left_is_not_ours_to_remove(
    fleet: Fleet,
) -> None:
    """A kill between linking the pack and moving the ref leaves the pack, a ``tmp_`` file and a
    ``.keep`` naming the dead push (housekeeping removes that one): the replay moves the ref."""
    changes: dict[str, bytes | None] = {robot_file(n): b'{"robot": %d, "v": 5}\n' % n for n in range(ROBOTS)}
    state = fleet.write(changes)
    landed = landed_tree(fleet.mirror, fleet.mirror[state].peel(pygit2.Tree).id)
    assert landed is not None
    pack_dir = fleet.server / "objects" / "pack"
    name = landed.index.name.removesuffix(".idx")
    os.link(landed.index.with_suffix(".pack"), pack_dir / f"{name}.pack")
    (pack_dir / f"tmp_idx_{name}.1.fleetcd").write_bytes(b"half")
    dead = pack_dir / f"{name}.keep"
    dead.write_text("fleetcd push by hand from elsewhere pid 1\n")
    fleet.push(state)
    apply(fleet.files, changes)
    git("fsck", "--connectivity-only", "--no-dangling", cwd=fleet.server)
    assert fleet.served_files() == fleet.files
    assert dead.read_text().endswith("pid 1\n")  # someone else's keep: left for housekeeping


def test_a_commit_whose_tree_is_its_parents_sends_the_commit_alone(fleet: Fleet) -> None:
    served = fleet.server_state()
    assert served is not None
    same = commit(
        fleet.mirror, None, fleet.mirror[served].peel(pygit2.Tree).id, "again", [served], AUTHOR, WHEN
    )
    before = served_packs(fleet)
    fleet.push(same)
    fleet.assert_whole()
    assert served_packs(fleet) == before
    assert fleet.server_state() == same


@pytest.mark.parametrize("seed", range(6))
def test_a_random_history_of_writes_lost_pushes_and_repacks_keeps_the_server_whole(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    fleet = Fleet(tmp_path)
    for step in range(8):
        changes: dict[str, bytes | None] = {}
        for n in rng.sample(range(ROBOTS), k=rng.choice([3, 40, ROBOTS // 2, ROBOTS])):
            changes[robot_file(n)] = None if rng.random() < 0.1 else b'{"robot": %d, "s": %d}\n' % (n, step)
        event = rng.choice(["push", "push", "lost", "repack", "on an unpushed commit"])
        if event == "on an unpushed commit" and fleet.server_state() is not None:
            extra: dict[str, bytes | None] = {f"lost-{step}.json": b"%d\n" % step}
            parent = fleet.write(extra)
            fleet.push(fleet.write(changes, parent=parent))  # its parent is not the server's: walked
            apply(fleet.files, {**extra, **changes})
        else:
            state = fleet.write(changes)
            if event == "lost":
                continue  # the mirror keeps objects the server never got
            if event == "repack":
                git("repack", "-a", "-d", "--keep-unreachable", "-q", cwd=Path(fleet.mirror.path))
            fleet.push(state)
            apply(fleet.files, changes)
        fleet.assert_whole()
