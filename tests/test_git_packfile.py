"""A large object batch lands as one hand-written pack (fleetcd.git.packfile), checked by real git.

Every object of the pack is read back by libgit2 and by ``git cat-file``, ``git fsck --full``
finds nothing wrong, the pack path writes the very ids the loose path writes, objects the
repository has are never written again, and a writer SIGKILLed at any instant leaves a repository
that git and libgit2 read as before, whose next batch heals it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from controller.delivery import write_desired_state
from fleetcd.desired.chain import trust_file_of
from fleetcd.git import objects, packfile
from fleetcd.git.objects import PACK_FROM_OBJECTS
from fleetcd.git.repo import open_or_init_bare
from tests.gitrepos import bare_repo, git
from tests.packwriter import robot_files, write_robots
from tests.test_delivery import EXPIRES, ISSUED, Fleet, all_bundles, fleet  # noqa: F401 - fixture
from tests.test_git_objects import loose_object_count

ROOT = Path(__file__).resolve().parent.parent
ROBOTS = 200  # 2 own blobs, a tree and a commit each, 3 shared blobs: 803 objects, one pack
KILLED_ROBOTS = 1500  # a batch of about a second, so a random kill lands in it or in its refs


def packs(repo: pygit2.Repository) -> list[Path]:
    return sorted((Path(repo.path) / "objects" / "pack").glob("pack-*.pack"))


def all_object_ids(repo: pygit2.Repository) -> set[str]:
    listed = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=Path(repo.path))
    return set(listed.split())


def fsck(repo: pygit2.Repository) -> None:
    done = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"], cwd=repo.path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "error" not in done.stderr, done.stderr


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))


def test_every_object_of_a_packed_batch_reads_back_through_git_and_libgit2(repo: pygit2.Repository) -> None:
    written = write_robots(repo, range(ROBOTS))
    assert loose_object_count(repo) == 0 and len(packs(repo)) == 1
    ids = all_object_ids(repo)
    assert len(ids) == 4 * ROBOTS + 3
    # git reads each object's type, size and bytes; libgit2 (the handle that wrote them) the same.
    batch = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo.path,
        input=("\n".join(sorted(ids)) + "\n").encode(),
        capture_output=True,
    ).stdout
    at = 0
    for oid in sorted(ids):
        header_end = batch.index(b"\n", at)
        name, kind, size = batch[at:header_end].split()
        data = batch[header_end + 1 : header_end + 1 + int(size)]
        at = header_end + 2 + int(size)
        assert name.decode() == oid
        assert hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest() == oid
        obj = repo.odb.read(pygit2.Oid(hex=oid))
        assert (obj[0], obj[1]) == ({b"commit": 1, b"tree": 2, b"blob": 3}[kind], data)
    listed = git("verify-pack", "-v", str(packs(repo)[0].with_suffix(".idx")), cwd=Path(repo.path))
    # Each bundle (the shared release and a few bytes of its own) is a delta of an earlier one.
    assert f"chain length = 1: {ROBOTS - 1} objects" in listed
    # git indexes our pack into the very same .idx, byte for byte.
    theirs = Path(repo.path) / "by-git.idx"
    git("index-pack", "-o", str(theirs), str(packs(repo)[0]), cwd=Path(repo.path))
    assert theirs.read_bytes() == packs(repo)[0].with_suffix(".idx").read_bytes()
    fsck(repo)
    shown = git(
        "cat-file", "-p", f"{written['refs/fleetcd/desired/robot-7']}:bundle.json", cwd=Path(repo.path)
    )
    assert shown == robot_files(7)["bundle.json"].decode()


def test_a_batch_under_the_threshold_stays_loose(repo: pygit2.Repository) -> None:
    write_robots(repo, range(3))  # 15 objects
    assert loose_object_count(repo) == 4 * 3 + 3 < PACK_FROM_OBJECTS and not packs(repo)
    fsck(repo)


def test_objects_the_repository_has_are_not_written_again(repo: pygit2.Repository) -> None:
    write_robots(repo, range(ROBOTS))
    first = packs(repo)
    write_robots(repo, range(ROBOTS))  # everything known: no pack, no loose object
    assert packs(repo) == first and loose_object_count(repo) == 0
    write_robots(repo, range(ROBOTS // 2, ROBOTS * 2))  # a third known: only the new robots' objects
    (new,) = set(packs(repo)) - set(first)
    listed = git("verify-pack", "-v", str(new.with_suffix(".idx")), cwd=Path(repo.path))
    assert len(re.findall(r"^[0-9a-f]{40} ", listed, re.MULTILINE)) == 4 * ROBOTS
    fsck(repo)


def test_a_reconcile_writes_the_same_ids_through_a_pack_as_loose(
    fleet: Fleet,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results = {}
    for how, threshold in (("loose", 10**9), ("pack", 1)):
        monkeypatch.setattr(objects, "PACK_FROM_OBJECTS", threshold)
        repo = open_or_init_bare(tmp_path / f"{how}.git")
        results[how] = write_desired_state(
            repo,
            all_bundles(fleet, 3),
            fleet="demo",
            serial=3,
            issued_at=ISSUED,
            expires_at=EXPIRES,
            sign=lambda data: b"signature of " + hashlib.sha256(data).hexdigest().encode(),  # deterministic
            namespaces=True,
            trust=trust_file_of(fleet.spec),
        )
        assert (loose_object_count(repo) == 0) == (how == "pack")
        assert bool(packs(repo)) == (how == "pack")
        fsck(repo)
    assert results["pack"].refs == results["loose"].refs and len(results["pack"].refs) == 50
    loose, packed = (all_object_ids(open_or_init_bare(tmp_path / f"{how}.git")) for how in ("loose", "pack"))
    assert loose == packed


# --- a writer killed at any instant ---------------------------------------------------------------


def run_writer(path: Path, robots: int, instant: str) -> subprocess.Popen[str]:
    args = [str(path), str(robots), instant]
    code = f"from tests.packwriter import writer_main; writer_main({args!r})"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_its_children(writer: subprocess.Popen[str]) -> None:
    """Wait until no live process is left in the killed ``writer``'s group: a ``git update-ref`` it
    had started outlives it (a kill -9 of the writer alone) and holds its ref locks until it ends.
    A next writer started meanwhile failed on them, as "locked by another writer" (the random
    instant, once in 11 runs)."""
    deadline = time.monotonic() + 60
    while True:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 2 and int(fields[2]) == writer.pid and fields[0] != b"Z":
                alive.append(entry.name)
        if not alive:
            return
        assert time.monotonic() < deadline, f"the killed writer's children still run: {alive}"
        time.sleep(0.05)


@pytest.mark.parametrize("instant", ["fsync", "rename", "random"])
def test_a_writer_killed_at_any_instant_leaves_a_usable_repository_the_next_batch_heals(
    repo: pygit2.Repository, instant: str
) -> None:
    path = Path(repo.path)
    write_robots(repo, range(10))  # something to keep
    before = all_object_ids(repo)
    if instant == "random":
        writer = run_writer(path, KILLED_ROBOTS, "run")
        time.sleep(random.uniform(0.2, 1.5))
        writer.send_signal(signal.SIGKILL)
    else:
        writer = run_writer(path, KILLED_ROBOTS, instant)
    writer.wait(timeout=120)
    wait_for_its_children(writer)
    pack_dir = path / "objects" / "pack"
    unindexed = [p for p in pack_dir.glob("*.pack") if not p.with_suffix(".idx").exists()]
    if instant == "fsync":
        assert [p for p in pack_dir.iterdir() if p.name.startswith("tmp_pack_")]
    elif instant == "rename":
        assert unindexed
    # What is there is what was there, plus at most a pack nobody reads (no .idx) or temp files.
    fresh = pygit2.Repository(str(path))
    assert all(fresh.get(pygit2.Oid(hex=oid)) is not None for oid in before)
    fsck(fresh)
    for leftover in pack_dir.iterdir():
        if leftover.name.startswith("tmp_") or leftover.suffix == ".pack":
            os.utime(leftover, (time.time() - 2 * packfile.STALE_AFTER_S,) * 2)
    healed = run_writer(path, KILLED_ROBOTS, "run")
    assert healed.communicate(timeout=120)[0] == "done\n"
    assert not [p for p in pack_dir.iterdir() if p.name.startswith("tmp_")]
    assert all(p.with_suffix(".idx").exists() for p in pack_dir.glob("*.pack"))
    fresh = pygit2.Repository(str(path))
    assert len(objects.list_refs(fresh, "refs/fleetcd/desired/")) == KILLED_ROBOTS
    assert len(all_object_ids(fresh)) == 4 * KILLED_ROBOTS + 3
    fsck(fresh)


def test_only_old_leftovers_are_removed(tmp_path: Path) -> None:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    names = ["tmp_pack_old", "tmp_idx_old", "pack-a.pack", "tmp_pack_new", "pack-b.pack", "pack-b.idx"]
    names += ["tmp_keep_old.1.fleetcd", "tmp_rev_old"]  # a push by hand's .keep to be; git's own
    for name in names:
        (pack_dir / name).write_bytes(b"x")
    old = time.time() - 2 * packfile.STALE_AFTER_S
    for name in ("tmp_pack_old", "tmp_idx_old", "pack-a.pack", "pack-b.pack", "pack-b.idx", *names[-2:]):
        os.utime(pack_dir / name, (old, old))
    removed = packfile.remove_stale_temp_files(pack_dir)
    left = ["pack-a.pack", "tmp_idx_old", "tmp_keep_old.1.fleetcd", "tmp_pack_old", "tmp_rev_old"]
    assert sorted(p.name for p in removed) == left
    assert sorted(p.name for p in pack_dir.iterdir()) == ["pack-b.idx", "pack-b.pack", "tmp_pack_new"]


def test_objects_stored_as_deltas_of_edited_copies_read_back_exactly(tmp_path: Path) -> None:
    """Seeded edits (inserts, deletions, replacements, copies from offsets over 16 bits) of one
    blob: whatever write_pack stores as deltas, git reads back byte for byte."""
    rng = random.Random(7)
    base = rng.randbytes(70_000)
    variants = [base]
    for _ in range(12):
        data = bytearray(rng.choice(variants))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            edit = rng.choice(["insert", "delete", "replace"])
            if edit == "insert":
                data[at:at] = rng.randbytes(rng.randint(1, 300))
            elif edit == "delete":
                del data[at : at + rng.randint(1, 300)]
            else:
                data[at : at + 20] = rng.randbytes(20)
        variants.append(bytes(data))
    repo = pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))
    blobs = {hashlib.sha1(b"blob %d\0" % len(v) + v).digest(): v for v in variants}
    idx = packfile.write_pack(Path(repo.path) / "objects" / "pack", ((oid, 3, v) for oid, v in blobs.items()))
    assert idx is not None
    listed = git("verify-pack", "-v", str(idx), cwd=Path(repo.path))
    assert "chain length = 1:" in listed  # most are deltas
    names = "".join(f"{oid.hex()}\n" for oid in blobs).encode()
    out = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=repo.path, input=names, capture_output=True
    ).stdout
    at = 0
    for oid, data in blobs.items():
        header_end = out.index(b"\n", at)
        assert out[at:header_end] == b"%s blob %d" % (oid.hex().encode(), len(data))
        assert out[header_end + 1 : header_end + 1 + len(data)] == data
        at = header_end + 2 + len(data)
        assert repo.odb.read(pygit2.Oid(raw=oid))[1] == data
    fsck(repo)


def _decode_delta(base: bytes, instructions: bytes) -> bytes:
    """git's patch-delta.c in Python: the sizes, then copies from the base and inserted bytes."""
    at = 0
    for _ in range(2):  # the base's size, then the result's
        while instructions[at] & 0x80:
            at += 1
        at += 1
    out = bytearray()
    while at < len(instructions):
        command = instructions[at]
        at += 1
        if command & 0x80:
            offset = size = 0
            for i in range(4):
                if command & (1 << i):
                    offset |= instructions[at] << (8 * i)
                    at += 1
            for i in range(3):
                if command & (0x10 << i):
                    size |= instructions[at] << (8 * i)
                    at += 1
            out += base[offset : offset + (size or 0x10000)]
        else:
            out += instructions[at : at + command]
            at += command
    return bytes(out)


