"""The trust-root chain (TUF root rotation) on main and on its own, with real gpg keys.

Version N+1 counts only when a threshold of version N's root keys and of its own signed its exact
bytes; versions grow by one; what fails names the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.layout import trust_root_path
from fleetcd.models.trustroot import RootKeys
from fleetcd.reasons import Reason
from fleetcd.trust.rootchain import (
    Pin,
    RootVersion,
    TrustChainRejected,
    verify_first,
    verify_next,
    verify_self_signed,
    walk,
)
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

V1, V2, V3 = trust_root_path(1), trust_root_path(2), trust_root_path(3)


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    b = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    b.use_root_keys(*(keys.key(f"root-{n}") for n in (1, 2, 3)), threshold=2, listed=2)
    return b


def chain_errors(fleet: FleetRepoBuilder) -> list[tuple[str, int | None, str | None, str, str]]:
    return [d for d in found(fleet.validate()) if d[0].startswith("trust/")]


def test_signed_chain_of_three_versions_validates(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    controller_2 = keys.key("controller-2")
    fleet.add_key_file(controller_2)
    fleet.rotate()
    fleet.rotate(controller=fleet.key_refs(controller_2))
    fleet.write()
    assert chain_errors(fleet) == []


def test_unsigned_trust_root_version_is_refused_naming_file_and_field(fleet: FleetRepoBuilder) -> None:
    fleet.rotate()
    fleet.root_signers_of[2] = []
    fleet.write()
    assert chain_errors(fleet) == [(V2, None, "signatures", "signature_missing", "error")]


def test_fewer_than_the_threshold_of_root_keys_cannot_rotate(fleet: FleetRepoBuilder) -> None:
    root_1, _, _ = fleet.root_keys
    fleet.rotate(approvers=[])  # an attacker holding one root key drops every approver
    fleet.root_signers_of[2] = [root_1]
    fleet.write()
    (error,) = chain_errors(fleet)
    assert error == (V2, None, "signatures", "below_threshold", "error")
    message = next(d.message for d in fleet.validate().diagnostics if d.file == V2 and d.field)
    assert "root keys of version 1: 1 of 2 required root signatures verified" in message


def test_new_root_keys_must_sign_their_own_version(fleet: FleetRepoBuilder) -> None:
    root_1, root_2, root_3 = fleet.root_keys
    fleet.rotate(root={"threshold": 1, "keys": fleet.key_refs(root_3)})
    fleet.root_signers_of[2] = [root_1, root_2]  # the old keys agree; the new key never proved itself
    fleet.write()
    assert chain_errors(fleet) == [(V2, None, "signatures", "below_threshold", "error")]
    message = next(d.message for d in fleet.validate().diagnostics if d.file == V2 and d.field)
    assert message.startswith("root keys of version 2 itself: 0 of 1")


def test_rotating_every_root_key_works_when_both_sets_sign(fleet: FleetRepoBuilder) -> None:
    root_3 = fleet.root_keys[2]
    fleet.rotate(root={"threshold": 1, "keys": fleet.key_refs(root_3)})
    fleet.rotate()  # version 3 needs only the new key
    fleet.write()
    assert chain_errors(fleet) == []
    assert fleet.root_signers(3) == [root_3]


def test_signature_by_a_key_that_is_no_root_key_does_not_count(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    mallory = keys.key("mallory")
    fleet.add_key_file(mallory)
    root_1, _, _ = fleet.root_keys
    fleet.rotate()
    fleet.root_signers_of[2] = [root_1, mallory]
    fleet.write()
    assert chain_errors(fleet) == [(V2, None, "signatures", "below_threshold", "error")]
    message = next(d.message for d in fleet.validate().diagnostics if d.file == V2 and d.field)
    assert f"{mallory.fingerprint} is not a root key in version 1" in message


def test_a_gap_in_the_chain_is_refused(fleet: FleetRepoBuilder) -> None:
    fleet.rotate()
    fleet.rotate()
    fleet.write()
    fleet.remove(V2)
    assert (V3, None, "version", "trust_root_version", "error") in chain_errors(fleet)


def test_a_file_claiming_another_version_is_refused(fleet: FleetRepoBuilder) -> None:
    fleet.rotate()
    fleet.write()
    fleet.file(V2, fleet.read(V1))  # version 1's signed bytes replayed as version 2
    fleet.write()
    assert (V2, 4, "version", "name_mismatch", "error") in chain_errors(fleet)


def test_version_one_must_be_signed_by_its_own_root_threshold(fleet: FleetRepoBuilder) -> None:
    fleet.root_signers_of[1] = [fleet.root_keys[0]]
    fleet.write()
    assert chain_errors(fleet) == [(V1, None, "signatures", "below_threshold", "error")]


# --- the walk a robot makes ---------------------------------------------------------------------------


def _pin(fleet: FleetRepoBuilder) -> Pin:
    root_1, root_2, _ = fleet.root_keys
    refs = fleet.key_refs(root_1, root_2)
    return Pin(1, RootKeys.model_validate({"threshold": 2, "keys": refs}), fleet="demo")


def test_robot_offline_across_two_rotations_walks_to_the_newest(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.rotate()
    fleet.rotate(root={"threshold": 1, "keys": fleet.key_refs(fleet.root_keys[2])})
    fleet.rotate()
    fleet.write()
    chain = fleet.root_versions()
    with keys.keyring(fleet.root_keys) as keyring:
        first = verify_first(_pin(fleet), chain[0], keyring)
        newest = walk(first, chain, keyring)
    assert newest.version == 4
    assert newest.model.root.fingerprints == {fleet.root_keys[2].fingerprint}


def test_old_trust_root_version_replayed_is_refused(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    fleet.rotate()
    fleet.write()
    v1, v2 = fleet.root_versions()
    with keys.keyring(fleet.root_keys) as keyring:
        held = walk(verify_first(_pin(fleet), v1, keyring), [v2], keyring)
        assert walk(held, [v1], keyring).version == 2  # an older version never replaces the held one
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, RootVersion(3, v1.raw, v1.signatures), keyring)
    assert (caught.value.reason, caught.value.diagnostics[0].field) == (Reason.TRUST_ROOT_VERSION, "version")


def test_pinned_keys_that_differ_from_version_one_are_refused(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    root_1, _, root_3 = fleet.root_keys
    wrong = Pin(1, RootKeys.model_validate({"threshold": 1, "keys": fleet.key_refs(root_1, root_3)}))
    with keys.keyring(fleet.root_keys) as keyring, pytest.raises(TrustChainRejected) as caught:
        verify_first(wrong, v1, keyring)
    assert (caught.value.diagnostics[0].file, caught.value.diagnostics[0].field) == (V1, "root")


def test_chain_of_another_fleet_is_refused(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    pin = Pin(1, _pin(fleet).root, fleet="other-fleet")
    with keys.keyring(fleet.root_keys) as keyring, pytest.raises(TrustChainRejected) as caught:
        verify_first(pin, v1, keyring)
    assert caught.value.reason is Reason.WRONG_FLEET


def test_self_signed_first_version_needs_no_pin(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    with keys.keyring(fleet.root_keys) as keyring:
        assert verify_self_signed(v1, keyring).version == 1
