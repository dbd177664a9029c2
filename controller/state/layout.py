"""File paths on the state branch (``refs/heads/fleetcd/state``). Pure path arithmetic."""

from __future__ import annotations

import hashlib

META_FILE = "state.json"
STATUS_MD = "STATUS.md"
STATUS_HTML = "status.html"
OUTBOX_FILE = "notify/outbox.json"  # webhook deliveries not yet known to be delivered


def rollout_file(name: str) -> str:
    return f"rollouts/{name}.json"


DEVICES_DIR = "devices/"


def device_file(device: str) -> str:
    """``devices/<bucket>/<id>.json``: 256 buckets by the id's sha256, so that writing one robot's file
    rewrites a tree of about N/256 entries, not one of N (at 100,000 robots one flat ``devices/``
    tree was 4.5 MB, rewritten by every changing reconcile)."""
    return f"{DEVICES_DIR}{device_bucket(device)}/{device}.json"


def device_bucket(device: str) -> str:
    return hashlib.sha256(device.encode()).hexdigest()[:2]


def legacy_device_file(device: str) -> str:
    """Where state branches written before the buckets keep the file (one flat ``devices/``); read
    as a fallback, and moved to :func:`device_file` by the first reconcile that writes."""
    return f"{DEVICES_DIR}{device}.json"


def device_files(device: str) -> tuple[str, str]:
    """Every path ``device``'s file may have on a state branch, newest layout first."""
    return device_file(device), legacy_device_file(device)


def legacy_device_of(path: str) -> str | None:
    """The robot whose flat-layout file ``path`` is (``devices/<id>.json``); None for any other path."""
    if not path.startswith(DEVICES_DIR) or not path.endswith(".json"):
        return None
    name = path[len(DEVICES_DIR) : -len(".json")]
    return name if name and "/" not in name else None


def receipt_files(rollout: str, generation: int) -> tuple[str, str]:
    base = f"receipts/{rollout}/{generation}"
    return f"{base}.yaml", f"{base}.md"
