"""The committed JSON Schemas are generated from the models; any drift fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from fleetcd.loading.schemas import generate_all, schema_file_name, shipped_schema_text
from fleetcd.models import DOCUMENT_KINDS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "schemas" / "v1"


@pytest.mark.parametrize("kind", sorted(DOCUMENT_KINDS), ids=str)
def test_committed_schema_matches_models(kind: str) -> None:
    name = schema_file_name(kind)
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == generate_all()[name], (
        f"schemas/v1/{name} drifted from the models: run `python -m fleetcd.loading.schemas` and commit"
    )


def test_no_stray_schema_files() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(generate_all())


@pytest.mark.parametrize("kind", sorted(DOCUMENT_KINDS), ids=str)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    Draft202012Validator.check_schema(json.loads(generate_all()[schema_file_name(kind)]))


def test_package_ships_the_same_schemas() -> None:
    for kind in DOCUMENT_KINDS:
        assert shipped_schema_text(kind) == (SCHEMA_DIR / schema_file_name(kind)).read_text(encoding="utf-8")


def test_schema_rejects_unknown_fields_like_the_models() -> None:
    schema = json.loads(generate_all()["device.json"])
    errors = list(
        Draft202012Validator(schema).iter_errors(
            {
                "apiVersion": "fleetcd.dev/v1",
                "kind": "Device",
                "id": "amr-1",
                "family": "amr",
                "hardware": {"model": "x", "revision": 1},
                "site": "berlin",
                "colour": "red",
            }
        )
    )
    assert [e.validator for e in errors] == ["additionalProperties"]
