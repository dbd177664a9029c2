"""Merkle tree over robots' bundles: one signature per reconcile instead of one per robot.

RFC 6962 (Certificate Transparency) hashing with domain separation — ``leaf = sha256(0x00 || data)``,
``node = sha256(0x01 || left || right)`` — so a leaf can never be passed off as an inner node. A
tree of ``n`` leaves splits at the largest power of two below ``n``; building it level by level and
carrying an odd last node up unhashed gives exactly that shape, in O(n), and each audit path is
read off the stored levels in O(log n). Verification follows RFC 9162 §2.1.3.2.

A leaf's data is :func:`leaf_data` of (device id, sha256 of the bundle bytes), so a proof binds
the bundle to the robot it was written for. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import FrozenModel, Sha256

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
MAX_PROOF_DEPTH = 64  # a longer audit path would need more than 2**64 robots
MAX_LEAVES = 2**53  # far above any fleet, and exact in every JSON reader


class InclusionProof(FrozenModel):
    """Sibling hashes (hex) from one leaf up to the root, bottom first (RFC 6962 audit path)."""

    leaf_index: int = Field(strict=True, ge=0, le=MAX_LEAVES)
    leaves: int = Field(strict=True, ge=1, le=MAX_LEAVES)
    path: list[Sha256] = Field(max_length=MAX_PROOF_DEPTH)

    @model_validator(mode="after")
    def _in_range(self) -> Self:
        if self.leaf_index >= self.leaves:
            raise ValueError(f"leaf_index {self.leaf_index} is outside a tree of {self.leaves} leaves")
        return self


def leaf_data(device_id: str, bundle_sha256: str) -> bytes:
    """Canonical bytes of the pair a leaf commits to (same JSON rules as ``bundle.canonical_bytes``)."""
    pair = {"device": device_id, "sha256": bundle_sha256}
    return json.dumps(pair, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class MerkleTree:
    """Every level of the tree, leaf hashes first; ``levels[-1]`` holds the root alone."""

    levels: tuple[tuple[bytes, ...], ...]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> str:
        """Hex root; the empty tree's root is sha256 of nothing, as in RFC 6962."""
        if self.size == 0:
            return hashlib.sha256(b"").hexdigest()
        return self.levels[-1][0].hex()

    def proof(self, index: int) -> InclusionProof:
        return InclusionProof(leaf_index=index, leaves=self.size, path=self._path(index))

    def proof_bytes(self, index: int) -> bytes:
        """``canonical_bytes(self.proof(index))`` (``proof.json``) written directly: keys in order,
        integers and hex strings only, so no model is built and dumped per robot (a fan-out writes
        one per robot; tests/test_desired_merkle_properties.py holds the bytes equal)."""
        path = ",".join(f'"{sibling}"' for sibling in self._path(index))
        return f'{{"leaf_index":{index},"leaves":{self.size},"path":[{path}]}}'.encode("ascii")

    def _path(self, index: int) -> list[str]:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is outside a tree of {self.size} leaves")
        path: list[str] = []
        position = index
        for level in self.levels[:-1]:
            sibling = position ^ 1
            # An odd last node has no sibling on its level: it was carried up unchanged.
            if sibling < len(level):
                path.append(level[sibling].hex())
            position //= 2
        return path


def build_tree(leaves: Sequence[bytes]) -> MerkleTree:
    """The tree over ``leaves`` (raw leaf data, in order); O(n) hashes."""
    level = tuple(hash_leaf(data) for data in leaves)
    levels = [level]
    while len(level) > 1:
        paired = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = tuple(paired)
        levels.append(level)
    return MerkleTree(levels=tuple(levels))


def verify_inclusion(leaf: bytes, proof: InclusionProof, root: str) -> bool:
    """True when ``leaf`` (raw leaf data) sits at ``proof.leaf_index`` of the tree with ``root`` (hex)."""
    if not 0 <= proof.leaf_index < proof.leaves:
        return False
    index, last = proof.leaf_index, proof.leaves - 1
    digest = hash_leaf(leaf)
    for sibling_hex in proof.path:
        if last == 0:
            return False  # path longer than the tree is tall
        sibling = bytes.fromhex(sibling_hex)
        if index % 2 == 1 or index == last:
            digest = hash_node(sibling, digest)
            # Climb past the levels where this node was the carried-up odd one out.
            while index % 2 == 0 and index != 0:
                index >>= 1
                last >>= 1
        else:
            digest = hash_node(digest, sibling)
        index >>= 1
        last >>= 1
    return last == 0 and digest.hex() == root
