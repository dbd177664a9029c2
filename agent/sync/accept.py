"""Agent steps 1–2 as one call: the desired state a cycle converges to, fetched, verified and accepted,
with a local fallback.

:func:`load_desired` fetches this robot's desired-state commit and verifies it against the pinned
anchors (:mod:`agent.sync.desired`, :mod:`agent.trustcheck`). An accepted commit is kept in
``desired.json`` *before* the trust state moves on (so the cache is never older than the serial the
robot insists on), and is what the cycle uses when the network is down or the server offers
something that fails verification: a crash-looping version can still be watched or rolled back,
and nothing unverified is ever acted on. A poll that brings the commit already accepted skips gpg
(:func:`agent.trustcheck.check_unchanged`, and the bundle's digest, since ``desired.json`` is only a
file on disk) and re-parses the cached bytes that were verified.

An expired bundle (freeze attack, or a controller gone quiet) is *stale*: the robot keeps running
what it runs and reports ``stale``; no new deployment starts from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from agent.converge.context import Assignment, assignments
from agent.errors import CorruptState
from agent.paths import AgentPaths
from agent.state.atomic import read_bytes, write_atomic
from agent.sync.desired import fetch_desired
from agent.trustcheck import (
    TrustState,
    check_unchanged,
    load_trust_state,
    record_expiry,
    record_fresh,
    save_trust_state,
    verify_desired,
)
from fleetcd.desired import Bundle, BundleExpired, BundleRejected, SignedRoot, VerifiedBundle
from fleetcd.errors import InvalidContent, TransportError
from fleetcd.loading.documents import load_document
from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import FrozenModel
from fleetcd.models.release import Release
from fleetcd.wire import DesiredFiles

log = logging.getLogger(__name__)
CACHE_FILE_MODE = 0o600


@dataclass
class Desired:
    """What to converge to this cycle, and how far it can be trusted."""

    assignments: dict[str, Assignment] = field(default_factory=dict)
    known: bool = False  # a verified bundle (fresh, or the last accepted) backs ``assignments``
    stale: bool = False  # the bundle expired: keep running, report stale
    serial: int | None = None
    trust_version: int | None = None  # the trust-root version held (reported: who lags a rotation)
    time_floor: datetime | None = None  # the newest instant the controller signed (clock resets)
    errors: list[Exception] = field(default_factory=list)
    # The server answered this cycle's fetch and what it holds (if anything) was accepted: a
    # successful poll, the time the metrics textfile keeps (agent.report.metrics).
    polled: bool = False
    expires_at: datetime | None = None  # when the accepted bundle (and its root) stops counting


class CachedFiles(FrozenModel):
    """``desired.json``: the raw files of the last accepted desired-state commit, base64."""

    format: int = 1
    commit: str
    bundle: str
    root: str
    root_signature: str
    proof: str
    trust: str = ""  # trust.json (fleetcd.desired.chain); a cache written before it existed has none


def load_desired(config: AgentConfig, paths: AgentPaths, now: datetime) -> Desired:
    """Fetch, verify and accept; on any failure fall back to the last accepted commit."""
    out = Desired()
    trust = load_trust_state(paths.trust_file)
    out.serial, out.time_floor, out.trust_version = trust.last_serial, trust.time_floor, trust.trust_version
    fresh: DesiredFiles | None = None
    try:
        fresh = fetch_desired(config, paths.repo, judge=_judge(config, trust, now))
        out.polled = fresh is None  # the server has no desired state for this robot (yet)
    except (TransportError, BundleRejected) as exc:
        out.errors.append(exc)
    cached = read_cache(paths.desired_cache)
    for files in dict.fromkeys(f for f in (fresh, cached) if f is not None):
        try:
            verified, trust = _accept(config, paths, files, trust, now)
        except BundleExpired as exc:
            out.stale = True
            trust = record_expiry(trust, exc)
            save_trust_state(paths.trust_file, trust)
            out.errors.append(exc)
            break  # an older cached commit is no fresher
        except (BundleRejected, InvalidContent) as exc:
            out.errors.append(exc)
            continue
        out.assignments = assignments(verified, paths)
        out.known, out.serial, out.time_floor = True, verified.root.serial, trust.time_floor
        out.trust_version, out.expires_at = trust.trust_version, trust.expires_at
        out.polled = out.polled or (fresh is not None and files == fresh)
        if files == fresh and cached is not None and cached != fresh:
            write_cache(paths.desired_cache, fresh)  # a cache edited on disk: the verified bytes again
        break
    if fresh is not None and fresh.conflict is not None:  # after any refusal: that is the news
        log.warning("%s", fresh.conflict)
        out.errors.append(fresh.conflict)
    return out


def _judge(config: AgentConfig, trust: TrustState, now: datetime) -> Callable[[DesiredFiles], int]:
    """The verification that picks between two names of the desired state (agent.sync.layout): the
    serial of the commit accepted before without gpg, any other one verified in full."""

    def judge(files: DesiredFiles) -> int:
        if check_unchanged(trust, files, now) and trust.last_serial is not None:
            return trust.last_serial
        return verify_desired(config, files, trust, now)[0].root.serial

    return judge


def _verified_before(trust: TrustState, files: DesiredFiles, now: datetime) -> bool:
    """``files`` are the commit accepted before, byte for byte: :func:`check_unchanged`, and the bundle
    hashes as it did then. In git the commit id binds the bytes; in ``desired.json`` it is only a
    name written beside them, so an edited cache must not pass for the verified one."""
    if not check_unchanged(trust, files, now):
        return False
    return trust.last_bundle_sha256 == hashlib.sha256(files.bundle).hexdigest()


def _accept(
    config: AgentConfig, paths: AgentPaths, files: DesiredFiles, trust: TrustState, now: datetime
) -> tuple[VerifiedBundle, TrustState]:
    if _verified_before(trust, files, now):
        if trust.expired_seen is not None:  # the clock was wrong then (one cycle far ahead), or is now
            trust = record_fresh(trust)
            save_trust_state(paths.trust_file, trust)
        return _reparse(files, trust), trust
    verified, new_trust = verify_desired(config, files, trust, now)
    write_cache(paths.desired_cache, files)  # first the cache, then the serial it must not fall below
    save_trust_state(paths.trust_file, new_trust)
    log.info("accepted desired state serial %s (commit %s)", verified.root.serial, files.commit)
    return verified, new_trust


def _reparse(files: DesiredFiles, trust: TrustState) -> VerifiedBundle:
    """The commit accepted before, parsed again without gpg (its bytes were verified then)."""
    bundle = Bundle.model_validate_json(files.bundle)
    releases: dict[str, Release] = {}
    for d in bundle.deployments:
        raw = base64.b64decode(d.release_b64)
        releases[d.deployment_id] = load_document(d.release_path, raw, Release, schema=False).model
    return VerifiedBundle(
        bundle=bundle,
        root=SignedRoot.model_validate_json(files.root),
        bundle_sha256=trust.last_bundle_sha256 or "",
        unchanged=True,
        releases=releases,
    )


def read_cache(path: Path) -> DesiredFiles | None:
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        cached = CachedFiles.model_validate_json(raw)
        return DesiredFiles(
            commit=cached.commit,
            bundle=base64.b64decode(cached.bundle),
            root=base64.b64decode(cached.root),
            root_signature=base64.b64decode(cached.root_signature),
            proof=base64.b64decode(cached.proof),
            trust=base64.b64decode(cached.trust),
        )
    except (ValidationError, binascii.Error) as exc:
        raise CorruptState(path, f"not a desired-state cache: {exc}") from exc


def write_cache(path: Path, files: DesiredFiles) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    cached = CachedFiles(
        commit=files.commit,
        bundle=b64(files.bundle),
        root=b64(files.root),
        root_signature=b64(files.root_signature),
        proof=b64(files.proof),
        trust=b64(files.trust),
    )
    write_atomic(path, cached.model_dump_json().encode(), mode=CACHE_FILE_MODE)
