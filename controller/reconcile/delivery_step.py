"""The write step's first half: per-robot desired state, signed once per reconcile.

A new root (and serial) is written only when some robot's deployments changed or the published
root nears expiry; otherwise nothing is signed and no ref moves, so an idle fleet costs no gpg call
and robots' no-op polls find nothing new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from controller.delivery.bundles import (
    DeliverySource,
    Evidence,
    bundle_for,
    changed_devices,
    root_needs_refresh,
)
from controller.delivery.write import read_current, write_desired_state
from controller.reconcile.rollouts import FleetContext
from controller.reconcile.settings import ControllerSettings
from controller.state.model import ControllerMeta, DeviceFile, RolloutState
from fleetcd.desired.bundle import SignedRoot
from fleetcd.errors import InvalidContent
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.trees import read_tree
from fleetcd.loading.fleetspec import load_spec
from fleetcd.trust.gpg import Signer


@dataclass(frozen=True)
class Delivered:
    serial: int
    root_sha256: str | None  # of the root robots can fetch after this step
    refs: Mapping[str, Oid] = field(default_factory=dict)
    moved: frozenset[str] = frozenset()
    signatures: int = 0
    root_expires_at: datetime | None = None  # of that root: the idle fast path re-signs ahead of it


def deliver(
    repo: Repository,
    ctx: FleetContext,
    meta: ControllerMeta,
    devices: Mapping[str, DeviceFile],
    rollouts: Mapping[str, RolloutState],
    settings: ControllerSettings,
    now: datetime,
) -> Delivered:
    current = read_current(repo, devices, namespaces=settings.namespaces)
    published = _published_serial(current.root)
    published_sha = hashlib.sha256(current.root).hexdigest() if current.root is not None else None
    # Never reuse a serial robots may already hold (a crash after pushing desired state, before
    # pushing the state branch, leaves the published root ahead of state.json).
    serial = max(meta.serial, published) + 1
    # A root the state branch does not vouch for under a serial it already used: a controller that
    # lost a race force-pushed it over the winner's. Robots may hold either, so neither may stay.
    clobbered = (
        current.root is not None
        and meta.root_sha256 is not None
        and published <= meta.serial
        and published_sha != meta.root_sha256
    )
    expires = now + timedelta(seconds=ctx.fleet.defaults.bundle_expiry_seconds)
    source = DeliverySource(ctx.spec)
    evidence = _historic_evidence(repo, source, rollouts, devices)
    bundles = {
        device: bundle_for(device, data.records, source, None, serial, now, expires, evidence=evidence)
        for device, data in devices.items()
    }
    if (
        not clobbered
        and not changed_devices(current.bundles, bundles)
        and not root_needs_refresh(current.root, now, settings.root_refresh_before)
    ):
        return Delivered(
            serial=max(meta.serial, published),
            root_sha256=published_sha,
            root_expires_at=_published_expiry(current.root),
        )
    fingerprint = ctx.fleet.trust.controller.fingerprint
    with Signer(settings.gnupghome) as signer:
        result = write_desired_state(
            repo,
            bundles,
            fleet=ctx.fleet.name,
            serial=serial,
            issued_at=now,
            expires_at=expires,
            sign=lambda data: signer.sign_detached(data, fingerprint),
            namespaces=settings.namespaces,
        )
    return Delivered(
        serial=serial,
        root_sha256=result.root_sha,
        refs=result.refs,
        moved=result.moved,
        signatures=result.signatures,
        root_expires_at=expires,
    )


def _historic_evidence(
    repo: Repository,
    source: DeliverySource,
    rollouts: Mapping[str, RolloutState],
    devices: Mapping[str, DeviceFile],
) -> dict[tuple[str, str], Evidence]:
    """Signed evidence, read from main's history, for records whose release the rollout file no
    longer names (rollbacks, robots still on an earlier generation's release)."""
    needed = {(r.rollout, r.release_sha256) for f in devices.values() for r in f.records}
    current = {
        (name, hashlib.sha256(entry.doc.raw).hexdigest())
        for name, rollout in source.spec.rollouts.items()
        if (entry := source.spec.release(rollout.doc.model.app, rollout.doc.model.release)) is not None
    }
    sources: dict[str, DeliverySource] = {}
    found: dict[tuple[str, str], Evidence] = {}
    for rollout, sha in sorted(needed - current):
        state = rollouts.get(rollout)
        commit = state.release_commits.get(sha) if state is not None else None
        if commit is None:
            continue  # bundle_for stalls with rollout_mismatch, naming the record
        if commit not in sources:
            files, _ = read_tree(repo, commit)
            sources[commit] = DeliverySource(load_spec(files)[0])
        try:
            found[(rollout, sha)] = sources[commit].evidence(rollout)
        except InvalidContent:
            continue
    return found


def _published_expiry(root: bytes | None) -> datetime | None:
    if root is None:
        return None
    try:
        return SignedRoot.model_validate_json(root).expires_at
    except ValidationError:
        return None


def _published_serial(root: bytes | None) -> int:
    if root is None:
        return 0
    try:
        return SignedRoot.model_validate_json(root).serial
    except ValidationError:
        return 0
