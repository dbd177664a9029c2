"""A ``packed-refs`` that changed length is walked side by side with the last one, and misses nothing.

:class:`fleetcd.git.reflisting.RefReader` used to split both files whole into sets of lines when
refs were added or deleted (a fleet's first reports: 0.12 s at 150,000 refs). It now walks the two
(:func:`~fleetcd.git.reflisting._walk`): equal bytes skipped in blocks, the records where they
differ compared by name, and only those split. Here:

* on random byte strings, mutated anywhere (lines inserted, deleted, edited, unsorted names, no
  final newline, comment and ``^`` lines, bytes that are not UTF-8), every line of one file that is
  not in the other is among the records the walk returns, and the records are whole lines of it;
* on git-written files living a random life of refs added, deleted, moved, peeled and given
  64-digit ids, a kept reader reads what a fresh one reads, names every ref that changed, and
  walked rather than split whole;
* a rewrite of most of the file gives up the walk (compared whole) and still reads right;
* a mirror whose ``packed-refs`` is replaced by hand with one of another length (a ref dropped,
  one added, one moved) is put back to the server's refs by the next fetch with a kept memo.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fleetcd.git.reflisting import _WALK_SHARE, RefReader, _split, _walk
from fleetcd.git.remote import ListedRefs, fetch_moved
from tests.test_git_fetch_moved_delta import NAMES as FETCH_NAMES
from tests.test_git_fetch_moved_delta import git_refs, packed_pair, under_names
from tests.test_git_reflisting_blocks import HEADER, NAMES, PackedRefs, fresh, random_name, random_oid

SEEDS = range(10)


def lines(data: bytes) -> set[bytes]:
    """The lines a reader looks at (an empty one, as after a final newline, is skipped)."""
    return set(data.split(b"\n")) - {b""}


def assert_walk_covers(old: bytes, new: bytes) -> None:
    walked = _walk(old, new)
    if walked is None:
        return
    gone, came = walked
    for record in gone:
        assert record in old and (record.endswith(b"\n") or old.endswith(record))
    for record in came:
        assert record in new and (record.endswith(b"\n") or new.endswith(record))
    gone_lines, came_lines = set(_split(gone)) - {b""}, set(_split(came)) - {b""}
    assert lines(old) - lines(new) <= gone_lines
    assert lines(new) - lines(old) <= came_lines
    if all(len(data.split(b"\n")) - data.count(b"\n\n") - 1 <= len(lines(data)) for data in (old, new)):
        # no line twice in a file: the records' difference is the files' own
        assert gone_lines - came_lines == lines(old) - lines(new)
        assert came_lines - gone_lines == lines(new) - lines(old)


def mutate(rng: random.Random, data: bytes) -> bytes:
    text = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        what = rng.randrange(5)
        at = rng.randrange(len(text) + 1)
        if what == 0:  # a line inserted anywhere, not always at a line start
            text[at:at] = random_oid(rng) + b" " + random_name(rng) + b"\n"
        elif what == 1 and text:  # bytes deleted
            del text[at : at + rng.randrange(1, 120)]
        elif what == 2 and text:  # a byte replaced, newline or not
            text[min(at, len(text) - 1)] = rng.choice(b"\n ^#0a\xff")
        elif what == 3:  # a comment or peeled line
            text[at:at] = rng.choice((b"# a comment\n", b"^" + random_oid(rng) + b"\n"))
        else:  # the final newline, gone or added
            text = text[:-1] if text.endswith(b"\n") else text + b"\n"
    return bytes(text)


@pytest.mark.parametrize("seed", range(60))
def test_every_line_one_file_holds_and_the_other_does_not_is_in_the_walked_records(seed: int) -> None:
    rng = random.Random(seed)
    packed = PackedRefs(rng, rng.choice((0, 1, 5, 60, 400)))
    old = packed.data()
    if rng.random() < 0.2:  # not a packed-refs at all
        old = bytes(rng.randrange(256) for _ in range(rng.randrange(3000)))
    if rng.random() < 0.3:  # names out of order: a file git did not write
        body = old.split(b"\n")
        rng.shuffle(body)
        old = b"\n".join(body)
    new = old
    for _ in range(rng.randrange(1, 8)):
        new = mutate(rng, new)
        assert_walk_covers(old, new)
        assert_walk_covers(new, old)


def test_a_walk_of_files_that_end_mid_line_or_are_empty_covers_them() -> None:
    line = b"a" * 40 + b" refs/fleetcd/status/amr-1"
    for old, new in (
        (b"", HEADER),
        (HEADER, b""),
        (HEADER + line, HEADER + line + b"\n"),
        (HEADER + line + b"\n", HEADER + line),
        (HEADER + line, HEADER + line + b"\n" + line),
        (line, b"^" + line),
    ):
        assert_walk_covers(old, new)
        assert_walk_covers(new, old)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_reader_walks_refs_added_and_deleted_and_reads_what_a_fresh_reader_reads(seed: int) -> None:
    rng = random.Random(seed)
    packed = PackedRefs(rng, 300)
    reader = RefReader(NAMES)
    before = dict(reader.from_bytes(packed.data(), ()))
    reader.take_changed()
    walked = 0
    for step in range(30):
        for _ in range(rng.choice((1, 2, 5, 12))):
            packed.change()
        if rng.random() < 0.5:
            packed.move(rng.choice((1, 5)))
        data = packed.data()
        after = dict(reader.from_bytes(data, ()))  # a read is valid until the next
        where = f"seed {seed} step {step}"
        assert after == fresh(data), where
        differ = {ref for ref in before.keys() | after.keys() if before.get(ref) != after.get(ref)}
        changed = reader.take_changed()
        assert changed is not None and differ <= changed, where
        walked = reader.walked
        before = after
    assert walked >= 20  # git-written files of a few changes: walked, not split whole


def test_a_rewrite_of_most_of_the_file_is_compared_whole_and_reads_right() -> None:
    rng = random.Random(5)
    packed = PackedRefs(rng, 300)
    reader = RefReader(NAMES)
    reader.from_bytes(packed.data(), ())
    reader.take_changed()
    packed.move(len(packed.refs) // 2)  # half the ids replaced, and a ref added: another length
    packed.refs[b"refs/fleetcd/status/amr-new"] = (random_oid(rng), None)
    data = packed.data()
    assert _walk(data, data) == ([], [])  # equal files: nothing to split
    after = reader.from_bytes(data, ())
    assert (reader.walked, reader.diffed) == (0, 1)  # the walk gave up: more than 1/8 differs
    assert after == fresh(data)
    assert "refs/fleetcd/status/amr-new" in (reader.take_changed() or set())
    assert _WALK_SHARE == 8


def test_a_walk_that_gives_up_leaves_the_reader_reading_right_the_next_time() -> None:
    """The reader after a whole compare walks again, from the bytes it compared whole."""
    rng = random.Random(6)
    packed = PackedRefs(rng, 200)
    reader = RefReader(NAMES)
    reader.from_bytes(packed.data(), ())
    packed.move(150)
    packed.change()
    reader.from_bytes(packed.data(), ())
    packed.refs[b"refs/fleetcd/status/amr-later"] = (random_oid(rng), None)
    data = packed.data()
    assert reader.from_bytes(data, ()) == fresh(data)
    assert reader.walked == 1


def test_a_packed_refs_replaced_in_the_mirror_with_another_length_is_put_right_by_the_next_fetch(
    tmp_path: Path,
) -> None:
    """Someone replaces the mirror's packed-refs by hand between two fetches: one status ref's line
    dropped, another moved to a third ref's id, a ref the server never had added. The bytes have
    another length, so the mirror's reader walks them; the fetch puts every ref back to the
    server's and deletes the planted one, taking the memo's way (refs named, not compared whole)."""
    server, refs, mirror, memo = packed_pair(tmp_path, FETCH_NAMES)
    mirror_path = Path(mirror.path)
    packed = mirror_path / "packed-refs"
    held = packed.read_bytes()
    body = held.split(b"\n")
    by_ref = {
        line.split(b" ", 1)[1].decode(): n for n, line in enumerate(body) if line[:1] not in (b"#", b"")
    }
    dropped, moved, other = refs[10], refs[20], refs[30]
    body[by_ref[moved]] = body[by_ref[other]].split(b" ")[0] + b" " + moved.encode()
    planted = f"{dropped}-planted"  # where git's sorted file has it: git itself can delete it
    body.insert(by_ref[dropped] + 1, body[by_ref[other]].split(b" ")[0] + b" " + planted.encode())
    del body[by_ref[dropped]]
    packed.write_bytes(b"\n".join(body))
    assert memo.mirror is not None
    walked, diffed = memo.mirror.walked, memo.mirror.diffed
    assert len(packed.read_bytes()) != len(held)
    found = fetch_moved(mirror, str(server.path), FETCH_NAMES, memo=memo)
    assert isinstance(found, ListedRefs) and found.changed is not None  # the memo's way
    assert {dropped, moved, planted} <= found.changed
    assert (memo.mirror.walked, memo.mirror.diffed) == (walked + 1, diffed)
    assert under_names(git_refs(mirror_path)) == under_names(git_refs(server.path))
    assert planted not in git_refs(mirror_path)
