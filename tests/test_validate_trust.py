"""Release signatures and rollout approvals, with real gpg keys: what counts and what is refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from fleetcd.layout import approval_path, release_signature_path
from fleetcd.loading.strict_yaml import parse_strict
from fleetcd.reasons import Reason
from fleetcd.trust.approval import legacy_approval_payload
from fleetcd.trust.gpg import Keyring
from fleetcd.validation import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

RELEASE = "releases/nav/1.0.0.yaml"
ROLLOUT = "rollouts/nav-1-0-0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def _signature(fleet: FleetRepoBuilder, fingerprint: str) -> str:
    return release_signature_path("nav", "1.0.0", fingerprint)


@pytest.mark.parametrize("key_file_committed", [True, False], ids=["key-in-keys-dir", "key-unknown"])
def test_signature_by_an_untrusted_key_does_not_count(
    fleet: FleetRepoBuilder, keys: KeyFactory, key_file_committed: bool
) -> None:
    mallory = keys.key("mallory")
    if key_file_committed:
        fleet.add_key_file(mallory)  # in keys/, but not a release signer in the trust root
    fleet.release("nav", "1.0.0", config_schema={"type": "object"}, signers=[mallory])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [
        (RELEASE, None, None, "below_threshold", "error"),
        (_signature(fleet, mallory.fingerprint), None, None, "signature_untrusted", "warning"),
    ]
    assert "0 of 1 required release signatures verified" in result.diagnostics[0].message
    assert not result.ok


def test_signature_by_an_expired_key_does_not_count(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    old = fleet.add_signer(keys.expired_key("old-signer"))
    fleet.release("nav", "1.0.0", config_schema={"type": "object"}, signers=[old])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [
        (RELEASE, None, None, "below_threshold", "error"),
        (_signature(fleet, old.fingerprint), None, None, "key_expired", "warning"),
    ]
    assert "old-signer: signing key has expired" in result.diagnostics[0].message


def test_signature_over_different_bytes_does_not_count(fleet: FleetRepoBuilder) -> None:
    fleet.write()
    (fleet.root / RELEASE).write_bytes(fleet.read(RELEASE) + b"# a harmless-looking edit after signing\n")
    result = fleet.validate()
    signer, alice, bob = fleet.release_signers[0], *fleet.approver_keys
    assert found(result) == [
        *sorted(
            (approval_path("nav-1-0-0", key.fingerprint), None, None, "approval_stale", "warning")
            for key in (alice, bob)
        ),
        (RELEASE, None, None, "below_threshold", "error"),
        (_signature(fleet, signer.fingerprint), None, None, "signature_invalid", "warning"),
        (ROLLOUT, None, None, "approval_missing", "error"),  # approvals cover the release's sha256
    ]
    stale = next(d for d in result.diagnostics if d.reason == "approval_stale")
    assert stale.message.startswith("stale: signed over other content; an approval covers the rollout, ")
    assert "fleetcd approve rollouts/nav-1-0-0.yaml" in stale.message


@pytest.mark.parametrize(
    ("cohorts", "approvers", "ok"),
    [
        pytest.param(["canary", "production"], 1, False, id="production-needs-2-has-1"),
        pytest.param(["canary", "production"], 2, True, id="production-needs-2-has-2"),
        pytest.param(["canary"], 1, True, id="canary-needs-1-has-1"),
        pytest.param(["canary"], 0, False, id="canary-needs-1-has-0"),
    ],
)
def test_approvals_must_meet_the_threshold_of_the_highest_stage(
    fleet: FleetRepoBuilder, cohorts: list[str], approvers: int, ok: bool
) -> None:
    fleet.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=cohorts, approvers=fleet.approver_keys[:approvers]
    )
    fleet.write()
    result = fleet.validate()
    assert result.ok is ok
    if not ok:
        assert found(result) == [(ROLLOUT, None, None, "approval_missing", "error")]
        assert f"{approvers} of {approvers + 1} required approvals verified" in result.diagnostics[0].message


def test_the_same_approver_is_counted_once(fleet: FleetRepoBuilder) -> None:
    alice, bob = fleet.approver_keys
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"], approvers=[alice])
    fleet.write()
    # Alice's approval again, filed under Bob's name: still one approver, not two.
    fleet.approve("nav-1-0-0", alice, as_fingerprint=bob.fingerprint)
    result = fleet.validate()
    assert found(result) == [
        (approval_path("nav-1-0-0", bob.fingerprint), None, None, "name_mismatch", "warning"),
        (ROLLOUT, None, None, "approval_missing", "error"),
    ]
    assert "1 of 2 required approvals verified (alice)" in result.diagnostics[1].message


def test_editing_a_rollout_voids_its_approvals_but_pausing_does_not(fleet: FleetRepoBuilder) -> None:
    fleet.write()
    text = fleet.read(ROLLOUT).decode()
    (fleet.root / ROLLOUT).write_text(text + "paused: true\n")
    assert fleet.validate().ok
    (fleet.root / ROLLOUT).write_text(text + "on_halt: pause\n")
    result = fleet.validate()
    assert (ROLLOUT, None, None, "approval_missing", "error") in found(result)


def test_editing_the_apps_config_voids_the_rollouts_approvals(fleet: FleetRepoBuilder) -> None:
    fleet.write()
    config = "configs/nav/default.yaml"
    (fleet.root / config).write_bytes(fleet.read(config).replace(b"1.5", b"0.9"))
    result = fleet.validate()
    assert (ROLLOUT, None, None, "approval_missing", "error") in found(result)
    stale = [d for d in result.diagnostics if d.reason == "approval_stale"]
    assert len(stale) == 2 and all("configs/nav/" in d.message for d in stale)
    for key in fleet.approver_keys:
        fleet.approve("nav-1-0-0", key)
    assert fleet.validate().ok


def test_approval_over_the_v1_payload_is_reported_stale_with_what_to_do(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.write()
    alice = fleet.approver_keys[0]
    data = parse_strict(fleet.read(ROLLOUT), ROLLOUT).data
    legacy = legacy_approval_payload("nav-1-0-0", data, RELEASE, fleet.read(RELEASE))
    path = approval_path("nav-1-0-0", alice.fingerprint)
    (fleet.root / path).write_bytes(keys.sign(legacy, alice))
    result = fleet.validate()
    assert (path, None, None, "approval_stale", "warning") in found(result)
    assert (ROLLOUT, None, None, "approval_missing", "error") in found(result)
    stale = next(d for d in result.diagnostics if d.file == path)
    assert "configs/nav/" in stale.message and "fleetcd approve rollouts/nav-1-0-0.yaml" in stale.message


def test_aborted_rollout_needs_no_approvals(fleet: FleetRepoBuilder) -> None:
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"], approvers=[], aborted=True)
    fleet.write()
    assert fleet.validate().diagnostics == ()


def test_invalid_trust_root_skips_signature_checks_but_reports_everything_else(
    fleet: FleetRepoBuilder,
) -> None:
    fleet.trust["approvals"]["production"] = "two"
    fleet.cohort("canary", ["amr-001", "amr-404"])
    fleet.write()
    result = fleet.validate()
    assert [(d.file, d.reason) for d in result.diagnostics] == [
        ("cohorts/canary.yaml", Reason.UNKNOWN_DEVICE),
        ("trust/root/1.yaml", Reason.SCHEMA),
    ]


def test_trust_lists_left_in_fleet_yaml_are_refused_with_where_they_moved(fleet: FleetRepoBuilder) -> None:
    fleet.fleet["trust"] = {"approvers": [{"fingerprint": "A" * 40, "name": "old"}]}
    fleet.write()
    (error,) = [d for d in fleet.validate().diagnostics if d.file == "fleet.yaml"]
    assert error.field == "trust.approvers"
    assert "trust/root" in error.message, error.message


def test_broken_key_file_is_reported_and_the_other_keys_still_verify(fleet: FleetRepoBuilder) -> None:
    fleet.file("keys/broken.asc", "not a key\n")
    fleet.write()
    assert found(fleet.validate()) == [("keys/broken.asc", None, None, "invalid", "error")]


def test_fleet_without_a_trust_root_is_refused_without_starting_gpg(tmp_path: Path) -> None:
    fleet = FleetRepoBuilder(tmp_path / "fleet")
    fleet.trust_versions.clear()
    fleet.device("amr-001")
    fleet.write()

    def no_gpg(keys: Mapping[str, bytes]) -> Keyring:
        raise AssertionError("gpg started although there was nothing to verify")

    result = validate_snapshot(fleet.snapshot(), keyring_factory=no_gpg)
    assert found(result) == [("trust/root/1.yaml", None, None, "trust_root_missing", "error")]
