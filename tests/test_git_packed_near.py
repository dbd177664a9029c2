"""The splice finds each changed ref by a search just past the last one before bisecting.

:meth:`fleetcd.git.packedrefs.PackedFile.changed` looks for a changed ref's line (``" <name>\\n"``)
in the :data:`~fleetcd.git.packedrefs.NEAR_BYTES` after the last changed record, and bisects only
when it is not there (a new ref, or one further away). Whichever way a ref is found, the file
written must be the same bytes: here with the window shrunk so that both ways are taken on the
random files of tests/test_git_packed_splice.py, and against git itself on a file of thousands
of refs whose moved refs lie further apart than the window.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pygit2
import pytest

from fleetcd.git import packedrefs
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.packedrefs import PackedFile, update_packed
from tests.gitrepos import bare_repo, git
from tests.test_git_packed_splice import random_changes, random_file, reference_rewrite


@pytest.mark.parametrize("near", [0, 1, 60, 300, 5000])
@pytest.mark.parametrize("seed", range(40))
def test_a_ref_found_near_or_by_bisecting_splices_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, seed: int, near: int
) -> None:
    monkeypatch.setattr(packedrefs, "NEAR_BYTES", near)
    rng = random.Random(seed)
    data, names = random_file(rng, rng.choice([1, 5, 30, 200]))
    changes = random_changes(rng, names)
    assert b"".join(PackedFile(data, Path("packed-refs")).changed(changes)) == reference_rewrite(
        data, changes
    )


def test_a_name_that_ends_another_refs_line_is_not_taken_for_it() -> None:
    """``refs/b`` is the tail of ``refs/a/refs/b``'s line but not its name: only the line's own
    name (after its first space) counts."""
    data = (
        b"# pack-refs with: peeled fully-peeled sorted \n"
        + b"1" * 40
        + b" refs/a/refs/b\n"
        + b"2" * 40
        + b" refs/b\n"
    )
    packed = PackedFile(data, Path("packed-refs"))
    changes: dict[bytes, bytes | None] = {b"refs/b": b"3" * 40 + b" refs/b\n"}
    assert b"".join(packed.changed(changes)) == reference_rewrite(data, changes)


def test_moved_refs_further_apart_than_the_window_are_written_as_git_writes_them(tmp_path: Path) -> None:
    """5,000 packed refs, 300 of them moved (gaps of ~1 KB, window shrunk to 64 bytes) and 20
    new: the mirror's packed-refs is byte for byte what ``git update-ref`` and ``git pack-refs``
    make of the same repository."""
    rng = random.Random(4)
    ours = open_locked_mirror(tmp_path / "ours.git", wait_seconds=5)
    theirs = bare_repo(tmp_path / "theirs.git")
    blob = ours.create_blob(b"x")
    tree = ours.TreeBuilder()
    tree.insert("x", blob, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("a", "a@b", 0, 0)
    commits = [ours.create_commit(None, sig, sig, f"c{n}", tree.write(), []) for n in range(3)]
    refs = [f"refs/fleetcd/status/amr-{n:05d}/report" for n in range(5000)]
    lines = "".join(f"{commits[0]} {ref}\n" for ref in sorted(refs))
    for where in (Path(ours.path), theirs):
        (where / "packed-refs").write_text("# pack-refs with: peeled fully-peeled sorted \n" + lines)
    git("fetch", "-q", str(ours.path), *(f"{c}:refs/keep/{n}" for n, c in enumerate(commits)), cwd=theirs)
    moved = {ref: (commits[0], commits[rng.randrange(1, 3)]) for ref in rng.sample(refs, 300)}
    added = {f"refs/fleetcd/status/new-{n}/report": (None, commits[1]) for n in range(20)}
    packedrefs.NEAR_BYTES, saved = 64, packedrefs.NEAR_BYTES
    try:
        assert update_packed(ours, {**moved, **added}) == 320
    finally:
        packedrefs.NEAR_BYTES = saved
    script = "".join(
        f"update {ref} {new} {old or '0' * 40}\n" for ref, (old, new) in {**moved, **added}.items()
    )
    subprocess.run(["git", "update-ref", "--stdin"], cwd=theirs, input=script, text=True, check=True)
    for n in range(3):
        git("update-ref", "-d", f"refs/keep/{n}", cwd=theirs)
    git("pack-refs", "--all", cwd=theirs)
    assert (Path(ours.path) / "packed-refs").read_bytes() == (theirs / "packed-refs").read_bytes()


def records_under(data: bytes, prefix: bytes) -> dict[bytes, bytes]:
    """Every record under ``prefix`` of a sorted file: name -> its lines (``^`` lines included)."""
    found: dict[bytes, bytes] = {}
    name = None
    for line in data.splitlines(keepends=True)[1:]:
        if line.startswith(b"^"):
            if name is not None:
                found[name] += line
            continue
        name = line.rstrip(b"\n").split(b" ", 1)[1]
        if name.startswith(prefix):
            found[name] = line
        else:
            name = None
    return found


@pytest.mark.parametrize("chunk", [1, 7, 64, 65536])
@pytest.mark.parametrize("seed", range(40))
def test_same_but_says_whether_the_records_outside_the_named_ones_are_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, seed: int, chunk: int
) -> None:
    """Two random files, one changed from the other, and a random set of names (the changed ones,
    some of them, or others): ``same_but`` is the comparison of every record under the prefix but
    the named ones, whatever the chunk the gaps are compared in and the window the cuts are
    searched in."""
    monkeypatch.setattr(packedrefs, "SAME_CHUNK_BYTES", chunk)
    rng = random.Random(seed)
    monkeypatch.setattr(packedrefs, "NEAR_BYTES", rng.choice([0, 60, 300, 65536]))
    data, names = random_file(rng, rng.choice([1, 5, 30, 200]))
    changes = random_changes(rng, names) if rng.random() < 0.8 else {}
    other = reference_rewrite(data, changes)
    prefix = rng.choice([b"refs/", b"refs/a", b"refs/ab/", b"refs/z-/"])
    named = [name for name in changes if rng.random() < 0.8] + rng.sample(names, k=min(len(names), 2))
    ours, theirs = records_under(data, prefix), records_under(other, prefix)
    expected = all(
        ours.get(name) == theirs.get(name) for name in ours.keys() | theirs.keys() if name not in named
    )
    assert PackedFile(data, Path("a")).same_but(PackedFile(other, Path("b")), prefix, named) is expected
    assert PackedFile(other, Path("b")).same_but(PackedFile(data, Path("a")), prefix, named) is expected
