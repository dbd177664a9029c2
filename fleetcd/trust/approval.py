"""Approval payloads: the exact bytes a reviewer signs with ``fleetcd approve`` (pure, no I/O).

An approval in ``approvals/<rollout>/<fingerprint>.asc`` is a detached signature over
:func:`approval_payload`: a domain line (so an approval can never be replayed as a release signature
or anything else), the rollout's canonical content and the release file's sha256. Any edit to the
rollout voids its approvals, except the operational switches in
:data:`fleetcd.models.rollout.OPERATIONAL_FIELDS` (``paused``, ``aborted``, ``promote``): stopping
or promoting a rollout must never wait for reviewers. The canonical form is taken from the *parsed*
document, so comments, key order and quoting style do not matter; values do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fleetcd.models.rollout import OPERATIONAL_FIELDS

APPROVAL_DOMAIN = b"fleetcd-approval-v1\n"


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
) -> bytes:
    """The bytes an approver signs for rollout ``rollout_name`` of release file ``release_path``."""
    return b"".join(
        [
            APPROVAL_DOMAIN,
            _line("rollout", rollout_name),
            _line("rollout-sha256", hashlib.sha256(canonical_rollout(rollout_data)).hexdigest()),
            _line("release", release_path),
            _line("release-sha256", hashlib.sha256(release_bytes).hexdigest()),
        ]
    )
