"""A kept RefReader patched across random rewrites of ``packed-refs`` reads what a fresh one reads.

:class:`fleetcd.git.reflisting.RefReader` parses a new ``packed-refs`` only where it differs from
the last one: in blocks compared in place when the two have one length (refs moved), as two sets
of lines otherwise. And it names the refs that may have changed since its caller last asked
(:meth:`~fleetcd.git.reflisting.RefReader.take_changed`), which is all
:func:`fleetcd.git.remote.fetch_moved` compares. Here the file goes through seeded random lives
(refs moved, added, deleted, peeled lines, names that are not UTF-8, a ref under a name that is a
prefix of another, 64-digit ids, lines straddling the block boundaries) and after every rewrite:

* the patched reader's refs are a fresh reader's full parse of the same bytes;
* every ref whose value differs from the last answer is among the changed refs it names;
* a rewrite of one length was compared in blocks, not split whole.
"""

from __future__ import annotations

import random

import pytest

from fleetcd.git.reflisting import _FINE_BLOCK, RefReader, _dirty_spans, _lines_around

HEADER = b"# pack-refs with: peeled fully-peeled sorted \n"
NAMES = ("refs/heads/main", "refs/fleetcd/status/", "refs/namespaces/")
SEEDS = range(8)
STEPS = 40


def random_oid(rng: random.Random, digits: int = 40) -> bytes:
    return b"".join(rng.choice(b"0123456789abcdef").to_bytes(1, "big") for _ in range(digits))


