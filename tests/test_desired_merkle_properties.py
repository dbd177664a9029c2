"""Seeded properties of the Merkle inclusion proofs at fleet sizes, one bit at a time.

``test_desired_merkle.py`` pins the tree shape against RFC 6962 for every size up to 33. Here the
sizes are the ones fleets have (hundreds to a few thousand, just past and below powers of two),
and each seed draws leaves to prove and a single bit or field to change: every honest proof
verifies, and any one flipped bit in the leaf, a sibling or the root, any other index or tree size,
or a proof lifted from a tree of the same size over other bundles, fails. A proof also survives its
trip through ``proof.json`` (canonical bytes back to the same model) and nothing else does.

The hashes alone do not bind the tree size: a leaf in a full left subtree has the same audit path
in a tree of n and of n + 1 leaves (RFC 9162 verification has the same property), which is why
``verify_bundle`` compares the proof's ``leaves`` with the signed root's
(``test_desired_proofs_and_replay.py``); the last test here pins that, so nobody drops the check.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from pydantic import ValidationError

from fleetcd.desired import canonical_bytes
from fleetcd.desired.merkle import (
    MAX_LEAVES,
    MAX_PROOF_DEPTH,
    InclusionProof,
    MerkleTree,
    build_tree,
    leaf_data,
    verify_inclusion,
)

SIZES = [63, 64, 65, 127, 128, 129, 1000, 1023, 1024, 1025, 2049]
SEEDS = range(12)


def fleet_leaves(n: int, salt: str = "") -> list[bytes]:
    return [
        leaf_data(f"robot-{i:05d}", hashlib.sha256(f"{salt}bundle-{i}".encode()).hexdigest())
        for i in range(n)
    ]


TREES: dict[int, tuple[list[bytes], MerkleTree]] = {}


def tree_of(n: int) -> tuple[list[bytes], MerkleTree]:
    """Built once per size for the whole module (2049 leaves is ~4,000 hashes)."""
    if n not in TREES:
        leaves = fleet_leaves(n)
        TREES[n] = (leaves, build_tree(leaves))
    return TREES[n]


def flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def flip_hex_bit(hex_digest: str, bit: int) -> str:
    return flip_bit(bytes.fromhex(hex_digest), bit).hex()


@pytest.mark.parametrize("n", SIZES, ids=[f"n={n}" for n in SIZES])
def test_every_leaf_of_a_fleet_sized_tree_proves_with_a_path_no_longer_than_its_height(n: int) -> None:
    leaves, tree = tree_of(n)
    height = (n - 1).bit_length()
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert len(proof.path) <= height
        assert verify_inclusion(leaf, proof, tree.root), f"leaf {index} of {n}"


@pytest.mark.parametrize("seed", SEEDS)
def test_one_flipped_bit_anywhere_in_leaf_sibling_or_root_fails(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice(SIZES)
    leaves, tree = tree_of(n)
    for _ in range(20):
        index = rng.randrange(n)
        proof = tree.proof(index)
        leaf = leaves[index]
        assert not verify_inclusion(flip_bit(leaf, rng.randrange(len(leaf) * 8)), proof, tree.root)
        assert not verify_inclusion(leaf, proof, flip_hex_bit(tree.root, rng.randrange(256)))
        step = rng.randrange(len(proof.path))
        path = list(proof.path)
        path[step] = flip_hex_bit(path[step], rng.randrange(256))
        bent = InclusionProof(leaf_index=index, leaves=n, path=path)
        assert not verify_inclusion(leaf, bent, tree.root), f"n={n} index={index} step={step}"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_proof_claiming_any_other_index_or_cut_short_fails(seed: int) -> None:
    rng = random.Random(1000 + seed)
    n = rng.choice(SIZES)
    leaves, tree = tree_of(n)
    for _ in range(20):
        index = rng.randrange(n)
        proof = tree.proof(index)
        other = (index + 1 + rng.randrange(n - 1)) % n  # any index but this one
        moved = InclusionProof(leaf_index=other, leaves=n, path=proof.path)
        assert not verify_inclusion(leaves[index], moved, tree.root), f"n={n} {index} as {other}"
        shorter = InclusionProof(leaf_index=index, leaves=n, path=proof.path[:-1])
        assert not verify_inclusion(leaves[index], shorter, tree.root), f"n={n} {index} one step short"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_proof_from_a_tree_of_the_same_size_over_other_bundles_fails(seed: int) -> None:
    """A host keeping an older tree of the same fleet cannot use its proofs under the new root."""
    rng = random.Random(2000 + seed)
    n = rng.choice([65, 129, 1000])
    leaves, tree = tree_of(n)
    changed = list(leaves)
    moved = rng.randrange(n)
    changed[moved] = leaf_data(f"robot-{moved:05d}", hashlib.sha256(b"the next release").hexdigest())
    older = build_tree(changed)
    assert older.root != tree.root
    for index in {moved, rng.randrange(n), rng.randrange(n)}:
        old_proof = older.proof(index)
        assert verify_inclusion(changed[index], old_proof, older.root)
        assert not verify_inclusion(changed[index], old_proof, tree.root)


def test_only_the_changed_leafs_path_and_those_beside_it_change() -> None:
    """Changing one bundle moves the root and the paths that pass through its ancestors, no others."""
    leaves, tree = tree_of(1025)
    changed = list(leaves)
    changed[700] = leaf_data("robot-00700", "f" * 64)
    after = build_tree(changed)
    for index in (0, 511, 699, 700, 701, 1023, 1024):
        before_path, after_path = tree.proof(index).path, after.proof(index).path
        differing = sum(a != b for a, b in zip(before_path, after_path, strict=True))
        assert differing == (0 if index == 700 else 1), f"index {index}"


@pytest.mark.parametrize("seed", range(4))
def test_a_proof_round_trips_through_its_canonical_bytes(seed: int) -> None:
    rng = random.Random(3000 + seed)
    n = rng.choice(SIZES)
    leaves, tree = tree_of(n)
    index = rng.randrange(n)
    proof = tree.proof(index)
    raw = canonical_bytes(proof)
    assert b" " not in raw and raw.startswith(b'{"leaf_index":')
    again = InclusionProof.model_validate_json(raw)
    assert again == proof and canonical_bytes(again) == raw
    assert verify_inclusion(leaves[index], again, tree.root)


@pytest.mark.parametrize("n", [1, 2, 3, *SIZES])
def test_proof_json_written_directly_is_the_canonical_bytes_of_the_proof_model(n: int) -> None:
    """``proof.json`` as the controller writes it (:meth:`MerkleTree.proof_bytes`, no model per
    robot) is byte for byte ``canonical_bytes`` of the validated proof, for every leaf of trees of
    one leaf, odd sizes (a node carried up) and powers of two; and a robot parses it to that proof."""
    leaves, tree = tree_of(n) if n in SIZES else (fleet_leaves(n), build_tree(fleet_leaves(n)))
    for index in range(n) if n < 200 else random.Random(n).sample(range(n), 200):
        raw = tree.proof_bytes(index)
        assert raw == canonical_bytes(tree.proof(index))
        assert verify_inclusion(leaves[index], InclusionProof.model_validate_json(raw), tree.root)
    with pytest.raises(IndexError):
        tree.proof_bytes(n)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"leaf_index": True, "leaves": 2, "path": []}, id="bool-index"),
        pytest.param({"leaf_index": "0", "leaves": 2, "path": []}, id="string-index"),
        pytest.param({"leaf_index": 0.0, "leaves": 2, "path": []}, id="float-index"),
        pytest.param({"leaf_index": -1, "leaves": 2, "path": []}, id="negative-index"),
        pytest.param({"leaf_index": 0, "leaves": 0, "path": []}, id="empty-tree"),
        pytest.param({"leaf_index": 0, "leaves": MAX_LEAVES + 1, "path": []}, id="tree-too-big"),
        pytest.param({"leaf_index": 0, "leaves": 2, "path": ["AB" * 32]}, id="upper-case-hex"),
        pytest.param({"leaf_index": 0, "leaves": 2, "path": ["ab" * 31]}, id="short-sibling"),
        pytest.param({"leaf_index": 0, "leaves": 2, "path": ["zz" * 32]}, id="not-hex"),
        pytest.param({"leaf_index": 0, "leaves": 2, "path": ["ab" * 32] * (MAX_PROOF_DEPTH + 1)}, id="deep"),
        pytest.param({"leaf_index": 0, "leaves": 2, "path": [], "root": "ab" * 32}, id="extra-field"),
    ],
)
def test_a_malformed_proof_is_a_validation_error_never_a_proof(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InclusionProof.model_validate(fields)


def test_a_single_leaf_tree_proves_with_an_empty_path_and_nothing_else_does() -> None:
    leaf = leaf_data("robot-solo", "a" * 64)
    tree = build_tree([leaf])
    proof = tree.proof(0)
    assert proof.path == [] and proof.leaves == 1
    assert verify_inclusion(leaf, proof, tree.root)
    padded = InclusionProof(leaf_index=0, leaves=1, path=[tree.root])
    assert not verify_inclusion(leaf, padded, tree.root)


def test_the_tree_size_is_bound_by_the_signed_root_not_by_the_hashes() -> None:
    leaves, tree = tree_of(1000)
    proof = tree.proof(3)  # inside the full left subtree of 512
    claimed = InclusionProof(leaf_index=3, leaves=1001, path=proof.path)
    assert verify_inclusion(leaves[3], claimed, tree.root)
