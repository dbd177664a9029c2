"""Per-robot desired state, step 6 (write) of a reconcile: one signed root over the robots that move.

:func:`write_desired_state` signs ONE root over the bundles it is given
(:func:`fleetcd.desired.build_signed_bundles`), writes one parentless commit per robot holding
``bundle.json``, ``root.json``, ``root.json.asc``, ``proof.json`` and ``trust.json`` (the trust-root
chain, :mod:`fleetcd.desired.chain`, the same blob for every robot) — all hashed here as git's
bytes (:mod:`fleetcd.git.rawobjects`) and landed at once, so 10,000 robots make one pack, not
40,000 loose objects — and then moves those robots' refs compare-and-swap in one transaction: all or none.

A change costs what it changes. The controller passes only the robots whose desired-state ref
must move (:mod:`controller.delivery.select`): their bundle changed, their renewal is due, or
their ref is not the commit recorded for them. The root's Merkle tree covers just those bundles,
so its proofs verify for them alone, and every other robot keeps the commit it holds, already
verified at a serial no higher than the new one: a wave of 10 robots out of 10,000 writes 10
commits and moves 10 refs, and the other 9,990 robots' polls find nothing new. Idle reconciles
write nothing.

Crash safety. Commits have no parents and their time is ``issued_at``, so the same bundles, serial
and signature give the same commit ids; the refs move only after every object is written, and the
state branch records each robot's new commit in the same push (``controller.reconcile.write``).

Ref layout (:func:`delivery_ref`): ``refs/fleetcd/desired/<id>``, or with ``namespaces`` the same
name inside ``refs/namespaces/<id>/``, so a server running upload-pack with ``GIT_NAMESPACE=<id>``
advertises that robot's ref alone (a no-op poll of 261 B at any fleet size; docs/git-server.md)
and the agent asks for the same ref name whichever layout the server uses.
"""

from __future__ import annotations

import functools
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
from fleetcd.desired.bundle import MAX_ROOT_BYTES, MAX_ROOT_SIGNATURE_BYTES
from fleetcd.desired.chain import TRUST_FILE
from fleetcd.git import refs
from fleetcd.git.objects import (
    Identity,
    blob_size,
    disk_problems,
    land_objects,
    list_refs,
    read_blob,
    update_refs,
)
from fleetcd.git.rawobjects import Objects, add_blob, add_commit, add_flat_tree
from fleetcd.git.repo import Oid, Repository

CONTROLLER_IDENTITY = Identity("fleetcd controller", "controller@fleetcd.invalid")


# Asked for every robot several times a reconcile (two name checks each): remembered, a bounded number.
@functools.lru_cache(maxsize=1 << 18)
def delivery_ref(device: str, *, namespaces: bool) -> str:
    """Where ``device``'s desired-state commit lives in the fleet repository."""
    flat = refs.desired_ref(device)
    return refs.namespaced(device, flat) if namespaces else flat


@dataclass(frozen=True)
class DeliveryResult:
    root_sha: str  # sha256 of the root.json bytes the written robots received
    merkle_root: str
    serial: int
    refs: dict[str, Oid]  # ref -> the robot's commit, for the push
    signatures: int  # calls to ``sign``: 1
    moved: frozenset[str] = field(default_factory=frozenset)  # refs that now point elsewhere
    commits: dict[str, Oid] = field(default_factory=dict)  # device -> its new commit, to record


def read_targets(
    repo: Repository,
    devices: Iterable[str],
    *,
    namespaces: bool,
    listed: Mapping[str, Oid] | None = None,
) -> dict[str, Oid | None]:
    """Each robot's desired-state commit now (None: no ref), from one listing (``listed``, the
    desired-state refs as the caller listed them, or listed here); no object is read."""
    prefix = refs.NAMESPACES_PREFIX if namespaces else refs.DESIRED_PREFIX
    existing = listed if listed is not None else list_refs(repo, prefix)
    return {device: existing.get(delivery_ref(device, namespaces=namespaces)) for device in sorted(devices)}


def read_held(repo: Repository, target: Oid) -> HeldRoot:
    """The root files of one robot's commit (a file over the robots' cap reads as None).

    Unverified: the git server's refs are writable by whoever controls the server;
    :mod:`controller.delivery.published` judges them before anything is derived from them.
    """
    return HeldRoot(
        _read_capped(repo, target, ROOT_FILE, MAX_ROOT_BYTES),
        _read_capped(repo, target, ROOT_SIGNATURE_FILE, MAX_ROOT_SIGNATURE_BYTES),
    )


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
    targets: Mapping[str, Oid | None] | None = None,
    author: Identity = CONTROLLER_IDENTITY,
    encoded: Mapping[str, bytes] | None = None,
) -> DeliveryResult:
    """Sign one root over ``bundles`` and point each of those robots' refs at its new commit, all
    or none; no other ref is touched.

    ``targets`` (device -> its commit now, None: no ref) are the compare-and-swap expectations as
    the caller saw them; without, the refs are listed here. Raises
    :class:`~fleetcd.errors.RefConflict` when another writer moved one of the refs since (nothing
    is moved then), and InvalidContent when a bundle is over the robots' size cap. ``encoded``:
    bundles' canonical bytes already made (:func:`controller.delivery.inputs.encode_bundle`). Objects written
    before a failure are unreferenced and cost nothing.
    """
    if targets is None:
        targets = read_targets(repo, bundles, namespaces=namespaces)
    calls = 0

    def sign_once(root_bytes: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return sign(root_bytes)

    root_bytes, signature, per_device = build_signed_bundles(
        fleet, bundles, serial, issued_at, expires_at, sign_once, encoded
    )
    written: dict[str, Oid] = {}
    commits: dict[str, Oid] = {}
    expected: dict[str, Oid | None] = {}
    # Every object is built as git's bytes and hashed here (fleetcd.git.rawobjects), then all land
    # as one pack: no libgit2 call per robot.
    objects: Objects = {}
    # The root, its signature and the trust chain are the same bytes for every robot: one blob.
    shared = {
        ROOT_FILE: add_blob(objects, root_bytes),
        ROOT_SIGNATURE_FILE: add_blob(objects, signature),
        TRUST_FILE: add_blob(objects, trust),
    }
    for device in sorted(per_device):
        bundle_bytes, proof_bytes = per_device[device]
        files = {
            BUNDLE_FILE: add_blob(objects, bundle_bytes),
            PROOF_FILE: add_blob(objects, proof_bytes),
            **shared,
        }
        tree = add_flat_tree(objects, files)
        message = f"fleetcd: desired state of {device}, serial {serial}"
        ref = delivery_ref(device, namespaces=namespaces)
        commits[device] = written[ref] = Oid(raw=add_commit(objects, tree, [], author, issued_at, message))
        expected[ref] = targets.get(device)
    with disk_problems(repo.path):
        land_objects(repo, {Oid(raw=oid): entry for oid, entry in objects.items()})
    moved = {ref for ref, oid in written.items() if expected[ref] != oid}
    if moved:
        updates = {ref: (expected[ref], written[ref]) for ref in sorted(moved)}
        update_refs(repo, updates, message=f"fleetcd: desired state serial {serial}")
    return DeliveryResult(
        root_sha=hashlib.sha256(root_bytes).hexdigest(),
        merkle_root=str(json.loads(root_bytes)["merkle_root"]),
        serial=serial,
        refs=written,
        signatures=calls,
        moved=frozenset(moved),
        commits=commits,
    )
