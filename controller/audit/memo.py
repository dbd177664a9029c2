"""What ``controller run`` remembers of the audit day files it verified (pure: bytes in, summaries out).

:func:`controller.audit.chain.verify` checks a day file's own lines (canonical form, keys, seqs and
links within the file); the result depends on the file's bytes and on the chain state it continues
from alone. So a :class:`DaySummary` of a verified file lets the next check

* skip the file when its identity (git blob id, or sha256) is the one verified: only its links to
  its neighbours and the anchor are checked, from the summary;
* parse only what was appended when the file grew: the newest day file, appended to by every
  reconcile, is a verified prefix followed by new lines. :func:`recall` checks that the new bytes
  start with exactly the verified bytes (their sha256 over the verified length), never trusting
  the length alone; the new lines are then checked against the chain from the prefix's last line,
  numbered as a full check numbers them, so an error is the full check's error;

and anything else (a rewritten line anywhere, a truncated or replaced file, a summary from another
place in the chain, an anchor or a mark inside the prefix) is parsed in full, with the same verdict.

The event keys of the newest day file verified are kept too (:attr:`VerifiedDays.keys`): appending
skips events already logged in the head's day file, and with them :func:`~controller.audit.tail.append`
needs neither to parse that file nor to read more of it than its identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.audit.days import DayFiles


@dataclass(frozen=True)
class DaySummary:
    """A day file whose own lines were verified: its bytes' identity and the ends of its chain."""

    digest: str  # :func:`identity` of its bytes
    lines: int
    first_seq: int
    first_prev: str
    last_seq: int
    last_hash: str
    size: int  # bytes verified (the whole file) ...
    sha256: str  # ... and their sha256: a grown file must start with exactly these bytes


@dataclass
class VerifiedDays:
    """Day files verified before, by path: what lets :func:`~controller.audit.chain.verify` skip
    re-parsing them, and parse only the appended lines of the one that grew (the module docstring).

    A few hundred bytes per day, plus the event keys of the newest day file (``keys``, about 150 B
    a line: 17 MB for a 45 MB day of 400-byte lines), which :func:`~controller.audit.tail.append`
    uses instead of parsing that file; ``keys_of`` is the (path, digest) they are the keys of.
    """

    days: dict[str, DaySummary] = field(default_factory=dict)
    parsed_lines: int = 0  # lines parsed through this memo (tests count them)
    keys: set[str] = field(default_factory=set)
    keys_of: tuple[str, str] | None = None

    def keys_for(self, path: str, day: DaySummary) -> set[str] | None:
        """The keys of ``path``'s lines as ``day`` summarises them, when they are the ones held."""
        return self.keys if self.keys_of == (path, day.digest) else None


@dataclass(frozen=True)
class Recalled:
    """A remembered day file: unchanged (``rest`` None), or grown by ``rest`` after the verified
    prefix, whose sha256 ``hasher`` holds (to be continued over ``rest``)."""

    day: DaySummary
    rest: bytes | None = None
    hasher: Any = None  # hashlib's sha256 object (no public type)


def identity(files: Mapping[str, bytes], path: str) -> str:
    """What names a day file's bytes: its git blob id when ``files`` knows it (nothing is read),
    else the sha256 of its bytes. Both name the exact bytes; the prefix keeps the two apart."""
    if isinstance(files, DayFiles):
        return f"git:{files.blob_id(path)}"
    return hashlib.sha256(files[path]).hexdigest()


def summarise(
    files: Mapping[str, bytes],
    path: str,
    data: bytes,
    lines: int,
    first: tuple[int, str],
    last: tuple[int, str],
) -> DaySummary:
    """The summary of ``path`` (bytes ``data``), verified in full from ``first``; ends at ``last``."""
    digest = identity(files, path)
    sha = digest if not digest.startswith("git:") else hashlib.sha256(data).hexdigest()
    return DaySummary(digest, lines, first[0], first[1], last[0], last[1], len(data), sha)


def recall(
    memo: VerifiedDays | None,
    path: str,
    files: Mapping[str, bytes],
    at: tuple[int, str],
    anchor: tuple[int, str] | None,
    wanted: Collection[int],
) -> Recalled | None:
    """What a full check of ``path`` from chain state ``at`` need not parse again; None: all of it."""
    day = memo.days.get(path) if memo is not None else None
    if day is None or (day.first_seq, day.first_prev) != (at[0] + 1, at[1]):
        return None
    if anchor is not None and day.first_seq <= anchor[0] < day.last_seq:
        return None  # the anchor's line is inside: only the last line's hash is remembered
    if any(day.first_seq <= seq < day.last_seq for seq in wanted):
        return None
    if identity(files, path) == day.digest:
        return Recalled(day)
    data = files[path]
    if day.size <= 0 or len(data) < day.size:
        return None  # cut back: a full check says where
    hasher = hashlib.sha256(memoryview(data)[: day.size])
    if hasher.hexdigest() != day.sha256:
        return None  # the verified bytes changed: a full check says where
    return Recalled(day, data[day.size :], hasher)


def grown(
    files: Mapping[str, bytes], path: str, known: Recalled, added: int, last: tuple[int, str]
) -> DaySummary:
    """``known.day`` after its ``added`` appended lines (``known.rest``) were verified, up to ``last``."""
    day, rest, hasher = known.day, known.rest or b"", known.hasher
    hasher.update(rest)
    sha = hasher.hexdigest()
    return DaySummary(
        identity(files, path) if isinstance(files, DayFiles) else sha,
        day.lines + added,
        day.first_seq,
        day.first_prev,
        last[0],
        last[1],
        day.size + len(rest),
        sha,
    )
