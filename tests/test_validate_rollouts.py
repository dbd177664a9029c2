"""Rollout-level rules: one rollout per app per robot, and reserved artifact kinds need an adapter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

FIRMWARE = {
    "kind": "mcu_firmware",
    "name": "motor-fw",
    "url": "https://artifacts.fleet.test/motor-fw-2.0.0.bin",
    "sha256": "ab" * 32,
    "size": 65536,
    "target": "stm32",
}


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def test_two_rollouts_of_one_app_targeting_the_same_robot_is_an_error_on_both(
    fleet: FleetRepoBuilder,
) -> None:
    fleet.rollout("nav-hotfix", app="nav", release="1.0.0", devices=["amr-003"])
    fleet.write()
    result = fleet.validate()
    first, second = "rollouts/nav-1-0-0.yaml", "rollouts/nav-hotfix.yaml"
    assert found(result) == [
        (first, fleet.line_of(first, "targets:"), "targets", "rollout_overlap", "error"),
        (second, fleet.line_of(second, "targets:"), "targets", "rollout_overlap", "error"),
    ]
    assert result.diagnostics[0].message.startswith("robot amr-003 is also targeted by rollout 'nav-hotfix'")
    assert result.diagnostics[1].message.startswith("robot amr-003 is also targeted by rollout 'nav-1-0-0'")


def _other_app(fleet: FleetRepoBuilder) -> None:
    fleet.release("lidar", "1.0.0")
    fleet.rollout("second", app="lidar", release="1.0.0", devices=["amr-003"])


def _aborted(fleet: FleetRepoBuilder) -> None:
    fleet.rollout("second", app="nav", release="1.0.0", devices=["amr-003"], aborted=True)


def _incompatible(fleet: FleetRepoBuilder) -> None:
    # amr-003 is an mk2: a release for mk3 robots skips it, so it still gets nav from one rollout only
    fleet.release("nav", "1.1.0", config_schema={"type": "object"}, compatibility={"models": ["mk3"]})
    fleet.rollout("second", app="nav", release="1.1.0", devices=["amr-003"])


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(_other_app, id="other-app"),
        pytest.param(_aborted, id="aborted"),
        pytest.param(_incompatible, id="incompatible"),
    ],
)
def test_rollouts_that_do_not_compete_for_a_robot_are_fine(
    fleet: FleetRepoBuilder, setup: Callable[[FleetRepoBuilder], None]
) -> None:
    setup(fleet)
    fleet.write()
    result = fleet.validate()
    assert result.errors == ()
    # a rollout whose only robot is incompatible updates nobody: a warning (test_validate_noops.py)
    assert [(d.file, d.field) for d in result.warnings] == (
        [("rollouts/second.yaml", "targets")] if setup is _incompatible else []
    )


def test_paused_rollout_still_owns_its_robots(fleet: FleetRepoBuilder) -> None:
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"], paused=True)
    fleet.rollout("nav-hotfix", app="nav", release="1.0.0", devices=["amr-001"])
    fleet.write()
    assert {d.reason.value for d in fleet.validate().diagnostics} == {"rollout_overlap"}


def test_mcu_firmware_without_an_adapter_is_unsupported(fleet: FleetRepoBuilder) -> None:
    release = fleet.release("nav", "1.0.0", config_schema={"type": "object"})
    release["artifacts"].append(FIRMWARE)
    fleet.write()
    path = "releases/nav/1.0.0.yaml"
    result = fleet.validate()
    assert found(result) == [
        (
            path,
            fleet.line_of(path, "kind: mcu_firmware"),
            "artifacts[1].kind",
            "unsupported_artifact",
            "error",
        )
    ]
    assert "artifact 'motor-fw'" in result.diagnostics[0].message


def test_mcu_firmware_with_an_adapter_declaring_support_is_valid(fleet: FleetRepoBuilder) -> None:
    release = fleet.release("nav", "1.0.0", config_schema={"type": "object"})
    release["artifacts"].append(FIRMWARE)
    fleet.fleet["adapters"] = [{"name": "stm32-flasher", "artifact_kinds": ["mcu_firmware"]}]
    fleet.write()
    assert fleet.validate().diagnostics == ()
