"""packed-refs changed by splicing the changed lines into its bytes (fleetcd.git.packedrefs.PackedFile).

The splice must write exactly the bytes the whole-file rewrite it replaced wrote (parse every line
into a dict, change it, write the header and every record sorted): checked here against that
rewrite, kept below as the reference, on seeded random files with annotated tags' peeled lines,
deletions, new refs before, between and after the old ones, names that are prefixes of one another,
and files git's reader accepts but the splice does not trust (no ``sorted`` header, a comment or
blank line inside, no final newline), which are rewritten whole. Lookups agree with the reference
for every ref and for absent ones. Then against git: the spliced file is what ``git for-each-ref``
and ``git show-ref -d`` read back, and a kill -9 halfway through writing it leaves the old file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pygit2
import pytest

from fleetcd.git import packedrefs
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.packedrefs import HEADER, PackedFile, refs_to_send, update_packed
from tests.gitrepos import git

SEGMENTS = ("a", "b", "ab", "amr-0001", "amr-00010", "refs", "x.y", "z-", "Z", "_")


def reference_rewrite(data: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
    """What fleetcd wrote before the splice: every line parsed, the changes applied, all sorted."""
    entries: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"#"):
            continue
        if line.startswith(b"^"):
            if last is not None:
                last.append(line)
            continue
        _oid, sep, name = line.rstrip(b"\n").partition(b" ")
        assert sep
        last = entries[name] = [line if line.endswith(b"\n") else line + b"\n"]
    for name, lines in changes.items():
        if lines is None:
            entries.pop(name, None)
        else:
            entries[name] = [lines]
    return HEADER + b"".join(b"".join(entries[name]) for name in sorted(entries))


def reference_value(data: bytes, name: bytes) -> bytes | None:
    for line in data.splitlines():
        oid, _, found = line.partition(b" ")
        if line[:1] not in (b"#", b"^") and found == name:
            return oid
    return None


def random_name(rng: random.Random) -> bytes:
    parts = [rng.choice(SEGMENTS) for _ in range(rng.randint(1, 4))]
    return ("refs/" + "/".join(parts)).encode()


def random_oid(rng: random.Random) -> bytes:
    return rng.randbytes(20).hex().encode()


def random_record(rng: random.Random, name: bytes) -> bytes:
    line = b"%s %s\n" % (random_oid(rng), name)
    return line + (b"^%s\n" % random_oid(rng) if rng.random() < 0.3 else b"")


def random_file(rng: random.Random, size: int) -> tuple[bytes, list[bytes]]:
    names = sorted({random_name(rng) for _ in range(size)})
    if not names:
        return (b"" if rng.random() < 0.5 else HEADER), []
    return HEADER + b"".join(random_record(rng, name) for name in names), names


def random_changes(rng: random.Random, names: list[bytes]) -> dict[bytes, bytes | None]:
    changes: dict[bytes, bytes | None] = {}
    for name in rng.sample(names, k=rng.randint(0, len(names))):
        changes[name] = None if rng.random() < 0.3 else random_record(rng, name)
    for _ in range(rng.randint(0, 6)):
        name = random_name(rng)  # often new, sometimes one already there
        changes[name] = None if rng.random() < 0.2 else random_record(rng, name)
    return changes


@pytest.mark.parametrize("seed", range(300))
def test_the_spliced_file_is_byte_for_byte_the_whole_rewrite(seed: int) -> None:
    rng = random.Random(seed)
    data, names = random_file(rng, rng.choice([0, 1, 2, 5, 30, 200]))
    packed = PackedFile(data, Path("packed-refs"))
    assert packed.spliceable
    changes = random_changes(rng, names)
    assert b"".join(packed.changed(changes)) == reference_rewrite(data, changes)
    for name in [*names, *changes]:
        assert packed.value(name) == reference_value(data, name), name


@pytest.mark.parametrize("seed", range(150))
def test_new_refs_bisected_inside_a_small_window_land_where_the_whole_rewrite_puts_them(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed ref missed by the search near the last one is bisected only up to the first
    record past the window when it sorts before that record: windows of a few bytes to a few
    records, over files of new names, peeled lines and names that prefix one another."""
    rng = random.Random(seed)
    monkeypatch.setattr(packedrefs, "NEAR_BYTES", rng.choice([0, 1, 40, 90, 150, 400, 2000]))
    data, names = random_file(rng, rng.choice([30, 200, 600]))
    packed = PackedFile(data, Path("packed-refs"))
    changes: dict[bytes, bytes | None] = {}
    for _ in range(rng.randint(1, 60)):  # mostly new names: each one a miss of the near search
        name = random_name(rng) + rng.choice([b"", b"/new", b"-x", b"0"])
        changes[name] = random_record(rng, name)
    for name in rng.sample(names, k=min(len(names), rng.randint(0, 10))):
        changes[name] = None if rng.random() < 0.3 else random_record(rng, name)
    assert b"".join(packed.changed(changes)) == reference_rewrite(data, changes)
    for name in changes:
        assert packed.value(name) == reference_value(data, name), name


