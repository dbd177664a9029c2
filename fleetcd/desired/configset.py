"""An app's config instances as one digest, and the proof that a robot's layers belong to it (pure).

A deployment is a release plus its config instances (Miru's model), so an approval covers both:
:func:`fleetcd.trust.approval.approval_payload` names the *config set* of the rollout's app — every
``configs/<app>/*.yaml`` file on main — by the root of a Merkle tree (RFC 6962 hashing, the same
tree as the signed bundle root: :mod:`fleetcd.desired.merkle`) over ``(path, sha256 of the bytes)``
in path order. Any edit, addition or removal of one of the app's config files changes the root,
which voids the approvals exactly as a rollout edit does.

A robot does not get the whole set: its bundle carries the exact bytes of the layers that apply to
it (default, its cohorts, its own device file), each with its inclusion proof, plus the root and
the number of files. The robot recomputes every leaf, checks each proof against the root, checks
the approvals over the payload naming that root, and merges the layers itself
(:func:`fleetcd.desired.verify`). Proofs are O(log n), so a fleet with a device file per robot
still ships small bundles. No I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fleetcd.desired.merkle import InclusionProof, MerkleTree, build_tree, verify_inclusion
from fleetcd.layout import FileKind, classify

MAX_CONFIG_FILE_BYTES = 64 * 1024  # one config instance on the wire; YAML config is small
MAX_CONFIG_LAYERS = 64  # per robot and app: default + cohorts + device, far above real fleets


def config_leaf(path: str, sha256: str) -> bytes:
    """Canonical bytes of one config file's leaf (sorted keys, no whitespace, UTF-8)."""
    pair = {"config": path, "sha256": sha256}
    return json.dumps(pair, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def app_config_files(files: Mapping[str, bytes], app: str) -> dict[str, bytes]:
    """The ``configs/<app>/*.yaml`` files of a snapshot (path -> exact bytes)."""
    out = {}
    for path, data in files.items():
        found = classify(path)
        if found is not None and found.kind is FileKind.CONFIG and found.name == app:
            out[path] = data
    return out


@dataclass(frozen=True)
class ConfigSet:
    """Every config file of one app, in path order, with the Merkle tree over them."""

    files: Mapping[str, bytes]  # path -> exact bytes

    @cached_property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.files))

    @cached_property
    def tree(self) -> MerkleTree:
        return build_tree([config_leaf(p, hashlib.sha256(self.files[p]).hexdigest()) for p in self.paths])

    @property
    def root(self) -> str:
        return self.tree.root

    @property
    def count(self) -> int:
        return len(self.paths)

    def proof(self, path: str) -> InclusionProof:
        """The inclusion proof of ``path``; KeyError when the set has no such file."""
        if path not in self.files:
            raise KeyError(path)
        return self.tree.proof(self.paths.index(path))


def config_root(files: Mapping[str, bytes]) -> tuple[str, int]:
    """(root, number of files) of an app's config files; the empty set has sha256(b"") as root."""
    configs = ConfigSet(files)
    return configs.root, configs.count


def included(path: str, data: bytes, proof: InclusionProof, root: str, count: int) -> bool:
    """True when ``data`` at ``path`` is one of the ``count`` files whose tree has ``root``."""
    leaf = config_leaf(path, hashlib.sha256(data).hexdigest())
    return proof.leaves == count and verify_inclusion(leaf, proof, root)


def merge_values(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Deep-merge config values, later layers winning: mappings merge, lists and scalars replace.

    The one merge rule: the controller's validation and delivery and the robot's verification all
    use it, so what CI checked is what the robot computes."""
    merged: dict[str, Any] = {}
    for values in layers:
        merged = _merge(merged, values)
    return merged


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def merged_sha256(values: Mapping[str, Any] | None) -> str | None:
    """sha256 of merged values as canonical JSON (sorted keys, no whitespace); None for no config."""
    if values is None:
        return None
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
