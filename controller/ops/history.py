"""``fleetcd history DEVICE``: one robot's deployment records over generations and its audit lines.

A device file on the state branch keeps only its newest records (``MAX_RECORDS_PER_DEVICE``);
older generations live in the branch's history, so this walks the state commits newest first and
keeps the newest form of every record it meets, up to :data:`HISTORY_COMMITS` commits back. Audit
lines are read from the whole log after its hash chain verifies: a history built on a tampered log
would be worse than none, so a broken chain is the error :class:`~controller.errors.AuditChainBroken`.
Read-only; no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.audit.chain import verify
from controller.audit.lines import DAY_PATH
from controller.ops.output import Column, Row, field, when
from controller.ops.remote import RemoteView
from controller.reconcile.statebranch import StateSnapshot
from controller.records.model import DeploymentRecord
from controller.state.layout import device_files
from controller.state.model import DeviceFile
from fleetcd.git.objects import read_blob, ref_target
from fleetcd.git.refs import status_ref
from fleetcd.git.repo import Repository, oid
from fleetcd.git.signatures import commits_between

HISTORY_COMMITS = 5000  # state commits searched for records older than the device file keeps


@dataclass(frozen=True)
class DeviceHistory:
    device: str
    records: list[DeploymentRecord]  # newest first
    audit: list[dict[str, Any]]  # audit events naming the device, newest first (with their seq)
    commits_searched: int
    complete: bool  # False when older state commits were left unsearched

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "records": [r.model_dump(mode="json") for r in self.records],
            "audit": self.audit,
            "complete": self.complete,
        }


def device_history(
    repo: Repository, state: StateSnapshot, device: str, max_commits: int = HISTORY_COMMITS
) -> DeviceHistory:
    """Records of ``device`` from the state branch and its history, and its audit lines."""
    audit = _audit_lines(state, device)
    if state.commit is None:
        return DeviceHistory(device, [], audit, 0, True)
    paths = device_files(device)
    commits = commits_between(repo, None, str(state.commit))[::-1]
    found: dict[str, DeploymentRecord] = {}
    seen_blobs: set[bytes] = set()
    for commit in commits[:max_commits]:
        data = next((d for d in (read_blob(repo, oid(commit), p) for p in paths) if d is not None), None)
        if data is None or data in seen_blobs:
            continue
        seen_blobs.add(data)
        for record in DeviceFile.model_validate_json(data).records:
            found.setdefault(record.id, record)  # newest commits first: the first form seen is the latest
    records = sorted(found.values(), key=lambda r: (r.created_at, r.updated_at, r.generation), reverse=True)
    searched = min(len(commits), max_commits)
    return DeviceHistory(device, records, audit, searched, searched == len(commits))


def known_device(view: RemoteView, device: str) -> bool:
    """True when ``device`` is on main, has a device file on the state branch or a status ref (in
    its status shard, with shards)."""
    if device in view.spec.devices or device in view.state.devices:
        return True
    try:
        ref = status_ref(device)
    except ValueError:  # not a device name at all
        return False
    return ref in view.status if view.status is not None else ref_target(view.repo, ref) is not None


def _audit_lines(state: StateSnapshot, device: str) -> list[dict[str, Any]]:
    verify(state.audit)
    found = []
    for path in sorted(p for p in state.audit if DAY_PATH.fullmatch(p)):
        for line in state.audit[path].splitlines():
            entry = json.loads(line)
            event = entry["event"]
            if event.get("device") == device:
                found.append({"seq": entry["seq"], "file": path, **event})
    return sorted(found, key=lambda e: int(e["seq"]), reverse=True)


def audit_detail(event: Row) -> str:
    """One line saying what an audit event recorded: its reason, status changes, or its data."""
    parts = [str(event["reason"])] if event.get("reason") else []
    data = event.get("data") or {}
    changes = data.get("changes") if isinstance(data, dict) else None
    if isinstance(changes, list) and changes:
        parts += [f"{c.get('rollout')} g{c.get('generation')} {c.get('from')}→{c.get('to')}" for c in changes]
    elif data:
        parts.append(json.dumps(data, sort_keys=True, separators=(",", ":")))
    return "; ".join(parts)


RECORD_COLUMNS = (
    Column("UPDATED", lambda r: when(r["updated_at"])),
    field("ROLLOUT", "rollout"),
    field("GEN", "generation"),
    field("WAVE", "wave"),
    Column("RELEASE", lambda r: f"{r['app']}@{r['version']}"),
    field("ACTION", "action"),
    field("STATUS", "status"),
    field("REASON", "reason"),
    field("DEPLOYMENT", "id"),
)

AUDIT_COLUMNS = (
    field("SEQ", "seq"),
    Column("AT", lambda e: when(e["at"])),
    field("KIND", "kind"),
    field("ROLLOUT", "rollout"),
    Column("DETAIL", audit_detail),
)
