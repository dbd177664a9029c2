"""A local repository's refs read from the bytes that store them, parsed again only where they changed.

:func:`fleetcd.git.remote.fetch_moved` compares the server's refs with the mirror's on every
reconcile. At 100,000 robots that is 200,000 refs on each side: ``git ls-remote`` of the server
(a process printing every ref, then a Python line each) and a parse of the mirror's ``packed-refs``
(a Python line each) cost most of the fetch of a wave that moved one branch. A
:class:`RefReader` keeps what it parsed from a repository's ``packed-refs`` with the exact bytes it
parsed: the next read compares the new bytes with those (equal: nothing parsed at all), and when
they differ parses only the lines that are not in both (two sets of lines, built in C). Loose ref
files, which override the packed ones, are read every time; they are few once packed.

When the new ``packed-refs`` has the old one's length (refs moved: a line's object id replaced
by another of the same length, the usual change), the two are compared a block at a time
(:func:`_dirty_spans`, memcmp in C) and only the lines in blocks that differ are split: at 200,000
refs and 1,000 moved that is about 1,000 blocks' lines, not 400,000 lines in two sets. When the
lengths differ (refs added or deleted: a fleet's first reports), the two are walked side by side
(:func:`_walk`): equal bytes are skipped a block at a time, and where they differ the records
there are compared by name (git writes the file sorted), so the walk falls back into step after
an added or deleted ref; only the records it stopped at are split.

Each reader also keeps which refs' values may have changed since its caller last asked
(:meth:`RefReader.take_changed`): the packed lines that changed and every loose ref seen. With
both sides' sets :func:`fleetcd.git.remote.fetch_moved` compares only those refs, not the two
listings whole.

What a read returns is a function of the bytes read alone, so a reader can hold an old answer but
never give one: a long-running controller keeps one per repository
(:class:`RefListingMemo`), ``controller reconcile --once`` reads afresh and gets the same refs.
The rules are :func:`fleetcd.git.packedrefs.read_refs`'s: comment and peeled lines are skipped, a
loose file holding anything but an object id (half-written) hides the ref, and a name that is not
UTF-8 is left out (no ref fleetcd reads or writes has one). A symbolic loose ref (``ref: ...``)
is git's to resolve: :meth:`RefReader.read` returns None for it, and the caller's ``git
ls-remote`` lists it under its target's object id, so a status ref made symbolic on the server is
fetched and refused by the ingest, as it was before the refs were read from their bytes.

A repository someone else may be writing (the server) is read consistently or not at all: when
``packed-refs`` was replaced while the loose files were read (a ``git pack-refs`` moving refs
from one to the other), or a loose file vanished, :meth:`RefReader.read` returns None and the
caller lists the refs through git instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

PACKED_REFS = "packed-refs"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


_SKIPPED = ("#", "^", "")  # comment, peeled and empty lines


def _lines(packed: bytes) -> list[str]:
    """``packed``'s lines as text: decoded at once (in C), or line by line leaving out the lines
    that are not UTF-8 when some are not."""
    try:
        return packed.decode().split("\n")
    except UnicodeDecodeError:
        lines = []
        for line in packed.split(b"\n"):
            try:
                lines.append(line.decode())
            except UnicodeDecodeError:
                continue
        return lines


# Blocks of ``packed-refs`` compared, coarse then fine: a coarse block that differs is compared
# again in fine blocks, and only the lines of fine blocks that differ are split. 200,000 refs
# (13.6 MB) with 1,000 moved: 9 ms to find the blocks, against 0.1 s for two sets of lines. The
# blocks are compared as bytes slices (a copy, then memcmp): memoryview slices compare item by
# item (16 KB: 55 us against 1.8 us), which was 38 ms of those 9.
_COARSE_BLOCK = 16384
_FINE_BLOCK = 512
# Where :func:`_walk` found two blocks differ, it narrows to the first differing bytes by halves
# down to this many before reading the records there.
_NARROW_BYTES = 64
# :func:`_walk` gives up (the caller compares the files whole, in C) once the records it stopped at
# hold more than 1/this of the longer file: a rewrite that is not a few refs added and moved.
_WALK_SHARE = 8


def _dirty_spans(old: bytes, new: bytes) -> list[tuple[int, int]]:
    """Where two byte strings of one length differ: sorted, disjoint ``[start, end)`` spans of
    fine blocks, covering every differing byte."""
    spans: list[tuple[int, int]] = []
    size = len(old)
    for start in range(0, size, _COARSE_BLOCK):
        end = min(start + _COARSE_BLOCK, size)
        if old[start:end] == new[start:end]:
            continue
        for fine in range(start, end, _FINE_BLOCK):
            stop = min(fine + _FINE_BLOCK, end)
            if old[fine:stop] != new[fine:stop]:
                if spans and spans[-1][1] == fine:
                    spans[-1] = (spans[-1][0], stop)
                else:
                    spans.append((fine, stop))
    return spans


def _equal_run(old: bytes, new: bytes, i: int, j: int) -> int:
    """How many bytes from ``old[i:]`` and ``new[j:]`` on are surely equal, to within
    :data:`_NARROW_BYTES` of the first that differ (or of the shorter end): blocks growing from
    :data:`_FINE_BLOCK` to :data:`_COARSE_BLOCK` while they are equal, then halves of the one that
    is not."""
    run, size = 0, _FINE_BLOCK
    while True:
        take = min(size, len(old) - i - run, len(new) - j - run)
        if old[i + run : i + run + take] != new[j + run : j + run + take]:
            break
        run += take
        if take < size:  # one string ended: equal up to there
            return run
        size = min(size * 2, _COARSE_BLOCK)
    low, high = 0, take
    while high - low > _NARROW_BYTES:
        middle = (low + high) // 2
        if old[i + run + low : i + run + middle] == new[j + run + low : j + run + middle]:
            low = middle
        else:
            high = middle
    return run + low


def _record_end(data: bytes, start: int) -> tuple[int, bytes]:
    """The end of the record starting at ``start`` (its line and any ``^`` lines after it, newlines
    included) and its name (after the line's first space; the whole line when it has none)."""
    newline = data.find(b"\n", start)
    end = len(data) if newline < 0 else newline + 1
    name = data[data.find(b" ", start, end) + 1 : end].rstrip(b"\n")
    while data.startswith(b"^", end):
        newline = data.find(b"\n", end)
        end = len(data) if newline < 0 else newline + 1
    return end, name


def _walk(old: bytes, new: bytes) -> tuple[list[bytes], list[bytes]] | None:
    """The records of ``old`` and of ``new`` that may differ, each as bytes of whole lines: every
    line of either that is not in them is in the other too (skipped as equal bytes). None when
    they hold more than 1/:data:`_WALK_SHARE` of the longer file (compare the files whole).

    From a record start in each, equal bytes are skipped (:func:`_equal_run`); from the start of
    the record where they differ, the record of each side is read: the same name on both sides,
    both are taken (a moved ref); the smaller name alone otherwise (a ref added or deleted), the
    other side staying where it is. Names out of order (a file git did not write) only make the
    walk take more records than it needs, never fewer.
    """
    gone: list[bytes] = []
    came: list[bytes] = []
    budget = max(len(old), len(new)) // _WALK_SHARE
    i = j = 0
    while True:
        run = _equal_run(old, new, i, j)
        if i + run == len(old) and j + run == len(new):
            return gone, came
        # back to the start of the record the bytes differ in: a line start, not a "^" line, no
        # earlier than i (a record start, and old[i:i + run] == new[j:j + run])
        start = max(i, old.rfind(b"\n", i, i + run) + 1)
        while i < start < len(old) and old[start] == 0x5E:
            start = max(i, old.rfind(b"\n", i, start - 1) + 1)
        j += start - i
        i = start
        if i == len(old) or j == len(new):
            gone.append(old[i:])
            came.append(new[j:])
            return (gone, came) if len(old) - i + len(new) - j <= budget else None
        old_end, old_name = _record_end(old, i)
        new_end, new_name = _record_end(new, j)
        if old_name == new_name and old[i:old_end] == new[j:new_end]:
            i, j = old_end, new_end  # the bytes differ after this record: narrowed by blocks
            continue
        if old_name <= new_name:
            gone.append(old[i:old_end])
            budget -= old_end - i
            i = old_end
        if new_name <= old_name:
            came.append(new[j:new_end])
            budget -= new_end - j
            j = new_end
        if budget < 0:
            return None


def _lines_around(data: bytes, spans: list[tuple[int, int]]) -> list[bytes]:
    """Every line of ``data`` that has a byte in ``[start - 1, end]`` of a span (so a line starts
    or ends inside it): the lines that may differ between two strings of one length that agree
    outside the spans. A line that does not is the same bytes at the same offset in both, newline
    before and after included."""
    lines: list[bytes] = []
    last = 0
    for start, end in spans:
        first = max(last, data.rfind(b"\n", 0, start) + 1)
        stop = data.find(b"\n", end)
        stop = len(data) if stop < 0 else stop + 1
        if first < stop:
            lines.extend(data[first:stop].split(b"\n"))
        last = max(last, stop)
    return lines


def _split(records: list[bytes]) -> list[bytes]:
    """The lines of records of whole lines (:func:`_walk`'s)."""
    return [line for record in records for line in record.split(b"\n")]


def _texts(lines: Iterable[bytes]) -> set[str]:
    """The lines that are UTF-8, as text (the others are left out, as :func:`_lines` does)."""
    texts = set()
    for line in lines:
        try:
            texts.add(line.decode())
        except UnicodeDecodeError:
            continue
    return texts


class RefReader:
    """The refs under ``names`` (exact names, or prefixes ending in ``/``) of one repository."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._exact = frozenset(name for name in names if not name.endswith("/"))
        self._prefixes = tuple(name for name in names if name.endswith("/"))
        self._packed: bytes | None = None  # the packed-refs bytes ``_parsed`` was made from
        # The refs of ``_packed``, with the loose refs of the last read laid over them in place:
        # ``_under`` holds what those refs were in ``_packed`` (None: not there), put back before
        # the next read patches it (copying 150,000 refs for every read cost 5 ms at 100,000
        # robots, three reads a reconcile).
        self._parsed: dict[str, str] = {}
        self._under: dict[str, str | None] = {}
        # How each read went, for the tests: packed-refs as before, lines diffed (in blocks when
        # the length is the same, walked side by side when not, whole when the walk gave up),
        # parsed in full.
        self.same = self.diffed = self.blocks = self.walked = self.full = 0
        # Refs whose value may differ from the listing when take_changed was last called (None:
        # unknown, all of them), and the loose refs of the last read and of that listing.
        self._changed: set[str] | None = None
        self._loose: set[str] = set()
        self._loose_taken: set[str] = set()

    def take_changed(self) -> set[str] | None:
        """The refs whose value may have changed since the last call (None: any may have, as
        on the first read or after a read that gave up); the listing of the last read is the one
        the next call compares with."""
        changed = None if self._changed is None else self._changed | self._loose_taken | self._loose
        self._changed, self._loose_taken = set(), set(self._loose)
        return changed

    def _parse_lines(self, lines: Iterable[str], into: dict[str, str], *, remove: bool = False) -> None:
        exact, prefixes, changed = self._exact, self._prefixes, self._changed
        for line in lines:
            if line[:1] in _SKIPPED:
                continue
            oid, _, ref = line.partition(" ")
            if not (ref in exact or ref.startswith(prefixes)):
                continue
            if changed is not None:
                changed.add(ref)
            if not remove:
                into[ref] = oid
            elif into.get(ref) == oid:
                del into[ref]

    def _packed_refs(self, packed: bytes) -> dict[str, str]:
        """The wanted refs of ``packed``, from the last parse where the bytes allow (the loose
        refs the last read laid over them taken off first)."""
        if self._under:
            self._packed, known = None, self._packed  # an exception inside parses in full next time
            for ref, value in self._under.items():
                if value is None:
                    self._parsed.pop(ref, None)
                else:
                    self._parsed[ref] = value
            self._under, self._packed = {}, known
        if packed == self._packed:
            self.same += 1
            return self._parsed
        if self._packed is None:
            self.full += 1
            self._changed = None  # every ref is new to the caller
            parsed: dict[str, str] = {}
            self._parse_lines(_lines(packed), parsed)
            self._packed, self._parsed, self._under = packed, parsed, {}
            return parsed
        walked = None if len(packed) == len(self._packed) else _walk(self._packed, packed)
        if len(packed) == len(self._packed):
            self.blocks += 1
            spans = _dirty_spans(self._packed, packed)
            old, added = _texts(_lines_around(self._packed, spans)), _texts(_lines_around(packed, spans))
        elif walked is not None:
            self.walked += 1
            old, added = _texts(_split(walked[0])), _texts(_split(walked[1]))
        else:
            self.diffed += 1
            old, added = set(_lines(self._packed)), set(_lines(packed))
        parsed = self._parsed  # patched in place: a read's answer is valid until the next read
        self._packed = None  # until the patch is whole (an exception inside parses in full next time)
        self._parse_lines(old - added, parsed, remove=True)
        self._parse_lines(added - old, parsed)
        self._packed = packed
        return parsed

    def from_bytes(self, packed: bytes, loose: Iterable[tuple[str, bytes]]) -> Mapping[str, str]:
        """The refs stored as ``packed`` (``packed-refs``' bytes) and ``loose`` ((ref, file
        content) pairs, which override it), read once by the caller
        (:class:`fleetcd.git.packedrefs.RefStorage`): the same rules as :meth:`read`."""
        refs = self._packed_refs(packed)
        over: dict[str, str | None] = {}
        for ref, data in loose:
            if ref in self._exact or ref.startswith(self._prefixes):
                _set_loose(over, ref, data)
        self._saw_loose(set(over))
        return self._laid_over(refs, over)

    def _laid_over(self, refs: dict[str, str], over: dict[str, str | None]) -> Mapping[str, str]:
        """``refs`` (the reader's own) with the loose refs ``over`` laid over them in place (None:
        hidden), what was under them kept in ``_under``; handed out read-only."""
        self._packed, known = None, self._packed  # an exception inside parses in full next time
        under = self._under
        for ref, oid in over.items():
            if ref not in under:
                under[ref] = refs.get(ref)
            if oid is None:
                refs.pop(ref, None)
            else:
                refs[ref] = oid
        self._packed = known
        return MappingProxyType(refs)

    def _saw_loose(self, seen: set[str]) -> None:
        """The loose refs of a whole read: changed (they override packed-refs) now and next time."""
        if self._changed is not None:
            self._changed |= self._loose | seen
        self._loose = seen

    def read(self, git_dir: Path) -> Mapping[str, str] | None:
        """Ref → object id (hex) under the names; None when the storage could not be read
        consistently (a reftable repository, ``packed-refs`` replaced or a loose file gone while
        reading). Read-only, and valid until the reader's next read (the reader's own dict, patched
        by each read: its ``items()`` and ``keys()`` are a dict's, whose set operations run in C)."""
        refs = self._read(git_dir)
        if refs is None:
            self._changed = None  # the caller lists the refs another way: which changed is unknown
        return refs

    def _read(self, git_dir: Path) -> Mapping[str, str] | None:
        if (git_dir / "reftable").exists():
            return None
        where = git_dir / PACKED_REFS
        before = _stamp(where)
        try:
            packed = where.read_bytes()
        except FileNotFoundError:
            packed = b""
        refs = self._packed_refs(packed)
        over: dict[str, str | None] = {}
        top = f"{git_dir}/"
        for name in self.names:
            if name.endswith("/"):
                # plain strings: a Path and relative_to per loose file was most of reading 1,000
                for here, _dirs, files in os.walk(top + name.rstrip("/")):
                    for file in files:
                        path = f"{here}/{file}"
                        if not file.endswith(".lock") and not _read_loose(path, path[len(top) :], over):
                            return None
            elif (git_dir / name).is_file() and not _read_loose(top + name, name, over):
                return None
        if _stamp(where) != before:
            return None
        self._saw_loose(set(over))
        return self._laid_over(refs, over)


