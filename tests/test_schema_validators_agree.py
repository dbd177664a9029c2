"""The compiled validator that checks every document agrees with the one that explains failures.

``fleetcd.loading.documents`` trusts jsonschema-rs to say "valid" and asks jsonschema only for the
explanation, so the two must agree on validity, document by document.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fleetcd.loading.schemas import fast_validator_for, validator_for
from tests.datatree import template_documents


def mutations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Broken variants of a valid document, each breaking one kind of rule."""
    out: dict[str, dict[str, Any]] = {}
    out["unknown-field"] = {**doc, "colour": "red"}
    out["missing-apiVersion"] = {k: v for k, v in doc.items() if k != "apiVersion"}
    out["kind-wrong-type"] = {**doc, "kind": 7}
    for key, value in doc.items():
        if isinstance(value, str) and key not in ("apiVersion", "kind"):
            out[f"{key}-as-number"] = {**doc, key: 12}
            out[f"{key}-unsafe"] = {**doc, key: "../../etc/passwd"}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            broken = copy.deepcopy(doc)
            broken[key][0]["unexpected"] = True
            out[f"{key}[0]-unknown-field"] = broken
            if "kind" in value[0] or "type" in value[0]:
                tag = "kind" if "kind" in value[0] else "type"
                retagged = copy.deepcopy(doc)
                retagged[key][0][tag] = "no_such_variant"
                out[f"{key}[0]-unknown-{tag}"] = retagged
    return out


CASES = [
    pytest.param(kind, variant, id=f"{rel}:{name}")
    for rel, kind, doc in template_documents()
    for name, variant in [("as-is", doc), *mutations(doc).items()]
]


def test_the_template_has_every_kind() -> None:
    kinds = {kind for _, kind, _ in template_documents()}
    assert kinds == {"Fleet", "Device", "Cohort", "Release", "Rollout", "ConfigInstance", "TrustRoot"}


@pytest.mark.parametrize(("kind", "document"), CASES)
def test_fast_and_explaining_validators_agree(kind: str, document: dict[str, Any]) -> None:
    explained = list(validator_for(kind).iter_errors(document))
    assert fast_validator_for(kind).is_valid(document) == (not explained), [e.message for e in explained]
