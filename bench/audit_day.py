"""Benchmark: the audit log's newest day through a day of reconciles, as ``controller run`` keeps it.

Each reconcile appends ``--per`` device-report lines (about 550 B each) to the newest day file and
runs exactly the audit calls of a real reconcile: ``verify`` with the cache's memo
(``verify_history``), then ``append`` with the same memo, ``head`` of what it returned (the signed
head) and ``audit_fields`` (``state.json``'s anchor), as ``commit_status`` does. The log is a
:class:`~controller.audit.days.DayFiles` keyed by git blob ids computed outside the timing, as the
state branch hands it over. CPU seconds (``process_time``) of the verify and of the append calls
are reported per reconcile, at a few points of the day and in total; the last reconcile is the
late-day case (``--reconciles 41`` reaches about 45 MB). No git, no gpg: the audit calls alone.

    python -m bench.audit_day [--reconciles 41] [--per 2000] [--out DIR]
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta

from bench.common import base_parser, table, write_results
from controller.audit import AuditEvent, AuditKind, append, head
from controller.audit.chain import verify
from controller.audit.days import DayFiles
from controller.audit.memo import VerifiedDays
from controller.reconcile.idle import audit_fields
from fleetcd.compat import UTC

DAY = datetime(2026, 3, 2, tzinfo=UTC)
SHOWN = (1, 10, 20, 30)


def events(reconcile: int, per: int, at: datetime) -> list[AuditEvent]:
    return [
        AuditEvent(
            at=at,
            kind=AuditKind.DEVICE_REPORT,
            device=f"amr-{(reconcile * per + i) % 100_000:06d}",
            data={
                "deployment_id": hashlib.sha256(b"%d-%d" % (reconcile, i)).hexdigest()[:32],
                "rollout": "navstack",
                "generation": reconcile,
                "from": "dispatched",
                "to": "deployed",
                "message": "x" * 120,
            },
        )
        for i in range(per)
    ]


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def run(reconciles: int, per: int) -> list[tuple[int, int, float, float]]:
    """(reconcile, newest day's bytes after it, verify CPU s, append CPU s) per reconcile."""
    files: dict[str, bytes] = {}
    files.update(append(files, events(-1, per, DAY - timedelta(hours=3))))  # yesterday
    memo, anchor, rows = VerifiedDays(), None, []
    for number in range(1, reconciles + 1):
        ids = {path: blob_id(data) for path, data in files.items()}
        snapshot = DayFiles(ids, files.__getitem__, max(files), {})
        batch = events(number, per, DAY + timedelta(minutes=number))
        started = time.process_time()
        verify(snapshot, anchor=anchor, memo=memo)
        verified = time.process_time()
        appended = append(snapshot, batch, memo=memo)
        head(appended)
        fields = audit_fields(snapshot, appended)
        done = time.process_time()
        files.update(appended)
        anchor = (int(str(fields["audit_seq"])), str(fields["audit_head"]))
        rows.append((number, len(files[max(files)]), verified - started, done - verified))
    return rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--reconciles", type=int, default=41)
    parser.add_argument("--per", type=int, default=2000, help="lines appended per reconcile")
    args = parser.parse_args()
    rows = run(args.reconciles, args.per)
    shown = [row for row in rows if row[0] in SHOWN or row[0] == args.reconciles]
    lines = table(
        ["reconcile", "newest day MB", "verify CPU s", "append CPU s"],
        [(n, f"{size / 1e6:.1f}", f"{v:.3f}", f"{a:.3f}") for n, size, v, a in shown],
    )
    total_verify, total_append = sum(r[2] for r in rows), sum(r[3] for r in rows)
    lines.append(
        f"total over {len(rows)} reconciles: verify {total_verify:.2f} s, append {total_append:.2f} s"
    )
    print("\n".join(lines))
    payload = {
        "reconciles": args.reconciles,
        "per": args.per,
        "rows": [{"reconcile": n, "bytes": b, "verify_s": v, "append_s": a} for n, b, v, a in rows],
    }
    write_results("audit_day", payload, lines, args.out)


if __name__ == "__main__":
    main()