def _read_loose(path: str, ref: str, over: dict[str, str | None]) -> bool:
    """The loose file at ``path``: its ref into ``over`` with its object id (None: hidden, when it
    holds none); False when it vanished or is symbolic (git resolves it: the caller lists the refs
    through git)."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - plain strings, 1,000s of loose refs
            data = file.read(100)
    except FileNotFoundError:
        return False
    except OSError:  # a directory where a file was, unreadable: unknown, as read_refs has it
        over[ref] = None
        return True
    if data.startswith(b"ref:"):
        return False
    _set_loose(over, ref, data)
    return True


def _set_loose(over: dict[str, str | None], ref: str, data: bytes) -> None:
    """A loose file's object id (over its packed value), or None (the ref hidden) when it holds none."""
    text = data[:100].decode("ascii", errors="replace").strip()
    over[ref] = text if len(text) in (40, 64) and not text.strip("0123456789abcdef") else None


@dataclass
class RefListingMemo:
    """What ``controller run`` keeps between fetches: one reader for the server and one for the
    mirror (each replaced when asked for other names), and the names of refs already judged
    (:func:`controller.reconcile.source.fetch_all`'s check that a ref under the desired-state
    prefixes is a desired-state ref)."""

    server: RefReader | None = None
    mirror: RefReader | None = None
    judged: set[str] = field(default_factory=set)
    # The refs the last fetch moved or deleted in the mirror, which held the server's listing but
    # for them (None: no fetch finished with both listings read here; the next compares all refs).
    touched: set[str] | None = None
    # What :func:`controller.reconcile.source.fetch_all` keeps from the listings it was handed
    # (its status and desired-state maps), patched by each fetch's changed refs.
    kept: Any = None

    def server_reader(self, names: Sequence[str]) -> RefReader:
        if self.server is None or self.server.names != tuple(names):
            self.server, self.touched = RefReader(names), None
        return self.server

    def mirror_reader(self, names: Sequence[str]) -> RefReader:
        if self.mirror is None or self.mirror.names != tuple(names):
            self.mirror, self.touched = RefReader(names), None
        return self.mirror