@pytest.mark.parametrize("seed", range(6))
def test_files_of_one_length_that_differ_in_places_are_deltas_git_reads_back(
    tmp_path: Path, seed: int
) -> None:
    """Robots' state files: one layout, ids, hashes and times of one length replaced in place (the
    XOR path of packdelta), plus runs shorter than a copy and a change at either end."""
    from fleetcd.git.packdelta import delta

    rng = random.Random(seed)
    template = bytearray((b'{\n "device": "robot-00000",\n "sha": "' + b"0" * 64 + b'",\n "n": 1\n}\n') * 20)
    files = []
    for _ in range(40):
        data = bytearray(template)
        for _ in range(rng.randint(0, 30)):
            at = rng.randrange(len(data) - 70)
            width = rng.choice([1, 3, 7, 8, 9, 64])
            data[at : at + width] = rng.randbytes(width)
        if rng.random() < 0.3:
            data[0:1] = b"["
        if rng.random() < 0.3:
            data[-1:] = b" "
        files.append(bytes(data))
    for base, target in itertools.pairwise(files):
        found = delta(base, target, len(target))
        assert found is not None and _decode_delta(base, found) == target
    repo = pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))
    blobs = {hashlib.sha1(b"blob %d\0" % len(v) + v).digest(): v for v in files}
    idx = packfile.write_pack(Path(repo.path) / "objects" / "pack", ((oid, 3, v) for oid, v in blobs.items()))
    assert idx is not None
    assert "chain length = 1:" in git("verify-pack", "-v", str(idx), cwd=Path(repo.path))
    for oid, data in blobs.items():
        assert repo.odb.read(pygit2.Oid(raw=oid))[1] == data
    fsck(repo)