def random_name(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    robot = f"amr-{rng.randrange(400)}".encode()
    if kind < 5:
        return b"refs/fleetcd/status/" + robot
    if kind < 7:
        return b"refs/namespaces/" + robot + b"/refs/fleetcd/desired/" + robot
    if kind == 7:
        return rng.choice([b"refs/heads/main", b"refs/heads/mainline", b"refs/tags/v1"])
    if kind == 8:
        return b"refs/fleetcd/status/\xff\xfe" + robot  # not UTF-8: left out, as git's names may be
    return b"refs/other/" + robot


class PackedRefs:
    """A packed-refs file as name -> (id, peeled id or None), written sorted as git writes it."""

    def __init__(self, rng: random.Random, refs: int) -> None:
        self.rng = rng
        self.refs: dict[bytes, tuple[bytes, bytes | None]] = {}
        for _ in range(refs):
            self.refs[random_name(rng)] = (random_oid(rng), None)

    def data(self) -> bytes:
        lines = [HEADER]
        for name in sorted(self.refs):
            oid, peeled = self.refs[name]
            lines.append(oid + b" " + name + b"\n")
            if peeled is not None:
                lines.append(b"^" + peeled + b"\n")
        return b"".join(lines)

    def move(self, count: int) -> None:
        """``count`` refs to another id of the same length: the file keeps its length."""
        for name in self.rng.sample(sorted(self.refs), min(count, len(self.refs))):
            oid, peeled = self.refs[name]
            self.refs[name] = (random_oid(self.rng, len(oid)), peeled)

    def change(self) -> None:
        """Something that changes the length: a ref added or deleted, a peeled line, a longer id."""
        what = self.rng.choice(("add", "delete", "peel", "sha256"))
        name = self.rng.choice(sorted(self.refs))
        if what == "add":
            self.refs[random_name(self.rng)] = (random_oid(self.rng), None)
        elif what == "delete":
            del self.refs[name]
        elif what == "peel":
            oid, peeled = self.refs[name]
            self.refs[name] = (oid, None if peeled else random_oid(self.rng))
        else:
            self.refs[name] = (random_oid(self.rng, 64), self.refs[name][1])


def fresh(data: bytes) -> dict[str, str]:
    return RefReader(NAMES).from_bytes(data, ())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_reader_patched_across_random_rewrites_reads_what_a_fresh_reader_reads(seed: int) -> None:
    rng = random.Random(seed)
    packed = PackedRefs(rng, 300)
    reader = RefReader(NAMES)
    before = dict(reader.from_bytes(packed.data(), ()))
    assert before == fresh(packed.data())
    assert reader.take_changed() is None  # the first read: every ref is new to the caller
    for step in range(STEPS):
        same_length = rng.random() < 0.6
        if same_length:
            packed.move(rng.choice((1, 2, 5, 40)))
        else:
            packed.change()
        data = packed.data()
        blocks = reader.blocks
        after = dict(reader.from_bytes(data, ()))  # a read is valid until the next
        where = f"seed {seed} step {step}"
        assert after == fresh(data), where
        differ = {ref for ref in before.keys() | after.keys() if before.get(ref) != after.get(ref)}
        changed = reader.take_changed()
        assert changed is not None and differ <= changed, where
        if same_length:
            assert reader.blocks == blocks + 1, where
        before = after


def test_a_moved_ref_whose_line_straddles_a_block_boundary_is_seen() -> None:
    """Lines placed so that one crosses the boundary between two fine blocks: whichever of its
    bytes changed, the ref is found moved, and the ref whose line ends right at the boundary too."""
    rng = random.Random(1)
    names = [f"refs/fleetcd/status/amr-{n:04d}".encode() for n in range(40)]
    oids = {name: random_oid(rng) for name in names}

    def data() -> bytes:
        return HEADER + b"".join(oids[name] + b" " + name + b"\n" for name in names)

    line = len(data()) - len(HEADER)
    line //= len(names)
    reader = RefReader(NAMES)
    reader.from_bytes(data(), ())
    reader.take_changed()
    for name in names:
        start = len(HEADER) + names.index(name) * line
        if start // _FINE_BLOCK == (start + line) // _FINE_BLOCK:
            continue  # within one block
        oids[name] = random_oid(rng)
        after = reader.from_bytes(data(), ())
        assert after[name.decode()] == oids[name].decode()
        assert after == fresh(data())
        assert name.decode() in (reader.take_changed() or set())


@pytest.mark.parametrize("seed", range(20))
def test_every_differing_byte_lies_in_one_of_the_spans(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice((0, 1, 511, 512, 513, 5000, 40000))
    old = bytes(rng.randrange(256) for _ in range(size))
    new = bytearray(old)
    for _ in range(rng.randrange(6)):
        if size:
            at = rng.randrange(size)
            new[at] = (new[at] + 1) % 256
    spans = _dirty_spans(old, bytes(new))
    assert all(a < b for a, b in spans)
    assert all(spans[n][1] < spans[n + 1][0] for n in range(len(spans) - 1))  # sorted, not touching
    for at in range(size):
        if old[at] != new[at]:
            assert any(a <= at < b for a, b in spans), at
    if bytes(new) == old:
        assert spans == []


def test_the_lines_around_a_span_are_the_lines_that_start_or_end_in_it() -> None:
    data = b"aa\nbbbb\ncc\ndd\n"
    assert _lines_around(data, [(4, 5)]) == [b"bbbb", b""]  # inside a line: that line
    assert _lines_around(data, [(8, 9)]) == [b"cc", b""]  # a span at a line's start
    assert _lines_around(data, [(7, 8)]) == [b"bbbb", b"cc", b""]  # a newline: both lines it joins
    assert _lines_around(data, [(13, 14)]) == [b"dd", b""]  # the last newline
    assert _lines_around(data, [(0, 1), (1, 2)]) == [b"aa", b""]  # touching spans: the line once


def test_loose_refs_of_the_last_listing_and_of_this_one_are_named_changed() -> None:
    """A loose file overrides its packed line: when it appears, and when it goes (the packed
    value shows again), the ref may have changed though packed-refs did not."""
    rng = random.Random(3)
    packed = PackedRefs(rng, 20).data()
    reader = RefReader(NAMES)
    reader.from_bytes(packed, ())
    reader.take_changed()
    ref = "refs/fleetcd/status/amr-new"
    reader.from_bytes(packed, [(ref, random_oid(rng) + b"\n")])
    assert reader.take_changed() == {ref}
    reader.from_bytes(packed, ())
    assert reader.take_changed() == {ref}
    reader.from_bytes(packed, ())
    assert reader.take_changed() == set()
