"""Today's audit file checked by its appended lines alone, with the verdict of a full check.

``controller run`` appends to the newest day file on every reconcile and verifies the log before
the next. With the memo (:mod:`controller.audit.memo`) it parses only the lines after the bytes it
verified, once it has checked that the new file starts with exactly those bytes, and ``append``
takes the head and the day's event keys from the memo instead of parsing the file. Every attack
below is made on today's file after the memo was filled, by someone who can write the state branch;
each must be refused with the very error a full check (no memo: ``reconcile --once``, ``fleetcd
audit verify``) raises, and a log that is fine again must verify again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import pytest

from controller.audit import append, head, line_hash
from controller.audit.chain import verify
from controller.audit.memo import VerifiedDays
from controller.errors import AuditChainBroken
from tests.test_audit_chain_memo import DAY1, DAYS, PER_DAY, Files, event, log, refusal, warm

TODAY = DAY1 + timedelta(days=DAYS - 1)


def grow(files: Files, memo: VerifiedDays | None, first: int, count: int, hours: int = 1) -> Files:
    """``count`` new events appended to today's file (returned), as the write step appends them."""
    batch = [event(first + i, TODAY + timedelta(hours=hours, seconds=i)) for i in range(count)]
    appended = append(files, batch, memo=memo)
    files.update(appended)
    return appended


def verdict(files: Files, memo: VerifiedDays | None) -> object:
    """The report, or the refusal's (file, line, problem, expected, found, message)."""
    try:
        return verify(files, anchor=head(files), memo=memo)
    except AuditChainBroken as error:
        return (error.file, error.line, error.problem, error.expected, error.found, str(error))


def same_as_full(files: Files, memo: VerifiedDays, anchor: tuple[int, str] | None) -> tuple[object, ...]:
    expected = refusal(files, anchor, None)
    assert refusal(files, anchor, memo) == expected
    return expected


def test_a_grown_day_parses_only_its_new_lines_and_reports_what_a_full_check_reports() -> None:
    files = log()
    memo = warm(files)
    grow(files, memo, 500, 3)
    before = memo.parsed_lines
    report = verify(files, anchor=head(files), memo=memo)
    assert memo.parsed_lines - before == 3
    assert report == verify(files, anchor=head(files))
    assert report.lines == DAYS * PER_DAY + 3


def test_a_line_rewritten_in_the_middle_of_today_before_an_append_is_refused_at_that_line() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    grow(files, memo, 500, 3)
    anchor = head(files)
    files[today] = files[today].replace(b"amr-00037", b"amr-00666", 1)  # line 3 of today, same length
    error = same_as_full(files, memo, anchor)
    assert error[:2] == (today, 3)


def test_today_rewritten_with_every_hash_recomputed_is_caught_by_the_anchor_as_in_full() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    anchor = head(files)
    lines = files[today].splitlines()
    before = {p: d for p, d in files.items() if p != today}
    rebuilt = append(before, [event(9000 + i, TODAY + timedelta(minutes=i)) for i in range(len(lines))])
    files.update(rebuilt)  # a consistent rewrite of today: same line count, every link holds
    error = same_as_full(files, memo, anchor)
    assert "recorded outside the log" in str(error[2])


@pytest.mark.parametrize("cut", [1, 40, 200], ids=["a-byte", "part-of-a-line", "whole-lines"])
def test_today_cut_back_below_what_was_verified_is_refused_as_in_full(cut: int) -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    anchor = head(files)
    data = files[today]
    files[today] = data[: len(data) - cut] if cut != 200 else b"".join(data.splitlines(keepends=True)[:-2])
    assert refusal(files, anchor, memo) == refusal(files, anchor, None)
    assert verdict(files, memo) == verdict(files, None)  # without the anchor: a valid shorter chain or not


def _next_line(files: Files) -> bytes:
    """The line an honest append of one new event would add to today's file."""
    return grow(dict(files), None, 700, 1)[max(files)].splitlines(keepends=True)[-1]


def _copy_of_last_line(files: Files) -> bytes:
    return files[max(files)].splitlines(keepends=True)[-1]


def _wrong_prev(files: Files) -> bytes:
    # prev edited, same shape
    return _next_line(files).replace(b'"prev":"', b'"prev":"0', 1).replace(b'0"', b'"', 1)


def _skipped_seq(files: Files) -> bytes:
    seq, _ = head(files)
    return _next_line(files).replace(b'{"seq":%d,' % (seq + 1), b'{"seq":%d,' % (seq + 2), 1)


def _edited_event(files: Files) -> bytes:
    return _next_line(files).replace(b"amr-00700", b"amr-00701", 1)  # the key no longer matches


def _not_canonical(files: Files) -> bytes:
    return _next_line(files).replace(b'"seq":', b'"seq": ', 1)


