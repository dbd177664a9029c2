"""Several apps on one robot as ``fleetcd validate`` sees it: two apps' releases delivered to one
robot may not write one absolute config file; relative paths (the app's own folder) never meet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

SCHEMA = {"type": "object"}
NAV, PERCEPTION = "releases/nav/1.0.0.yaml", "releases/perception/2.0.0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """The standard fleet (nav 1.0.0 to every robot) plus a perception rollout to the canary."""
    built = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    built.rollout("perception", app="perception", release="2.0.0", cohorts=["canary"])
    return built


def configs(fleet: FleetRepoBuilder, nav: str, perception: str) -> None:
    nav_schema = fleet.docs[NAV]["config"]["schema"]
    fleet.release("nav", "1.0.0", config={"path": nav, "schema": nav_schema})
    fleet.release("perception", "2.0.0", config={"path": perception, "schema": SCHEMA})
    fleet.write()


def test_two_apps_writing_one_absolute_config_file_on_a_robot_is_an_error_on_both(
    fleet: FleetRepoBuilder,
) -> None:
    configs(fleet, "/etc/robot/config.yaml", "/etc/robot//config.yaml")

    result = fleet.validate()

    assert found(result) == [
        (
            NAV,
            fleet.line_of(NAV, "path: /etc/robot/config.yaml"),
            "config.path",
            "config_path_shared",
            "error",
        ),
        (
            PERCEPTION,
            fleet.line_of(PERCEPTION, "path: /etc/robot//config.yaml"),
            "config.path",
            "config_path_shared",
            "error",
        ),
    ]
    assert "app 'perception' on robot amr-001" in result.diagnostics[0].message


@pytest.mark.parametrize(
    ("nav", "perception"),
    [("config.yaml", "config.yaml"), ("/etc/nav.yaml", "/etc/perception.yaml")],
    ids=["relative-paths-land-in-each-apps-folder", "different-files"],
)
def test_apps_with_their_own_config_files_are_valid(
    fleet: FleetRepoBuilder, nav: str, perception: str
) -> None:
    configs(fleet, nav, perception)
    assert fleet.validate().diagnostics == ()


def test_one_config_file_for_two_apps_on_different_robots_is_valid(fleet: FleetRepoBuilder) -> None:
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"])
    configs(fleet, "/etc/robot/config.yaml", "/etc/robot/config.yaml")
    assert fleet.validate().diagnostics == ()
