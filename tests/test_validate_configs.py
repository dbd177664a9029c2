"""Config instances: each robot's merged config against the schema of the release it would receive."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.validation.configs import merge_values
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def test_config_breaking_the_schema_for_one_robot_names_that_robot_only(fleet: FleetRepoBuilder) -> None:
    fleet.config("nav", "device-amr-003", {"max_speed": 5})
    fleet.write()
    result = fleet.validate()
    path = "configs/nav/device-amr-003.yaml"
    assert found(result) == [
        (path, fleet.line_of(path, "max_speed: 5"), "values.max_speed", "config_invalid", "error")
    ]
    message = result.diagnostics[0].message
    assert message.startswith("robot amr-003: ")
    assert all(other not in message for other in ("amr-001", "amr-002", "amr-004"))
    assert "5 is greater than the maximum of 2.0" in message
    assert "configs/nav/default.yaml + configs/nav/device-amr-003.yaml" in message
    assert "releases/nav/1.0.0.yaml" in message


def test_robots_failing_the_same_way_share_one_error_at_the_file_to_fix(fleet: FleetRepoBuilder) -> None:
    fleet.config("nav", "default", {"map": "hall-a"})
    fleet.config("nav", "device-amr-001", {"max_speed": 1.0})
    fleet.write()
    result = fleet.validate()
    path = "configs/nav/default.yaml"
    assert found(result) == [(path, fleet.line_of(path, "values:"), "values", "config_invalid", "error")]
    message = result.diagnostics[0].message
    assert message.startswith("robots amr-002, amr-003, amr-004: ")
    assert "'max_speed' is a required property" in message


@pytest.mark.parametrize(
    ("canary_speed", "zeta_speed", "bad_file"),
    [
        pytest.param(5, 1.0, None, id="later-cohort-overrides-a-bad-earlier-one"),
        pytest.param(1.0, 5, "configs/nav/cohort-zeta.yaml", id="later-cohort-value-is-the-one-checked"),
    ],
)
def test_cohort_layers_apply_in_sorted_name_order(
    fleet: FleetRepoBuilder, canary_speed: float, zeta_speed: float, bad_file: str | None
) -> None:
    fleet.cohort("zeta", ["amr-001"], stage="staging")
    fleet.config("nav", "cohort-canary", {"max_speed": canary_speed})
    fleet.config("nav", "cohort-zeta", {"max_speed": zeta_speed})
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.field) for d in result.diagnostics] == (
        [(bad_file, "values.max_speed")] if bad_file else []
    )


def test_device_layer_wins_over_cohort_and_default(fleet: FleetRepoBuilder) -> None:
    fleet.config("nav", "cohort-canary", {"max_speed": 9})
    fleet.config("nav", "device-amr-001", {"max_speed": 0.5})
    fleet.write()
    assert fleet.validate().diagnostics == ()


def test_config_schema_that_is_not_a_json_schema_is_an_error_at_the_release(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.0.0", config_schema={"type": "objekt"})
    fleet.write()
    path = "releases/nav/1.0.0.yaml"
    result = fleet.validate()
    assert found(result) == [
        (path, fleet.line_of(path, "type: objekt"), "config.schema.type", "config_invalid", "error")
    ]
    assert "not a valid JSON Schema" in result.diagnostics[0].message


def test_config_for_a_release_without_config_schema_is_an_error(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.0.0")
    fleet.write()
    path = "configs/nav/default.yaml"
    result = fleet.validate()
    assert found(result) == [(path, fleet.line_of(path, "values:"), "values", "config_invalid", "error")]
    assert "declares no config schema" in result.diagnostics[0].message
    assert result.diagnostics[0].message.startswith("robots amr-001, amr-002, amr-003, amr-004: ")


def test_robot_without_any_config_is_checked_against_the_schema_too(fleet: FleetRepoBuilder) -> None:
    fleet.remove("configs/nav/default.yaml")
    fleet.write()
    path = "rollouts/nav-1-0-0.yaml"
    result = fleet.validate()
    assert found(result) == [(path, fleet.line_of(path, "release:"), "release", "config_invalid", "error")]
    assert "'max_speed' is a required property" in result.diagnostics[0].message


def test_robots_not_receiving_the_app_are_not_checked(fleet: FleetRepoBuilder) -> None:
    fleet.device("amr-005")
    fleet.config("nav", "device-amr-005", {"max_speed": 99})
    fleet.write()
    assert fleet.validate().diagnostics == ()


@pytest.mark.parametrize(
    ("layers", "merged"),
    [
        pytest.param([{"a": {"x": 1}}, {"a": {"y": 2}}], {"a": {"x": 1, "y": 2}}, id="mappings-merge"),
        pytest.param([{"a": [1, 2]}, {"a": [3]}], {"a": [3]}, id="lists-replace"),
        pytest.param([{"a": {"x": 1}}, {"a": 5}], {"a": 5}, id="scalar-replaces-mapping"),
        pytest.param([{"a": 5}, {"a": {"x": 1}}], {"a": {"x": 1}}, id="mapping-replaces-scalar"),
    ],
)
def test_merge_semantics(layers: list[dict[str, object]], merged: dict[str, object]) -> None:
    assert merge_values(layers) == merged


def test_config_file_over_the_robots_cap_is_refused_before_it_could_reach_one(
    fleet: FleetRepoBuilder,
) -> None:
    fleet.write()
    path = "configs/nav/default.yaml"
    padded = fleet.read(path) + b"# a long comment that travels byte for byte in every bundle\n" * 1200
    fleet.file(path, padded)
    fleet.write()
    result = fleet.validate()
    assert (path, None, None, "too_large", "error") in found(result)
    problem = next(d for d in result.diagnostics if d.reason == "too_large")
    assert problem.message == f"{len(padded)} bytes; robots accept config files of at most 65536 bytes"