def test_copies_at_offsets_and_sizes_of_every_byte_width_decode_exactly() -> None:
    """A copy's offset and size are sent as only their non-zero bytes, each flagged in the command:
    offsets with zero bytes in the middle, sizes of 0x10000 (sent as zero) and above."""
    from fleetcd.git.packdelta import delta

    rng = random.Random(3)
    base = rng.randbytes(0x30000)
    for cut in (0, 1, 0x100, 0xFF00, 0x10000, 0x10001, 0x1FFFF):
        target = base[cut : cut + 0x18000] + b"tail"
        found = delta(base, target, len(target))
        assert found is not None and _decode_delta(base, found) == target, hex(cut)


def _naive_prefix(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("seed", range(4))
def test_common_ends_found_window_by_window_are_the_byte_by_byte_ones(seed: int) -> None:
    """The prefix and suffix two objects share, looked for in growing windows (256, 1,024, ...
    bytes), at lengths around every window's edge and inside sub-ranges, are what comparing byte
    by byte gives."""
    from fleetcd.git.packdelta import _common_prefix, _common_suffix

    rng = random.Random(seed)
    edges = [0, 1, 255, 256, 257, 1279, 1280, 1281, 5375, 5376, 5377, 21759, 21760, 21761]
    for shared in edges + [rng.randrange(30_000) for _ in range(10)]:
        same = rng.randbytes(shared)
        a = rng.randbytes(rng.randrange(3)) + same + rng.randbytes(rng.randrange(0, 40))
        b = rng.randbytes(rng.randrange(3)) + same + rng.randbytes(rng.randrange(0, 40))
        a0, b0 = rng.randrange(3), rng.randrange(3)
        a1, b1 = len(a) - rng.randrange(3), len(b) - rng.randrange(3)
        a0, b0 = min(a0, a1), min(b0, b1)
        assert _common_prefix(a, a0, a1, b, b0, b1) == _naive_prefix(a[a0:a1], b[b0:b1])
        assert _common_suffix(a, a0, a1, b, b0, b1) == _naive_prefix(a[a0:a1][::-1], b[b0:b1][::-1])


def test_the_runs_where_two_strings_agree_are_the_longest_zero_runs_of_their_xor() -> None:
    """The literal-prefix pattern finds exactly the runs of 8 or more zero bytes (leftmost, whole)
    that ``\\x00{8,}`` finds, on sparse, dense and unrelated data."""
    from fleetcd.git.packdelta import _MIN_COPY, _SAME_BYTES

    rng = random.Random(5)
    reference = re.compile(b"\\x00{%d,}" % _MIN_COPY)
    for density in (0.0, 0.02, 0.3, 0.9, 0.995, 1.0):
        for _ in range(20):
            data = bytes(0 if rng.random() < density else rng.randrange(1, 256) for _ in range(3000))
            assert [m.span() for m in _SAME_BYTES.finditer(data)] == [
                m.span() for m in reference.finditer(data)
            ]


def test_trees_of_one_length_with_nothing_in_common_are_stored_whole_and_read_back(tmp_path: Path) -> None:
    """The state branch's bucket trees: the same names' layout, equal lengths, unrelated ids. They
    are tried as deltas of each other and stored whole; a tree edited in place (one id) becomes a
    delta of its base; git reads all of them back and fsck passes."""
    from fleetcd.git.packdelta import delta

    rng = random.Random(11)

    def tree() -> bytes:  # a bucket's robots: names hashed into it, in order
        names = sorted(b"robot-%06d.json" % n for n in rng.sample(range(10**6), 390))
        return b"".join(b"100644 " + name + b"\0" + rng.randbytes(20) for name in names)

    trees = [tree() for _ in range(12)]
    assert len({len(t) for t in trees}) == 1
    assert delta(trees[0], trees[1], len(trees[1]) // 2) is None
    edited = bytearray(trees[1])
    edited[45 * 111 + 25 : 45 * 112] = rng.randbytes(20)  # the 112th robot's file, rewritten
    found = delta(trees[1], bytes(edited), len(edited) // 2)
    assert found is not None and len(found) < 100 and _decode_delta(trees[1], found) == bytes(edited)
    objects = {
        hashlib.sha1(b"tree %d\0" % len(t) + t).digest(): t for t in [*trees[:4], bytes(edited), *trees[4:]]
    }
    repo = pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))
    idx = packfile.write_pack(Path(repo.path) / "objects" / "pack", ((o, 2, t) for o, t in objects.items()))
    assert idx is not None
    listed = git("verify-pack", "-v", str(idx), cwd=Path(repo.path))
    assert "chain length = 1: 1 object" in listed  # only the edited copy is a delta
    for oid, data in objects.items():
        assert repo.odb.read(pygit2.Oid(raw=oid))[1] == data
    fsck(repo)


@pytest.mark.parametrize("seed", range(3))
def test_a_delta_refused_early_is_refused_exactly_when_the_full_search_would_refuse_it(seed: int) -> None:
    """Regions of one length whose XOR has too few zero bytes are not listed when the delta cannot
    reach its limit: on trees and files of one length sharing from nothing to nearly everything,
    at every limit, the answer is what the search without a limit (max_new = the target's size)
    gives: the same instructions, or None exactly when those leave more new bytes than allowed."""
    from fleetcd.git.packdelta import delta

    rng = random.Random(seed)
    for _ in range(60):
        size = rng.choice([64, 300, 2000, 17_550])
        base = rng.randbytes(size)
        target = bytearray(base)
        for _ in range(rng.choice([0, 1, 5, 40, size // 8])):
            at = rng.randrange(size)
            target[at : at + rng.randint(1, 30)] = rng.randbytes(rng.randint(1, 30))[: size - at]
        target = target[:size] if len(target) >= size else target + rng.randbytes(size - len(target))
        full = delta(base, bytes(target), len(target))
        assert full is not None and _decode_delta(base, full) == target
        new_bytes = sum(op & 0x7F for op in _inserted_ops(full))
        for max_new in (0, size // 8, size // 2, new_bytes - 1, new_bytes, size):
            found = delta(base, bytes(target), max_new)
            assert found == (full if new_bytes <= max_new else None), (size, max_new, new_bytes)


def _inserted_ops(instructions: bytes) -> list[int]:
    """The insert commands of a delta (each ``0nnnnnnn``: n bytes follow)."""
    at = 0
    for _ in range(2):
        while instructions[at] & 0x80:
            at += 1
        at += 1
    ops = []
    while at < len(instructions):
        command = instructions[at]
        at += 1
        if command & 0x80:
            at += bin(command & 0x7F).count("1")
        else:
            ops.append(command)
            at += command
    return ops
