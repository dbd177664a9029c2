"""The Merkle tree behind the one-signature trust chain: RFC 6962 shape, proofs, domain separation.

The tree is checked against an independent recursive RFC 6962 definition for every size 1..33
(every split case up to two full levels past 32), every index proves, and a proof never carries
over to another index, another leaf, another device or a leaf dressed up as an inner node.
"""

from __future__ import annotations

import hashlib

import pytest

from fleetcd.desired.merkle import (
    InclusionProof,
    build_tree,
    hash_leaf,
    hash_node,
    leaf_data,
    verify_inclusion,
)

SIZES = list(range(1, 34))


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) straight from RFC 6962 §2.1: split at the largest power of two below n."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:split]) + rfc6962_root(leaves[split:])).digest()


def leaves_of(n: int) -> list[bytes]:
    return [leaf_data(f"robot-{i:03d}", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(n)]


@pytest.mark.parametrize("n", SIZES, ids=[f"n={n}" for n in SIZES])
def test_root_matches_the_rfc6962_definition(n: int) -> None:
    leaves = leaves_of(n)
    assert build_tree(leaves).root == rfc6962_root(leaves).hex()


@pytest.mark.parametrize("n", SIZES, ids=[f"n={n}" for n in SIZES])
def test_every_index_proves_and_no_proof_fits_another_index_or_leaf(n: int) -> None:
    leaves = leaves_of(n)
    tree = build_tree(leaves)
    for index in range(n):
        proof = tree.proof(index)
        assert verify_inclusion(leaves[index], proof, tree.root), f"index {index}"
        assert not verify_inclusion(leaf_data("intruder", "0" * 64), proof, tree.root)
        if n > 1:
            other = (index + 1) % n
            assert not verify_inclusion(leaves[other], proof, tree.root), f"leaf {other} at {index}"
            moved = InclusionProof(leaf_index=other, leaves=n, path=proof.path)
            assert not verify_inclusion(leaves[index], moved, tree.root), f"index {index} as {other}"


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33], ids=lambda n: f"n={n}")
def test_proof_is_logarithmic(n: int) -> None:
    tree = build_tree(leaves_of(n))
    assert max(len(tree.proof(i).path) for i in range(n)) == (n - 1).bit_length()


def test_proof_binds_the_device_not_just_the_bundle_digest() -> None:
    digest = hashlib.sha256(b"bundle").hexdigest()
    tree = build_tree([leaf_data("robot-a", digest), leaf_data("robot-b", "1" * 64)])
    assert verify_inclusion(leaf_data("robot-a", digest), tree.proof(0), tree.root)
    assert not verify_inclusion(leaf_data("robot-b", digest), tree.proof(0), tree.root)


def test_inner_node_cannot_pass_as_a_leaf() -> None:
    """Second-preimage attack: the two children's hashes presented as one leaf of a 1-leaf tree."""
    a, b = leaves_of(2)
    tree = build_tree([a, b])
    forged = hash_leaf(a) + hash_leaf(b)
    assert hash_node(hash_leaf(a), hash_leaf(b)).hex() == tree.root
    assert not verify_inclusion(forged, InclusionProof(leaf_index=0, leaves=1, path=[]), tree.root)


def test_proof_with_extra_or_missing_steps_fails() -> None:
    leaves = leaves_of(5)
    tree = build_tree(leaves)
    proof = tree.proof(2)
    longer = InclusionProof(leaf_index=2, leaves=5, path=[*proof.path, proof.path[0]])
    shorter = InclusionProof(leaf_index=2, leaves=5, path=proof.path[:-1])
    assert not verify_inclusion(leaves[2], longer, tree.root)
    assert not verify_inclusion(leaves[2], shorter, tree.root)


def test_proof_claiming_another_tree_size_fails() -> None:
    leaves = leaves_of(6)
    tree = build_tree(leaves)
    proof = tree.proof(5)
    assert not verify_inclusion(leaves[5], InclusionProof(leaf_index=5, leaves=7, path=proof.path), tree.root)


def test_out_of_range_index_is_refused() -> None:
    tree = build_tree(leaves_of(3))
    with pytest.raises(IndexError):
        tree.proof(3)
    with pytest.raises(ValueError, match="outside a tree"):
        InclusionProof(leaf_index=3, leaves=3, path=[])


def test_empty_tree_has_the_rfc_empty_root() -> None:
    assert build_tree([]).root == hashlib.sha256(b"").hexdigest()
