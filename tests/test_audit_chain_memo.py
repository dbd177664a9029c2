"""``verify`` with a memo of verified day files (``controller run``'s cache): same verdict, less parsing.

A long-running controller verifies the audit log before every reconcile. Day files whose exact bytes
it verified before are not parsed again; only their links to their neighbours and the anchor are
checked. Every tampering below is done after the memo was filled, on the bytes an attacker with
write access to the state branch controls, and must be refused with the very error a full check
(no memo, as ``reconcile --once`` and ``fleetcd audit verify`` run it) raises.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from controller.audit import AuditEvent, AuditKind, append, head
from controller.audit.chain import verify
from controller.audit.memo import VerifiedDays
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC

DAY1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAYS, PER_DAY = 8, 5
Files = dict[str, bytes]


def event(i: int, at: datetime) -> AuditEvent:
    return AuditEvent(at=at, kind=AuditKind.DEVICE_REPORT, rollout="navstack", device=f"amr-{i:05d}")


def log(days: int = DAYS, per_day: int = PER_DAY) -> Files:
    files: Files = {}
    for day in range(days):
        at = DAY1 + timedelta(days=day)
        files.update(
            append(files, [event(day * per_day + i, at + timedelta(minutes=i)) for i in range(per_day)])
        )
    return files


def warm(files: Files) -> VerifiedDays:
    memo = VerifiedDays()
    verify(files, anchor=head(files), memo=memo)
    return memo


def refusal(files: Files, anchor: tuple[int, str] | None, memo: VerifiedDays | None) -> tuple[object, ...]:
    with pytest.raises(AuditChainBroken) as caught:
        verify(files, anchor=anchor, memo=memo)
    error = caught.value
    return (error.file, error.line, error.problem, error.expected, error.found, str(error))


def test_a_second_check_of_an_unchanged_log_parses_no_line_and_reports_the_same() -> None:
    files = log()
    memo = VerifiedDays()
    first = verify(files, anchor=head(files), memo=memo)
    assert memo.parsed_lines == DAYS * PER_DAY and len(memo.days) == DAYS
    again = verify(files, anchor=head(files), memo=memo)
    assert memo.parsed_lines == DAYS * PER_DAY  # nothing parsed the second time
    assert again == first == verify(files, anchor=head(files))


def test_after_an_append_only_the_appended_lines_of_the_newest_day_file_are_parsed() -> None:
    files = log()
    memo = warm(files)
    newest = max(files)
    files.update(append({newest: files[newest]}, [event(999, DAY1 + timedelta(days=DAYS - 1, hours=5))]))
    before = memo.parsed_lines
    report = verify(files, anchor=head(files), memo=memo)
    assert memo.parsed_lines - before == 1 and files[newest].count(b"\n") == PER_DAY + 1
    assert report == verify(files, anchor=head(files))


def test_an_empty_memo_verifies_every_line() -> None:
    files = log()
    memo = VerifiedDays()
    verify(files, anchor=head(files), memo=memo)
    assert memo.parsed_lines == sum(data.count(b"\n") for data in files.values())


def _edit_old_line(files: Files) -> None:
    path = sorted(files)[2]
    files[path] = files[path].replace(b"amr-00011", b"amr-00666", 1)


def _delete_old_day(files: Files) -> None:
    del files[sorted(files)[3]]


def _swap_two_days(files: Files) -> None:
    a, b = sorted(files)[2:4]
    files[a], files[b] = files[b], files[a]


def _insert_a_copied_day(files: Files) -> None:
    paths = sorted(files)
    files[paths[3].replace(".jsonl", "").rsplit("/", 1)[0] + "/31.jsonl"] = files[paths[3]]


def _repeat_a_day_under_the_next_name(files: Files) -> None:
    paths = sorted(files)
    files[paths[4]] = files[paths[3]]


def _truncate_the_last_day(files: Files) -> None:
    last = max(files)
    lines = files[last].splitlines(keepends=True)
    files[last] = b"".join(lines[:-2])


def _drop_the_last_day(files: Files) -> None:
    del files[max(files)]


def _stray_file(files: Files) -> None:
    files["audit/2026/03/notes.txt"] = b"hello\n"


TAMPERING: dict[str, Callable[[Files], None]] = {
    "edit a line in an old day": _edit_old_line,
    "delete an old day": _delete_old_day,
    "swap two days": _swap_two_days,
    "insert a copied day": _insert_a_copied_day,
    "repeat a day under the next name": _repeat_a_day_under_the_next_name,
    "truncate the last day": _truncate_the_last_day,
    "drop the last day": _drop_the_last_day,
    "a stray file": _stray_file,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=list(TAMPERING))
def test_tampering_after_a_verified_check_is_refused_with_the_full_checks_error(
    tamper: Callable[[Files], None],
) -> None:
    files = log()
    anchor = head(files)
    memo = warm(files)
    tamper(files)
    expected = refusal(files, anchor, None)
    assert refusal(files, anchor, memo) == expected
    assert refusal(files, anchor, memo) == expected  # and again, with what the refused check left


def test_an_anchor_that_differs_from_a_remembered_last_line_is_refused_as_in_full() -> None:
    files = log()
    memo = warm(files)
    last_of_day3 = verify({p: files[p] for p in sorted(files)[:3]})
    forged = (last_of_day3.last_seq, "f" * 64)
    before = memo.parsed_lines
    assert refusal(files, forged, memo) == refusal(files, forged, None)
    assert memo.parsed_lines == before  # judged from the summary alone


def test_an_anchor_inside_a_remembered_day_is_checked_by_parsing_that_day() -> None:
    files = log()
    memo = warm(files)
    inside = (2 * PER_DAY + 2, "e" * 64)
    before = memo.parsed_lines
    assert refusal(files, inside, memo) == refusal(files, inside, None)
    assert memo.parsed_lines - before == PER_DAY  # the third day, parsed to find seq 12's hash


def test_marks_inside_a_remembered_day_are_still_reported() -> None:
    files = log()
    memo = warm(files)
    marks = {3, PER_DAY * 2, DAYS * PER_DAY}
    assert verify(files, marks=marks, memo=memo).marks == verify(files, marks=marks).marks


def test_a_day_removed_from_the_log_is_forgotten() -> None:
    files = log()
    memo = warm(files)
    oldest = min(files)
    del files[oldest]
    with pytest.raises(AuditChainBroken):
        verify(files, memo=memo)
    assert oldest not in memo.days and len(memo.days) == DAYS - 1
