"""A git host (or a thief of old commits) replaying, mixing and tampering with desired state.

The robot holds only its pinned controller key and the last serial it accepted; everything else
comes from the server. These are the ways a host can recombine validly signed pieces it has seen —
proofs from another tree or another robot, an old root with a new bundle, a whole earlier delivery
— and the ways it can edit the unsigned parts (the proof, the sizes). Each must be refused with the
reason and file the robot reports, by the agent's verifier (``verify_bundle``) with real gpg.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from fleetcd.desired import BundleDeployment, BundleExpired, build_signed_bundles
from fleetcd.desired.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_DEPLOYMENTS,
    MAX_PROOF_BYTES,
    MAX_ROOT_BYTES,
    MAX_ROOT_SIGNATURE_BYTES,
)
from fleetcd.desired.merkle import MAX_PROOF_DEPTH
from fleetcd.errors import InvalidContent
from fleetcd.reasons import Reason
from tests.desiredworld import EXPIRES, FLEET, ISSUED, NOW, SERIAL, Delivery, World, bundle, signed_bundle
from tests.desiredworld import world as world  # the module fixture

ROBOTS = tuple(f"robot-{c}" for c in "abcdefg")  # 7 leaves: paths of 2 and 3 steps, an odd one out


@pytest.fixture(scope="module")
def fleet(world: World) -> dict[str, Delivery]:
    """Serial SERIAL for seven robots."""
    return world.publish(ROBOTS)


@pytest.fixture(scope="module")
def newer(world: World) -> dict[str, Delivery]:
    """Serial SERIAL + 1 for the same robots: what the controller signs next."""
    return world.publish(ROBOTS, serial=SERIAL + 1)


def proof_of(delivery: Delivery) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(delivery.proof)
    return parsed


def with_proof(delivery: Delivery, proof: dict[str, Any]) -> Delivery:
    return replace(delivery, proof=json.dumps(proof, sort_keys=True, separators=(",", ":")).encode())


def refused(world: World, delivery: Delivery, **kwargs: Any) -> tuple[Reason, str]:
    error = world.rejected(delivery, **kwargs)
    return error.reason, error.diagnostics[0].file


# --- the inclusion proof, the one file the signature does not cover ---------------------------------


def test_every_robot_of_an_odd_sized_tree_verifies(world: World, fleet: dict[str, Delivery]) -> None:
    for robot in ROBOTS:
        assert world.verify(fleet[robot]).bundle.device == robot


def test_bundle_with_swapped_inclusion_proof_steps_refused(world: World, fleet: dict[str, Delivery]) -> None:
    proof = proof_of(fleet["robot-a"])
    assert len(proof["path"]) >= 2
    proof["path"] = list(reversed(proof["path"]))
    assert refused(world, with_proof(fleet["robot-a"], proof)) == (Reason.NOT_INCLUDED, "proof.json")


def test_bundle_with_one_sibling_hash_altered_refused(world: World, fleet: dict[str, Delivery]) -> None:
    proof = proof_of(fleet["robot-c"])
    sibling = proof["path"][-1]
    proof["path"][-1] = ("0" if sibling[0] != "0" else "1") + sibling[1:]
    assert refused(world, with_proof(fleet["robot-c"], proof)) == (Reason.NOT_INCLUDED, "proof.json")


@pytest.mark.parametrize("index", [0, 2, 6], ids=["first", "middle", "odd-one-out"])
def test_a_proof_moved_to_another_leaf_index_refused(
    world: World, fleet: dict[str, Delivery], index: int
) -> None:
    proof = proof_of(fleet["robot-b"])  # robot-b sits at index 1
    proof["leaf_index"] = index
    assert refused(world, with_proof(fleet["robot-b"], proof))[0] is Reason.NOT_INCLUDED


def test_a_proof_claiming_another_tree_size_than_the_signed_root_refused(
    world: World, fleet: dict[str, Delivery]
) -> None:
    # A genuine proof of robot-a, but from a four-robot tree: right shape, wrong tree.
    small = world.publish(ROBOTS[:4])["robot-a"]
    assert refused(world, replace(fleet["robot-a"], proof=small.proof))[0] is Reason.NOT_INCLUDED
    proof = proof_of(fleet["robot-a"])
    proof["leaves"] = 4
    assert refused(world, with_proof(fleet["robot-a"], proof))[0] is Reason.NOT_INCLUDED


def test_a_proof_with_a_step_added_or_dropped_refused(world: World, fleet: dict[str, Delivery]) -> None:
    proof = proof_of(fleet["robot-e"])
    longer = {**proof, "path": [*proof["path"], proof["path"][0]]}
    shorter = {**proof, "path": proof["path"][:-1]}
    for tampered in (longer, shorter):
        assert refused(world, with_proof(fleet["robot-e"], tampered))[0] is Reason.NOT_INCLUDED


def test_a_proof_deeper_than_any_tree_is_refused_as_invalid_before_any_hashing(
    world: World, fleet: dict[str, Delivery]
) -> None:
    proof = proof_of(fleet["robot-a"])
    proof["path"] = ["ab" * 32] * (MAX_PROOF_DEPTH + 1)
    assert refused(world, with_proof(fleet["robot-a"], proof)) == (Reason.BUNDLE_INVALID, "proof.json")


@pytest.mark.parametrize(
    "text",
    [b'{"leaf_index": 0, "leaves": 7, "path": []}', b"[]", b"", b'{"leaf_index":0}'],
    ids=["not-canonical", "array", "empty", "fields-missing"],
)
def test_a_proof_file_that_is_not_a_canonical_proof_is_refused_naming_it(
    world: World, fleet: dict[str, Delivery], text: bytes
) -> None:
    reason, file = refused(world, replace(fleet["robot-a"], proof=text))
    assert (reason, file) == (Reason.BUNDLE_INVALID, "proof.json")


# --- recombining signed pieces --------------------------------------------------------------------------


def test_a_new_bundle_under_the_previous_signed_root_refused(
    world: World, fleet: dict[str, Delivery], newer: dict[str, Delivery]
) -> None:
    mixed = replace(newer["robot-a"], root=fleet["robot-a"].root, signature=fleet["robot-a"].signature)
    assert refused(world, mixed)[0] is Reason.NOT_INCLUDED


def test_the_previous_bundle_and_proof_under_the_new_signed_root_refused(
    world: World, fleet: dict[str, Delivery], newer: dict[str, Delivery]
) -> None:
    mixed = replace(fleet["robot-a"], root=newer["robot-a"].root, signature=newer["robot-a"].signature)
    assert refused(world, mixed)[0] is Reason.NOT_INCLUDED


def test_the_new_root_with_the_previous_roots_signature_refused(
    world: World, fleet: dict[str, Delivery], newer: dict[str, Delivery]
) -> None:
    mixed = replace(newer["robot-a"], signature=fleet["robot-a"].signature)
    assert refused(world, mixed) == (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc")


def test_a_root_signed_by_a_release_signer_is_not_a_controller_root(
    world: World, fleet: dict[str, Delivery]
) -> None:
    # signer1 is trusted, but for releases: a role it does not hold is no trust at all.
    root = fleet["robot-a"].root
    forged = replace(fleet["robot-a"], signature=world.factory.sign(root, world.keys["signer1"]))
    reason, file = refused(world, forged)
    assert (reason, file) == (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc")
    assert world.keys["signer1"].fingerprint in world.rejected(forged).diagnostics[0].message


def test_a_signature_over_the_bundle_is_not_a_signature_over_the_root(
    world: World, fleet: dict[str, Delivery]
) -> None:
    good = fleet["robot-a"]
    swapped = replace(good, signature=world.factory.sign(good.bundle, world.keys["controller"]))
    assert refused(world, swapped)[0] is Reason.ROOT_SIGNATURE_INVALID


def test_another_robots_whole_newer_delivery_refused(world: World, newer: dict[str, Delivery]) -> None:
    stolen = newer["robot-b"]
    assert refused(world, stolen, device="robot-a")[0] is Reason.NOT_INCLUDED


# --- serials: replay and freeze ---------------------------------------------------------------------------


def test_a_whole_earlier_delivery_replayed_after_a_newer_one_is_a_rollback(
    world: World, fleet: dict[str, Delivery], newer: dict[str, Delivery]
) -> None:
    accepted = world.verify(newer["robot-a"])
    reason, file = refused(world, fleet["robot-a"], last_serial=accepted.root.serial)
    assert (reason, file) == (Reason.SERIAL_ROLLBACK, "root.json")


def test_the_current_delivery_replayed_is_unchanged_and_not_applied_twice(
    world: World, newer: dict[str, Delivery]
) -> None:
    first = world.verify(newer["robot-a"])
    again = world.verify(
        newer["robot-a"], last_serial=first.root.serial, last_bundle_sha256=first.bundle_sha256
    )
    assert not first.unchanged
    assert again.unchanged


def test_the_same_serial_with_another_robots_bytes_is_reuse_not_unchanged(
    world: World, fleet: dict[str, Delivery]
) -> None:
    mine = world.verify(fleet["robot-a"])
    # A compromised controller signs a second tree at the same serial with other bytes for robot-a.
    other = world.publish(("robot-a",), serial=SERIAL, deployment=world.deployment(generation=2))["robot-a"]
    assert other.bundle != fleet["robot-a"].bundle
    reason, _ = refused(world, other, last_serial=SERIAL, last_bundle_sha256=mine.bundle_sha256)
    assert reason is Reason.SERIAL_REUSED


def test_a_serial_that_skips_ahead_is_accepted(world: World, fleet: dict[str, Delivery]) -> None:
    # Robots whose bundle did not change keep theirs: the next one they see may be many serials on.
    later = world.publish(("robot-a",), serial=SERIAL + 40)["robot-a"]
    assert world.verify(later, last_serial=SERIAL).root.serial == SERIAL + 40


def test_an_expired_delivery_replayed_to_a_freshly_provisioned_robot_is_refused(
    world: World, fleet: dict[str, Delivery]
) -> None:
    with pytest.raises(BundleExpired):
        world.verify(fleet["robot-a"], last_serial=None, now=EXPIRES + timedelta(seconds=1))


def test_a_clock_set_back_cannot_revive_a_replay_past_the_robots_time_floor(
    world: World, fleet: dict[str, Delivery]
) -> None:
    # The robot once saw time EXPIRES + 1 h (its floor); a clock reset to NOW must not bring back
    # the bundle that expired in between.
    with pytest.raises(BundleExpired):
        world.verify(fleet["robot-a"], now=NOW, time_floor=EXPIRES + timedelta(hours=1))


# --- sizes: refused from the length alone ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "cap", "file"),
    [
        ("bundle", MAX_BUNDLE_BYTES, "bundle.json"),
        ("root", MAX_ROOT_BYTES, "root.json"),
        ("signature", MAX_ROOT_SIGNATURE_BYTES, "root.json.asc"),
        ("proof", MAX_PROOF_BYTES, "proof.json"),
    ],
    ids=["bundle", "root", "root-signature", "proof"],
)
def test_a_file_one_byte_over_its_cap_is_refused_naming_it(
    world: World, fleet: dict[str, Delivery], field: str, cap: int, file: str
) -> None:
    oversized = replace(fleet["robot-a"], **{field: b"x" * (cap + 1)})
    assert refused(world, oversized) == (Reason.TOO_LARGE, file)


def test_a_signed_bundle_with_more_deployments_than_the_bound_is_refused(world: World) -> None:
    # Even when the (compromised) controller signs it: the bound holds on the robot.
    one = json.loads(world.publish(("robot-a",))["robot-a"].bundle)
    template = one["deployments"][0]
    one["deployments"] = [
        {**template, "deployment_id": f"d-{i:04d}", "app": f"app{i}"} for i in range(MAX_DEPLOYMENTS + 1)
    ]
    raw = json.dumps(one, sort_keys=True, separators=(",", ":")).encode()
    assert len(raw) <= MAX_BUNDLE_BYTES  # refused for the count, not the size
    reason, file = refused(world, signed_bundle(world, raw))
    assert (reason, file) == (Reason.BUNDLE_INVALID, "bundle.json")


def test_a_signed_bundle_giving_one_app_twice_is_refused(world: World) -> None:
    one = json.loads(world.publish(("robot-a",))["robot-a"].bundle)
    template = one["deployments"][0]
    one["deployments"] = [template, {**template, "deployment_id": "d-0002"}]
    raw = json.dumps(one, sort_keys=True, separators=(",", ":")).encode()
    assert refused(world, signed_bundle(world, raw)) == (Reason.BUNDLE_INVALID, "bundle.json")


# --- numbers and windows in a bundle the controller signed ------------------------------------------------


def _deployment_with_config(world: World, config: dict[str, Any]) -> dict[str, Any]:
    data = world.deployment().model_dump()
    data["config"] = config
    return data


@pytest.mark.parametrize(
    "config",
    [{"n": 2**64 - 1}, {"n": -(2**63)}, {"n": 1.5e308}, {"a": [{"b": [0, -1, 2**63]}]}],
    ids=["uint64-max", "int64-min", "largest-floats", "nested-in-range"],
)
def test_config_numbers_a_64_bit_field_holds_are_kept(world: World, config: dict[str, Any]) -> None:
    assert BundleDeployment.model_validate(_deployment_with_config(world, config)).config == config


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"n": 2**64}, "config.n"),
        ({"n": -(2**63) - 1}, "config.n"),
        ({"a": [{"b": [0, 2**64]}]}, "config.a[0].b[1]"),
        ({"n": float("nan")}, "config.n"),
        ({"n": float("inf")}, "config.n"),
    ],
    ids=["uint64-max-plus-one", "int64-min-minus-one", "nested-deep", "nan", "infinity"],
)
def test_a_config_number_no_64_bit_field_holds_is_refused_naming_where(
    world: World, config: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        BundleDeployment.model_validate(_deployment_with_config(world, config))
    assert where in str(caught.value)


def test_a_nan_in_a_signed_bundles_json_is_refused(world: World) -> None:
    raw = world.publish(("robot-a",))["robot-a"].bundle.replace(b'"max_speed":1.5', b'"max_speed":NaN')
    assert refused(world, signed_bundle(world, raw)) == (Reason.BUNDLE_INVALID, "bundle.json")


def test_a_signed_bundle_that_expires_when_it_is_issued_is_refused(world: World) -> None:
    one = json.loads(world.publish(("robot-a",))["robot-a"].bundle)
    one["expires_at"] = one["issued_at"]
    raw = json.dumps(one, sort_keys=True, separators=(",", ":")).encode()
    assert refused(world, signed_bundle(world, raw)) == (Reason.BUNDLE_INVALID, "bundle.json")


def test_the_controller_refuses_to_sign_a_bundle_over_the_robots_cap_naming_the_robot(world: World) -> None:
    huge = world.deployment(config={"blob": "x" * MAX_BUNDLE_BYTES})
    bundles = {"robot-a": bundle("robot-a", SERIAL, [huge]), "robot-b": bundle("robot-b", SERIAL, [])}
    signed: list[bytes] = []
    with pytest.raises(InvalidContent) as caught:
        build_signed_bundles(FLEET, bundles, SERIAL, ISSUED, EXPIRES, lambda data: signed.append(data) or b"")
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.reason) == ("bundle.json of robot-a", Reason.TOO_LARGE)
    assert signed == []  # nothing signed: the root would have vouched for a bundle no robot reads
