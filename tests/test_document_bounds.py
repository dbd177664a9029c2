"""Every bound the JSON Schemas declare, at every field of the template's documents, holds exactly.

Numbers and lengths in a fleet repository are bounded (a soak of 10**30 seconds, a 5 MB name, a
list of a million waves must be refused, not planned). The bounds are declared once, on the models,
and reach the committed JSON Schemas. Here the schema of each template document is walked along
the document itself (``$ref``, unions picked by their ``type``/``kind`` tag) to find, for every
integer, text and list in it, the bounds that apply; then each is probed:

* one past the bound (below ``minimum``/``minLength``/``minItems``, above the maxima) is refused
  by the schema pass and by the model alone (robots load with ``schema=False``), naming the field;
* exactly at the bound, both passes give the same verdict (other rules, a name pattern or a
  cross-field check, may still refuse it, but never only one of the two).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.loading.documents import load_document
from fleetcd.loading.emit import dump_yaml
from fleetcd.loading.schemas import generate_schema
from fleetcd.loading.strict_yaml import field_path
from fleetcd.models import DOCUMENT_KINDS
from tests.datatree import DataPath, nodes, template_documents

BOUNDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)
HUGE = 100_000  # a bound above this is probed in numbers only (no megabyte strings or lists)


def resolve(schema: dict[str, Any], root: dict[str, Any], value: Any) -> dict[str, Any]:
    """``schema`` with ``$ref`` followed and unions narrowed to the branch ``value`` takes."""
    while True:
        if "$ref" in schema:
            schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
            continue
        branches = schema.get("anyOf") or schema.get("oneOf")
        if not branches:
            return schema
        fitting = [b for b in (resolve(b, root, value) for b in branches) if _fits(b, value)]
        if len(fitting) != 1:
            return {}
        schema = fitting[0]


def _fits(schema: dict[str, Any], value: Any) -> bool:
    kind = schema.get("type")
    if kind == "null":
        return value is None
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            return False
        for tag in ("type", "kind"):
            const = schema.get("properties", {}).get(tag, {}).get("const")
            if const is not None and value.get(tag) != const:
                return False
        return True
    if kind == "array":
        return isinstance(value, list)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return True


def schema_at(root: dict[str, Any], doc: Any, path: DataPath) -> dict[str, Any]:
    schema = resolve(root, root, doc)
    node = doc
    for part in path:
        node = node[part]
        if isinstance(part, int):
            schema = resolve(schema.get("items", {}), root, node)
        else:
            schema = resolve(schema.get("properties", {}).get(part, {}), root, node)
    return schema


def probes(schema: dict[str, Any], value: Any) -> Iterator[tuple[str, Any, bool]]:
    """(what, new value, over the bound) for each bound of ``schema`` that ``value``'s type has."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        for key, step, over in (
            ("minimum", 0, False), ("minimum", -1, True), ("maximum", 0, False), ("maximum", 1, True),
            ("exclusiveMinimum", 0, True), ("exclusiveMaximum", 0, True),
        ):  # fmt: skip
            if key in schema:
                yield f"{key} {schema[key]}{step:+d}", int(schema[key]) + step, over
    if isinstance(value, str):
        for key, step, over in (("minLength", -1, True), ("maxLength", 0, False), ("maxLength", 1, True)):
            if key in schema and 0 <= schema[key] + step <= HUGE:
                yield f"{key} {schema[key]}{step:+d}", (value * (schema[key] + 1))[: schema[key] + step], over
    if isinstance(value, list) and value:
        for key, step, over in (("minItems", -1, True), ("maxItems", 1, True)):
            if key in schema and 0 <= schema[key] + step <= 1000:
                yield f"{key} {schema[key]}{step:+d}", (value * (schema[key] + 1))[: schema[key] + step], over


def cases() -> list[Any]:
    found = []
    for rel, kind, doc in template_documents():
        root = generate_schema(kind)
        for path, value in nodes(doc):
            if not path or path[0] in ("apiVersion", "kind"):
                continue
            for what, probe, over in probes(schema_at(root, doc, path), value):
                ident = f"{rel}:{field_path(path)}:{what}"
                found.append(pytest.param(rel, kind, doc, path, probe, over, id=ident))
    return found


CASES = cases()


def verdict(rel: str, kind: str, raw: bytes, *, schema: bool) -> InvalidContent | None:
    try:
        load_document(rel, raw, DOCUMENT_KINDS[kind], schema=schema)
    except InvalidContent as exc:
        return exc
    return None


def test_bounds_are_found_for_numbers_texts_and_lists() -> None:
    kinds = {case.values[1] for case in CASES}
    assert len(CASES) > 40 and len(kinds) >= 5, (len(CASES), kinds)


@pytest.mark.parametrize(("rel", "kind", "doc", "path", "probe", "over"), CASES)
def test_a_value_past_a_bound_is_refused_by_both_passes_and_at_it_they_agree(
    rel: str, kind: str, doc: dict[str, Any], path: DataPath, probe: Any, over: bool
) -> None:
    changed = copy.deepcopy(doc)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = probe
    raw = dump_yaml(changed).encode()
    with_schema = verdict(rel, kind, raw, schema=True)
    model_only = verdict(rel, kind, raw, schema=False)
    assert (with_schema is None) == (model_only is None), (str(with_schema), str(model_only))
    if over:
        assert with_schema is not None and model_only is not None, "a value past its bound was accepted"
        edited = field_path(path)
        for refused in (with_schema, model_only):
            fields = [d.field or "" for d in refused.diagnostics]
            assert any(f.startswith(edited) or edited.startswith(f) for f in fields), (edited, fields)
