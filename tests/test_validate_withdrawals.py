"""``withdrawals/<app>/<version>.yaml``: what ``fleetcd validate`` checks in a withdrawal file.

Its schema comes from the model (generated into schemas/v1/withdrawal.json), its location must
match its app and version, and it must name a release that exists. A rollout that names a
withdrawn release is a warning (the controller stalls it), an error under ``--strict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetcd.layout import withdrawal_path
from fleetcd.models.withdrawal import WITHDRAWAL_REASON_MAX
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

PATH = "withdrawals/nav/1.0.0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def withdrawal(fleet: FleetRepoBuilder, path: str = PATH, **fields: Any) -> None:
    doc = {"apiVersion": "fleetcd.dev/v1", "kind": "Withdrawal", "app": "nav", "version": "1.0.0"}
    doc["reason"] = "bricks the lidar driver"
    fleet.docs[path] = {**doc, **fields}


def test_a_withdrawal_of_a_published_release_is_valid_and_warns_about_its_rollout(
    fleet: FleetRepoBuilder,
) -> None:
    withdrawal(fleet)
    fleet.write()
    result = fleet.validate()
    rollout = "rollouts/nav-1-0-0.yaml"
    assert found(result) == [
        (rollout, fleet.line_of(rollout, "release:"), "release", "release_withdrawn", "warning")
    ]
    assert "bricks the lidar driver" in result.diagnostics[0].message
    assert result.ok
    assert result.spec.withdrawal("nav", "1.0.0") is not None
    assert not result.promoted().ok, "--strict refuses it"


def test_an_aborted_rollout_of_a_withdrawn_release_is_not_warned_about(fleet: FleetRepoBuilder) -> None:
    withdrawal(fleet)
    fleet.docs["rollouts/nav-1-0-0.yaml"]["aborted"] = True
    fleet.write()
    assert fleet.validate().diagnostics == ()


def test_withdrawing_a_release_that_does_not_exist_is_an_error(fleet: FleetRepoBuilder) -> None:
    path = withdrawal_path("nav", "2.0.0")
    withdrawal(fleet, path, version="2.0.0")
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(path, fleet.line_of(path, "version:"), "version", "unknown_reference", "error")]
    assert "releases/nav/2.0.0.yaml" in result.diagnostics[0].message


def test_a_withdrawal_filed_under_another_version_is_a_name_mismatch(fleet: FleetRepoBuilder) -> None:
    path = withdrawal_path("nav", "1.0.1")
    withdrawal(fleet, path)  # says 1.0.0, lives at 1.0.1
    fleet.write()
    result = fleet.validate()
    assert (path, fleet.line_of(path, "version:"), "version", "name_mismatch", "error") in found(result)
    assert result.spec.withdrawal("nav", "1.0.0") is None, "a misfiled withdrawal withdraws nothing"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "x" * (WITHDRAWAL_REASON_MAX + 1)}, "reason"),
        ({"version": "latest"}, "version"),
        ({"withdrawn_by": "mallory"}, "withdrawn_by"),
    ],
    ids=["empty-reason", "reason-too-long", "not-a-version", "unknown-field"],
)
def test_a_malformed_withdrawal_names_its_file_and_field(
    fleet: FleetRepoBuilder, fields: dict[str, Any], field: str
) -> None:
    withdrawal(fleet, **fields)
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.field, d.severity) for d in result.errors] == [(PATH, field, "error")]


def test_a_withdrawal_without_a_reason_is_refused(fleet: FleetRepoBuilder) -> None:
    withdrawal(fleet)
    del fleet.docs[PATH]["reason"]
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.reason.value) for d in result.errors] == [(PATH, "schema")]
    assert "reason" in result.errors[0].message


def test_a_stray_file_under_withdrawals_is_refused(fleet: FleetRepoBuilder) -> None:
    fleet.file("withdrawals/nav.yaml", "reason: oops\n")
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.reason.value) for d in result.errors] == [("withdrawals/nav.yaml", "invalid")]
    assert "withdrawals/<app>/<version>.yaml" in result.errors[0].message
