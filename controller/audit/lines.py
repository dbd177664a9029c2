"""The audit log's layout and the one byte form of its lines (pure: bytes in, bytes out).

Layout: ``audit/YYYY/MM/DD.jsonl`` (UTC days), one event per line, append-only. Each line is::

    {"seq":N,"prev":"<sha256 of the previous line>","key":"<event key>","event":{...}}

with the fields in exactly that order, the event as canonical JSON (sorted keys, no spaces, ASCII)
and no spaces anywhere, so a line has one valid byte form. ``seq`` counts lines across the whole log
from 1; ``prev`` is the sha256 of the previous line's bytes (without its newline), across day
boundaries, and :data:`GENESIS` for the first line. Appending (:mod:`controller.audit.tail`) and
verifying (:mod:`controller.audit.chain`) both read and write lines through this module.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.audit.events import canonical_json
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC

GENESIS = "0" * 64
AUDIT_DIR = "audit/"
DAY_PATH = re.compile(r"^audit/[0-9]{4}/[0-9]{2}/[0-9]{2}\.jsonl$")
# The head of a line in its one byte form: seq, prev and key, without parsing the JSON.
LINE_HEAD = re.compile(rb'^\{"seq":([1-9][0-9]*),"prev":"([0-9a-f]{64})","key":"([0-9a-f]{64})","event":\{')


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


def day_files(files: Mapping[str, bytes]) -> list[str]:
    """The day files among ``files``, in chain order."""
    # Zero-padded dates: lexical order is chronological order is chain order.
    return sorted(path for path in files if DAY_PATH.fullmatch(path))


def split_lines(path: str, data: bytes, *, before: int = 0) -> list[bytes]:
    """The lines of ``data``, which follows ``before`` lines of day file ``path``; a day file is never
    empty (``before`` 0) and every line ends in a newline."""
    if not data and before == 0:
        raise AuditChainBroken(path, None, "empty day file: the log never writes one")
    if not data:
        return []
    if not data.endswith(b"\n"):
        last = before + data.count(b"\n") + 1
        raise AuditChainBroken(path, last, "partial last line (no newline): truncated, or garbage appended")
    return data[:-1].split(b"\n")
