"""The four files of a robot's delivery as bytes: canonical form, the builder's output, cut or padded.

Controller and agent must agree on every byte that is hashed or signed, so ``canonical_bytes`` has
to be a fixed point (parse and re-encode gives the same bytes) with sorted keys at every depth and
UTF-8 kept as UTF-8. ``build_signed_bundles`` must sign exactly the root it returns, once, and give
each robot the proof of its own bundle at its place in device order. And a git host that cuts or
pads any of the four files (``bundle.json``, ``root.json``, ``root.json.asc``, ``proof.json``) —
or a controller that signs such bytes — must be refused by the agent's verifier with real gpg,
with the reason and file the robot reports.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fleetcd.desired import Bundle, SignedRoot, build_signed_bundles, canonical_bytes, verify_inclusion
from fleetcd.desired.merkle import InclusionProof, leaf_data
from fleetcd.reasons import Reason
from tests.desiredworld import (
    EXPIRES,
    FLEET,
    ISSUED,
    SERIAL,
    Delivery,
    World,
    bundle,
    sign_leaves,
    signed_root,
)
from tests.desiredworld import world as world  # the module fixture

ROBOTS = ("robot-c", "robot-a", "robot-e", "robot-b", "robot-d")  # 5 leaves, given out of order


@pytest.fixture(scope="module")
def delivery(world: World) -> Delivery:
    return world.publish(ROBOTS)["robot-a"]


# --- canonical bytes ------------------------------------------------------------------------------


def keys_sorted_everywhere(raw: bytes) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys), keys
        return dict(pairs)

    json.loads(raw, object_pairs_hook=hook)
    return True


def test_a_bundle_is_a_fixed_point_of_its_canonical_bytes(world: World) -> None:
    config = {"zone": "Zürich-Süd", "limits": {"z": 1, "a": [3, {"y": 2.5, "b": None}]}, "on": True}
    deployment = world.deployment(config=config, not_before=ISSUED + timedelta(hours=2))
    raw = canonical_bytes(bundle("robot-a", SERIAL, [deployment]))
    parsed = Bundle.model_validate_json(raw)
    assert canonical_bytes(parsed) == raw
    assert parsed.deployments[0].config == config
    assert keys_sorted_everywhere(raw)
    assert b"\n" not in raw and b": " not in raw and b", " not in raw
    assert "Zürich-Süd".encode() in raw and b"\\u00fc" not in raw  # UTF-8, not \u escapes


def test_a_signed_root_is_a_fixed_point_of_its_canonical_bytes(delivery: Delivery) -> None:
    root = SignedRoot.model_validate_json(delivery.root)
    assert canonical_bytes(root) == delivery.root
    assert keys_sorted_everywhere(delivery.root)


# --- the builder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_builder_signs_exactly_the_root_it_returns_and_proves_every_robot(seed: int) -> None:
    rng = random.Random(seed)
    devices = [f"amr-{n:03d}" for n in rng.sample(range(1000), rng.randrange(1, 40))]
    bundles = {d: bundle(d, SERIAL, []) for d in devices}
    signed: list[bytes] = []

    def sign(data: bytes) -> bytes:
        signed.append(data)
        return b"signature over " + hashlib.sha256(data).digest()

    root_bytes, signature, per_device = build_signed_bundles(FLEET, bundles, SERIAL, ISSUED, EXPIRES, sign)
    assert signed == [root_bytes]
    assert signature == b"signature over " + hashlib.sha256(root_bytes).digest()
    root = SignedRoot.model_validate_json(root_bytes)
    assert (root.serial, root.leaves, root.fleet) == (SERIAL, len(devices), FLEET)
    assert set(per_device) == set(devices)
    for position, device in enumerate(sorted(devices)):
        raw, proof_bytes = per_device[device]
        assert raw == canonical_bytes(bundles[device])
        proof = InclusionProof.model_validate_json(proof_bytes)
        assert proof.leaf_index == position and proof.leaves == len(devices)
        leaf = leaf_data(device, hashlib.sha256(raw).hexdigest())
        assert verify_inclusion(leaf, proof, root.merkle_root)
        if len(devices) > 1:
            other = sorted(devices)[(position + 1) % len(devices)]
            theirs = leaf_data(device, hashlib.sha256(per_device[other][0]).hexdigest())
            assert not verify_inclusion(theirs, proof, root.merkle_root)


def test_the_builder_refuses_a_bundle_of_another_serial_naming_the_robot() -> None:
    bundles = {"robot-a": bundle("robot-a", SERIAL, []), "robot-b": bundle("robot-b", SERIAL - 1, [])}
    with pytest.raises(ValueError, match=rf"'robot-b'.*serial {SERIAL - 1}"):
        build_signed_bundles(FLEET, bundles, SERIAL, ISSUED, EXPIRES, lambda _: b"")


def test_one_robots_new_bundle_changes_the_root_but_not_the_other_robots_bytes() -> None:
    bundles = {d: bundle(d, SERIAL, []) for d in ("robot-a", "robot-b", "robot-c")}
    root, _, before = build_signed_bundles(FLEET, bundles, SERIAL, ISSUED, EXPIRES, lambda _: b"")
    later = bundles["robot-b"].model_copy(update={"expires_at": EXPIRES + timedelta(days=1)})
    root2, _, after = build_signed_bundles(
        FLEET, {**bundles, "robot-b": later}, SERIAL, ISSUED, EXPIRES, lambda _: b""
    )
    assert root2 != root
    assert after["robot-a"][0] == before["robot-a"][0] and after["robot-c"][0] == before["robot-c"][0]
    assert after["robot-b"][0] != before["robot-b"][0]


# --- a host that cuts or pads a file --------------------------------------------------------------


def _cut(raw: bytes) -> bytes:
    return raw[:-1]


def _half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _empty(raw: bytes) -> bytes:
    return b""


def _newline(raw: bytes) -> bytes:
    return raw + b"\n"


def _twice(raw: bytes) -> bytes:
    return raw + raw


EDITS: dict[str, Callable[[bytes], bytes]] = {
    "last-byte-cut": _cut,
    "cut-in-half": _half,
    "emptied": _empty,
    "newline-appended": _newline,
    "doubled": _twice,
}
FILES = {
    # field of Delivery: (reason, file the robot names)
    "bundle": (Reason.NOT_INCLUDED, "proof.json"),  # the proof no longer covers these bytes
    "root": (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc"),
    "proof": (Reason.BUNDLE_INVALID, "proof.json"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("field", FILES, ids=FILES.keys())
def test_a_host_cutting_or_padding_a_file_is_refused_naming_it(
    world: World, delivery: Delivery, field: str, edit: Callable[[bytes], bytes]
) -> None:
    edited = replace(delivery, **{field: edit(getattr(delivery, field))})
    error = world.rejected(edited)
    assert (error.reason, error.diagnostics[0].file) == FILES[field]


@pytest.mark.parametrize(
    "edit",
    [_half, _empty, _twice, lambda raw: b" " + raw],
    ids=["cut-in-half", "emptied", "doubled", "indented"],
)
def test_a_root_signature_cut_doubled_or_indented_is_refused(
    world: World, delivery: Delivery, edit: Callable[[bytes], bytes]
) -> None:
    error = world.rejected(replace(delivery, signature=edit(delivery.signature)))
    assert (error.reason, error.diagnostics[0].file) == (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc")


def test_a_root_signature_with_a_trailing_newline_still_verifies(world: World, delivery: Delivery) -> None:
    """Whitespace around the armor carries no meaning (a git checkout may add or drop it)."""
    assert world.verify(replace(delivery, signature=delivery.signature + b"\n")).root.serial == SERIAL


# --- a controller that signs bytes not in canonical form ------------------------------------------


def _reordered(raw: bytes) -> bytes:
    return json.dumps(dict(reversed(json.loads(raw).items())), separators=(",", ":")).encode()


def _pretty(raw: bytes) -> bytes:
    return json.dumps(json.loads(raw), sort_keys=True, indent=1).encode()


def _bom(raw: bytes) -> bytes:
    return b"\xef\xbb\xbf" + raw


SIGNED_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "last-byte-cut": _cut,
    "newline-appended": _newline,
    "keys-reordered": _reordered,
    "pretty-printed": _pretty,
    "byte-order-mark": _bom,
}


@pytest.mark.parametrize("edit", SIGNED_EDITS.values(), ids=SIGNED_EDITS.keys())
def test_a_validly_signed_root_not_in_canonical_form_is_refused(
    world: World, delivery: Delivery, edit: Callable[[bytes], bytes]
) -> None:
    error = world.rejected(signed_root(world, edit(delivery.root)))
    assert (error.reason, error.diagnostics[0].file) == (Reason.BUNDLE_INVALID, "root.json")


@pytest.mark.parametrize("edit", SIGNED_EDITS.values(), ids=SIGNED_EDITS.keys())
def test_a_validly_included_bundle_not_in_canonical_form_is_refused(
    world: World, delivery: Delivery, edit: Callable[[bytes], bytes]
) -> None:
    leaves: dict[str, bytes | Bundle] = {
        "robot-a": edit(delivery.bundle),
        "robot-b": bundle("robot-b", SERIAL, []),
    }
    error = world.rejected(sign_leaves(world, leaves)["robot-a"])
    assert (error.reason, error.diagnostics[0].file) == (Reason.BUNDLE_INVALID, "bundle.json")
