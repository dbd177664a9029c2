"""``withdrawals/<app>/<version>.yaml``: what ``fleetcd validate`` checks in a withdrawal file.

Its schema comes from the model (generated into schemas/v1/withdrawal.json), its location must
match its app and version, and it must name a release that exists. A rollout that names a
withdrawn release is a warning (the controller stalls it), an error under ``--strict``.

A withdrawal is in force only when the strictest stage's number of approvers (2 here) signed its
exact bytes; short of that it is a warning on the withdrawal (``approval_missing`` or
``approval_stale``) and the validated spec holds no withdrawal, so nothing downstream acts on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetcd.layout import withdrawal_path
from fleetcd.models.withdrawal import WITHDRAWAL_REASON_MAX
from fleetcd.validation import ValidationResult
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import GpgKey, KeyFactory

PATH = "withdrawals/nav/1.0.0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def withdrawal(
    fleet: FleetRepoBuilder, path: str = PATH, *, approvers: list[GpgKey] | None = None, **fields: Any
) -> None:
    """A withdrawal of nav 1.0.0 at ``path``; approved on write() by every approver unless ``approvers``."""
    doc = {"apiVersion": "fleetcd.dev/v1", "kind": "Withdrawal", "app": "nav", "version": "1.0.0"}
    doc["reason"] = "bricks the lidar driver"
    fleet.docs[path] = {**doc, **fields}
    if approvers is not None:
        fleet.approvers_of[path] = approvers


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


def _message(result: ValidationResult, path: str = PATH) -> str:
    (message,) = [d.message for d in result.diagnostics if d.file == path]
    return message


def _withdrawal_findings(result: ValidationResult) -> list[tuple[str, str, str]]:
    return [
        (d.file, d.reason.value, d.severity) for d in result.diagnostics if d.file.startswith("withdrawals/")
    ]


def test_an_unapproved_withdrawal_is_reported_and_withdraws_nothing(fleet: FleetRepoBuilder) -> None:
    withdrawal(fleet, approvers=[])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(PATH, None, None, "approval_missing", "warning")]
    assert "not in force: 0 of 2 required approvals" in result.diagnostics[0].message
    assert f"fleetcd approve {PATH}" in result.diagnostics[0].message
    assert result.ok, "a pending withdrawal never stalls main"
    assert result.spec.withdrawal("nav", "1.0.0") is None, "nothing downstream sees it"
    assert not result.promoted().ok, "--strict refuses it"


def test_one_approval_is_not_enough_for_a_withdrawal(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    fleet.trust["approvals"] = {"staging": 0, "canary": 3, "production": 2}  # the strictest stage counts
    fleet.add_approver(keys.key("carol"))
    withdrawal(fleet, approvers=[keys.key("alice"), keys.key("bob")])
    fleet.write()
    result = fleet.validate()
    assert _withdrawal_findings(result) == [(PATH, "approval_missing", "warning")]
    assert "2 of 3 required approvals verified" in _message(result)
    fleet.approve_withdrawal(PATH, keys.key("carol"))
    assert fleet.validate().spec.withdrawal("nav", "1.0.0") is not None


def test_a_withdrawal_edited_after_its_approval_is_stale(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    withdrawal(fleet)
    fleet.write()
    assert fleet.validate().spec.withdrawal("nav", "1.0.0") is not None
    fleet.approvers_of[PATH] = []  # keep the approvals on disk, over the old bytes
    fleet.docs[PATH]["reason"] = "harmless after all"
    fleet.write()
    result = fleet.validate()
    alice, bob = (f"{PATH}.d/{keys.key(n).fingerprint}.asc" for n in ("alice", "bob"))
    assert _withdrawal_findings(result) == sorted(
        [
            (PATH, "approval_stale", "warning"),
            (alice, "approval_stale", "warning"),
            (bob, "approval_stale", "warning"),
        ]
    )
    assert result.spec.withdrawal("nav", "1.0.0") is None


def test_a_withdrawal_approved_by_a_revoked_approver_withdraws_nothing(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    carol = fleet.add_approver(keys.key("carol"))
    withdrawal(fleet, approvers=[keys.key("alice"), keys.key("bob")])
    fleet.rotate(approvers=fleet.key_refs(keys.key("alice"), carol))  # bob leaked
    fleet.write()
    result = fleet.validate()
    bob = f"{PATH}.d/{keys.key('bob').fingerprint}.asc"
    assert _withdrawal_findings(result) == [
        (PATH, "approval_missing", "warning"),
        (bob, "signature_untrusted", "warning"),
    ]
    assert "1 of 2 required approvals verified (alice)" in _message(result)
    assert result.spec.withdrawal("nav", "1.0.0") is None


def test_a_rollout_approval_copied_next_to_a_withdrawal_does_not_count(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    withdrawal(fleet, approvers=[])
    fleet.write()
    for name in ("alice", "bob"):
        fpr = keys.key(name).fingerprint
        fleet.file(f"{PATH}.d/{fpr}.asc", fleet.read(f"approvals/nav-1-0-0/{fpr}.asc"))
    fleet.write()
    result = fleet.validate()
    assert (PATH, "approval_stale", "warning") in _withdrawal_findings(result)
    assert result.spec.withdrawal("nav", "1.0.0") is None


def test_an_approval_for_a_withdrawal_that_does_not_exist_is_an_error(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    withdrawal(fleet)
    fleet.write()
    fleet.remove(PATH)
    orphan = f"{PATH}.d/{keys.key('alice').fingerprint}.asc"
    fleet.file(orphan, keys.sign(b"anything", keys.key("alice")))
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.severity) for d in result.errors] == [(orphan, "error")]
    assert "withdrawal that does not exist" in result.errors[0].message
