"""Output of the read-only operator commands: aligned tables for people, JSON and YAML for scripts.

The last step of ``get``, ``history`` and ``receipt``: the library functions return plain JSON-ready
data (dicts, lists, strings, numbers) and this module prints it. Table cells can hold text robots
wrote (deployment messages, reasons), which is untrusted: control characters are replaced so a
report can neither break the alignment nor send escape sequences to the operator's terminal. JSON
and YAML escape them by themselves.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import yaml

from fleetcd.compat import UTC

OutputFormat = Literal["table", "json", "yaml"]
FORMATS: tuple[OutputFormat, ...] = ("table", "json", "yaml")
CELL_MAX_CHARS = 120  # longer cells are cut with "…" so one robot's message cannot push a table off-screen
COLUMN_GAP = "  "
EMPTY_CELL = "-"

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One table column: its header and how to get the cell text from a row."""

    header: str
    cell: Callable[[Row], object]


def field(header: str, key: str) -> Column:
    """A column showing ``row[key]``."""
    return Column(header, lambda row: row.get(key))


def when(value: str | None) -> str:
    """An ISO timestamp (as stored) shortened for a table: ``2026-05-04 09:01:10Z``."""
    if not value:
        return EMPTY_CELL
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ")


def clean_cell(value: object) -> str:
    """Printable, single-line, bounded text for a table cell."""
    if value is None or value == "":
        return EMPTY_CELL
    text = str(value)
    cleaned = "".join(
        " " if ch in "\t\n\r" else ("?" if unicodedata.category(ch) in ("Cc", "Cf") else ch) for ch in text
    ).strip()
    if not cleaned:
        return EMPTY_CELL
    return cleaned if len(cleaned) <= CELL_MAX_CHARS else cleaned[: CELL_MAX_CHARS - 1] + "…"


def render_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    grid = [[c.header for c in columns]]
    grid += [[clean_cell(c.cell(row)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = []
    for line in grid:
        padded = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)]
        lines.append(COLUMN_GAP.join([*padded, line[-1]]).rstrip())
    return "\n".join(lines)


def render_data(data: Any, fmt: OutputFormat) -> str:
    """``data`` as JSON (indented, UTF-8) or YAML (block style, keys in the order given)."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        return text.rstrip("\n")
    raise ValueError(f"{fmt!r} is not a data format")
