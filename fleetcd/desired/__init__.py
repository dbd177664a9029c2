"""Per-robot desired state: the bundle format and its one-signature-per-reconcile trust chain.

``bundle`` is the wire format and the controller's builder, ``merkle`` the hash tree that lets one
signature cover every robot, ``verify`` the checks a robot runs against its pinned trust anchors.
Shared by controller (writes) and agent (verifies); pure, no I/O.
"""

from fleetcd.desired.bundle import (
    BUNDLE_FILE,
    MAX_SERIAL,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    Bundle,
    BundleConfigFile,
    BundleDeployment,
    SignedRoot,
    build_signed_bundles,
    canonical_bytes,
)
from fleetcd.desired.merkle import InclusionProof, MerkleTree, build_tree, leaf_data, verify_inclusion
from fleetcd.desired.verify import (
    BundleExpired,
    BundleRejected,
    TrustAnchors,
    VerifiedBundle,
    verify_bundle,
    verify_root,
)

__all__ = [
    "BUNDLE_FILE",
    "MAX_SERIAL",
    "PROOF_FILE",
    "ROOT_FILE",
    "ROOT_SIGNATURE_FILE",
    "Bundle",
    "BundleConfigFile",
    "BundleDeployment",
    "BundleExpired",
    "BundleRejected",
    "InclusionProof",
    "MerkleTree",
    "SignedRoot",
    "TrustAnchors",
    "VerifiedBundle",
    "build_signed_bundles",
    "build_tree",
    "canonical_bytes",
    "leaf_data",
    "verify_bundle",
    "verify_inclusion",
    "verify_root",
]
