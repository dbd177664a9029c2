"""Table, JSON and YAML output of the operator commands (pure): alignment, untrusted text, formats."""

from __future__ import annotations

import json

import pytest
import yaml

from controller.ops.output import CELL_MAX_CHARS, clean_cell, field, render_data, render_table, when
from controller.ops.yamledit import UneditableYaml, set_scalar

ROWS = [{"name": "nav", "phase": "progressing"}, {"name": "perception-long-name", "phase": None}]


def test_table_columns_line_up_and_empty_cells_show_a_dash() -> None:
    lines = render_table(ROWS, [field("NAME", "name"), field("PHASE", "phase")]).splitlines()
    assert lines == [
        "NAME                  PHASE",
        "nav                   progressing",
        "perception-long-name  -",
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("probe \x1b[31mfailed", "probe ?[31mfailed"),
        ("two\nlines\r\n", "two lines"),
        ("zero\u200bwidth", "zero?width"),
        ("x" * 500, "x" * (CELL_MAX_CHARS - 1) + "…"),
    ],
    ids=["terminal-escape", "newlines", "format-character", "too-long"],
)
def test_untrusted_text_cannot_break_a_table_or_the_terminal(text: str, shown: str) -> None:
    assert clean_cell(text) == shown


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_data_formats_round_trip(fmt: str) -> None:
    data = [{"name": "nav", "waves": [{"name": "staging", "phase": "passed"}], "reason": None, "mark": "✓"}]
    text = render_data(data, fmt)  # type: ignore[arg-type]
    assert (json.loads(text) if fmt == "json" else yaml.safe_load(text)) == data


def test_timestamps_are_shown_in_utc() -> None:
    assert when("2026-05-04T11:00:00+02:00") == "2026-05-04 09:00:00Z"
    assert when(None) == "-"


@pytest.mark.parametrize(
    ("text", "key", "value", "expected"),
    [
        ("a: 1\npaused: false  # keep\nb: 2\n", "paused", "true", "a: 1\npaused: true  # keep\nb: 2\n"),
        ('release: "1.1.0"\n', "release", "1.0.0", 'release: "1.0.0"\n'),
        ("release: '1.1.0'  # x\n", "release", "1.0.0", "release: '1.0.0'  # x\n"),
        ("a: 1", "paused", "true", "a: 1\npaused: true\n"),
        ("a: 1\r\n", "paused", "true", "a: 1\r\npaused: true\r\n"),
        ("targets:\n  paused: false\n", "paused", "true", "targets:\n  paused: false\npaused: true\n"),
    ],
    ids=[
        "keeps-comment",
        "keeps-double-quotes",
        "keeps-single-quotes",
        "appends",
        "crlf",
        "nested-untouched",
    ],
)
def test_one_top_level_scalar_changes_and_nothing_else(
    text: str, key: str, value: str, expected: str
) -> None:
    assert set_scalar(text, key, value, quote_like_before=True) == expected


@pytest.mark.parametrize(
    "text",
    ["paused:\n  true\n", "paused: &p true\n", "paused: true\npaused: false\n"],
    ids=["value-on-next-line", "anchor", "duplicate-key"],
)
def test_a_layout_a_line_edit_cannot_handle_is_refused(text: str) -> None:
    with pytest.raises(UneditableYaml):
        set_scalar(text, "paused", "false")
