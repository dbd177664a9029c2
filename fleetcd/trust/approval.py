"""Approval payloads: the exact bytes a reviewer signs with ``fleetcd approve`` (pure, no I/O).

An approval in ``approvals/<rollout>/<fingerprint>.asc`` is a detached signature over
:func:`approval_payload`: a domain line (so an approval can never be replayed as a release signature
or anything else), the rollout's canonical content, the release file's sha256 and the config set of
the rollout's app (the Merkle root over every ``configs/<app>/*.yaml`` file and their number:
:mod:`fleetcd.desired.configset`). An approval covers what reaches robots: release *and* config.
Any edit to the rollout or to one of the app's config files voids its approvals, except the
operational switches in :data:`fleetcd.models.rollout.OPERATIONAL_FIELDS` (``paused``, ``aborted``,
``promote``): stopping or promoting a rollout must never wait for reviewers. The canonical form is
taken from the *parsed* document, so comments, key order and quoting style do not matter; values do.

A withdrawal (``withdrawals/<app>/<version>.yaml``) is approved the same way, over
:func:`withdrawal_payload`, with the signatures in ``withdrawals/<app>/<version>.yaml.d/<FPR>.asc``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fleetcd.models.rollout import OPERATIONAL_FIELDS

APPROVAL_DOMAIN = b"fleetcd-approval-v2\n"
# Approvals signed before they covered config instances: never counted, only recognised, so that
# ``fleetcd validate`` can say why such an approval is stale (:func:`legacy_approval_payload`).
LEGACY_APPROVAL_DOMAIN = b"fleetcd-approval-v1\n"


def _json_default(value: object) -> str:
    # A YAML loader may hand over timestamps as datetime objects; ISO 8601 is deterministic.
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot canonicalise a {type(value).__name__} in a rollout document")


def canonical_rollout(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON of the parsed rollout minus its operational fields (UTF-8, sorted keys)."""
    covered = {key: value for key, value in data.items() if key not in OPERATIONAL_FIELDS}
    text = json.dumps(
        covered,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )
    return text.encode("utf-8")


def _line(label: str, value: str) -> bytes:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{label} must be a single line, got {value!r}")
    return f"{label}: {value}\n".encode()


def approval_payload(
    rollout_name: str,
    rollout_data: Mapping[str, Any],
    release_path: str,
    release_bytes: bytes,
    configs: tuple[str, int],
) -> bytes:
    """The bytes an approver signs for rollout ``rollout_name`` of release file ``release_path``
    with the app's config set ``configs`` = (Merkle root, number of files)."""
    root, count = configs
    if count < 0:
        raise ValueError(f"config file count must be >= 0, got {count}")
    return b"".join(
        [
            *_v1_lines(APPROVAL_DOMAIN, rollout_name, rollout_data, release_path, release_bytes),
            _line("configs", f"configs/{rollout_data.get('app', '')}/"),
            _line("configs-count", str(count)),
            _line("configs-root", root),
        ]
    )


def legacy_approval_payload(
    rollout_name: str, rollout_data: Mapping[str, Any], release_path: str, release_bytes: bytes
) -> bytes:
    """The v1 payload (rollout and release only), to recognise approvals made before config counted."""
    return b"".join(
        _v1_lines(LEGACY_APPROVAL_DOMAIN, rollout_name, rollout_data, release_path, release_bytes)
    )


def _v1_lines(
    domain: bytes, rollout_name: str, rollout_data: Mapping[str, Any], release_path: str, release_bytes: bytes
) -> list[bytes]:
    return [
        domain,
        _line("rollout", rollout_name),
        _line("rollout-sha256", hashlib.sha256(canonical_rollout(rollout_data)).hexdigest()),
        _line("release", release_path),
        _line("release-sha256", hashlib.sha256(release_bytes).hexdigest()),
    ]


WITHDRAWAL_APPROVAL_DOMAIN = b"fleetcd-withdrawal-approval-v1\n"


def withdrawal_payload(
    withdrawal_path: str, withdrawal_bytes: bytes, release_path: str, release_bytes: bytes
) -> bytes:
    """The bytes an approver signs to put ``withdrawal_path`` in force: its exact bytes (an edit,
    even to the reason, voids the approval) and the withdrawn release file's sha256, under a domain
    line of their own so no rollout approval or release signature can be replayed as one."""
    return b"".join(
        [
            WITHDRAWAL_APPROVAL_DOMAIN,
            _line("withdrawal", withdrawal_path),
            _line("withdrawal-sha256", hashlib.sha256(withdrawal_bytes).hexdigest()),
            _line("release", release_path),
            _line("release-sha256", hashlib.sha256(release_bytes).hexdigest()),
        ]
    )
