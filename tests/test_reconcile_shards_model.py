"""Status shards and the source step against a model, over seeded placements of robots' refs.

Status shards (:mod:`controller.reconcile.shards`): robots push their reports to the shard
:func:`fleetcd.shards.shard_of` names; the controller fetches every shard into its mirror and
:func:`~controller.reconcile.shards.locate` keeps each robot's report from its own shard and names
every report found elsewhere. Here real bare repositories stand for the shards and robots' reports
are placed at random: in the right shard, in a wrong one, in both, for robots the fleet does not
know, next to refs that are no report. Rounds move, delete and add reports, and one shard goes
away for a round. Each round:

* ``locate(fetch_shards(...))`` keeps exactly the reports the model says (each robot's report from
  its owner shard, by its own name) and names exactly the misplaced ones of known robots;
* the idle check's listing (``list_shards``, which fetches nothing) locates the same reports;
* a shard that does not answer keeps its last copy, so nothing of it is lost for the round;
* refs gone from a shard are gone from the mirror.

The source step's desired-state refs (:func:`controller.reconcile.source.fetch_all`) get the same
treatment: after a fetch the mirror holds exactly the server's well-formed desired refs, not a ref
written to the mirror and never pushed, nor one whose namespace names another robot.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.shards import StatusShard, fetch_shards, list_shards, locate
from controller.reconcile.source import Source, fetch_all, is_desired_ref, open_mirror
from fleetcd.compat import UTC
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.packedrefs import read_refs
from fleetcd.git.refs import DESIRED_PREFIX, MAIN_BRANCH, NAMESPACES_PREFIX, status_ref
from fleetcd.shards import shard_of
from tests.gitrepos import bare_repo

WHEN = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ROBOT = Identity("robot", "robot@fleet.test")
SHARDS = ("eu-1", "us-1", "ap-1")
FLEET = [f"amr-{n:03d}" for n in range(24)]
STRANGERS = ["ghost-1", "ghost-2"]  # robots the fleet does not know
ROUNDS = 6
REPORT_REF = re.compile(r"refs/fleetcd/status/([^/]+)/report")


class Shard:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.path = bare_repo(root / f"{name}.git")
        self.repo = pygit2.Repository(str(self.path))
        self.ticks = 0

    def report(self, device: str, body: str) -> pygit2.Oid:
        self.ticks += 1
        ref = status_ref(device)
        parent = ref_target(self.repo, ref)
        tree = write_tree(self.repo, {"status.json": body.encode()})
        when = WHEN + timedelta(seconds=self.ticks)
        return commit(self.repo, ref, tree, f"status of {device}", [parent] if parent else [], ROBOT, when)

    def drop(self, device: str) -> None:
        if ref_target(self.repo, status_ref(device)) is not None:
            self.repo.references.delete(status_ref(device))

    def reports(self) -> dict[str, str]:
        return {
            ref.name: str(ref.target)
            for ref in self.repo.references.iterator()
            if ref.name.startswith("refs/fleetcd/")
        }


def expected(shards: dict[str, Shard], known: list[str]) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """The model: (status ref -> commit kept, {(device, shard it was misplaced in)})."""
    names = sorted(shards)
    kept: dict[str, str] = {}
    misplaced: set[tuple[str, str]] = set()
    for name in names:
        for ref, oid in shards[name].reports().items():
            found = REPORT_REF.fullmatch(ref)
            if found is None:
                continue  # not a report ref
            device = found.group(1)
            if shard_of(device, names) == name:
                kept[ref] = oid
            elif device in known:
                misplaced.add((device, name))
    return kept, misplaced


def shuffle_reports(shards: dict[str, Shard], rng: random.Random, round_: int) -> None:
    names = sorted(shards)
    for device in [*FLEET, *STRANGERS]:
        roll = rng.random()
        owner = shard_of(device, names)
        if roll < 0.45:
            shards[owner].report(device, f"round {round_}")
        elif roll < 0.55:
            shards[rng.choice([n for n in names if n != owner])].report(device, f"lost {round_}")
        elif roll < 0.62:
            shards[owner].drop(device)
        elif roll < 0.66:
            for name in names:
                shards[name].drop(device)
    odd = shards[rng.choice(names)]  # a ref that is no report: ingest never reads it
    tree = write_tree(odd.repo, {"x": b"y"})
    target = commit(odd.repo, None, tree, "odd", [], ROBOT, WHEN)
    update_refs(odd.repo, {f"refs/fleetcd/status/amr-000/other-{round_}": (None, target)})


@pytest.mark.parametrize("seed", [3, 4])
def test_each_robot_report_is_taken_from_its_own_shard_and_every_misplaced_one_is_named(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    shards = {name: Shard(tmp_path, name) for name in SHARDS}
    specs = [StatusShard(name, str(shard.path)) for name, shard in shards.items()]
    source = Source(str(tmp_path / "unused.git"), tmp_path / "mirror.git")
    with open_mirror(source) as mirror:
        last: dict[str, dict[str, str]] = {}
        for round_ in range(ROUNDS):
            shuffle_reports(shards, rng, round_)
            away = rng.choice(SHARDS) if round_ in (2, 4) else None
            if away is not None:
                shards[away].path.rename(shards[away].path.with_suffix(".away"))
            try:
                view = fetch_shards(mirror, specs)
                listed = list_shards(mirror, specs)
            finally:
                if away is not None:
                    shards[away].path.with_suffix(".away").rename(shards[away].path)
            where = f"seed {seed} round {round_} (away: {away})"
            assert set(view.unreachable) == ({away} if away else set()), where
            seen = {name: {ref: str(oid) for ref, oid in view.refs[name].items()} for name in SHARDS}
            if away is not None:
                assert seen[away] == last[away], f"{where}: the unreachable shard's last copy was lost"
            else:
                assert seen == {name: shard.reports() for name, shard in shards.items()}, where
            last = seen
            model = {name: shards[name] for name in SHARDS}
            if away is None:
                kept, misplaced = expected(model, FLEET)
                located = locate(view, FLEET)
                assert {ref: str(oid) for ref, oid in located.status.items()} == kept, where
                assert {(m.device, m.found_in) for m in located.misplaced} == misplaced, where
                assert all(m.owner == shard_of(m.device, SHARDS) != m.found_in for m in located.misplaced)
                assert locate(listed, FLEET) == located, f"{where}: the idle listing locates otherwise"
            mirrored = read_refs(Path(mirror.path), ("refs/fleetcd/shards/",))
            assert len(mirrored) == sum(len(refs) for refs in view.refs.values()), where


def desired(device: str, *, namespaces: bool) -> str:
    flat = f"{DESIRED_PREFIX}{device}"
    return f"{NAMESPACES_PREFIX}{device}/{flat}" if namespaces else flat


@pytest.mark.parametrize("seed", [8])
def test_after_a_fetch_the_mirror_holds_exactly_the_servers_well_formed_desired_refs(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    server = pygit2.Repository(str(bare_repo(tmp_path / "fleet.git")))
    tree = write_tree(server, {"fleet.yaml": b"fleet\n"})
    main = commit(server, MAIN_BRANCH, tree, "main", [], ROBOT, WHEN)
    source = Source(str(server.path), tmp_path / "mirror.git")
    with open_mirror(source) as mirror:
        for round_ in range(5):
            for device in rng.sample(FLEET, 8):
                ref = desired(device, namespaces=rng.random() < 0.5)
                update_refs(server, {ref: (ref_target(server, ref), main)})
            for device in rng.sample(FLEET, 3):
                for namespaces in (True, False):
                    ref = desired(device, namespaces=namespaces)
                    if ref_target(server, ref) is not None:
                        server.references.delete(ref)
            # Another robot's name inside a namespace: never one of the controller's refs.
            crossed = f"{NAMESPACES_PREFIX}amr-001/{DESIRED_PREFIX}amr-002-{round_}"
            update_refs(server, {crossed: (None, main)})
            # Written to the mirror by a controller killed before its push.
            unpushed = desired(f"amr-9{round_}", namespaces=True)
            update_refs(mirror, {unpushed: (None, main)})

            fetched = fetch_all(mirror, source, status=False)
            assert fetched.main == main
            on_server = {
                ref.name: str(ref.target)
                for ref in server.references.iterator()
                if ref.name.startswith((DESIRED_PREFIX, NAMESPACES_PREFIX)) and is_desired_ref(ref.name)
            }
            in_mirror = read_refs(Path(mirror.path), (DESIRED_PREFIX, NAMESPACES_PREFIX))
            assert in_mirror == on_server, f"round {round_}"
            assert crossed not in in_mirror and unpushed not in in_mirror
