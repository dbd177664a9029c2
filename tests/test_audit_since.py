"""``audit verify --since-anchor`` as a pure function (controller.audit.since): attacks on a log checked
incrementally.

The incremental check trusts one earlier full verification and reads only the day files from the
remembered head on. Each attack here is one a person with push access to the state branch could try
against it: rewrite an older day file (same or different size), drop one, add one before the
remembered head, rewrite the remembered head's own line, or cut lines off the end. Every one must be
refused exactly as the full check refuses it, and the honest log must verify reading only the newer
files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest

from controller.audit.chain import GENESIS, append, format_line, line_hash, verify
from controller.audit.events import AuditEvent, AuditKind, key_of
from controller.audit.since import VerifiedAnchor, verify_since
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC

DAY0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # what git's tree listing gives


class Log:
    """An audit log grown day by day with the real ``append``; ``read`` counts what is read."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reads: list[str] = []
        self.count = 0

    def add(self, day: int, events: int = 3) -> None:
        batch = []
        for _ in range(events):
            self.count += 1
            at = DAY0 + timedelta(days=day, minutes=self.count)
            batch.append(AuditEvent(at=at, kind=AuditKind.DEVICE_REPORT, device=f"r{self.count}"))
        self.files.update(append(self.files, batch))

    def ids(self) -> dict[str, str]:
        return {path: blob_id(data) for path, data in self.files.items()}

    def read(self, paths: list[str]) -> Mapping[str, bytes]:
        self.reads.extend(paths)
        return {path: self.files[path] for path in paths}

    def days(self) -> list[str]:
        return sorted(self.files)

    def anchor(self) -> tuple[int, str]:
        report = verify(self.files)
        return report.last_seq, report.head_hash

    def check(self, since: VerifiedAnchor | None, *, anchor: tuple[int, str] | None = None) -> VerifiedAnchor:
        self.reads.clear()
        _report, verified = verify_since(self.ids(), self.read, since, anchor=anchor)
        return verified


@pytest.fixture
def log() -> Log:
    built = Log()
    for day in range(4):
        built.add(day)
    return built


# --- the honest log -----------------------------------------------------------------------------------


def test_a_first_check_reads_every_file_and_remembers_the_head(log: Log) -> None:
    verified = log.check(None, anchor=log.anchor())
    assert sorted(log.reads) == log.days()
    assert (verified.seq, verified.hash) == log.anchor()
    assert verified.file == log.days()[-1]
    assert set(verified.older) == set(log.days()[:-1])


def test_a_second_check_reads_only_the_head_file_and_newer_ones(log: Log) -> None:
    first = log.check(None)
    log.add(4)
    log.add(5)
    second = log.check(first, anchor=log.anchor())
    assert sorted(log.reads) == log.days()[3:]
    assert (second.seq, second.hash) == log.anchor()
    assert second.file == log.days()[-1]


def test_a_check_with_nothing_new_reads_only_the_head_file(log: Log) -> None:
    first = log.check(None)
    again = log.check(first, anchor=log.anchor())
    assert log.reads == [log.days()[-1]]
    assert again == first


def test_lines_appended_to_the_head_file_the_same_day_verify(log: Log) -> None:
    first = log.check(None)
    log.add(3, events=5)  # the same UTC day as the remembered head
    second = log.check(first, anchor=log.anchor())
    assert second.seq == first.seq + 5
    assert log.reads == [log.days()[-1]]


def test_the_incremental_check_agrees_with_the_full_check_every_day() -> None:
    log = Log()
    since: VerifiedAnchor | None = None
    for day in range(8):
        log.add(day, events=day % 3 + 1)
        since = log.check(since, anchor=log.anchor())
        full = verify(log.files, anchor=log.anchor())
        assert (since.seq, since.hash) == (full.last_seq, full.head_hash)
        assert len(log.reads) <= 2 or day == 0


def test_an_empty_log_verifies_and_remembers_no_file() -> None:
    empty = Log()
    verified = empty.check(None)
    assert verified == VerifiedAnchor(seq=0, hash=GENESIS, file=None)
    empty.add(0)
    again = empty.check(verified, anchor=empty.anchor())  # no file remembered: a full check
    assert again.seq == 3 and empty.reads == empty.days()


def test_the_next_anchor_starts_the_head_file_from_its_first_lines_prev(log: Log) -> None:
    verified = log.check(None)
    head_file = log.files[verified.file or ""]
    first_line = head_file.split(b"\n", 1)[0]
    previous_day = log.files[log.days()[-2]].rstrip(b"\n").rsplit(b"\n", 1)[-1]
    assert verified.file_start == (int(first_line.split(b",")[0][7:]) - 1, line_hash(previous_day))


