"""The mirror's own ref readers agree with git, whatever sequence of writes left the refs behind.

:func:`fleetcd.git.packedrefs.read_refs` and :class:`~fleetcd.git.packedrefs.RefStorage` read refs
straight from ``packed-refs`` and the loose files (the idle check and ``fetch_moved`` decide what
moved from them), so they must list exactly what ``git for-each-ref`` lists: loose files that
shadow packed lines, deleted refs, refs at every kind of object (annotated tags add ``^peeled``
lines), symbolic refs (never listed: they hold no value), stale ``.lock`` files a killed writer
left, and packed-refs rewritten by git or by :func:`~fleetcd.git.packedrefs.update_packed`. The
property tests replay seeded random sequences of those writes with the real git CLI.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pygit2
import pytest

from fleetcd.errors import RefConflict
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import PACKED_REFS_FROM, update_refs
from fleetcd.git.packedrefs import read_ref_storage, read_refs, update_packed
from tests.gitrepos import git

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Names chosen to collide: an exact name that is a prefix of another, robots whose ids share digits.
POOL = (
    "refs/heads/main",
    "refs/heads/mainline",
    "refs/heads/fleetcd-state",
    "refs/fleetcd/status/amr-1/main",
    "refs/fleetcd/status/amr-10/main",
    "refs/fleetcd/status/amr-100/main",
    "refs/namespaces/amr-1/refs/fleetcd/desired/amr-1",
    "refs/namespaces/amr-10/refs/fleetcd/desired/amr-10",
    "refs/tags/v1",
    "refs/tags/v1.1",
)
QUERIES = (
    ("refs/heads/main",),
    ("refs/heads/",),
    ("refs/heads/main", "refs/heads/fleetcd-state"),
    ("refs/fleetcd/status/",),
    ("refs/fleetcd/status/amr-1/",),
    ("refs/namespaces/",),
    ("refs/heads/main", "refs/fleetcd/status/", "refs/namespaces/"),
    ("refs/tags/v1",),
    ("refs/",),
    ("refs/nothing/",),
)
SEEDS = (1, 2, 3, 4)
STEPS = 36


def fan_ref(n: int) -> str:
    return f"refs/namespaces/fan-{n:03d}/refs/fleetcd/desired/fan-{n:03d}"


class Objects:
    """Objects of every type in one repository, made with the git CLI: commits, a tree, a blob,
    annotated tags of a commit and of a blob."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = [git("commit-tree", "-m", f"c{n}", EMPTY_TREE, cwd=path).strip() for n in range(3)]
        self.blob = self._write(["hash-object", "-w", "--stdin"], b"status")
        self.tree = EMPTY_TREE
        self.tag_of_commit = self._tag(self.commits[0], "commit")
        self.tag_of_blob = self._tag(self.blob, "blob")

    def _write(self, args: list[str], data: bytes) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, input=data, capture_output=True, check=True)
        return done.stdout.decode().strip()

    def _tag(self, target: str, kind: str) -> str:
        body = (
            f"object {target}\ntype {kind}\ntag t-{target[:8]}\n"
            "tagger Fleet Tester <tester@fleet.test> 1704067200 +0000\n\nrelease\n"
        )
        return self._write(["mktag"], body.encode())

    def any_for(self, ref: str, rng: random.Random) -> str:
        """An object ``ref`` may point at: git keeps branches at commits, anything else goes."""
        if ref.startswith("refs/heads/"):
            return rng.choice(self.commits)
        return rng.choice([*self.commits, self.blob, self.tree, self.tag_of_commit, self.tag_of_blob])


def git_view(path: Path) -> dict[str, str]:
    """Every ref git lists with a value of its own (symbolic refs left out), ref -> hex."""
    listed = git("for-each-ref", "--format=%(objectname) %(refname) %(symref)", cwd=path)
    found: dict[str, str] = {}
    for line in listed.splitlines():
        oid, ref, *symref = line.split(" ")
        if not any(symref):
            found[ref] = oid
    return found


