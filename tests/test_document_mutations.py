"""Every document kind under seeded one-edit mutations: one verdict, a clear error at the edited field.

The fleet template holds a valid document of each kind in the repository. Each case here takes one
and makes a single edit at one node: an unknown key in a mapping, a key removed, a value replaced by
another type, an empty or absurdly long text, a huge, negative or fractional number, a list where a
mapping belongs. Loading it through :func:`fleetcd.loading.documents.load_document` must then:

* raise nothing but :class:`~fleetcd.errors.InvalidContent` (never a pydantic or jsonschema error,
  never a crash) and never half-accept: the model is built only from a document that passed;
* give the same verdict with the JSON Schema pass and without it (robots load with ``schema=False``:
  the model, which the schema is generated from, must refuse what the schema refuses);
* name, when it refuses, a line of the file and the edited field (or its parent mapping, for a key
  removed or added), so the author is sent to the right place;
* get the same answer from the compiled validator and the explaining one.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.loading.documents import load_document
from fleetcd.loading.emit import dump_yaml
from fleetcd.loading.schemas import fast_validator_for, validator_for
from fleetcd.loading.strict_yaml import field_path
from fleetcd.models import DOCUMENT_KINDS
from tests.datatree import TEMPLATE, DataPath, nodes, template_documents

PER_DOCUMENT = 70  # mutations drawn per template document (seeded): ~1,000 cases in all
SEED = 20_261_207


def replaced(doc: dict[str, Any], path: DataPath, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def removed(doc: dict[str, Any], path: DataPath) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def other_values(value: Any) -> list[Any]:
    """Values of other types or out of any sane range for a node holding ``value``."""
    out: list[Any] = [None, True, [], {}, "", "x" * 5000, -1, 2**63, 0.5, "../../etc/passwd", "\u00e9t\u00e9"]
    if isinstance(value, str):
        out += [7, value + " ", value.upper(), [value]]
    elif isinstance(value, bool):
        out += ["true", 1]
    elif isinstance(value, int):
        out += [str(value), value + 0.25, -value - 1, 10**30]
    elif isinstance(value, list):
        out += [value[0] if value else "x", [*value, *value]]
    elif isinstance(value, dict):
        out += [list(value.values())[:1], "text"]
    return [candidate for candidate in out if candidate != value or type(candidate) is not type(value)]


def mutations(doc: dict[str, Any], rng: random.Random) -> list[tuple[str, DataPath, dict[str, Any]]]:
    """(description, edited path, mutated document) for a seeded sample of one-edit variants."""
    out: list[tuple[str, DataPath, dict[str, Any]]] = []
    for path, value in nodes(doc):
        if path[:1] in (("apiVersion",), ("kind",)):
            continue  # the header is checked before the schema (tests/test_documents.py)
        if isinstance(value, dict):
            out.append(
                ("unknown key", path, replaced(doc, (*path, "zz_unknown"), 1) if path else {**doc, "zz": 1})
            )
        if path and isinstance(path[-1], str):
            out.append(("removed", path, removed(doc, path)))
        if path:
            out += [
                (f"replaced by {other!r:.30}", path, replaced(doc, path, other))
                for other in other_values(value)
            ]
    rng.shuffle(out)
    return out[:PER_DOCUMENT]


CASES = [
    pytest.param(rel, kind, what, path, variant, id=f"{rel}:{field_path(path) or '.'}:{what[:24]}")
    for n, (rel, kind, doc) in enumerate(template_documents())
    for what, path, variant in mutations(doc, random.Random(SEED + n))
]


def verdict(rel: str, kind: str, raw: bytes, *, schema: bool) -> InvalidContent | None:
    try:
        loaded = load_document(rel, raw, DOCUMENT_KINDS[kind], schema=schema)
    except InvalidContent as exc:
        return exc
    assert type(loaded.model) is DOCUMENT_KINDS[kind]
    return None


def test_every_kind_in_the_template_yields_mutations() -> None:
    kinds = {kind for _, kind, *_ in (case.values for case in CASES)}
    assert kinds == {"Fleet", "Device", "Cohort", "Release", "Rollout", "ConfigInstance", "TrustRoot"}
    assert len(CASES) > 500


@pytest.mark.parametrize(("rel", "kind", "what", "path", "variant"), CASES)
def test_one_edit_gets_one_verdict_with_or_without_the_schema_and_names_its_field(
    rel: str, kind: str, what: str, path: DataPath, variant: dict[str, Any]
) -> None:
    raw = dump_yaml(variant).encode()
    with_schema = verdict(rel, kind, raw, schema=True)
    model_only = verdict(rel, kind, raw, schema=False)
    assert (with_schema is None) == (model_only is None), (
        f"{what} at {field_path(path)}: schema says {with_schema}, model alone says {model_only}"
    )
    explained = list(validator_for(kind).iter_errors(variant))
    assert fast_validator_for(kind).is_valid(variant) == (not explained)
    if with_schema is None:
        return
    lines = raw.count(b"\n")
    edited = field_path(path) if what != "unknown key" else field_path((*path, "zz_unknown"))
    parent = field_path(path[:-1])
    for refused in (with_schema, model_only):
        assert refused is not None
        assert refused.diagnostics, what
        for found in refused.diagnostics:
            assert found.file == rel
            assert found.line is not None and 1 <= found.line <= lines, (what, str(found))
        fields = [found.field or "" for found in refused.diagnostics]
        assert any(
            name.startswith(edited) or edited.startswith(name) or name == parent or (not name and not parent)
            for name in fields
        ), f"{what} at {edited}: the errors name {fields}"


def test_a_model_error_inside_a_waves_strategy_names_the_wave_field_once() -> None:
    # The strategy's tag ("waves") is also the name of its list: pydantic's location spells it twice.
    rel = "rollouts/navstack.yaml"
    text = (TEMPLATE / rel).read_text(encoding="utf-8").replace("soak_seconds: 3600", "soak_seconds: soon", 1)
    with pytest.raises(InvalidContent) as raised:
        load_document(rel, text.encode(), DOCUMENT_KINDS["Rollout"], schema=False)
    found = raised.value.diagnostics[0]
    assert found.field == "strategy.waves[1].soak_seconds"
    assert text.splitlines()[found.line - 1].strip() == "soak_seconds: soon"
