"""The audit chain's remaining edges: lines that are not audit lines, appends onto a damaged head,
anchors and partial verification (``start``, ``marks``) as ``audit verify --since-anchor`` uses them.

Same log as tests/test_audit_chain.py (three day files of four events), tampered on its bytes the way
someone with write access to the state branch would.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from controller.audit import GENESIS, append, head, line_hash, verify
from controller.errors import AuditChainBroken
from tests.test_audit_chain import DAY1, Files, event, lines_of, log_over_three_days

D1, D2, D3 = "audit/2026/05/01.jsonl", "audit/2026/05/02.jsonl", "audit/2026/05/03.jsonl"


def _replace_line(files: Files, path: str, index: int, new: bytes) -> None:
    lines = lines_of(files, path)
    lines[index] = new
    files[path] = b"".join(lines)


def _record(files: Files, path: str, index: int) -> dict[str, object]:
    record: dict[str, object] = json.loads(lines_of(files, path)[index])
    return record


def _as_line(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


# --- lines that are not audit lines, each named with its file and line ------------------------------


def _with(**changes: object) -> object:
    def tamper(files: Files) -> None:
        record = {**_record(files, D2, 1), **changes}
        _replace_line(files, D2, 1, _as_line(record))

    return tamper


def _without(field: str) -> object:
    def tamper(files: Files) -> None:
        record = _record(files, D2, 1)
        del record[field]
        _replace_line(files, D2, 1, _as_line(record))

    return tamper


def _event_with(**extra: object) -> object:
    """The line's event with ``extra`` (NaN, Infinity: what JSON parsers accept and canonical JSON
    cannot write)."""

    def tamper(files: Files) -> None:
        record = _record(files, D2, 1)
        event = record["event"]
        assert isinstance(event, dict)
        record["event"] = {**event, **extra}
        _replace_line(files, D2, 1, _as_line(record))

    return tamper


def _huge_number(files: Files) -> None:
    """A 5,000-digit integer: Python's int parser refuses it (over 4,300 digits) with ValueError."""
    line = lines_of(files, D2)[1].replace(b'"event":{', b'"event":{"n":' + b"9" * 5000 + b",", 1)
    _replace_line(files, D2, 1, line)


def _extra_field(files: Files) -> None:
    record = {**_record(files, D2, 1), "note": "added later"}
    _replace_line(files, D2, 1, _as_line(record))


NOT_AUDIT_LINES = {
    "not-json": (lambda f: _replace_line(f, D2, 1, b"{this is not json}\n"), "not valid JSON"),
    "a-json-list": (lambda f: _replace_line(f, D2, 1, b"[1,2,3]\n"), "not an audit line"),
    "seq-as-string": (_with(seq="6"), "not an audit line"),
    "seq-zero": (_with(seq=0), "not an audit line"),
    "seq-as-bool": (_with(seq=True), "not an audit line"),
    "prev-not-hex": (_with(prev="Z" * 64), "not an audit line"),
    "prev-upper-case": (_with(prev=GENESIS.replace("0", "A")), "not an audit line"),
    "key-short": (_with(key="ab"), "not an audit line"),
    "event-a-list": (_with(event=[]), "not an audit line"),
    "no-key": (_without("key"), "not an audit line"),
    "an-extra-field": (_extra_field, "not an audit line"),
    "windows-line-ending": (
        lambda f: _replace_line(f, D2, 1, lines_of(f, D2)[1].rstrip(b"\n") + b"\r\n"),
        "not in canonical form",
    ),
    "blank-line": (lambda f: _replace_line(f, D2, 1, b"\n"), "not valid JSON"),
    "nan-in-event": (_event_with(n=float("nan")), "not in canonical form"),
    "infinity-in-event": (_event_with(n=float("-inf")), "not in canonical form"),
    "a-5000-digit-number": (_huge_number, "not valid JSON"),
}


@pytest.mark.parametrize(("tamper", "problem"), NOT_AUDIT_LINES.values(), ids=NOT_AUDIT_LINES.keys())
def test_a_line_that_is_not_an_audit_line_is_named_by_file_and_line(tamper: object, problem: str) -> None:
    files = log_over_three_days()
    tamper(files)  # type: ignore[operator]
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    assert (caught.value.file, caught.value.line) == (D2, 2)
    assert problem in caught.value.problem


def test_a_repeated_line_is_seq_going_backwards() -> None:
    files = log_over_three_days()
    lines = lines_of(files, D2)
    files[D2] = b"".join([*lines[:2], lines[1], *lines[2:]])
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    assert (caught.value.file, caught.value.line) == (D2, 3)
    assert "backwards" in caught.value.problem
    assert (caught.value.expected, caught.value.found) == ("7", "6")


def test_an_empty_day_file_is_named() -> None:
    files = log_over_three_days()
    files[D2] = b""
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    assert (caught.value.file, caught.value.line) == (D2, None)


def test_files_outside_audit_are_not_the_logs_business() -> None:
    files = log_over_three_days()
    files["status/amr-00001.json"] = b"{}"
    files["auditors.txt"] = b"not a day file but not under audit/"
    assert verify(files).lines == 12


