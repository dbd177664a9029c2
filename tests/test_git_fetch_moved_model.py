"""fetch_moved over a seeded random life of the server: the mirror always ends as the server was listed.

:func:`fleetcd.git.remote.fetch_moved` copies only what moved, deciding from the mirror's own
``packed-refs`` and loose files. Between fetches the server here goes through what a long-lived
fleet's server does: robots reporting, a robot force-pushing an unrelated history, refs at blobs,
trees and annotated tags, refs deleted, ``git gc`` packing every object, a branch whose name
starts with ``main`` (``refs/heads/mainline``, which the exact name ``refs/heads/main`` must not
take in), and the mirror's own refs packed by ``git pack-refs``. After every fetch:

* the answer is exactly the server's refs under the names asked for;
* the mirror holds each of them at the server's value, and nothing outside the names;
* every object they reach is in the mirror (``git fsck`` finds it whole);
* a second fetch at once changes no ref of the mirror.
"""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.packedrefs import read_ref_storage
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.remote import fetch_moved
from tests.gitrepos import bare_repo, git

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
NAMES = ["refs/heads/main", STATUS_PREFIX]
ROBOTS = [f"amr-{n}" for n in (1, 10, 100, 2, 20)]  # ids that are prefixes of each other
STEPS = 18
SEEDS = (5, 6, 7)
OPS = ("report", "report", "report", "force", "odd-object", "delete", "gc", "mainline", "main", "mirror-pack")


def git_refs(path: Path) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
    return {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}


def under_names(refs: dict[str, str]) -> dict[str, str]:
    return {
        ref: oid for ref, oid in refs.items() if ref == "refs/heads/main" or ref.startswith(STATUS_PREFIX)
    }


class Server:
    def __init__(self, path: Path) -> None:
        self.path = bare_repo(path)
        self.repo = pygit2.Repository(str(self.path))
        self.when = START
        self.commit("refs/heads/main", {"fleet.yaml": b"fleet\n"}, "main")

    def commit(self, ref: str, files: dict[str, bytes], message: str, *, parent: bool = True) -> pygit2.Oid:
        self.when += timedelta(seconds=1)
        old = ref_target(self.repo, ref)
        parents = (
            [old] if parent and old is not None and isinstance(self.repo.get(old), pygit2.Commit) else []
        )
        oid = commit(self.repo, None, write_tree(self.repo, files), message, parents, ROBOT, self.when)
        update_refs(self.repo, {ref: (old, oid)})
        return oid

    def point(self, ref: str, target: pygit2.Oid) -> None:
        update_refs(self.repo, {ref: (ref_target(self.repo, ref), target)})

    def odd_object(self, rng: random.Random) -> pygit2.Oid:
        kind = rng.choice(("blob", "tree", "tag"))
        if kind == "blob":
            return self.repo.create_blob(f"not a report {rng.random()}".encode())
        if kind == "tree":
            return write_tree(self.repo, {f"x{rng.randrange(100)}": b"y"})
        main = ref_target(self.repo, "refs/heads/main")
        assert main is not None
        signature = pygit2.Signature("robot", "robot@fleet.test", int(self.when.timestamp()), 0)
        name = f"t{rng.randrange(10**6)}"
        tag = self.repo.create_tag(name, main, pygit2.enums.ObjectType.COMMIT, signature, "a tag")
        self.repo.references.delete(f"refs/tags/{name}")  # only the robot's ref will name it
        return tag


def happen(server: Server, mirror: LockedRepository, op: str, rng: random.Random, step: int) -> None:
    robot = rng.choice(ROBOTS)
    ref = status_ref(robot)
    if op == "report":
        server.commit(ref, {"status.json": f'{{"seq": {step}}}'.encode()}, f"status of {robot}")
    elif op == "force":  # a history that shares nothing with the last one
        server.commit(ref, {"status.json": f"rewritten {step}".encode()}, "rewritten", parent=False)
    elif op == "odd-object":
        server.point(ref, server.odd_object(rng))
    elif op == "delete" and ref_target(server.repo, ref) is not None:
        server.repo.references.delete(ref)
    elif op == "gc":
        git("gc", "--quiet", "--prune=now", cwd=server.path)
    elif op == "mainline":
        server.commit("refs/heads/mainline", {"x": str(step).encode()}, "not main")
    elif op == "main":
        server.commit("refs/heads/main", {"fleet.yaml": f"fleet {step}\n".encode()}, "main moves")
    elif op == "mirror-pack":
        git("pack-refs", "--all", cwd=Path(mirror.path))


@pytest.mark.parametrize("kept", [False, True], ids=["cold", "memo"])
@pytest.mark.parametrize("seed", SEEDS)
def test_after_every_fetch_the_mirror_holds_what_the_server_listed_and_all_it_reaches(
    tmp_path: Path, seed: int, kept: bool
) -> None:
    """With ``kept``, one :class:`RefListingMemo` lives through the whole story, as in
    ``controller run``: the parsed listings it keeps never give another answer than a cold fetch."""
    memo = RefListingMemo() if kept else None
    rng = random.Random(seed)
    server = Server(tmp_path / "server.git")
    mirror = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    mirror_path = Path(mirror.path)
    for robot in ROBOTS[:3]:
        server.commit(status_ref(robot), {"status.json": b'{"seq": 0}'}, f"status of {robot}")
    for step in range(STEPS):
        op = OPS[step] if step < len(OPS) else rng.choice(OPS)
        happen(server, mirror, op, rng, step)
        listed = under_names(git_refs(server.path))
        found = fetch_moved(mirror, str(server.path), NAMES, memo=memo)
        where = f"seed {seed} step {step} ({op})"
        assert {ref: str(oid) for ref, oid in found.items()} == listed, where
        held = git_refs(mirror_path)
        assert {ref: held.get(ref) for ref in listed} == listed, where
        assert all(ref in NAMES or ref.startswith(STATUS_PREFIX) for ref in held), f"{where}: {sorted(held)}"
        fsck = subprocess.run(
            ["git", "fsck", "--no-dangling", "--no-progress", "--connectivity-only"],
            cwd=mirror_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert fsck.returncode == 0, f"{where}: {fsck.stdout}{fsck.stderr}"
        before = read_ref_storage(mirror_path)
        assert fetch_moved(mirror, str(server.path), NAMES, memo=memo) == found, where
        assert read_ref_storage(mirror_path) == before, f"{where}: a fetch with nothing new wrote refs"
