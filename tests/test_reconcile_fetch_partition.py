"""fetch_all's status and desired-state maps, kept and patched between fetches, are a cold fetch's.

:func:`controller.reconcile.source.fetch_all` keeps its partition of the listing (robots' status
refs, desired-state refs of both layouts) in the fetch's memo and patches it with the refs
:func:`fleetcd.git.remote.fetch_moved` names as changed, instead of a pass over every ref of the
fleet. Here a server lives a seeded random life — reports and desired refs moved, added and
deleted, refs under the desired-state prefixes that are no desired-state ref (strays: deleted from
the mirror at every fetch, never in the map), the state branch appearing and going, refs packed —
and the mirror is written behind the memo's back. After every fetch the maps, main and the state
branch are exactly what ``fetch_all`` without a memo gives into a fresh mirror, and the mirror
holds no stray.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.source import Fetched, Source, fetch_all
from fleetcd.compat import UTC
from fleetcd.git import remote
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.refs import DESIRED_PREFIX, MAIN_BRANCH, NAMESPACES_PREFIX, STATE_BRANCH, STATUS_PREFIX
from tests.gitrepos import bare_repo, git

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
ROBOTS = [f"amr-{n:03d}" for n in range(120)]
STRAYS = [
    f"{DESIRED_PREFIX}not__safe",
    f"{NAMESPACES_PREFIX}amr-001/refs/fleetcd/desired/amr-002",  # another robot's id inside
    f"{NAMESPACES_PREFIX}amr-003/refs/heads/x",
    f"{DESIRED_PREFIX}{'x' * 70}",  # longer than a name may be
]
SEEDS = (21, 22, 23)
STEPS = 14


def kinds(robot: str) -> list[str]:
    return [
        f"{STATUS_PREFIX}{robot}/report",
        f"{DESIRED_PREFIX}{robot}",
        f"{NAMESPACES_PREFIX}{robot}/{DESIRED_PREFIX}{robot}",
    ]


class Server:
    def __init__(self, path: Path) -> None:
        self.path = bare_repo(path)
        self.repo = pygit2.Repository(str(self.path))
        self.when = START
        self.move([MAIN_BRANCH], "main")

    def move(self, refs: list[str], text: str) -> None:
        self.when += timedelta(seconds=1)
        tree = write_tree(self.repo, {"file": text.encode()})
        updates = {}
        for ref in refs:
            old = ref_target(self.repo, ref)
            new = commit(self.repo, None, tree, f"{ref} {text}", [old] if old else [], ROBOT, self.when)
            updates[ref] = (old, new)
        update_refs(self.repo, updates)

    def refs(self) -> list[str]:
        listed = git("for-each-ref", "--format=%(refname)", cwd=self.path)
        return [ref for ref in listed.splitlines() if ref != MAIN_BRANCH]


def happen(server: Server, mirror: Path, rng: random.Random, step: int) -> None:
    op = rng.choice(("move", "move", "add", "delete", "stray", "state", "mirror-stray", "mirror-move"))
    refs = server.refs()
    text = f"step {step}"
    if op == "move" and refs:
        server.move(rng.sample(refs, min(len(refs), rng.choice((2, 70)))), text)
    elif op == "add":
        server.move([ref for robot in rng.sample(ROBOTS, 30) for ref in kinds(robot)], text)
    elif op == "delete" and refs:
        for ref in rng.sample(refs, min(len(refs), 4)):
            git("update-ref", "-d", ref, cwd=server.path)
    elif op == "stray":
        server.move([rng.choice(STRAYS)], text)
    elif op == "state":
        if ref_target(server.repo, STATE_BRANCH) is None:
            server.move([STATE_BRANCH], text)
        else:
            git("update-ref", "-d", STATE_BRANCH, cwd=server.path)
    elif op == "mirror-stray":  # written but never pushed (a crash in between)
        main = ref_target(pygit2.Repository(str(mirror)), MAIN_BRANCH)
        git("update-ref", f"{DESIRED_PREFIX}{rng.choice(ROBOTS)}-unpushed", str(main), cwd=mirror)
    elif op == "mirror-move":
        main = ref_target(pygit2.Repository(str(mirror)), MAIN_BRANCH)
        held = git("for-each-ref", "--format=%(refname)", DESIRED_PREFIX, cwd=mirror).split()
        if held:
            git("update-ref", rng.choice(held), str(main), cwd=mirror)
    if rng.random() < 0.5:
        git("pack-refs", "--all", cwd=server.path)
    if rng.random() < 0.3:
        git("pack-refs", "--all", cwd=mirror)


def cold(server: Server, where: Path) -> Fetched:
    mirror = open_locked_mirror(where, wait_seconds=5)
    try:
        return fetch_all(mirror, Source(str(server.path), where))
    finally:
        mirror.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_kept_maps_patched_by_each_fetch_are_a_cold_fetchs_maps(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "WHOLE_FROM_SHARE", 1)  # patched however many refs moved
    rng = random.Random(seed)
    server = Server(tmp_path / "server.git")
    server.move([ref for robot in ROBOTS[:80] for ref in kinds(robot)], "first")
    server.move([STRAYS[0]], "stray")
    git("pack-refs", "--all", cwd=server.path)
    mirror = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    mirror_path = Path(mirror.path)
    source = Source(str(server.path), mirror_path)
    memo = RefListingMemo()
    fetch_all(mirror, source, memo=memo)
    patched = 0
    for step in range(STEPS):
        happen(server, mirror_path, rng, step)
        where = f"seed {seed} step {step}"
        found = fetch_all(mirror, source, memo=memo)
        patched += getattr(memo.kept, "patched", 0) > 0
        expected = cold(server, tmp_path / f"cold-{step}.git")
        assert (found.main, found.state) == (expected.main, expected.state), where
        assert dict(found.status) == dict(expected.status), where
        assert dict(found.desired or {}) == dict(expected.desired or {}), where
        held = git("for-each-ref", "--format=%(refname)", DESIRED_PREFIX, NAMESPACES_PREFIX, cwd=mirror_path)
        assert set(held.split()) == set(found.desired or {}), where  # no stray, nothing unpushed
    assert patched >= STEPS // 2


def test_the_maps_handed_out_cannot_be_changed_by_a_step(tmp_path: Path) -> None:
    """The maps are the memo's own, patched by the next fetch: read-only to the steps."""
    server = Server(tmp_path / "server.git")
    server.move(kinds("amr-001"), "first")
    mirror = open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)
    found = fetch_all(mirror, Source(str(server.path), Path(mirror.path)), memo=RefListingMemo())
    with pytest.raises(TypeError):
        found.status[f"{STATUS_PREFIX}amr-001/report"] = found.main  # type: ignore[index]
    assert found.desired is not None and len(found.desired) == 2
