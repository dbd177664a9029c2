"""write_tree against a model: after any seeded sequence of edits, the tree is the one git builds.

:func:`fleetcd.git.objects.write_tree` writes main's snapshots, the state branch and every robot's
desired-state commit, editing a base tree in place. Here a plain dict (path → bytes) is the model:
each step applies random edits to both — files added, replaced and deleted, whole directories
deleted, a file turned into a directory and back, names git sorts in surprising orders (``a``,
``a.b``, ``a-b``, ``a/``), large edits that go through the one-pack batch — and then:

* the tree id equals the id ``git write-tree`` gives for the model's files through a fresh index
  (git's own canonical tree, so entry order, modes and empty directories are git's);
* every file reads back with :func:`~fleetcd.git.objects.read_blob` from a commit of it;
* ``git fsck`` finds the repository whole.

Only behaviour is checked (what git holds), not how the objects were written.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git.objects import AUTO_BATCH_FILES, Identity, commit, read_blob, write_tree
from tests.gitrepos import git

AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
# Names whose order in a git tree differs from plain string order once one of them is a directory.
NAMES = ("a", "a.b", "a-b", "a0", "b", "ab", "z", "x y", "é", "devices", "README.md", "1.0.0")
STEPS = 25
SEEDS = (1, 2, 3)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def git_tree_of(repo_path: Path, files: dict[str, bytes], tmp: Path) -> str:
    """The tree id git's own index gives for ``files`` (blobs written with git hash-object)."""
    index = tmp / "index"
    index.unlink(missing_ok=True)
    env = {**os.environ, "GIT_INDEX_FILE": str(index), "GIT_DIR": str(repo_path)}
    lines = []
    for path, data in files.items():
        blob = (
            subprocess.run(
                ["git", "hash-object", "-w", "--stdin"], input=data, env=env, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        assert blob == git_blob_id(data)
        lines.append(f"100644 {blob}\t{path}\n")
    subprocess.run(
        ["git", "update-index", "--index-info"], input="".join(lines).encode(), env=env, check=True
    )
    return (
        subprocess.run(["git", "write-tree"], env=env, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )


def random_path(rng: random.Random) -> str:
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 4)))


def directories(files: dict[str, bytes]) -> set[str]:
    return {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}


def edit(model: dict[str, bytes], rng: random.Random, step: int) -> dict[str, bytes | None]:
    """Random edits, applied to ``model``; returns them as write_tree takes them."""
    edits: dict[str, bytes | None] = {}
    count = AUTO_BATCH_FILES + 5 if rng.random() < 0.15 else rng.randint(1, 6)
    for n in range(count):
        roll = rng.random()
        if roll < 0.55 or not model:
            path = random_path(rng)
            data = f"step {step} file {n} {rng.random()}\n".encode() * rng.randint(1, 3)
            edits[path] = data
        elif roll < 0.75:
            edits[rng.choice(sorted(model))] = None
        elif roll < 0.85 and directories(model):
            edits[rng.choice(sorted(directories(model)))] = None
        elif roll < 0.95:
            file = rng.choice(sorted(model))
            edits[f"{file}/{rng.choice(NAMES)}"] = b"was a file\n"  # the file becomes a directory
        elif directories(model):
            edits[rng.choice(sorted(directories(model)))] = b"was a directory\n"
    # One call may not name a path both as a file and as a directory (write_tree refuses it).
    for path in sorted(edits):
        if any(other.startswith(path + "/") for other in edits):
            del edits[path]
    for path, data in edits.items():
        for existing in [p for p in model if p == path or p.startswith(path + "/")]:
            del model[existing]  # replaced, deleted, or a directory deleted or replaced by a file
        parts = path.split("/")
        for depth in range(1, len(parts)):
            model.pop("/".join(parts[:depth]), None)  # a file where a directory now goes
        if data is not None:
            model[path] = data
    return edits


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "repo.git"), bare=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_edited_tree_is_the_tree_git_builds_for_the_same_files(
    repo: pygit2.Repository, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    model: dict[str, bytes] = {}
    tree: pygit2.Oid | None = None
    parent: list[pygit2.Oid] = []
    for step in range(STEPS):
        edits = edit(model, rng, step)
        tree = write_tree(repo, edits, tree)
        assert str(tree) == git_tree_of(Path(repo.path), model, tmp_path), f"seed {seed} step {step}"
        head = commit(repo, "refs/heads/main", tree, f"step {step}", parent, AUTHOR, WHEN)
        parent = [head]
        for path, data in model.items():
            assert read_blob(repo, head, path) == data, path
        for gone in {p for p, d in edits.items() if d is None} - set(model):
            assert read_blob(repo, head, gone) is None, gone
    assert git("fsck", "--no-dangling", "--no-progress", cwd=Path(repo.path)) == ""


def test_a_tree_written_from_scratch_equals_the_same_files_reached_by_edits(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    rng = random.Random(99)
    model: dict[str, bytes] = {}
    tree: pygit2.Oid | None = None
    for step in range(STEPS):
        tree = write_tree(repo, edit(model, rng, step), tree)
    assert tree == write_tree(repo, dict(model))  # history does not show in the tree
    assert str(write_tree(repo, {})) == git_tree_of(Path(repo.path), {}, tmp_path)  # the empty tree


def test_deleting_what_is_not_there_changes_nothing(repo: pygit2.Repository) -> None:
    base = write_tree(repo, {"a/b": b"1", "a.b": b"2"})
    assert write_tree(repo, {"a/c": None, "nothing/here": None, "a.b/c": None}, base) == base
