"""JSON Schemas of format v1: generated from the pydantic models, shipped in the wheel.

``python -m fleetcd.loading.schemas`` rewrites ``schemas/v1/*.json``; a test fails when the
committed files drift from the models. Validators are compiled once per process: a compiled
(jsonschema-rs) one checks every document, and the pure-Python ``jsonschema`` one runs only on a
document that failed, because its error objects carry what the file:line:field messages need.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetcd.models import DOCUMENT_KINDS

if TYPE_CHECKING:
    import jsonschema_rs
    from jsonschema import Draft202012Validator

SCHEMA_BASE_URL = "https://fleetcd.dev/schemas/v1"
SCHEMA_VERSION_DIR = "v1"


def schema_file_name(kind: str) -> str:
    return f"{kind.lower()}.json"


def generate_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) for one document kind, as committed in ``schemas/v1``."""
    model = DOCUMENT_KINDS[kind]
    body = model.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URL}/{schema_file_name(kind)}",
        **body,
    }


def render_schema(kind: str) -> str:
    return json.dumps(generate_schema(kind), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate_all() -> dict[str, str]:
    """File name → rendered schema, for every kind."""
    return {schema_file_name(kind): render_schema(kind) for kind in DOCUMENT_KINDS}


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate_all().items():
        target = directory / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def shipped_schema_text(kind: str) -> str:
    """The schema file as shipped inside the installed package."""
    root = resources.files("fleetcd") / "schemas" / SCHEMA_VERSION_DIR / schema_file_name(kind)
    return root.read_text(encoding="utf-8")


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """The explaining validator for one kind: rich error objects for file:line:field messages."""
    from jsonschema import Draft202012Validator  # only for a document that failed: it is heavy

    return Draft202012Validator(generate_schema(kind))


@cache
def fast_validator_for(kind: str) -> jsonschema_rs.Draft202012Validator:
    """The checking validator for one kind: compiled, run on every document (same schema)."""
    import jsonschema_rs  # here, not at the top: robots load documents without it (load_document)

    return jsonschema_rs.Draft202012Validator(generate_schema(kind))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("schemas") / SCHEMA_VERSION_DIR
    for path in write_all(target):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