# --- append onto a damaged head: refuse rather than extend a broken chain ----------------------------


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (lambda f: f.__setitem__(D3, b""), None),
        (lambda f: _replace_line(f, D3, 2, b"garbage that is not a line\n"), 3),
        (lambda f: f.__setitem__(D3, b"".join(lines_of(f, D3)[::-1])), 2),
        (lambda f: f.__setitem__(D3, b"".join(lines_of(f, D3)[:1] + lines_of(f, D3)[2:])), 2),
    ],
    ids=["empty-head-file", "garbage-line", "reversed-lines", "a-line-deleted"],
)
def test_append_refuses_to_extend_a_damaged_head_file_and_says_where(
    damage: object, line: int | None
) -> None:
    files = log_over_three_days()
    damage(files)  # type: ignore[operator]
    before = dict(files)
    with pytest.raises(AuditChainBroken) as caught:
        append(files, [event(99, DAY1 + timedelta(days=2, hours=1))])
    assert (caught.value.file, caught.value.line) == (D3, line)
    assert files == before


def test_append_does_not_read_damage_in_older_day_files() -> None:
    # only the head's file is needed (and read) to append; verify is what reads the rest
    files = log_over_three_days()
    _replace_line(files, D1, 0, b"garbage\n")
    added = append(files, [event(99, DAY1 + timedelta(days=2, hours=1))])
    assert list(added) == [D3]
    with pytest.raises(AuditChainBroken):
        verify({**files, **added})


def test_head_of_an_empty_log_is_genesis() -> None:
    assert head({}) == (0, GENESIS)
    assert head({"status/x.json": b"{}"}) == (0, GENESIS)


# --- anchors, partial verification and marks --------------------------------------------------------


def test_an_anchor_whose_hash_differs_at_its_seq_is_caught_at_that_line() -> None:
    files = log_over_three_days()
    seq, _ = head(files)
    with pytest.raises(AuditChainBroken) as caught:
        verify(files, anchor=(seq, "f" * 64))
    assert (caught.value.file, caught.value.line) == (D3, 4)
    assert "recorded outside the log" in caught.value.problem


def test_an_anchor_in_the_middle_of_the_log_is_checked_where_it_stands() -> None:
    files = log_over_three_days()
    middle = line_hash(lines_of(files, D2)[1].rstrip(b"\n"))
    assert verify(files, anchor=(6, middle)).last_seq == 12
    with pytest.raises(AuditChainBroken) as caught:
        verify(files, anchor=(6, line_hash(b"another line")))
    assert (caught.value.file, caught.value.line) == (D2, 2)


def test_an_anchor_with_the_whole_log_gone_names_the_audit_folder() -> None:
    with pytest.raises(AuditChainBroken) as caught:
        verify({}, anchor=(12, "a" * 64))
    assert caught.value.file == "audit/"
    assert (caught.value.expected, caught.value.found) == ("12", "0")


def test_the_newest_day_files_verify_from_where_the_older_ones_ended() -> None:
    files = log_over_three_days()
    older = {D1: files[D1], D2: files[D2]}
    start = head(older)
    report = verify({D3: files[D3]}, start=start, anchor=head(files))
    assert (report.lines, report.last_seq, report.files) == (4, 12, 1)
    assert report.head_hash == head(files)[1]


def test_the_newest_day_file_does_not_verify_from_a_forged_start() -> None:
    files = log_over_three_days()
    seq, _ = head({D1: files[D1], D2: files[D2]})
    with pytest.raises(AuditChainBroken) as caught:
        verify({D3: files[D3]}, start=(seq, "e" * 64))
    assert (caught.value.file, caught.value.line) == (D3, 1)
    assert caught.value.expected == "e" * 64
    assert "None" not in caught.value.problem  # it names where the check started, not a missing file
    assert f"seq {seq}" in caught.value.problem
    with pytest.raises(AuditChainBroken):
        verify({D3: files[D3]}, start=(seq - 1, head({D1: files[D1], D2: files[D2]})[1]))


def test_a_first_line_whose_prev_is_not_genesis_says_so() -> None:
    # the very first line of the log was rewritten to hang off some other chain
    files = log_over_three_days()
    record = {**_record(files, D1, 0), "prev": "d" * 64}
    _replace_line(files, D1, 0, _as_line(record))
    with pytest.raises(AuditChainBroken) as caught:
        verify(files)
    assert (caught.value.file, caught.value.line) == (D1, 1)
    assert (caught.value.expected, caught.value.found) == (GENESIS, "d" * 64)
    assert "None" not in caught.value.problem and "genesis" in caught.value.problem


def test_marks_carry_the_line_hashes_of_the_seqs_asked_for() -> None:
    files = log_over_three_days()
    report = verify(files, marks=[1, 6, 12, 99])
    assert set(report.marks) == {1, 6, 12}  # a seq the log does not reach is simply absent
    assert report.marks[1] == line_hash(lines_of(files, D1)[0].rstrip(b"\n"))
    assert report.marks[6] == line_hash(lines_of(files, D2)[1].rstrip(b"\n"))
    assert report.marks[12] == head(files)[1]
