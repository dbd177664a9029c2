"""``fleetcd audit verify --since-anchor``: check only what was appended since this machine last
verified the log (pure: file names, blob ids and bytes in; a report and the next anchor out).

The log is append-only: only its newest day file ever grows, older day files never change. So
after one full verification it is enough to remember (:class:`VerifiedAnchor`) the head that was
verified, the day file holding it, the chain state that file continues from and the blob ids of
every older day file. Next time:

1. the older day files must be exactly those, with the same blob ids — compared from the tree
   listing, without reading a byte of them;
2. the remembered head's day file and every newer one are verified in full, continuing from the
   remembered chain state, and must pass through the remembered head with the same hash — by
   the hash chain, every line before it is then the one verified before;
3. the log must reach the anchor ``state.json`` records (lines cut from the end).

What this trusts is the earlier verification on this machine: the remembered anchor lives in the
controller's cache directory. A plain ``fleetcd audit verify`` checks every line, and stays the
default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from pydantic import BaseModel, ConfigDict

from controller.audit.chain import ChainReport, verify
from controller.audit.days import DayFiles
from controller.audit.lines import DAY_PATH, GENESIS, line_hash
from controller.errors import AuditChainBroken


class VerifiedAnchor(BaseModel):
    """What a successful verification leaves behind for the next ``--since-anchor``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int  # the head that was verified ...
    hash: str  # ... and its line hash
    file: str | None  # the day file holding it (None: the log was empty)
    file_start: tuple[int, str] = (0, GENESIS)  # the chain state ``file`` continues from
    older: dict[str, str] = {}  # day file → blob id, for every day file before ``file``


def verify_since(
    blob_ids: Mapping[str, str],
    read: Callable[[list[str]], Mapping[str, bytes]],
    since: VerifiedAnchor | None,
    *,
    anchor: tuple[int, str] | None,
    marks: Collection[int] = (),
) -> tuple[ChainReport, VerifiedAnchor]:
    """Verify the log whose files and blob ids are ``blob_ids`` (paths under ``audit/``), reading
    through ``read`` only the day files from ``since.file`` on (all of them when ``since`` is None);
    the report carries the line hashes at ``marks`` (the signed heads to check)."""
    days = sorted(path for path in blob_ids if DAY_PATH.fullmatch(path))
    if since is None or since.file is None:
        # Each day read when verify reaches it and dropped after (the newest kept, for _next):
        # a full check of a year's log holds one day file, not the year.
        files: Mapping[str, bytes] = DayFiles(
            blob_ids, lambda path: read([path])[path], max(days, default=None)
        )
        report = verify(files, anchor=anchor, marks=marks)
    else:
        older = {path: blob_ids[path] for path in days if path < since.file}
        if older != since.older:
            changed = sorted(set(older.items()) ^ set(since.older.items()))
            raise AuditChainBroken(
                changed[0][0], None, f"changed since the log was verified up to seq {since.seq}"
            )
        newer = [path for path in sorted(blob_ids) if path not in older]
        files = dict(read(newer))
        report = verify(files, anchor=anchor, start=since.file_start, marks=marks)
        head = b'{"seq":%d,' % since.seq
        line = next((x for x in files.get(since.file, b"").split(b"\n") if x.startswith(head)), None)
        if line is None or line_hash(line) != since.hash:
            raise AuditChainBroken(since.file, None, f"seq {since.seq} is not the line verified earlier")
    return report, _next(report, days, blob_ids, files)


def _next(
    report: ChainReport, days: list[str], blob_ids: Mapping[str, str], files: Mapping[str, bytes]
) -> VerifiedAnchor:
    if not days:
        return VerifiedAnchor(seq=report.last_seq, hash=report.head_hash, file=None)
    last = days[-1]
    first = files[last].split(b"\n", 1)[0]
    seq_field, prev_field = first.split(b",", 2)[:2]  # '{"seq":N' and '"prev":"<hex>"'
    first_seq = int(seq_field.removeprefix(b'{"seq":'))
    prev = prev_field.removeprefix(b'"prev":"').removesuffix(b'"').decode("ascii")
    return VerifiedAnchor(
        seq=report.last_seq,
        hash=report.head_hash,
        file=last,
        file_start=(first_seq - 1, prev),
        older={path: blob_ids[path] for path in days[:-1]},
    )
