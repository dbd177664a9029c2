"""Walking plain data (what YAML and JSON documents load to) and the fleet template's documents.

For the seeded mutation tests: :func:`nodes` yields every node of a document with its path, and
:func:`template_documents` gives one valid document of each kind the fleet template holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from fleetcd.layout import classify

TEMPLATE = Path(__file__).resolve().parents[1] / "fleet-repo-template"
DataPath = tuple[str | int, ...]


def nodes(data: Any, path: DataPath = ()) -> Iterator[tuple[DataPath, Any]]:
    """Every node of ``data`` with its path (keys and list indexes), the root first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from nodes(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from nodes(value, (*path, index))


def template_documents() -> list[tuple[str, str, dict[str, Any]]]:
    """(path, kind, data) of every fleet document in the template, in path order."""
    found = []
    for path in sorted(TEMPLATE.rglob("*.yaml")):
        rel = path.relative_to(TEMPLATE).as_posix()
        where = classify(rel)
        if where is not None:
            found.append((rel, where.kind.value, yaml.safe_load(path.read_text(encoding="utf-8"))))
    return found
