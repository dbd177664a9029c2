"""The hash-chained audit log on the state branch: append and verify (pure: bytes in, bytes out).

Layout: ``audit/YYYY/MM/DD.jsonl`` (UTC days), one event per line, append-only. Each line is::

    {"seq":N,"prev":"<sha256 of the previous line>","key":"<event key>","event":{...}}

with the fields in exactly that order, the event as canonical JSON (sorted keys, no spaces, ASCII)
and no spaces anywhere, so a line has one valid byte form. ``seq`` counts lines across the whole log
from 1; ``prev`` is the sha256 of the previous line's bytes (without its newline), across day
boundaries, and :data:`GENESIS` for the first line. Editing, deleting, reordering lines or removing
a day file therefore breaks a link that :func:`verify` names by file and line. Cutting lines off the
*end* leaves a valid shorter chain; pass the head recorded elsewhere as ``anchor`` to catch that.

The *write* step calls :func:`append` with the last day file only (the head lives there) and
commits the files it returns. ``append`` skips events whose :func:`~controller.audit.events.event_key`
is already in that file or earlier in the batch, so a controller that wrote, died and restarted
does not log the same decisions twice. The idempotence window is the head's day file: appending
stays O(new events + one day file) however long the log grows, and O(new events) with the memo of
the check that preceded it (:mod:`controller.audit.memo`), which also lets :func:`verify` parse only
the lines appended to the newest day since its last check.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.audit.events import AuditEvent, canonical_json, key_of
from controller.audit.memo import DaySummary, Recalled, VerifiedDays, grown, identity, recall, summarise
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC

GENESIS = "0" * 64
AUDIT_DIR = "audit/"
DAY_PATH = re.compile(r"^audit/[0-9]{4}/[0-9]{2}/[0-9]{2}\.jsonl$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LINE_HEAD = re.compile(rb'^\{"seq":([1-9][0-9]*),"prev":"([0-9a-f]{64})","key":"([0-9a-f]{64})","event":\{')
_FIELDS = frozenset({"seq", "prev", "key", "event"})


@dataclass(frozen=True)
class ChainReport:
    """A verified chain: how many lines and files, and its head."""

    lines: int
    head_hash: str
    last_seq: int
    files: int
    marks: dict[int, str] = field(default_factory=dict)  # seq -> line hash, for the seqs asked for


def day_path(at: datetime) -> str:
    """``audit/YYYY/MM/DD.jsonl`` of the UTC day of ``at`` (an aware datetime)."""
    day = at.astimezone(UTC)
    return f"{AUDIT_DIR}{day.year:04d}/{day.month:02d}/{day.day:02d}.jsonl"


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def format_line(seq: int, prev: str, key: str, event_json: Mapping[str, Any]) -> bytes:
    """The one byte form of a log line (without its newline)."""
    head = f'{{"seq":{seq},"prev":"{prev}","key":"{key}","event":'.encode("ascii")
    return head + canonical_json(dict(event_json)) + b"}"


def _day_files(files: Mapping[str, bytes]) -> list[str]:
    # Zero-padded dates: lexical order is chronological order is chain order.
    return sorted(path for path in files if DAY_PATH.fullmatch(path))


def _lines(path: str, data: bytes) -> list[bytes]:
    if not data:
        raise AuditChainBroken(path, None, "empty day file: the log never writes one")
    if not data.endswith(b"\n"):
        last = data.count(b"\n") + 1
        raise AuditChainBroken(path, last, "partial last line (no newline): truncated, or garbage appended")
    return data[:-1].split(b"\n")


@dataclass
class _Tail:
    path: str | None = None
    seq: int = 0
    hash: str = GENESIS
    keys: set[str] = field(default_factory=set)


def _tail(files: Mapping[str, bytes], memo: VerifiedDays | None = None) -> _Tail:
    """Head of the chain and the keys of the head's day file: from ``memo`` when it verified that
    file's exact bytes (by :func:`~controller.audit.memo.identity`, and holds its keys), else by
    parsing that file and checking its own links."""
    paths = _day_files(files)
    if not paths:
        return _Tail()
    path = paths[-1]
    day = memo.days.get(path) if memo is not None else None
    if memo is not None and day is not None:
        keys = memo.keys_for(path, day)
        if keys is not None and identity(files, path) == day.digest:
            return _Tail(path, day.last_seq, day.last_hash, keys)
    tail = _Tail(path=path)
    for number, line in enumerate(_lines(path, files[path]), start=1):
        match = _LINE_HEAD.match(line)
        if match is None or not line.endswith(b"}"):
            raise AuditChainBroken(path, number, "not an audit line: refusing to append to a damaged log")
        seq, prev, key = int(match[1]), match[2].decode(), match[3].decode()
        if number > 1 and (seq != tail.seq + 1 or prev != tail.hash):
            raise AuditChainBroken(path, number, "broken link: refusing to append to a damaged log")
        tail.seq, tail.hash = seq, line_hash(line)
        tail.keys.add(key)
    return tail


def head(files: Mapping[str, bytes]) -> tuple[int, str]:
    """(last seq, hash of the last line) of the log; ``(0, GENESIS)`` when there is none.

    Only the last line is read: ``files`` is a log :func:`verify` checked, or what :func:`append`
    just built from one (the write step's anchor and signed head). A last line that is not an
    audit line is refused; the links above it are :func:`verify`'s to check.
    """
    paths = _day_files(files)
    if not paths:
        return 0, GENESIS
    path = paths[-1]
    data = files[path]
    if not data or not data.endswith(b"\n"):
        _lines(path, data)  # raises, naming the line
    line = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
    match = _LINE_HEAD.match(line)
    if match is None or not line.endswith(b"}"):
        raise AuditChainBroken(path, data.count(b"\n"), "not an audit line: the log's last line is damaged")
    return int(match[1]), line_hash(line)


def append(
    existing_lines: Mapping[str, bytes], events: Sequence[AuditEvent], *, memo: VerifiedDays | None = None
) -> dict[str, bytes]:
    """The day files that change when ``events`` are appended: path → complete new file bytes.

    ``existing_lines`` needs only the last day file (more is accepted and ignored). Events already
    logged in that file, or repeated in the batch, are skipped; nothing new → ``{}``. An event dated
    before the head's day (a clock stepped back over midnight) joins the head's day file, so the
    files always stay in chain order. With ``memo`` (the one :func:`verify` just filled from these
    files) the head and the keys of that file come from it, without parsing the file.
    """
    tail = _tail(existing_lines, memo)
    logged, seen = tail.keys, set[str]()
    seq, prev, floor = tail.seq, tail.hash, tail.path
    added: dict[str, list[bytes]] = {}
    for event in events:
        event_json = event.as_json()
        key = key_of(event_json)
        if key in logged or key in seen:
            continue
        seen.add(key)
        path = day_path(event.at)
        if floor is not None and path < floor:
            path = floor
        floor = path
        seq += 1
        line = format_line(seq, prev, key, event_json)
        prev = line_hash(line)
        added.setdefault(path, []).append(line + b"\n")
    return {path: existing_lines.get(path, b"") + b"".join(lines) for path, lines in added.items()}


def added_keys(existing: Mapping[str, bytes], appended: Mapping[str, bytes]) -> set[str]:
    """Event keys of the lines :func:`append` added: ``appended`` is what it returned for ``existing``."""
    keys: set[str] = set()
    for path, data in appended.items():
        for line in data[len(existing.get(path, b"")) :].splitlines():
            match = _LINE_HEAD.match(line)
            if match is not None:
                keys.add(match[3].decode())
    return keys


def _parse(path: str, number: int, line: bytes) -> tuple[int, str, str, dict[str, Any]]:
    """(seq, prev, key, event) of a line that is in its one canonical byte form."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise AuditChainBroken(path, number, "not valid JSON") from None
    ok = (
        isinstance(obj, dict)
        and set(obj) == _FIELDS
        and type(obj["seq"]) is int
        and obj["seq"] >= 1
        and isinstance(obj["prev"], str)
        and _HEX64.fullmatch(obj["prev"]) is not None
        and isinstance(obj["key"], str)
        and _HEX64.fullmatch(obj["key"]) is not None
        and isinstance(obj["event"], dict)
    )
    if not ok:
        raise AuditChainBroken(path, number, "not an audit line (needs seq, prev, key and event)")
    try:
        canonical = format_line(obj["seq"], obj["prev"], obj["key"], obj["event"])
    except (ValueError, RecursionError):
        canonical = b""
    if canonical != line:
        raise AuditChainBroken(path, number, "not in canonical form: the line was edited by hand")
    return obj["seq"], obj["prev"], obj["key"], obj["event"]


def _seq_problem(
    seq: int, expected: int, later: Sequence[bytes], previous_file: str | None, first: bool
) -> str:
    """Why ``seq`` stands where ``expected`` should; ``later`` are the lines after it in its file."""
    if seq < expected:
        return "seq goes backwards: lines were reordered or repeated"
    for line in later:  # only read on the error path
        match = _LINE_HEAD.match(line)
        if match is not None and int(match[1]) == expected:
            return f"seq {expected} comes later in this file: lines were reordered"
    missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
    if first and previous_file is None:
        return f"the chain starts past seq 1 ({missing} missing): earlier day files or lines were removed"
    if first:
        return f"{missing} missing after {previous_file}: a day file or lines were removed"
    return f"{missing} missing: lines were removed"


def _prev_problem(number: int, previous_file: str | None, seq: int) -> str:
    """Why line ``number``'s ``prev`` is wrong, naming what it should have hashed."""
    if number > 1:
        where = "the hash of the previous line"
    elif previous_file is not None:
        where = f"the hash of the last line of {previous_file}"
    elif seq == 0:
        where = "the genesis hash, as the log's first line must have"
    else:
        where = f"the hash of seq {seq}, where this check starts (the anchor of --since-anchor)"
    return f"prev is not {where}: a line was edited or replaced"


def verify(
    files: Mapping[str, bytes],
    *,
    anchor: tuple[int, str] | None = None,
    start: tuple[int, str] = (0, GENESIS),
    marks: Collection[int] = (),
    memo: VerifiedDays | None = None,
) -> ChainReport:
    """Check the whole log in ``files`` (other paths are ignored); raise at the first broken link.

    ``anchor`` is a (seq, line hash) recorded outside the log (e.g. in the last state commit): the
    chain must reach that seq with that hash, which catches lines or day files cut from the end.
    ``start`` is the (seq, line hash) the first given day file continues from: verifying only the
    newer day files of a log whose older ones were verified before (``audit verify --since-anchor``).
    ``marks`` are seqs whose line hashes the report carries (the signed heads to check).
    ``memo`` (``controller run``'s cache) skips parsing day files whose exact bytes it verified
    before, parses only the appended lines of a file that starts with exactly the bytes it
    verified (:mod:`controller.audit.memo`), and remembers the ones parsed now; the verdict and the
    error are a full check's.
    """
    stray = sorted(p for p in files if p.startswith(AUDIT_DIR) and not DAY_PATH.fullmatch(p))
    if stray:
        raise AuditChainBroken(stray[0], None, "not an audit day file (audit/YYYY/MM/DD.jsonl)")
    chain = _Chain(start[0], start[1], anchor, set(marks))
    count = 0
    paths = _day_files(files)
    if memo is not None:
        memo.days = {path: memo.days[path] for path in paths if path in memo.days}
    for path in paths:
        known = recall(memo, path, files, (chain.seq, chain.prev), anchor, chain.wanted)
        if known is not None:
            day = known.day
            chain.seq, chain.prev, count = day.last_seq, day.last_hash, count + day.lines
            chain.reached(path, day.lines)
            if known.rest is None:
                chain.previous_file = path
                continue
            lines = _lines_after(path, known.rest, day.lines)
            if memo is not None:
                memo.parsed_lines += len(lines)
            keys = _check(path, lines, day.lines, chain)
            count += len(keys)
            if memo is not None:
                _remember_grown(memo, path, known, keys, grown(files, path, known, len(keys), chain.head))
            chain.previous_file = path
            continue
        first = (chain.seq + 1, chain.prev)
        data = files[path]  # read once (a DayFiles reads older days from git)
        lines = _lines(path, data)
        if memo is not None:
            memo.parsed_lines += len(lines)
        keys = _check(path, lines, 0, chain)
        count += len(keys)
        if memo is not None:
            memo.days[path] = summarise(files, path, data, len(keys), first, chain.head)
            if path == paths[-1]:
                memo.keys, memo.keys_of = set(keys), (path, memo.days[path].digest)
        del data, lines, keys  # an older day's bytes are not held past its check
        chain.previous_file = path
    seq = chain.seq
    if anchor is not None and seq < anchor[0]:
        where = paths[-1] if paths else AUDIT_DIR
        problem = f"the log ends at seq {seq} but seq {anchor[0]} was recorded: lines were cut from the end"
        raise AuditChainBroken(where, None, problem, expected=str(anchor[0]), found=str(seq))
    return ChainReport(lines=count, head_hash=chain.prev, last_seq=seq, files=len(paths), marks=chain.hashes)


@dataclass
class _Chain:
    """Where a check stands: the last line's seq and hash, and what it must report or compare."""

    seq: int
    prev: str
    anchor: tuple[int, str] | None
    wanted: set[int]
    hashes: dict[int, str] = field(default_factory=dict)
    previous_file: str | None = None

    @property
    def head(self) -> tuple[int, str]:
        return self.seq, self.prev

    def reached(self, path: str, number: int) -> None:
        """Line ``number`` of ``path`` (seq ``self.seq``, hash ``self.prev``) was verified."""
        if self.seq in self.wanted:
            self.hashes[self.seq] = self.prev
        if self.anchor is not None and self.seq == self.anchor[0] and self.prev != self.anchor[1]:
            problem = f"seq {self.seq} differs from the head recorded outside the log"
            raise AuditChainBroken(path, number, problem, expected=self.anchor[1], found=self.prev)


def _lines_after(path: str, rest: bytes, before: int) -> list[bytes]:
    """The lines appended after ``before`` verified lines (``rest``: the bytes after them)."""
    if not rest:
        return []
    if not rest.endswith(b"\n"):
        last = before + rest.count(b"\n") + 1
        raise AuditChainBroken(path, last, "partial last line (no newline): truncated, or garbage appended")
    return rest[:-1].split(b"\n")


def _check(path: str, lines: list[bytes], before: int, chain: _Chain) -> list[str]:
    """Check ``lines`` (after ``before`` lines of ``path`` already verified) against ``chain``,
    advancing it; their event keys."""
    keys: list[str] = []
    for index, line in enumerate(lines):
        number = before + index + 1
        line_seq, line_prev, key, event = _parse(path, number, line)
        computed = key_of(event)
        if computed != key:
            problem = "key does not match the event: the event was edited"
            raise AuditChainBroken(path, number, problem, expected=computed, found=key)
        seq = chain.seq
        if line_seq != seq + 1:
            problem = _seq_problem(line_seq, seq + 1, lines[index + 1 :], chain.previous_file, number == 1)
            raise AuditChainBroken(path, number, problem, expected=str(seq + 1), found=str(line_seq))
        if line_prev != chain.prev:
            problem = _prev_problem(number, chain.previous_file, seq)
            raise AuditChainBroken(path, number, problem, expected=chain.prev, found=line_prev)
        chain.seq, chain.prev = line_seq, line_hash(line)
        chain.reached(path, number)
        keys.append(key)
    return keys


def _remember_grown(memo: VerifiedDays, path: str, known: Recalled, keys: list[str], day: DaySummary) -> None:
    held = memo.keys_for(path, known.day)
    memo.days[path] = day
    if held is not None:
        held.update(keys)
        memo.keys_of = (path, day.digest)
    elif memo.keys_of is not None and memo.keys_of[0] == path:
        memo.keys, memo.keys_of = set(), None
