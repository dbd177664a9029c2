"""Verifying the hash-chained audit log on the state branch (pure: bytes in, a report out).

The log's layout and line format are :mod:`controller.audit.lines`; appending is
:mod:`controller.audit.tail`. Each line names the sha256 of the line before it, across day files,
so editing, deleting, reordering lines or removing a day file breaks a link that :func:`verify`
names by file and line. Cutting lines off the *end* leaves a valid shorter chain; pass the head
recorded elsewhere as ``anchor`` to catch that. With the memo of the last check
(:mod:`controller.audit.memo`) :func:`verify` parses only the lines appended to the newest day
since then. This module also re-exports the names of the other two that the log's users import
from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.audit.events import key_of
from controller.audit.lines import (
    AUDIT_DIR,
    DAY_PATH,
    GENESIS,
    LINE_HEAD,
    day_files,
    day_path,
    format_line,
    line_hash,
    split_lines,
)
from controller.audit.memo import DaySummary, Recalled, VerifiedDays, grown, recall, summarise
from controller.audit.tail import added_keys, append, head
from controller.errors import AuditChainBroken

__all__ = [
    "AUDIT_DIR",
    "DAY_PATH",
    "GENESIS",
    "ChainReport",
    "added_keys",
    "append",
    "day_path",
    "format_line",
    "head",
    "line_hash",
    "verify",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset({"seq", "prev", "key", "event"})


@dataclass(frozen=True)
class ChainReport:
    """A verified chain: how many lines and files, and its head."""

    lines: int
    head_hash: str
    last_seq: int
    files: int
    marks: dict[int, str] = field(default_factory=dict)  # seq -> line hash, for the seqs asked for


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
        match = LINE_HEAD.match(line)
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
    paths = day_files(files)
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
            lines = split_lines(path, known.rest, before=day.lines)
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
        lines = split_lines(path, data)
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