def _no_newline(files: Files) -> bytes:
    return _next_line(files)[:-1]


def _garbage(files: Files) -> bytes:
    return b"hello\n"


BAD_LINES: dict[str, Callable[[Files], bytes]] = {
    "a copy of the last line": _copy_of_last_line,
    "a line whose prev is not the last line's hash": _wrong_prev,
    "a line that skips a seq": _skipped_seq,
    "a line whose event was edited": _edited_event,
    "a line not in canonical form": _not_canonical,
    "a line without its newline": _no_newline,
    "garbage": _garbage,
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=list(BAD_LINES))
@pytest.mark.parametrize("after", [0, 2], ids=["right-after-the-verified-bytes", "after-good-lines"])
def test_a_line_appended_that_breaks_the_chain_is_refused_at_its_line_as_in_full(
    bad: Callable[[Files], bytes], after: int
) -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    grow(files, None, 800, after)
    files[today] += bad(files)
    before = memo.parsed_lines
    error = same_as_full(files, memo, None)
    assert error[:2] == (today, PER_DAY + after + 1)
    assert memo.parsed_lines - before < PER_DAY  # the verified lines were not parsed again


def test_today_replaced_by_a_file_of_the_same_length_is_parsed_in_full_and_refused() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    anchor = head(files)
    data = bytearray(files[today])
    data[10] = ord("8") if data[10] != ord("8") else ord("9")  # the first line's seq, same length
    files[today] = bytes(data)
    before = memo.parsed_lines
    error = same_as_full(files, memo, anchor)
    assert error[:2] == (today, 1)
    assert memo.parsed_lines - before == PER_DAY  # the whole file, twice checked above: the memo's once


def test_today_replaced_by_a_longer_file_not_starting_with_the_verified_bytes_is_checked_in_full() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    anchor = head(files)
    lines = files[today].splitlines(keepends=True)
    files[today] = b"".join([lines[1], lines[0], *lines[2:]]) + _copy_of_last_line(files)
    assert len(files[today]) > memo.days[today].size
    error = same_as_full(files, memo, anchor)
    assert error[:2] == (today, 1)


def test_a_write_that_died_mid_append_is_refused_and_the_log_verifies_again_once_appended_whole() -> None:
    # kill -9 while the day's bytes were being produced: a torn last line is never trusted, and
    # the memo (verified bytes unchanged) carries on once the file is the verified bytes plus whole lines
    files = log()
    memo = warm(files)
    today = max(files)
    good = dict(files)
    appended = grow(dict(files), None, 900, 4)
    files[today] = appended[today][: len(good[today]) + 30]
    assert refusal(files, None, memo) == refusal(files, None, None)
    files.update(appended)
    before = memo.parsed_lines
    assert verify(files, anchor=head(files), memo=memo) == verify(files, anchor=head(files))
    assert memo.parsed_lines - before == 4


def test_a_refused_append_leaves_the_memo_able_to_verify_the_good_log_again() -> None:
    files = log()
    memo = warm(files)
    good = dict(files)
    grow(files, None, 950, 2)
    files[max(files)] += b"hello\n"
    refusal(files, None, memo)
    before = memo.parsed_lines
    assert verify(good, anchor=head(good), memo=memo) == verify(good, anchor=head(good))
    assert memo.parsed_lines == before  # the good bytes are the ones verified


def test_an_anchor_inside_todays_verified_lines_is_checked_by_a_full_parse() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    grow(files, memo, 500, 2)
    inside = (DAYS * PER_DAY - 2, "e" * 64)
    before = memo.parsed_lines
    assert refusal(files, inside, memo) == refusal(files, inside, None)
    assert memo.parsed_lines - before == PER_DAY + 2
    good = (DAYS * PER_DAY - 2, line_hash(files[today].splitlines()[PER_DAY - 3]))
    assert verify(files, anchor=good, memo=memo) == verify(files, anchor=good)


def test_the_anchor_on_the_last_verified_line_is_checked_from_the_memo() -> None:
    files = log()
    memo = warm(files)
    seq, _ = head(files)
    grow(files, memo, 500, 2)
    assert refusal(files, (seq, "d" * 64), memo) == refusal(files, (seq, "d" * 64), None)


def test_marks_in_the_appended_lines_and_on_the_verified_end_are_reported() -> None:
    files = log()
    memo = warm(files)
    seq, _ = head(files)
    grow(files, memo, 500, 3)
    marks = {seq, seq + 2}
    assert verify(files, marks=marks, memo=memo).marks == verify(files, marks=marks).marks


# --- append from the memo ---------------------------------------------------------------------------