@pytest.mark.parametrize("seed", range(40))
def test_a_file_the_splice_does_not_trust_is_rewritten_whole_to_the_same_bytes(seed: int) -> None:
    rng = random.Random(seed)
    data, names = random_file(rng, 40)
    body = data[len(HEADER) :]
    lines = body.splitlines(keepends=True)
    odd = rng.choice(["no header", "old header", "shuffled", "comment inside", "no final newline"])
    if odd == "no header":
        data = body
    elif odd == "old header":
        data = b"# pack-refs with: peeled \n" + body
    elif odd == "shuffled":  # git accepts an unsorted file without the "sorted" trait
        data = b"# pack-refs with: peeled fully-peeled \n" + b"".join(rng.sample(lines, k=len(lines)))
    elif odd == "comment inside":
        lines.insert(rng.randint(0, len(lines)), b"# a comment\n")
        data = HEADER + b"".join(lines)
    else:
        data = data.rstrip(b"\n")
    packed = PackedFile(data, Path("packed-refs"))
    assert not packed.spliceable or not data, odd
    changes = random_changes(rng, names)
    assert b"".join(packed.changed(changes)) == reference_rewrite(data, changes)
    for name in names:
        assert packed.value(name) == reference_value(data, name)


def test_a_garbled_line_met_while_bisecting_is_refused_naming_the_file() -> None:
    data = HEADER + b"%s refs/a\n" % (b"1" * 40) + b"garbage-without-a-space\n" + b"%s refs/c\n" % (b"2" * 40)
    packed = PackedFile(data, Path("/srv/fleet.git/packed-refs"))
    with pytest.raises(ValueError, match=r"/srv/fleet.git/packed-refs: unreadable line b'garbage"):
        packed.changed({b"refs/b": b"%s refs/b\n" % (b"3" * 40)})


def make_repo(tmp_path: Path, tags: int = 3, branches: int = 40) -> tuple[pygit2.Repository, list[str]]:
    """A bare repository with ``branches`` branches and ``tags`` annotated tags, all packed by git."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "repo.git"
    git("init", "-q", "--bare", str(path), cwd=tmp_path)
    repo = pygit2.Repository(str(path))
    sig = pygit2.Signature("t", "t@fleet.test", 1700000000, 0)
    tree = repo.TreeBuilder().write()
    commits = [repo.create_commit(None, sig, sig, f"c{n}", tree, []) for n in range(branches)]
    for n, oid in enumerate(commits):
        repo.references.create(f"refs/heads/b{n:03d}", oid)
    for n in range(tags):
        repo.create_tag(f"v{n}", commits[n], pygit2.GIT_OBJECT_COMMIT, sig, f"tag {n}")
    git("pack-refs", "--all", cwd=path)
    return repo, [str(oid) for oid in commits]


def test_git_reads_the_spliced_file_tags_peeled_lines_included(tmp_path: Path) -> None:
    repo, commits = make_repo(tmp_path)
    path = Path(repo.path)
    before = git("show-ref", "-d", cwd=path)
    assert "^{}" in before  # git wrote peeled lines for the tags
    updates = {
        f"refs/heads/b{n:03d}": (pygit2.Oid(hex=commits[n]), pygit2.Oid(hex=commits[0])) for n in (5, 17)
    }
    updates["refs/heads/new"] = (None, pygit2.Oid(hex=commits[3]))  # type: ignore[assignment]
    data = (path / "packed-refs").read_bytes()
    changes = {ref.encode(): f"{new} {ref}\n".encode() for ref, (_old, new) in updates.items()}
    assert update_packed(repo, updates) == 3  # type: ignore[arg-type]
    assert (path / "packed-refs").read_bytes() == reference_rewrite(data, changes)
    expected = {line.split(" ")[1]: line.split(" ")[0] for line in before.splitlines()}
    expected |= {ref: str(new) for ref, (_old, new) in updates.items()}
    listed = git("show-ref", "-d", cwd=path)
    assert {line.split(" ")[1]: line.split(" ")[0] for line in listed.splitlines()} == expected
    assert git("fsck", "--no-progress", "--no-dangling", cwd=path) == ""


SLOW_WRITER = r"""
import os, signal, sys
import pygit2
from pathlib import Path
from fleetcd.git import packedrefs
real = packedrefs.PackedFile.changed
def changed(self, changes):
    chunks = real(self, changes)
    def halfway():
        for n, chunk in enumerate(chunks):
            yield chunk
            if n == len(chunks) // 2:
                os.kill(os.getpid(), signal.SIGKILL)
    return halfway()
