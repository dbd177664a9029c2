"""Robots run Python 3.10: the shared core and the agent use no name that 3.10 lacks.

mypy checks the packages as Python 3.10 (``python_version`` in pyproject.toml); this test keeps the
rule visible without mypy and checks that :mod:`fleetcd.compat`'s stand-ins behave exactly like the
3.11 originals wherever fleetcd relies on them (status and audit files are a public format, so an
enum must serialise to its value on every Python). ``dev/test-python 3.10`` runs it on 3.10.
"""

from __future__ import annotations

import ast
import enum
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pydantic
import pytest

from fleetcd.compat import UTC, StrEnum, file_sha256

REPO = Path(__file__).resolve().parent.parent
# Module -> names it gained in Python 3.11 (only the ones a codebase like ours would reach for).
NEWER_THAN_310 = {
    "datetime": {"UTC"},
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "global_enum"},
    "typing": {"Self", "LiteralString", "Never", "assert_never", "reveal_type", "Required", "NotRequired"},
    "hashlib": {"file_digest"},
    "asyncio": {"TaskGroup", "timeout", "Runner"},
}
NEWER_MODULES = {"tomllib", "wsgiref.types"}


def newer_names(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                found.append(f"{path}:{node.lineno}: {node.module}")
            for alias in node.names:
                if alias.name in NEWER_THAN_310.get(node.module, set()):
                    found.append(f"{path}:{node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: {a.name}" for a in node.names if a.name in NEWER_MODULES]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in NEWER_THAN_310.get(node.value.id, set()):
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
        elif type(node).__name__ == "TryStar":  # ast.TryStar itself is 3.11+
            found.append(f"{path}:{node.lineno}: except*")
    return found


def test_robot_side_uses_no_name_newer_than_python_310() -> None:
    offenders: list[str] = []
    for package in ("fleetcd", "agent", "controller"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name != "compat.py":
                offenders += newer_names(path)
    assert offenders == []


class Color(StrEnum):
    RED = "red"
    DARK_BLUE = enum.auto()


class Paint(pydantic.BaseModel):
    color: Color


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        pytest.param(str, "red", id="str"),
        pytest.param(lambda c: f"{c}", "red", id="f-string"),
        pytest.param(lambda c: f"{c:>5}", "  red", id="format-spec"),
        pytest.param(lambda c: "%s" % c, "red", id="percent"),  # noqa: UP031
        pytest.param(json.dumps, '"red"', id="json"),
        pytest.param(lambda c: Paint(color=c).model_dump_json(), '{"color":"red"}', id="pydantic"),
    ],
)
def test_strenum_renders_its_value_on_every_python(render: object, expected: str) -> None:
    assert callable(render)
    assert render(Color.RED) == expected


def test_strenum_members_are_strings_and_auto_lowercases() -> None:
    assert Color.RED == "red"
    assert isinstance(Color.RED, str)
    assert Color("red") is Color.RED
    assert Color.DARK_BLUE.value == "dark_blue"
    assert Paint.model_validate_json('{"color":"dark_blue"}').color is Color.DARK_BLUE


def test_utc_is_the_standard_utc() -> None:
    assert datetime(2026, 1, 1, tzinfo=UTC).isoformat() == "2026-01-01T00:00:00+00:00"
    assert UTC.utcoffset(None).total_seconds() == 0


def test_file_sha256_reads_from_the_current_position() -> None:
    handle = io.BytesIO(b"skip" + b"x" * (3 << 20))
    handle.read(4)
    import hashlib

    assert file_sha256(handle) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_agent_cli_starts_on_this_python() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "once" in done.stdout
