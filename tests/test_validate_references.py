"""Cross-file references: unknown fields, unsafe names, missing releases, unknown robots and cohorts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.reasons import Reason
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def test_standard_fleet_is_valid(fleet: FleetRepoBuilder) -> None:
    fleet.write()
    result = fleet.validate()
    assert result.diagnostics == ()
    assert result.ok


def test_unknown_field_is_reported_at_its_line(fleet: FleetRepoBuilder) -> None:
    fleet.device("amr-001", colour="red")
    fleet.write()
    path = "devices/amr-001.yaml"
    assert found(fleet.validate()) == [(path, fleet.line_of(path, "colour:"), "colour", "schema", "error")]


def test_device_id_that_escapes_the_devices_folder_is_an_unsafe_name(fleet: FleetRepoBuilder) -> None:
    fleet.device("passwd", id="../../etc/passwd")
    fleet.write()
    result = fleet.validate()
    path = "devices/passwd.yaml"
    assert found(result) == [
        (path, fleet.line_of(path, "id: ../../etc/passwd"), "id", "unsafe_name", "error")
    ]
    assert "'../../etc/passwd' is not a safe name" in result.diagnostics[0].message
    assert result.spec.devices.keys() == {"amr-001", "amr-002", "amr-003", "amr-004"}


def test_rollout_pointing_at_a_missing_release_is_an_error(fleet: FleetRepoBuilder) -> None:
    fleet.rollout("nav-1-0-0", app="nav", release="1.9.0", cohorts=["canary", "production"])
    fleet.write()
    result = fleet.validate()
    path = "rollouts/nav-1-0-0.yaml"
    assert found(result) == [
        (path, fleet.line_of(path, "release: 1.9.0"), "release", "unknown_reference", "error")
    ]
    assert "published versions: 1.0.0" in result.diagnostics[0].message


def test_cohort_naming_an_unknown_robot_is_an_error_not_a_silent_drop(fleet: FleetRepoBuilder) -> None:
    fleet.cohort("canary", ["amr-001", "amr-0O1"])
    fleet.write()
    result = fleet.validate()
    path = "cohorts/canary.yaml"
    assert found(result) == [
        (path, fleet.line_of(path, "- amr-0O1"), "devices[1]", "unknown_device", "error")
    ]
    assert "unknown robot 'amr-0O1'" in result.diagnostics[0].message


@pytest.mark.parametrize(
    ("targets", "needle", "field", "reason"),
    [
        pytest.param(
            {"cohorts": ["canary", "canery"]},
            "- canery",
            "targets.cohorts[1]",
            Reason.UNKNOWN_REFERENCE,
            id="cohort",
        ),
        pytest.param(
            {"devices": ["amr-001", "amr-404"]},
            "- amr-404",
            "targets.devices[1]",
            Reason.UNKNOWN_DEVICE,
            id="device",
        ),
        pytest.param(
            {"cohorts": ["canary", "canary"]},
            "- canary",
            "targets.cohorts[1]",
            Reason.DUPLICATE_ID,
            id="repeat",
        ),
    ],
)
def test_rollout_targets_must_exist_once(
    fleet: FleetRepoBuilder, targets: dict[str, list[str]], needle: str, field: str, reason: Reason
) -> None:
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", targets=targets)
    fleet.write()
    path = "rollouts/nav-1-0-0.yaml"
    line = [n for n, text in enumerate(fleet.read(path).decode().splitlines(), 1) if needle in text][-1]
    assert found(fleet.validate()) == [(path, line, field, reason.value, "error")]


def test_wave_naming_an_unknown_cohort_is_an_error(fleet: FleetRepoBuilder) -> None:
    strategy = {
        "type": "waves",
        "waves": [{"name": "first", "cohort": "canary"}, {"name": "rest", "cohort": "prod"}],
    }
    fleet.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"], strategy=strategy
    )
    fleet.write()
    path = "rollouts/nav-1-0-0.yaml"
    assert found(fleet.validate()) == [
        (path, fleet.line_of(path, "cohort: prod"), "strategy.waves[1].cohort", "unknown_reference", "error")
    ]


@pytest.mark.parametrize(
    ("stem", "field", "reason"),
    [
        pytest.param("cohort-nightshift", "target", Reason.UNKNOWN_REFERENCE, id="unknown-cohort"),
        pytest.param("device-amr-404", "target", Reason.UNKNOWN_DEVICE, id="unknown-device"),
    ],
)
def test_config_for_an_unknown_scope_target_is_an_error(
    fleet: FleetRepoBuilder, stem: str, field: str, reason: Reason
) -> None:
    fleet.config("nav", stem, {"max_speed": 1.0})
    fleet.write()
    path = f"configs/nav/{stem}.yaml"
    assert found(fleet.validate()) == [(path, fleet.line_of(path, "target:"), field, reason.value, "error")]


def test_config_for_an_app_without_releases_is_an_error(fleet: FleetRepoBuilder) -> None:
    fleet.config("lidar", "default", {"rate_hz": 10})
    fleet.write()
    path = "configs/lidar/default.yaml"
    assert found(fleet.validate()) == [
        (path, fleet.line_of(path, "app: lidar"), "app", "unknown_reference", "error")
    ]


def test_ids_differing_only_in_case_are_duplicates(fleet: FleetRepoBuilder) -> None:
    fleet.device("AMR-001")
    fleet.write()
    path = "devices/amr-001.yaml"  # sorted after 'AMR-001', so it is the one reported
    result = fleet.validate()
    assert found(result) == [(path, fleet.line_of(path, "id:"), "id", "duplicate_id", "error")]
    assert "only in letter case" in result.diagnostics[0].message


def test_versions_differing_only_in_build_metadata_are_duplicates(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.0.0+rebuild", config_schema={"type": "object"})
    fleet.write()
    path = "releases/nav/1.0.0+rebuild.yaml"
    assert found(fleet.validate()) == [
        (path, fleet.line_of(path, "version:"), "version", "duplicate_id", "error")
    ]


def test_reference_to_a_file_that_failed_to_load_is_reported_once(fleet: FleetRepoBuilder) -> None:
    fleet.cohort("canary", ["amr-001"], stage="beta")
    fleet.write()
    path = "cohorts/canary.yaml"
    # only the broken cohort itself; the rollout targeting it does not pile on an "unknown cohort"
    assert [d[0] for d in found(fleet.validate())] == [path]
