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
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git import refs
from fleetcd.git.hashtree import write_tree_hashed
from fleetcd.git.housekeeping import count
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.objects import Identity, commit, landed_tree
from fleetcd.git.packfile import STALE_AFTER_S
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


LINK_KILLER = r"""
import os, signal, sys
from pathlib import Path
from fleetcd.git import localpush
instant = sys.argv[3]
real_open, real_link, real_write = os.open, os.link, os.write
links = 0
def open_(path, *args, **kwargs):
    fd = real_open(path, *args, **kwargs)
    if str(path).endswith(".keep"):  # how the .keep was made before: empty, then written
        os.kill(os.getpid(), signal.SIGKILL)
    return fd
def link(src, dst, *args, **kwargs):
    global links
    links += 1
    if instant == f"before-link-{links}":
        os.kill(os.getpid(), signal.SIGKILL)
    real_link(src, dst, *args, **kwargs)
    if instant == f"after-link-{links}":
        os.kill(os.getpid(), signal.SIGKILL)
def write(fd, data):
    if instant == "writing-the-keep":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(fd, data)
os.open, os.link, os.write = open_, link, write
localpush._link_pack(Path(sys.argv[1]), Path(sys.argv[2]))
"""

NEXT_PUSH = r"""
import sys
from pathlib import Path
import pygit2
from fleetcd.git.housekeeping import Policy, housekeep
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.refs import STATE_BRANCH
mirror, server = pygit2.Repository(sys.argv[1]), Path(sys.argv[2])
state, lease = pygit2.Oid(hex=sys.argv[3]), pygit2.Oid(hex=sys.argv[4])
push_by_hand(mirror, server, {STATE_BRANCH: state}, leases={STATE_BRANCH: lease}, timeout_s=60)
housekeep(server, Policy(background=False))  # what publish runs after a push by hand
"""


@pytest.mark.parametrize(
    "instant",
    [
        "writing-the-keep",  # its tmp_ file made, the message not yet in it
        "after-link-1",  # the .keep in place, its tmp_ file not yet removed
        "after-link-2",  # the pack linked to its tmp_ name, not renamed
        "before-link-3",  # the pack in place, its index not
        "after-link-3",  # the index linked to its tmp_ name, not renamed
    ],
)
def test_attack_kill_9_while_linking_a_pack_leaves_no_keep_or_garbage_the_next_push_does_not_remove(
    fleet: Fleet, tmp_path: Path, instant: str
) -> None:
    """The pack's ``.keep`` names its writer from its first instant (a hard link of a file holding
    the message): before, it was created empty and then written, and a kill in between left an
    empty ``.keep``, which names no process: housekeeping rightly leaves such files, so ``gc`` never
    repacked that pack again. Whatever the kill leaves, git reads the server as it was, and the
    next controller's push (a new process: it walks, knowing nothing of the landed pack) and its
    housekeeping leave no ``.keep``, ``tmp_`` file or pack without its index once they are old."""
    changes: dict[str, bytes | None] = {robot_file(n): b'{"robot": %d, "v": 6}\n' % n for n in range(ROBOTS)}
    served = fleet.server_state()
    state = fleet.write(changes)
    landed = landed_tree(fleet.mirror, fleet.mirror[state].peel(pygit2.Tree).id)
    assert landed is not None and served is not None
    pack_dir = fleet.server / "objects" / "pack"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = tmp_path / "link_killer.py"
    script.write_text(LINK_KILLER)
    done = subprocess.run([sys.executable, str(script), str(landed.index), str(pack_dir), instant], env=env)
    assert done.returncode == -signal.SIGKILL
    assert [p.name for p in pack_dir.glob("*.keep") if not p.read_bytes()] == []
    git("fsck", "--connectivity-only", "--no-dangling", cwd=fleet.server)
    assert fleet.server_state() == served
    assert fleet.served_files() == fleet.files
    old = time.time() - 2 * STALE_AFTER_S
    for leftover in pack_dir.iterdir():  # a dead writer's: older than any live one's
        os.utime(leftover, (old, old))
    script = tmp_path / "next_push.py"
    script.write_text(NEXT_PUSH)
    argv = [sys.executable, str(script), fleet.mirror.path, str(fleet.server), str(state), str(served)]
    subprocess.run(argv, env=env, check=True)
    apply(fleet.files, changes)
    fleet.assert_whole()  # fsck, the files, no .keep
    assert fleet.server_state() == state
    assert [p.name for p in pack_dir.iterdir() if p.name.startswith("tmp_")] == []
    assert all(p.with_suffix(".idx").exists() for p in pack_dir.glob("*.pack"))
    assert "garbage: 0" in git("count-objects", "-v", cwd=fleet.server)
    assert count(fleet.server).kept == 0  # gc may repack every pack


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