def wanted(view: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    exact = {n for n in names if not n.endswith("/")}
    prefixes = tuple(n for n in names if n.endswith("/"))
    return {ref: oid for ref, oid in view.items() if ref in exact or ref.startswith(prefixes)}


def assert_readers_agree(path: Path, where: str) -> dict[str, str]:
    view = git_view(path)
    storage = read_ref_storage(path)
    assert storage is not None, where
    for names in QUERIES:
        expected = wanted(view, names)
        assert read_refs(path, names) == expected, f"{where}: read_refs{names}"
        assert storage.refs(names) == expected, f"{where}: RefStorage.refs{names}"
    return view


@pytest.fixture
def mirror(tmp_path: Path) -> LockedRepository:
    return open_locked_mirror(tmp_path / "mirror.git", wait_seconds=5)


def test_an_exact_name_does_not_list_a_packed_ref_it_is_a_prefix_of(tmp_path: Path) -> None:
    path = tmp_path / "r.git"
    git("init", "--quiet", "--bare", str(path))
    objects = Objects(path)
    git("update-ref", "refs/heads/main", objects.commits[0], cwd=path)
    git("update-ref", "refs/heads/mainline", objects.commits[1], cwd=path)
    git("pack-refs", "--all", cwd=path)
    assert read_refs(path, ("refs/heads/main",)) == {"refs/heads/main": objects.commits[0]}
    assert read_refs(path, ("refs/heads/",)) == {
        "refs/heads/main": objects.commits[0],
        "refs/heads/mainline": objects.commits[1],
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_random_writes_by_git_and_by_fleetcd_read_back_as_git_lists_them(
    mirror: LockedRepository, seed: int
) -> None:
    path = Path(mirror.path)
    rng = random.Random(seed)
    objects = Objects(path)
    fingerprints: dict[str, dict[str, str]] = {}
    for step in range(STEPS):
        view = git_view(path)
        op = rng.choice(("set", "set", "delete", "pack", "fan", "symbolic", "stale-lock", "tag"))
        ref = rng.choice(POOL)
        if op == "set":
            git("update-ref", ref, objects.any_for(ref, rng), cwd=path)
        elif op == "delete" and ref in view:
            git("update-ref", "-d", ref, cwd=path)
        elif op == "pack":
            git("pack-refs", "--all", cwd=path)
        elif op == "fan":  # PACKED_REFS_FROM or more refs: one rewrite of packed-refs
            target = pygit2.Oid(hex=rng.choice(objects.commits))
            updates = {
                fan_ref(n): (pygit2.Oid(hex=view[fan_ref(n)]) if fan_ref(n) in view else None, target)
                for n in range(PACKED_REFS_FROM + rng.randrange(8))
            }
            update_refs(mirror, updates)
            assert not any((path / fan).exists() for fan in updates), "a fan-out leaves no loose file"
        elif op == "symbolic":
            git(
                "symbolic-ref",
                "refs/heads/alias",
                rng.choice(("refs/heads/main", "refs/heads/mainline")),
                cwd=path,
            )
        elif op == "stale-lock":  # a killed writer's lock beside a ref no one writes
            (path / "refs" / "heads").mkdir(parents=True, exist_ok=True)
            (path / "refs" / "heads" / "abandoned.lock").write_bytes(b"half a ref\n")
        elif op == "tag":
            git(
                "update-ref",
                ref if ref.startswith("refs/tags/") else "refs/tags/v1",
                objects.tag_of_commit,
                cwd=path,
            )
        where = f"seed {seed} step {step} ({op} {ref})"
        listed = assert_readers_agree(path, where)
        storage = read_ref_storage(path)
        assert storage is not None
        seen = fingerprints.setdefault(storage.fingerprint, listed)
        assert seen == listed, f"{where}: one fingerprint for two sets of refs"


def test_update_packed_keeps_every_other_ref_of_every_object_type_as_git_had_it(
    mirror: LockedRepository,
) -> None:
    path = Path(mirror.path)
    objects = Objects(path)
    others = {
        "refs/tags/at-commit": objects.tag_of_commit,
        "refs/tags/at-blob": objects.tag_of_blob,
        "refs/fleetcd/status/amr-1/main": objects.blob,  # a hostile robot's ref at a blob
        "refs/fleetcd/status/amr-2/main": objects.tree,
        "refs/heads/main": objects.commits[0],
    }
    for ref, oid in others.items():
        git("update-ref", ref, oid, cwd=path)
    git("pack-refs", "--all", cwd=path)
    git("update-ref", "refs/heads/main", objects.commits[1], cwd=path)  # loose over its packed line
    before = git_view(path)
    target = pygit2.Oid(hex=objects.commits[2])
    moved = update_packed(mirror, {fan_ref(n): (None, target) for n in range(PACKED_REFS_FROM)})
    assert moved == PACKED_REFS_FROM
    after = git_view(path)
    assert {ref: oid for ref, oid in after.items() if ref in before} == before
    assert git("rev-parse", "refs/tags/at-commit^{commit}", cwd=path).strip() == objects.commits[0]
    assert_readers_agree(path, "after update_packed")


def test_a_conflict_on_any_ref_of_a_wave_writes_no_ref_of_it(mirror: LockedRepository) -> None:
    path = Path(mirror.path)
    objects = Objects(path)
    first, second = (pygit2.Oid(hex=c) for c in objects.commits[:2])
    update_refs(mirror, {fan_ref(n): (None, first) for n in range(PACKED_REFS_FROM)})
    rng = random.Random(7)
    for _round in range(5):
        before = git_view(path)
        liar = rng.randrange(PACKED_REFS_FROM)
        git("update-ref", fan_ref(liar), objects.commits[2], cwd=path)  # someone else moved one
        moved_view = git_view(path)
        with pytest.raises(RefConflict) as raised:
            update_refs(mirror, {fan_ref(n): (first, second) for n in range(PACKED_REFS_FROM)})
        assert raised.value.ref == fan_ref(liar)
        assert git_view(path) == moved_view
        git("update-ref", fan_ref(liar), str(first), cwd=path)
        assert git_view(path) == before
