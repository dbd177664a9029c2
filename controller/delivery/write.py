"""Per-robot desired state, step 6 (write) of a reconcile: one signed root, one small commit per robot.

:func:`write_desired_state` signs ONE root over every robot's bundle
(:func:`fleetcd.desired.build_signed_bundles`), writes one parentless commit per robot holding
``bundle.json``, ``root.json``, ``root.json.asc``, ``proof.json`` and ``trust.json`` (the trust-root
chain, :mod:`fleetcd.desired.chain`, the same blob for every robot) — all in one
:func:`~fleetcd.git.objects.object_batch`, so 10,000 robots make one pack, not 40,000 loose
objects — and then moves every robot's ref compare-and-swap in one transaction: all or none.

Why every robot, every time. The root is a Merkle root over all bundles, so a new root changes
every robot's proof even when its bundle is unchanged; a robot holding an old proof under the new
root could not verify. The controller therefore signs a new root only when some robot's
deployments changed or the current root nears expiry (``bundles.changed_devices``,
``bundles.root_needs_refresh``), and then rewrites all commits. Idle reconciles write nothing.

Crash safety. Commits have no parents and their time is ``issued_at``, so the same bundles, serial
and signature give the same commit ids. When the root a re-run builds equals the one already
published, its signature is reused instead of signing again (gpg signatures carry a timestamp, so
a second signature would change every id): a reconcile replayed after a crash writes identical
objects, moves no ref and makes no gpg call.

Ref layout (:func:`delivery_ref`): ``refs/fleetcd/desired/<id>``, or with ``namespaces`` the same
name inside ``refs/namespaces/<id>/``, so a server running upload-pack with ``GIT_NAMESPACE=<id>``
advertises that robot's ref alone (a no-op poll of 261 B at any fleet size; docs/git-server.md)
and the agent asks for the same ref name whichever layout the server uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.delivery.published import HeldRoot
from fleetcd.desired import (
    BUNDLE_FILE,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    Bundle,
    build_signed_bundles,
)
from fleetcd.desired.bundle import MAX_BUNDLE_BYTES, MAX_ROOT_BYTES, MAX_ROOT_SIGNATURE_BYTES
from fleetcd.desired.chain import TRUST_FILE
from fleetcd.git import refs
from fleetcd.git.objects import (
    Identity,
    blob_size,
    commit,
    list_refs,
    object_batch,
    read_blob,
    update_refs,
    write_tree,
)
from fleetcd.git.repo import Oid, Repository

CONTROLLER_IDENTITY = Identity("fleetcd controller", "controller@fleetcd.invalid")


def delivery_ref(device: str, *, namespaces: bool) -> str:
    """Where ``device``'s desired-state commit lives in the fleet repository."""
    flat = refs.desired_ref(device)
    return refs.namespaced(device, flat) if namespaces else flat


@dataclass(frozen=True)
class DeliveryResult:
    root_sha: str  # sha256 of the root.json bytes every robot received
    merkle_root: str
    serial: int
    refs: dict[str, Oid]  # ref -> the robot's commit, for the push
    signatures: int  # calls to ``sign``: 1, or 0 when the published root was reused
    moved: frozenset[str] = field(default_factory=frozenset)  # refs that now point elsewhere


@dataclass(frozen=True)
class CurrentDesired:
    """What the repository holds now: per-robot bundle.json bytes and root files, as found.

    All of it is unverified: the git server's refs are writable by whoever controls the server.
    :mod:`controller.delivery.published` judges the roots before anything is derived from them.
    """

    bundles: dict[str, bytes | None]
    root: bytes | None  # the first robot's, only ever compared byte for byte (signature reuse)
    root_signature: bytes | None
    targets: dict[str, Oid | None]  # ref -> commit now (None: absent), the CAS expectations
    held: dict[str, HeldRoot | None] = field(default_factory=dict)  # device -> its root files


def read_current(repo: Repository, devices: Iterable[str], *, namespaces: bool) -> CurrentDesired:
    """Every robot's current bundle.json and root files (a file over the robots' cap reads as None)."""
    prefix = refs.NAMESPACES_PREFIX if namespaces else refs.DESIRED_PREFIX
    existing = list_refs(repo, prefix)
    bundles: dict[str, bytes | None] = {}
    targets: dict[str, Oid | None] = {}
    held: dict[str, HeldRoot | None] = {}
    for device in sorted(devices):
        ref = delivery_ref(device, namespaces=namespaces)
        target = existing.get(ref)
        targets[ref] = target
        if target is None:
            bundles[device] = held[device] = None
            continue
        bundles[device] = _read_capped(repo, target, BUNDLE_FILE, MAX_BUNDLE_BYTES)
        held[device] = HeldRoot(
            _read_capped(repo, target, ROOT_FILE, MAX_ROOT_BYTES),
            _read_capped(repo, target, ROOT_SIGNATURE_FILE, MAX_ROOT_SIGNATURE_BYTES),
        )
    first = next((files for files in held.values() if files is not None), None)
    root, signature = (first.root, first.signature) if first is not None else (None, None)
    return CurrentDesired(bundles, root, signature, targets, held)


def _read_capped(repo: Repository, target: Oid, path: str, cap: int) -> bytes | None:
    size = blob_size(repo, target, path)
    return read_blob(repo, target, path) if size is not None and size <= cap else None


def write_desired_state(
    repo: Repository,
    bundles: Mapping[str, Bundle],
    *,
    fleet: str,
    serial: int,
    issued_at: datetime,
    expires_at: datetime,
    sign: Callable[[bytes], bytes],
    namespaces: bool,
    trust: bytes,
    author: Identity = CONTROLLER_IDENTITY,
) -> DeliveryResult:
    """Sign one root over ``bundles`` and point every robot's ref at its new commit, all or none.

    Raises :class:`~fleetcd.errors.RefConflict` when another writer moved one of the refs since
    they were read here (nothing is moved then), and InvalidContent when a bundle is over the
    robots' size cap. Objects written before a failure are unreferenced and cost nothing.
    """
    current = read_current(repo, bundles, namespaces=namespaces)
    calls = 0

    def sign_once(root_bytes: bytes) -> bytes:
        nonlocal calls
        if current.root == root_bytes and current.root_signature:
            return current.root_signature
        calls += 1
        return sign(root_bytes)

    root_bytes, signature, per_device = build_signed_bundles(
        fleet, bundles, serial, issued_at, expires_at, sign_once
    )
    written: dict[str, Oid] = {}
    with object_batch(repo) as staged:
        for device in sorted(per_device):
            bundle_bytes, proof_bytes = per_device[device]
            files = {
                BUNDLE_FILE: bundle_bytes,
                ROOT_FILE: root_bytes,
                ROOT_SIGNATURE_FILE: signature,
                PROOF_FILE: proof_bytes,
                TRUST_FILE: trust,
            }
            tree = write_tree(staged, files)
            message = f"fleetcd: desired state of {device}, serial {serial}"
            written[delivery_ref(device, namespaces=namespaces)] = commit(
                staged, None, tree, message, [], author, issued_at
            )
    moved = {ref for ref, oid in written.items() if current.targets.get(ref) != oid}
    if moved:
        updates = {ref: (current.targets.get(ref), written[ref]) for ref in sorted(moved)}
        update_refs(repo, updates, message=f"fleetcd: desired state serial {serial}")
    return DeliveryResult(
        root_sha=hashlib.sha256(root_bytes).hexdigest(),
        merkle_root=str(json.loads(root_bytes)["merkle_root"]),
        serial=serial,
        refs=written,
        signatures=calls,
        moved=frozenset(moved),
    )
