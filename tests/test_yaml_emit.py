"""fleetcd/loading/emit.py: what operator commands write reads back as the same data, in the strict
loader and in a YAML 1.1 reader, with quotes only where a reader could take a string for another type."""

from __future__ import annotations

import pytest
import yaml

from fleetcd.loading.emit import dump_yaml, plain_scalar_ok
from fleetcd.loading.strict_yaml import parse_strict

TRICKY = [
    "1e3",
    "0x1F",
    "yes",
    "No",
    "null",
    "~",
    "1_000",
    ".5",
    "12:30",
    "true",
    "-",
    "0o17",
    "+1",
    "2024-01-01",
]


@pytest.mark.parametrize("text", TRICKY)
def test_a_string_a_reader_could_take_for_another_type_round_trips(text: str) -> None:
    written = dump_yaml({"id": text, "labels": {"dock": text}})
    assert parse_strict(written.encode(), "t.yaml").data == {"id": text, "labels": {"dock": text}}
    assert yaml.safe_load(written) == {"id": text, "labels": {"dock": text}}


@pytest.mark.parametrize("text", ["amr-007", "berlin", "Europe/Berlin", "mk2"])
def test_ordinary_names_stay_unquoted(text: str) -> None:
    assert plain_scalar_ok(text)
    assert dump_yaml({"id": text}) == f"id: {text}\n"
