"""Deterministic identities of rollout generations and deployment records (pure: no I/O, no clock).

The controller holds no state outside git and may be killed at any moment, so everything it creates
is named by what it is, not by when it was made: a replayed commit or a restarted controller derives
the same deployment id and therefore creates nothing twice.

Generations. A rollout's *generation* changes whenever what its approvers signed changes — the
release (its file's sha256), the app's config files (their Merkle root) or any approval-relevant
field of the rollout (targets, strategy, schedule, gates, …:
:func:`fleetcd.trust.approval.canonical_rollout`). The operational switches
``paused``, ``aborted`` and ``promote`` are not covered, so pause/resume/promote keep the generation.

A generation is a small counter plus the fingerprint of the content it stands for, and the next one
is derived from the current one (:func:`rollout_generation`). A counter alone could not tell a new
edit from a replay; a bare content hash could not tell a *revert* from the original: reverting a
rollout to release 1.0 after 1.1 would land on 1.0's old generation, whose deployments are finished
and one-time use, and the rollback the operator asked for would create nothing. With
(counter, fingerprint) a replay of the same content keeps its number and a revert gets a new one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetcd.trust.approval import canonical_rollout

DEPLOYMENT_ID_PREFIX = "dep-"
DEPLOYMENT_ID_HEX = 24  # 96 bits: collisions stay negligible far past a billion deployments
DEPLOYMENT_ID_PATTERN = rf"^{DEPLOYMENT_ID_PREFIX}[0-9a-f]{{{DEPLOYMENT_ID_HEX}}}$"

# Domain lines keep these digests from ever colliding with another fleetcd hash of the same bytes.
_DEPLOYMENT_DOMAIN = b"fleetcd-deployment-v1"
_GENERATION_DOMAIN = b"fleetcd-generation-v1\n"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

FIRST_GENERATION = 1


def _require_sha256(value: str, name: str = "release_sha256") -> None:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits, got {value!r}")


def _length_prefixed(*fields: bytes) -> bytes:
    # Each field carries its byte length, so ("a", "bc") and ("ab", "c") can never encode alike,
    # whatever characters names contain.
    return b"".join(len(f).to_bytes(8, "big") + f for f in fields)


def deployment_id(
    rollout: str, generation: int, device: str, release_sha256: str, config_sha256: str | None = None
) -> str:
    """The id of the deployment of ``release_sha256`` with merged config ``config_sha256`` (None: no
    config) to ``device`` by ``rollout``'s ``generation``. A deployment is a release plus its config:
    other config values, other deployment."""
    if generation < FIRST_GENERATION:
        raise ValueError(f"generation must be >= {FIRST_GENERATION}, got {generation}")
    _require_sha256(release_sha256)
    fields = [
        _DEPLOYMENT_DOMAIN,
        rollout.encode("utf-8"),
        str(generation).encode("ascii"),
        device.encode("utf-8"),
        release_sha256.encode("ascii"),
    ]
    if config_sha256 is not None:
        _require_sha256(config_sha256, "config_sha256")
        fields.append(config_sha256.encode("ascii"))  # no config: ids as before config counted
    digest = hashlib.sha256(_length_prefixed(*fields)).hexdigest()
    return DEPLOYMENT_ID_PREFIX + digest[:DEPLOYMENT_ID_HEX]


@dataclass(frozen=True, order=True)
class Generation:
    """Generation ``number`` (1, 2, …) of a rollout, standing for content ``fingerprint``."""

    number: int
    fingerprint: str


def generation_fingerprint(
    rollout_data: Mapping[str, Any], release_sha256: str, config_root: str | None = None
) -> str:
    """sha256 over the rollout's approval-relevant content, the release file's sha256 and the
    Merkle root of the app's config set (:mod:`fleetcd.desired.configset`): everything approvals
    cover, so an approved config edit starts a new generation, with waves, gates and halts."""
    _require_sha256(release_sha256)
    # canonical_rollout is compact JSON (no raw newlines), so the newline separator is unambiguous.
    payload = _GENERATION_DOMAIN + canonical_rollout(rollout_data) + b"\n" + release_sha256.encode("ascii")
    if config_root is not None:
        _require_sha256(config_root, "config_root")
        payload += b"\nconfigs:" + config_root.encode("ascii")
    return hashlib.sha256(payload).hexdigest()


def rollout_generation(
    rollout_data: Mapping[str, Any],
    release_sha256: str,
    current: Generation | None,
    config_root: str | None = None,
) -> Generation:
    """The generation the rollout is in now, given the ``current`` one recorded on the state branch.

    Same content as ``current`` → ``current`` itself (replay, restart, pause/resume/promote);
    different content → ``current.number + 1`` (including a revert to older content); no
    ``current`` (first sight of the rollout, or its record was lost) → generation 1.
    """
    fingerprint = generation_fingerprint(rollout_data, release_sha256, config_root)
    if current is None:
        return Generation(FIRST_GENERATION, fingerprint)
    if current.fingerprint == fingerprint:
        return current
    return Generation(current.number + 1, fingerprint)
