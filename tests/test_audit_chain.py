"""The hash-chained audit log: appends keep the chain, verify names every kind of tampering.

Tampering is done the way an attacker with write access to the state branch would: on the bytes of
the day files, then ``verify`` must name the file and line. Replays (a controller that wrote,
died and restarted) must not log anything twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.audit import (
    GENESIS,
    AuditEvent,
    AuditKind,
    append,
    day_path,
    event_key,
    head,
    line_hash,
    verify,
)
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC
from fleetcd.errors import InvalidContent
from fleetcd.reasons import Reason

DAY1 = datetime(2026, 5, 1, 22, 0, tzinfo=UTC)
Files = dict[str, bytes]


def event(i: int, at: datetime, kind: AuditKind = AuditKind.DEVICE_REPORT) -> AuditEvent:
    return AuditEvent(
        at=at,
        kind=kind,
        rollout="navstack",
        device=f"amr-{i:05d}",
        commit="c0ffee",
        data={"activity": "deployed"},
    )


def log_over_three_days(per_day: int = 4) -> Files:
    """A log with ``per_day`` events on each of three consecutive days, appended a day at a time."""
    files: Files = {}
    for day in range(3):
        at = DAY1 + timedelta(days=day)
        batch = [event(day * per_day + i, at + timedelta(minutes=i)) for i in range(per_day)]
        files.update(append(files, batch))
    return files


def lines_of(files: Files, path: str) -> list[bytes]:
    return files[path].splitlines(keepends=True)


def test_append_to_an_empty_log_starts_at_genesis() -> None:
    files = append({}, [event(1, DAY1)])
    assert list(files) == ["audit/2026/05/01.jsonl"]
    first = json.loads(files["audit/2026/05/01.jsonl"])
    assert (first["seq"], first["prev"], first["key"]) == (1, GENESIS, event_key(event(1, DAY1)))
    assert first["event"]["device"] == "amr-00001"
    assert head({}) == (0, GENESIS)


def test_append_across_a_day_boundary_keeps_the_chain() -> None:
    files = append({}, [event(1, DAY1)])
    before_midnight, after_midnight = (
        DAY1 + timedelta(hours=1, minutes=59),
        DAY1 + timedelta(hours=2, minutes=1),
    )
    changed = append(files, [event(2, before_midnight), event(3, after_midnight)])
    assert sorted(changed) == ["audit/2026/05/01.jsonl", "audit/2026/05/02.jsonl"]
    assert changed["audit/2026/05/01.jsonl"].startswith(files["audit/2026/05/01.jsonl"])
    files.update(changed)
    last_of_day1 = lines_of(files, "audit/2026/05/01.jsonl")[-1].rstrip(b"\n")
    first_of_day2 = json.loads(files["audit/2026/05/02.jsonl"])
    assert (first_of_day2["seq"], first_of_day2["prev"]) == (3, line_hash(last_of_day1))
    report = verify(files)
    assert (report.lines, report.last_seq, report.files) == (3, 3, 2)
    assert head(files) == (3, report.head_hash)


def test_append_needs_only_the_last_day_file() -> None:
    files = log_over_three_days()
    last = max(files)
    new = [event(100, DAY1 + timedelta(days=2, hours=1))]
    assert append({last: files[last]}, new) == append(files, new)


def test_day_path_uses_the_utc_day() -> None:
    tokyo_morning = datetime(2026, 5, 2, 8, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2026-05-01T23:30Z
    assert day_path(tokyo_morning) == "audit/2026/05/01.jsonl"
    assert AuditEvent(at=tokyo_morning, kind=AuditKind.STALLED).as_json()["at"] == "2026-05-01T23:30:00Z"


# --- tampering --------------------------------------------------------------------------------------


def _edit_line(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/02.jsonl"
    lines = lines_of(files, path)
    lines[1] = lines[1].replace(b'"deployed"', b'"failed"')
    files[path] = b"".join(lines)
    return path, 2


def _edit_line_and_forge_its_key(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/02.jsonl"
    lines = lines_of(files, path)
    record = json.loads(lines[1])
    record["event"]["data"]["activity"] = "failed"
    forged = AuditEvent.model_validate(record["event"])
    lines[1] = (
        f'{{"seq":{record["seq"]},"prev":"{record["prev"]}","key":"{event_key(forged)}","event":'.encode()
        + json.dumps(record["event"], sort_keys=True, separators=(",", ":")).encode()
        + b"}\n"
    )
    files[path] = b"".join(lines)
    return path, 3  # the edit itself is self-consistent: the next line's ``prev`` gives it away


def _delete_line(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/02.jsonl"
    lines = lines_of(files, path)
    del lines[1]
    files[path] = b"".join(lines)
    return path, 2


def _swap_pair(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/02.jsonl"
    lines = lines_of(files, path)
    lines[1], lines[2] = lines[2], lines[1]
    files[path] = b"".join(lines)
    return path, 2


def _remove_middle_day(files: Files) -> tuple[str, int]:
    del files["audit/2026/05/02.jsonl"]
    return "audit/2026/05/03.jsonl", 1


def _remove_first_day(files: Files) -> tuple[str, int]:
    del files["audit/2026/05/01.jsonl"]
    return "audit/2026/05/02.jsonl", 1


def _truncate_last_line(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/03.jsonl"
    files[path] = files[path][:-20]
    return path, 4


def _append_garbage(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/03.jsonl"
    files[path] += b'{"seq":13}\n'
    return path, 5


def _reformat_line(files: Files) -> tuple[str, int]:
    path = "audit/2026/05/01.jsonl"
    lines = lines_of(files, path)
    lines[0] = lines[0].replace(b'"seq":1,', b'"seq": 1,')
    files[path] = b"".join(lines)
    return path, 1


def _stray_file(files: Files) -> tuple[str, int | None]:
    files["audit/2026/05/02.jsonl.orig"] = b"hidden\n"
    return "audit/2026/05/02.jsonl.orig", None


Tamper = Callable[[Files], tuple[str, int | None]]
TAMPERING: dict[str, tuple[Tamper, str]] = {
    "edited-line": (_edit_line, "the event was edited"),
    "edited-line-with-forged-key": (
        _edit_line_and_forge_its_key,
        "prev is not the hash of the previous line",
    ),
    "deleted-line": (_delete_line, "seq 6 missing: lines were removed"),
    "swapped-pair": (_swap_pair, "lines were reordered"),
    "removed-middle-day-file": (_remove_middle_day, "seq 5..8 missing after audit/2026/05/01.jsonl"),
    "removed-first-day-file": (_remove_first_day, "the chain starts past seq 1"),
    "truncated-last-line": (_truncate_last_line, "partial last line"),
    "garbage-appended": (_append_garbage, "not an audit line"),
    "reformatted-line": (_reformat_line, "not in canonical form"),
    "stray-file-in-audit": (_stray_file, "not an audit day file"),
}


@pytest.mark.parametrize(("tamper", "problem"), TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_names_the_file_line_and_problem_of_tampering(tamper: Tamper, problem: str) -> None:
    files = log_over_three_days()
    assert verify(files).lines == 12
    path, line = tamper(files)
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    assert (caught.value.file, caught.value.line) == (path, line)
    assert problem in caught.value.problem
    assert isinstance(caught.value, InvalidContent)
    diagnostic = caught.value.diagnostics[0]
    assert diagnostic.reason is Reason.AUDIT_CHAIN_BROKEN
    assert str(diagnostic).startswith(path if line is None else f"{path}:{line}: ")


def test_a_broken_link_reports_expected_and_found_hashes() -> None:
    files = log_over_three_days()
    _edit_line_and_forge_its_key(files)
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    lines = lines_of(files, "audit/2026/05/02.jsonl")
    assert caught.value.expected == line_hash(lines[1].rstrip(b"\n"))
    assert caught.value.found == json.loads(lines[2])["prev"]
    assert f"expected {caught.value.expected}, found {caught.value.found}" in str(caught.value)


def test_an_anchor_catches_lines_cut_from_the_end() -> None:
    files = log_over_three_days()
    anchor = head(files)
    assert verify(files, anchor=anchor).last_seq == 12
    del files["audit/2026/05/03.jsonl"]
    verify(files)  # a shorter chain is still a chain…
    with pytest.raises(AuditChainBroken, match="cut from the end"):
        verify(files, anchor=anchor)  # …but not the one recorded elsewhere


def test_append_refuses_to_write_on_a_damaged_last_file() -> None:
    files = log_over_three_days()
    _truncate_last_line(files)
    with pytest.raises(AuditChainBroken):
        append(files, [event(99, DAY1 + timedelta(days=2, hours=1))])


# --- idempotence and ordering -----------------------------------------------------------------------


def test_replaying_the_same_events_appends_nothing() -> None:
    batch = [event(i, DAY1 + timedelta(minutes=i)) for i in range(5)]
    files = append({}, batch)
    assert append(files, batch) == {}
    restarted = [e.model_copy(update={"at": e.at + timedelta(minutes=30)}) for e in batch]
    assert append(files, restarted) == {}, "a restarted controller re-deriving at a later now"


def test_a_repeated_event_in_one_batch_is_logged_once_but_new_ones_still_append() -> None:
    files = append({}, [event(1, DAY1), event(1, DAY1 + timedelta(seconds=5)), event(2, DAY1)])
    assert verify(files).lines == 2
    files.update(append(files, [event(1, DAY1), event(3, DAY1)]))
    assert verify(files).lines == 3


def test_a_clock_stepping_back_over_midnight_keeps_files_in_chain_order() -> None:
    files = append({}, [event(1, DAY1 + timedelta(hours=3))])  # already on 05/02
    files.update(append(files, [event(2, DAY1)]))  # stamped 05/01 by a clock that stepped back
    assert sorted(files) == ["audit/2026/05/02.jsonl"]
    assert verify(files).lines == 2


def test_event_key_ignores_the_time_but_not_the_content() -> None:
    assert event_key(event(1, DAY1)) == event_key(event(1, DAY1 + timedelta(hours=5)))
    assert event_key(event(1, DAY1)) != event_key(event(2, DAY1))
    assert event_key(event(1, DAY1)) != event_key(event(1, DAY1, AuditKind.ROLLBACK))


@pytest.mark.parametrize("kind", list(AuditKind), ids=[k.value for k in AuditKind])
def test_every_audit_kind_round_trips_through_a_line(kind: AuditKind) -> None:
    stalled = AuditEvent(at=DAY1, kind=kind, reason="schema", data={"message": "naïve\nline \ud800"})
    files = append({}, [stalled])
    (line,) = files["audit/2026/05/01.jsonl"].splitlines()
    assert line.isascii()
    assert AuditEvent.model_validate(json.loads(line)["event"]) == stalled
    verify(files)


def test_nan_in_event_data_is_refused_when_the_event_is_built() -> None:
    with pytest.raises(ValueError, match="finite JSON"):
        AuditEvent(at=DAY1, kind=AuditKind.STALLED, data={"ratio": float("nan")})


def test_a_chain_of_ten_thousand_lines_verifies() -> None:
    files: Files = {}
    for batch in range(10):
        at = DAY1 + timedelta(hours=batch * 6)
        files.update(append(files, [event(batch * 1000 + i, at + timedelta(seconds=i)) for i in range(1000)]))
    report = verify(files)
    assert (report.lines, report.last_seq) == (10_000, 10_000)
    last_line = files[max(files)].rstrip(b"\n").rsplit(b"\n", 1)[-1]
    assert report.head_hash == hashlib.sha256(last_line).hexdigest()