packedrefs.PackedFile.changed = changed
repo = pygit2.Repository(sys.argv[1])
new = pygit2.Oid(hex=sys.argv[2])
names = [f"refs/heads/b{n:03d}" for n in range(1, 40, 3)]
updates = {name: (repo.references[name].target, new) for name in names}
packedrefs.update_packed(repo, updates)
"""


def test_attack_kill_9_halfway_through_writing_the_spliced_file_leaves_the_old_file_whole(
    tmp_path: Path,
) -> None:
    repo, commits = make_repo(tmp_path)
    path = Path(repo.path)
    before = (path / "packed-refs").read_bytes()
    listed = git("show-ref", "-d", cwd=path)
    script = tmp_path / "slow_writer.py"
    script.write_text(SLOW_WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script), repo.path, commits[0]], env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    assert (path / "packed-refs").read_bytes() == before
    assert git("show-ref", "-d", cwd=path) == listed
    # the half-written file is git's lock, which git refuses to take over; the mirror's lock heals it
    assert (path / "packed-refs.lock").exists()
    with pytest.raises(AssertionError, match=r"packed-refs\.lock': File exists"):
        git("pack-refs", "--all", cwd=path)
    with open_locked_mirror(path, wait_seconds=5) as healed:
        assert not (path / "packed-refs.lock").exists()
        moved = {"refs/heads/b001": (pygit2.Oid(hex=commits[1]), pygit2.Oid(hex=commits[0]))}
        assert update_packed(healed, moved) == 1
    assert git("rev-parse", "refs/heads/b001", cwd=path).strip() == commits[0]


@pytest.mark.parametrize("hint", ["none", "exact", "too few", "too many"])
def test_refs_to_send_names_exactly_the_refs_a_wildcard_push_would_change(tmp_path: Path, hint: str) -> None:
    """Whatever the caller says it moved (``likely``: nothing, exactly the moved refs, some of them,
    or refs that did not move), the answer is the same: a hint that misses a ref is caught by
    comparing the packed bytes between the refs it names."""
    ours, commits = make_repo(tmp_path / "ours", tags=0)
    (tmp_path / "theirs").mkdir()
    theirs = tmp_path / "theirs" / "server.git"
    git("clone", "-q", "--mirror", ours.path, str(theirs), cwd=tmp_path)
    git("pack-refs", "--all", cwd=theirs)
    assert refs_to_send(Path(ours.path), theirs, "refs/heads/") == {}
    c = [pygit2.Oid(hex=oid) for oid in commits]
    # moved in our packed-refs; new in ours; loose in ours; loose (and stale) in theirs; loose in both
    # at the same value; a symbolic ref of ours; a ref they have and we do not
    update_packed(ours, {"refs/heads/b001": (c[1], c[2]), "refs/heads/new": (None, c[3])})
    git("update-ref", "refs/heads/b002", commits[4], cwd=Path(ours.path))
    git("update-ref", "refs/heads/b003", commits[5], cwd=theirs)
    git("update-ref", "refs/heads/b004", commits[6], cwd=Path(ours.path))
    git("update-ref", "refs/heads/b004", commits[6], cwd=theirs)
    git("symbolic-ref", "refs/heads/sym", "refs/heads/b000", cwd=Path(ours.path))
    git("update-ref", "refs/heads/theirs-only", commits[7], cwd=theirs)
    git("update-ref", "refs/other/b001", commits[8], cwd=Path(ours.path))  # outside the prefix
    likely = {
        "none": [],
        "exact": ["refs/heads/b001", "refs/heads/new"],
        "too few": ["refs/heads/new"],
        "too many": ["refs/heads/b001", "refs/heads/new", "refs/heads/b010", "refs/heads/b039"],
    }[hint]
    ours_packed, theirs_packed = PackedFile.read(Path(ours.path)), PackedFile.read(theirs)
    named = [ref.encode() for ref in likely]
    assert ours_packed.same_but(theirs_packed, b"refs/heads/", named) is (hint in ("exact", "too many"))
    assert refs_to_send(Path(ours.path), theirs, "refs/heads/", likely) == {
        "refs/heads/b001": commits[2],
        "refs/heads/new": commits[3],
        "refs/heads/b002": commits[4],
        "refs/heads/b003": commits[3],
    }
    # and it is what git push would do: after a real wildcard push, nothing is left to send
    git(
        "push",
        "-q",
        "--force",
        str(theirs),
        "refs/heads/b0*:refs/heads/b0*",
        "refs/heads/new",
        cwd=Path(ours.path),
    )
    assert refs_to_send(Path(ours.path), theirs, "refs/heads/") == {}
