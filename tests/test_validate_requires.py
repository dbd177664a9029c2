"""``requires`` in a release, as ``fleetcd validate`` sees it: an unknown app, a range no release
satisfies, a range nothing could satisfy, a cycle between delivered releases, and the fine cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetcd.models.requirement import Requirement
from fleetcd.reasons import Reason
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

PERCEPTION = "releases/perception/2.0.0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """The standard fleet (nav 1.0.0 to every robot) plus perception 2.0.0 to the canary."""
    built = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    built.rollout("perception", app="perception", release="2.0.0", cohorts=["canary"])
    return built


def perception(fleet: FleetRepoBuilder, *requires: dict[str, Any]) -> None:
    fleet.release("perception", "2.0.0", requires=list(requires))
    fleet.write()


def test_a_requirement_on_a_published_release_in_range_is_valid(fleet: FleetRepoBuilder) -> None:
    perception(fleet, {"app": "nav", "version": ">=1.0.0, <2.0.0"})
    result = fleet.validate()
    assert result.diagnostics == (), result.diagnostics
    assert result.spec.releases[("perception", "2.0.0")].doc.model.requires == [
        Requirement(app="nav", version=">=1.0.0, <2.0.0")
    ]


def test_requiring_an_app_with_no_release_is_an_error_naming_the_field(fleet: FleetRepoBuilder) -> None:
    perception(fleet, {"app": "navstak", "version": ">=1.0.0"})
    result = fleet.validate()
    line = fleet.line_of(PERCEPTION, "app: navstak")
    assert found(result) == [(PERCEPTION, line, "requires[0].app", "requires_unknown_app", "error")]
    assert "'navstak'" in result.diagnostics[0].message and "nav" in result.diagnostics[0].message


def test_a_range_no_published_release_satisfies_is_an_error(fleet: FleetRepoBuilder) -> None:
    perception(fleet, {"app": "nav", "version": ">=1.2.0"})
    result = fleet.validate()
    line = fleet.line_of(PERCEPTION, "version: '>=1.2.0'")
    assert found(result) == [(PERCEPTION, line, "requires[0].version", "requires_unsatisfiable", "error")]
    assert "nav has 1.0.0" in result.diagnostics[0].message


@pytest.mark.parametrize(
    "bound",
    [">=2.0.0, <1.0.0", ">1.0.0, <=1.0.0", "==1.0.0, ==1.1.0", "1.0.0", ">=1.0", "~1.0.0", ">=1.0.0,"],
    ids=[
        "crossed",
        "touching-exclusive",
        "two-exact",
        "no-operator",
        "not-semver",
        "tilde",
        "trailing-comma",
    ],
)
def test_a_range_that_is_empty_or_malformed_is_a_schema_error(fleet: FleetRepoBuilder, bound: str) -> None:
    perception(fleet, {"app": "nav", "version": bound})
    result = fleet.validate()
    assert [(d.file, d.reason) for d in result.errors] == [(PERCEPTION, Reason.SCHEMA)], result.diagnostics


@pytest.mark.parametrize(
    ("requires", "why"),
    [
        ([{"app": "perception", "version": ">=1.0.0"}], "its own app"),
        ([{"app": "nav", "version": ">=1.0.0"}, {"app": "nav", "version": "<2.0.0"}], "each app once"),
    ],
    ids=["itself", "twice"],
)
def test_a_release_requiring_itself_or_one_app_twice_is_refused(
    fleet: FleetRepoBuilder, requires: list[dict[str, Any]], why: str
) -> None:
    perception(fleet, *requires)
    result = fleet.validate()
    assert [(d.file, d.reason) for d in result.errors] == [(PERCEPTION, Reason.SCHEMA)]
    assert why in result.errors[0].message


def test_two_delivered_releases_requiring_each_other_are_a_cycle_on_both(fleet: FleetRepoBuilder) -> None:
    perception(fleet, {"app": "nav", "version": ">=1.0.0"})
    schema = fleet.docs["releases/nav/1.0.0.yaml"]["config"]["schema"]
    fleet.release(
        "nav", "1.0.0", config_schema=schema, requires=[{"app": "perception", "version": ">=2.0.0"}]
    )
    fleet.write()
    result = fleet.validate()
    nav = "releases/nav/1.0.0.yaml"
    assert found(result) == [
        (nav, fleet.line_of(nav, "requires:"), "requires", "requires_cycle", "error"),
        (PERCEPTION, fleet.line_of(PERCEPTION, "requires:"), "requires", "requires_cycle", "error"),
    ]
    assert "nav → perception → nav" in result.diagnostics[0].message


def test_a_cycle_through_a_release_no_rollout_delivers_is_no_error(fleet: FleetRepoBuilder) -> None:
    perception(fleet, {"app": "nav", "version": ">=1.0.0"})
    schema = fleet.docs["releases/nav/1.0.0.yaml"]["config"]["schema"]
    fleet.release(
        "nav", "1.1.0", config_schema=schema, requires=[{"app": "perception", "version": ">=2.0.0"}]
    )
    fleet.write()
    assert fleet.validate().diagnostics == ()


@pytest.mark.parametrize(
    ("bound", "version", "allowed"),
    [
        (">=1.2.0", "1.2.0", True),
        (">=1.2.0", "1.10.0", True),
        (">=1.2.0", "1.2.0-rc.1", False),
        (">1.2.0", "1.2.0", False),
        ("<2.0.0", "2.0.0", False),
        (">=1.2.0, <2.0.0", "1.99.0", True),
        ("==1.4.2", "1.4.2", True),
        ("==1.4.2", "1.4.3", False),
    ],
)
def test_version_ranges_compare_as_semver(bound: str, version: str, allowed: bool) -> None:
    assert Requirement(app="nav", version=bound).allows(version) is allowed


def test_an_app_that_does_not_run_satisfies_no_range() -> None:
    assert not Requirement(app="nav", version=">=0.0.0").allows(None)