def test_append_with_the_memo_skips_events_already_logged_today_as_without_it() -> None:
    files = log()
    memo = warm(files)
    grow(files, memo, 500, 3)
    verify(files, anchor=head(files), memo=memo)  # the memo's keys now hold today's appended lines
    replay = [event(500 + i, TODAY + timedelta(hours=5, seconds=i)) for i in range(5)]
    assert append(files, replay, memo=memo) == append(files, replay)
    added = append(files, replay, memo=memo)[max(files)][len(files[max(files)]) :]
    assert added.count(b"\n") == 2  # 503 and 504 only


def test_append_with_a_memo_of_other_bytes_parses_the_file_and_refuses_a_damaged_one() -> None:
    files = log()
    memo = warm(files)
    today = max(files)
    other = dict(files)
    grow(other, None, 600, 2)  # a head the memo has not verified
    batch = [event(610, TODAY + timedelta(hours=3))]
    assert append(other, batch, memo=memo) == append(other, batch)
    other[today] = other[today].replace(b'"seq":', b'"seq": ', 1)
    with pytest.raises(AuditChainBroken) as caught:
        append(other, batch, memo=memo)
    assert (caught.value.file, caught.value.line) == (today, 1)


def test_keys_of_yesterday_are_not_used_for_a_new_day() -> None:
    files = log()
    memo = warm(files)
    tomorrow = TODAY + timedelta(days=1)
    files.update(append(files, [event(1000, tomorrow)], memo=memo))
    verify(files, anchor=head(files), memo=memo)
    again = [event(3, tomorrow), event(1000, tomorrow + timedelta(hours=1))]  # day 1's event, today's
    assert append(files, again, memo=memo) == append(files, again)
    assert memo.keys_of is not None and memo.keys_of[0] == max(files) and len(memo.keys) == 1


def test_head_reads_the_last_line_only_and_refuses_one_that_is_not_an_audit_line() -> None:
    files = log()
    today = max(files)
    assert head(files) == (DAYS * PER_DAY, line_hash(files[today].splitlines()[-1]))
    torn = {today: files[today][:-5]}
    with pytest.raises(AuditChainBroken) as caught:
        head(torn)
    assert (caught.value.file, caught.value.line) == (today, PER_DAY)
    with pytest.raises(AuditChainBroken) as caught:
        head({today: files[today] + b"garbage\n"})
    assert (caught.value.file, caught.value.line) == (today, PER_DAY + 1)
    with pytest.raises(AuditChainBroken):
        head({today: b""})


# --- the incremental verdict equals the full verdict, over random appends and tamperings --------------


def _tamper(rng: random.Random, files: Files) -> None:
    today = max(files)
    data = files[today]
    kind = rng.randrange(6)
    if kind == 0:  # flip one byte anywhere
        at = rng.randrange(len(data))
        files[today] = data[:at] + bytes([data[at] ^ (1 << rng.randrange(7))]) + data[at + 1 :]
    elif kind == 1:  # cut at any offset
        files[today] = data[: rng.randrange(len(data))]
    elif kind == 2:  # garbage or a repeated line at the end
        files[today] = data + rng.choice([b"x\n", data.splitlines(keepends=True)[-1], b'{"seq":1}\n'])
    elif kind == 3:  # two lines swapped
        lines = data.splitlines(keepends=True)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        files[today] = b"".join(lines)
    elif kind == 4:  # a line deleted
        lines = data.splitlines(keepends=True)
        del lines[rng.randrange(len(lines))]
        files[today] = b"".join(lines)
    else:  # an older day deleted
        older = sorted(files)[:-1]
        if older:
            del files[rng.choice(older)]


@pytest.mark.parametrize("seed", range(6))
def test_the_incremental_verdict_equals_the_full_one_over_random_appends_and_tamperings(seed: int) -> None:
    rng = random.Random(seed)
    good = log(days=3, per_day=4)
    memo = VerifiedDays()
    at, number = DAY1 + timedelta(days=2, hours=1), 10_000
    for _ in range(60):
        files = dict(good)
        if rng.random() < 0.4:
            _tamper(rng, files)
        anchor = head(good) if rng.random() < 0.7 else None
        try:
            expected: object = verify(files, anchor=anchor)
        except AuditChainBroken as error:
            expected = (error.file, error.line, error.problem, error.expected, error.found)
        try:
            got: object = verify(files, anchor=anchor, memo=memo)
        except AuditChainBroken as error:
            got = (error.file, error.line, error.problem, error.expected, error.found)
        assert got == expected
        if files != good:
            continue  # the state moves on from the good log, as the next honest write does
        at += timedelta(minutes=rng.choice([1, 5, 600]))  # sometimes past midnight
        ids = [rng.choice([number + i, rng.randrange(number)]) for i in range(rng.randrange(1, 5))]
        batch = [event(i, at) for i in ids]  # some logged before: today's are skipped
        number += 5
        assert append(good, batch, memo=memo) == append(good, batch)
        good.update(append(good, batch))
    assert verify(good, anchor=head(good), memo=memo) == verify(good, anchor=head(good))
