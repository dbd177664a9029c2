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
stays O(new events + one day file) however long the log grows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.audit.days import DayFiles
from controller.audit.events import AuditEvent, canonical_json, key_of
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


def _tail(files: Mapping[str, bytes]) -> _Tail:
    """Head of the chain and the keys of the head's day file, checking that file's own links."""
    paths = _day_files(files)
    if not paths:
        return _Tail()
    path = paths[-1]
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
    """(last seq, hash of the last line) of the log; ``(0, GENESIS)`` when there is none."""
    tail = _tail(files)
    return tail.seq, tail.hash


def append(existing_lines: Mapping[str, bytes], events: Sequence[AuditEvent]) -> dict[str, bytes]:
    """The day files that change when ``events`` are appended: path → complete new file bytes.

    ``existing_lines`` needs only the last day file (more is accepted and ignored). Events already
    logged in that file, or repeated in the batch, are skipped; nothing new → ``{}``. An event dated
    before the head's day (a clock stepped back over midnight) joins the head's day file, so the
    files always stay in chain order.
    """
    tail = _tail(existing_lines)
    seen = set(tail.keys)
    seq, prev, floor = tail.seq, tail.hash, tail.path
    added: dict[str, list[bytes]] = {}
    for event in events:
        event_json = event.as_json()
        key = key_of(event_json)
        if key in seen:
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


@dataclass(frozen=True)
class DaySummary:
    """A day file whose own lines were verified: its bytes' identity and the ends of its chain."""

    digest: str  # :func:`_identity` of its bytes
    lines: int
    first_seq: int
    first_prev: str
    last_seq: int
    last_hash: str


@dataclass
class VerifiedDays:
    """Day files verified before, by path: what lets :func:`verify` skip re-parsing them.

    A day file's own checks (canonical lines, keys, seqs and links within the file) depend on its
    bytes alone, so a file whose sha256 (or git blob id, read from the state branch as
    :class:`~controller.audit.days.DayFiles`) is the one verified before needs only its links to the rest
    of the chain checked: its first line's seq and prev against the previous file's last line, and
    the anchor against its last line. Any other file (new, grown or changed bytes), a file whose
    link does not hold, or one holding the anchor or a mark before its last line, is parsed in full,
    so the verdict and the error are those of a full check. A few hundred bytes per day.
    """

    days: dict[str, DaySummary] = field(default_factory=dict)
    parsed_lines: int = 0  # lines parsed through this memo (tests count them)


def _identity(files: Mapping[str, bytes], path: str) -> str:
    """What names a day file's bytes: its git blob id when ``files`` knows it (nothing is read),
    else the sha256 of its bytes. Both name the exact bytes; the prefix keeps the two apart."""
    if isinstance(files, DayFiles):
        return f"git:{files.blob_id(path)}"
    return hashlib.sha256(files[path]).hexdigest()


def _skip(
    memo: VerifiedDays | None,
    path: str,
    files: Mapping[str, bytes],
    at: tuple[int, str],
    anchor: tuple[int, str] | None,
    wanted: Collection[int],
) -> DaySummary | None:
    """The summary of ``path`` when a full check of it from ``at`` would pass and tell nothing more."""
    day = memo.days.get(path) if memo is not None else None
    if day is None or (day.first_seq, day.first_prev) != (at[0] + 1, at[1]):
        return None
    if anchor is not None and day.first_seq <= anchor[0] < day.last_seq:
        return None  # the anchor's line is inside: only the last line's hash is remembered
    if any(day.first_seq <= seq < day.last_seq for seq in wanted):
        return None
    if _identity(files, path) != day.digest:
        return None
    return day


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
    before (:class:`VerifiedDays`), and remembers the ones parsed now; the verdict is the same.
    """
    stray = sorted(p for p in files if p.startswith(AUDIT_DIR) and not DAY_PATH.fullmatch(p))
    if stray:
        raise AuditChainBroken(stray[0], None, "not an audit day file (audit/YYYY/MM/DD.jsonl)")
    (seq, prev), count = start, 0
    wanted, hashes = set(marks), dict[int, str]()
    previous_file: str | None = None
    paths = _day_files(files)
    if memo is not None:
        memo.days = {path: memo.days[path] for path in paths if path in memo.days}
    for path in paths:
        known = _skip(memo, path, files, (seq, prev), anchor, wanted)
        if known is not None:
            seq, prev, count = known.last_seq, known.last_hash, count + known.lines
            if seq in wanted:
                hashes[seq] = prev
            if anchor is not None and seq == anchor[0] and prev != anchor[1]:
                problem = f"seq {seq} differs from the head recorded outside the log"
                raise AuditChainBroken(path, known.lines, problem, expected=anchor[1], found=prev)
            previous_file = path
            continue
        first = (seq + 1, prev)
        lines = _lines(path, files[path])  # read once (a DayFiles reads older days from git)
        if memo is not None:
            memo.parsed_lines += len(lines)
        for number, line in enumerate(lines, start=1):
            line_seq, line_prev, key, event = _parse(path, number, line)
            computed = key_of(event)
            if computed != key:
                problem = "key does not match the event: the event was edited"
                raise AuditChainBroken(path, number, problem, expected=computed, found=key)
            if line_seq != seq + 1:
                problem = _seq_problem(line_seq, seq + 1, lines[number:], previous_file, number == 1)
                raise AuditChainBroken(path, number, problem, expected=str(seq + 1), found=str(line_seq))
            if line_prev != prev:
                problem = _prev_problem(number, previous_file, seq)
                raise AuditChainBroken(path, number, problem, expected=prev, found=line_prev)
            seq, prev, count = line_seq, line_hash(line), count + 1
            if seq in wanted:
                hashes[seq] = prev
            if anchor is not None and seq == anchor[0] and prev != anchor[1]:
                problem = f"seq {seq} differs from the head recorded outside the log"
                raise AuditChainBroken(path, number, problem, expected=anchor[1], found=prev)
        if memo is not None:
            digest = _identity(files, path)
            memo.days[path] = DaySummary(digest, len(lines), first[0], first[1], seq, prev)
        del lines  # an older day's bytes are not held past its check
        previous_file = path
    if anchor is not None and seq < anchor[0]:
        where = paths[-1] if paths else AUDIT_DIR
        problem = f"the log ends at seq {seq} but seq {anchor[0]} was recorded: lines were cut from the end"
        raise AuditChainBroken(where, None, problem, expected=str(anchor[0]), found=str(seq))
    return ChainReport(lines=count, head_hash=prev, last_seq=seq, files=len(paths), marks=hashes)
