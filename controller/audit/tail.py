"""Appending to the hash-chained audit log at its tail (pure: bytes in, bytes out).

The *write* step calls :func:`append` with the last day file only (the head lives there) and
commits the files it returns. ``append`` skips events whose :func:`~controller.audit.events.event_key`
is already in that file or earlier in the batch, so a controller that wrote, died and restarted
does not log the same decisions twice. The idempotence window is the head's day file: appending
stays O(new events + one day file) however long the log grows, and O(new events) with the memo of
the check that preceded it (:mod:`controller.audit.memo`). :func:`head` reads the log's last line
for the anchor the write step records and signs; the line format is :mod:`controller.audit.lines`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.audit.events import AuditEvent, key_of
from controller.audit.lines import (
    GENESIS,
    LINE_HEAD,
    day_files,
    day_path,
    format_line,
    line_hash,
    split_lines,
)
from controller.audit.memo import VerifiedDays, identity
from controller.errors import AuditChainBroken


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
    paths = day_files(files)
    if not paths:
        return _Tail()
    path = paths[-1]
    day = memo.days.get(path) if memo is not None else None
    if memo is not None and day is not None:
        keys = memo.keys_for(path, day)
        if keys is not None and identity(files, path) == day.digest:
            return _Tail(path, day.last_seq, day.last_hash, keys)
    tail = _Tail(path=path)
    for number, line in enumerate(split_lines(path, files[path]), start=1):
        match = LINE_HEAD.match(line)
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

    Only the last line is read: ``files`` is a log :func:`~controller.audit.chain.verify` checked,
    or what :func:`append` just built from one (the write step's anchor and signed head). A last
    line that is not an audit line is refused; the links above it are ``verify``'s to check.
    """
    paths = day_files(files)
    if not paths:
        return 0, GENESIS
    path = paths[-1]
    data = files[path]
    if not data or not data.endswith(b"\n"):
        split_lines(path, data)  # raises, naming the line
    line = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
    match = LINE_HEAD.match(line)
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
    files always stay in chain order. With ``memo`` (the one :func:`~controller.audit.chain.verify`
    just filled from these files) the head and the keys of that file come from it, without parsing
    the file.
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
            match = LINE_HEAD.match(line)
            if match is not None:
                keys.add(match[3].decode())
    return keys
