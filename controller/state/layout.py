"""File paths on the state branch (``refs/heads/fleetcd/state``). Pure path arithmetic."""

from __future__ import annotations

META_FILE = "state.json"
STATUS_MD = "STATUS.md"
STATUS_HTML = "status.html"
OUTBOX_FILE = "notify/outbox.json"  # webhook deliveries not yet known to be delivered


def rollout_file(name: str) -> str:
    return f"rollouts/{name}.json"


def device_file(device: str) -> str:
    return f"devices/{device}.json"


def receipt_files(rollout: str, generation: int) -> tuple[str, str]:
    base = f"receipts/{rollout}/{generation}"
    return f"{base}.yaml", f"{base}.md"