def test_the_anchor_survives_a_json_round_trip(log: Log) -> None:
    verified = log.check(None)
    assert VerifiedAnchor.model_validate_json(verified.model_dump_json()) == verified


# --- attacks ------------------------------------------------------------------------------------------


def rewrite_first_line_of(log: Log, path: str, device: str = "mallory") -> None:
    """Replace the first line of ``path`` with a well-formed line saying something else."""
    lines = log.files[path].rstrip(b"\n").split(b"\n")
    head = lines[0].split(b",", 2)
    seq, prev = int(head[0][7:]), head[1][8:-1].decode()
    event = AuditEvent(at=DAY0, kind=AuditKind.DEVICE_REPORT, device=device).as_json()
    lines[0] = format_line(seq, prev, key_of(event), event)
    log.files[path] = b"\n".join(lines) + b"\n"


def test_a_rewritten_older_day_file_is_caught_without_reading_it(log: Log) -> None:
    first = log.check(None)
    older = log.days()[1]
    rewrite_first_line_of(log, older)
    with pytest.raises(AuditChainBroken, match="changed since the log was verified") as caught:
        log.check(first)
    assert caught.value.file == older
    assert older not in log.reads


def test_a_deleted_older_day_file_is_caught(log: Log) -> None:
    first = log.check(None)
    gone = log.days()[0]
    del log.files[gone]
    with pytest.raises(AuditChainBroken) as caught:
        log.check(first)
    assert caught.value.file == gone


def test_a_day_file_inserted_before_the_remembered_head_is_caught(log: Log) -> None:
    first = log.check(None)
    log.files["audit/2026/04/30.jsonl"] = log.files[log.days()[0]]
    with pytest.raises(AuditChainBroken) as caught:
        log.check(first)
    assert caught.value.file == "audit/2026/04/30.jsonl"


def test_a_rewritten_remembered_head_line_is_caught(log: Log) -> None:
    first = log.check(None)
    head_file = log.days()[-1]
    lines = log.files[head_file].rstrip(b"\n").split(b"\n")
    # Rebuild the head file consistently (valid links within it) but with the last line changed.
    start_seq, prev = first.file_start
    rebuilt = []
    for number, _line in enumerate(lines):
        event = AuditEvent(at=DAY0, kind=AuditKind.STALLED, reason=f"forged {number}").as_json()
        line = format_line(start_seq + number + 1, prev, key_of(event), event)
        prev = line_hash(line)
        rebuilt.append(line)
    log.files[head_file] = b"\n".join(rebuilt) + b"\n"
    assert verify(log.files).last_seq == first.seq  # a full check without an anchor would pass
    with pytest.raises(AuditChainBroken, match=f"seq {first.seq} is not the line verified earlier"):
        log.check(first)


def test_lines_cut_from_the_end_are_caught_by_the_recorded_anchor(log: Log) -> None:
    first = log.check(None)
    log.add(4)
    recorded = log.anchor()
    newest = log.days()[-1]
    log.files[newest] = log.files[newest].split(b"\n", 1)[0] + b"\n"  # keep one line of three
    with pytest.raises(AuditChainBroken, match="cut from the end"):
        log.check(first, anchor=recorded)


def test_cutting_below_the_remembered_head_is_caught_even_without_an_anchor(log: Log) -> None:
    first = log.check(None)
    head_file = log.days()[-1]
    log.files[head_file] = log.files[head_file].split(b"\n", 1)[0] + b"\n"
    with pytest.raises(AuditChainBroken, match="not the line verified earlier"):
        log.check(first)


def test_a_new_day_file_whose_first_link_is_forged_is_caught(log: Log) -> None:
    first = log.check(None)
    log.add(4)
    newest = log.days()[-1]
    data = log.files[newest]
    log.files[newest] = data.replace(
        data[data.index(b'"prev":"') + 8 : data.index(b'"prev":"') + 12], b"0000", 1
    )
    with pytest.raises(AuditChainBroken) as caught:
        log.check(first)
    assert caught.value.file == newest


def test_a_remembered_anchor_from_another_log_is_refused() -> None:
    ours, theirs = Log(), Log()
    for day in range(3):
        ours.add(day)
        theirs.add(day, events=2)
    with pytest.raises(AuditChainBroken):
        ours.check(theirs.check(None))


@pytest.mark.parametrize("tamper", ["older-same-size", "older-longer"], ids=str)
def test_an_older_file_changed_to_any_content_is_caught_by_blob_id(log: Log, tamper: str) -> None:
    first = log.check(None)
    path = log.days()[0]
    data = log.files[path]
    log.files[path] = data[:-2] + b"X\n" if tamper == "older-same-size" else data + data
    with pytest.raises(AuditChainBroken, match="changed since"):
        log.check(first)
    assert log.reads == []
