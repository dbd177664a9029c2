"""The robot's git-CLI side and the controller's libgit2 side of the wire make and read the same bytes.

A robot writes its status commits with the ``git`` CLI
(:meth:`fleetcd.git.robotgit.RobotRepository.commit_file`, no pygit2 on robots) and the fleet
simulator writes them with libgit2 (:func:`fleetcd.git.objects.commit`), both from
:func:`fleetcd.wire.status_commit`; a robot reads its desired state through ``cat-file``
(:meth:`~fleetcd.git.robotgit.RobotRepository.blob_sizes`) and the controller through libgit2
(:func:`~fleetcd.git.objects.read_blob`, :func:`~fleetcd.git.objects.blob_size`). Over seeded
reports (time zones east and west, with half and quarter hours, sub-second times, long chains) and
seeded trees (nested files, empty files, symlinks, submodule entries, directories where a file is
asked for), the two sides must make the same commit id and read the same bytes, sizes and absences.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from fleetcd.git.objects import Identity, blob_size, commit, read_blob, write_tree
from fleetcd.git.robotgit import RobotRepository
from fleetcd.reports import StatusReport
from fleetcd.wire import REPORT_AUTHOR, status_commit

ZONES = [timezone.utc, *(timezone(timedelta(minutes=m)) for m in (540, -300, 330, 345, -210, 825, -720))]
SEEDS = (1, 2)
CHAIN = 12


def report(rng: random.Random, seq: int) -> StatusReport:
    when = datetime(2001, 1, 1, tzinfo=timezone.utc) + timedelta(
        seconds=rng.randrange(0, 98 * 365 * 86400), microseconds=rng.randrange(1_000_000)
    )
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": rng.choice(["amr-001", "robot.7", "x_y-z"]),
            "seq": seq,
            "agent_version": "0.9.0",
            "reported_at": when.astimezone(rng.choice(ZONES)).isoformat(),
            "bundle_serial": rng.randrange(0, 2**53),
            "deployments": [],
        }
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_chain_of_status_commits_has_the_same_ids_from_the_git_cli_and_from_libgit2(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    robot = RobotRepository(tmp_path / "robot.git")
    sim = pygit2.init_repository(str(tmp_path / "sim.git"), bare=True)
    robot_tip: str | None = None
    sim_tip: pygit2.Oid | None = None
    for seq in range(1, CHAIN + 1):
        made = status_commit(report(rng, seq), sender=rng.choice([REPORT_AUTHOR, "fleetcd-sim"]))
        robot_tip = robot.commit_file(
            made.path,
            made.data,
            parent=robot_tip,
            message=made.message,
            author=(made.author_name, made.author_email),
            when=made.when,
        )
        tree = write_tree(sim, {made.path: made.data})
        author = Identity(made.author_name, made.author_email)
        sim_tip = commit(sim, None, tree, made.message, [sim_tip] if sim_tip else [], author, made.when)
        assert robot_tip == str(sim_tip), f"seed {seed} seq {seq}: {made.when.isoformat()}"


def random_tree(repo: pygit2.Repository, rng: random.Random, depth: int = 0) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for n in range(rng.randint(1, 5)):
        name = rng.choice(["bundle.json", "root.json", "proof.json", "trust.json", "a", "b.c", "d-e"]) + (
            "" if n == 0 else str(n)
        )
        roll = rng.random()
        if roll < 0.55:
            data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 17, 300, 5000])))
            builder.insert(name, repo.create_blob(data), FileMode.BLOB)
        elif roll < 0.65:
            builder.insert(name, repo.create_blob(b"../../etc/shadow"), FileMode.LINK)
        elif roll < 0.72:
            builder.insert(name, pygit2.Oid(hex=f"{rng.randrange(16**40):040x}"), FileMode.COMMIT)
        elif depth < 2:
            builder.insert(name, random_tree(repo, rng, depth + 1), FileMode.TREE)
    return builder.write()


def every_path(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = "") -> list[str]:
    out = []
    for entry in tree:
        out.append(prefix + entry.name)
        if entry.filemode == FileMode.TREE:
            sub = repo.get(entry.id)
            assert isinstance(sub, pygit2.Tree)
            out += every_path(repo, sub, f"{prefix}{entry.name}/")
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_both_readers_see_the_same_bytes_sizes_and_absences_in_any_tree(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "robot.git"
    robot = RobotRepository(path)
    repo = pygit2.Repository(str(path))
    when = datetime(2026, 5, 4, tzinfo=timezone.utc)
    for round_ in range(6):
        tree = random_tree(repo, rng)
        tip = commit(repo, None, tree, f"round {round_}", [], Identity("c", "c@x"), when)
        tree_object = repo.get(tree)
        assert isinstance(tree_object, pygit2.Tree)
        paths = [*every_path(repo, tree_object), "missing.json", "a/missing", "bundle.json/x"]
        found_commit, sizes = robot.blob_sizes(str(tip), paths)
        assert found_commit == str(tip)
        for name in paths:
            data = read_blob(repo, tip, name)
            size = blob_size(repo, tip, name)
            seen = sizes[name]
            assert (seen is None) == (data is None) == (size is None), (round_, name, seen)
            if seen is not None and data is not None:
                assert seen[1] == len(data) == size, name
                assert robot.read_blobs([seen]) == [data], name
                assert robot.read_blob(str(tip), name, max_bytes=len(data)) == data
                if data:
                    assert robot.read_blob(str(tip), name, max_bytes=len(data) - 1) is None
    missing = f"{rng.randrange(16**40):040x}"
    assert robot.blob_sizes(missing, ["bundle.json"]) == (None, {"bundle.json": None})
