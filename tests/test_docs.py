"""The documentation does not rot: every test the security model cites exists, and every relative
link between the docs and the README points at a file that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
CITED = re.compile(r"`?(test_[a-z0-9_]+\.py)(?:::([a-z0-9_]+))?")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_the_security_model_cites_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    missing = []
    cited = 0
    for module, name in CITED.findall(text):
        path = ROOT / "tests" / module
        if not path.is_file():
            missing.append(module)
            continue
        cited += 1
        if name and name not in _test_names(path):
            missing.append(f"{module}::{name}")
    assert cited > 20
    assert missing == []


def test_bare_test_names_in_the_security_model_belong_to_the_file_before_them() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    missing = []
    for line in text.splitlines():
        module = None
        for token in re.findall(r"`([^`]+)`", line):
            found = CITED.fullmatch(token)
            if found:
                module = found.group(1)
            elif (
                token.startswith("::")
                and module is not None
                and token[2:] not in _test_names(ROOT / "tests" / module)
            ):
                missing.append(f"{module}{token}")
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_point_at_files_that_exist(doc: Path) -> None:
    broken = [
        target
        for target in LINK.findall(doc.read_text(encoding="utf-8"))
        if "://" not in target and not (doc.parent / target).exists()
    ]
    assert broken == []
