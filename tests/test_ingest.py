"""Robots' status reports as untrusted input: read from real status refs, applied only to their own records.

``read_reports`` runs against a real bare repository whose status refs were written with
``fleetcd.git.objects`` (what a simulated agent pushes); ``ingest`` is the pure decision over one
robot's device file. Scenarios are named after what a misbehaving or hostile robot tries.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.ingest import ingest, read_reports
from controller.records.model import Action, Connectivity, DeviceState, TargetStatus
from controller.records.transitions import new_deployment
from controller.state.model import DeviceFile
from fleetcd.compat import UTC
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.git.repo import Repository, open_or_init_bare
from fleetcd.reasons import Reason
from fleetcd.reports import MAX_REPORT_BYTES, STATUS_FILE, StatusReport
from fleetcd.vocabulary import Activity, ErrorStatus

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
OFFLINE_AFTER_S = 300.0
ROBOT = Identity("robot", "robot@fleet.test")
SHA = "ab" * 32


def deployment(device: str, rollout: str = "nav", deadline_at: datetime | None = None) -> Any:
    return new_deployment(
        rollout=rollout,
        generation=1,
        device=device,
        app="nav",
        version="1.1.0",
        release_sha256=SHA,
        wave=0,
        action=Action.DEPLOY,
        target_status=TargetStatus.DEPLOYED,
        at=T0,
        deadline_at=deadline_at,
    )


MINE = deployment("amr-001")
THEIRS = deployment("amr-002")


def device_file(seq: int = -1, **state: Any) -> DeviceFile:
    return DeviceFile(state=DeviceState(device="amr-001", **state), last_report_seq=seq, records=(MINE,))


def report_data(seq: int, *claims: dict[str, Any], device: str = "amr-001") -> dict[str, Any]:
    return {
        "format": "fleetcd.dev/status/v1",
        "device": device,
        "seq": seq,
        "agent_version": "0.1.0",
        "reported_at": (T0 + timedelta(minutes=5)).isoformat(),
        "deployments": list(claims),
    }


def claim(dep_id: str, activity: str = "downloading", **extra: Any) -> dict[str, Any]:
    return {
        "deployment_id": dep_id,
        "app": "nav",
        "version": "1.1.0",
        "activity": activity,
        "updated_at": (T0 + timedelta(minutes=4)).isoformat(),
        **extra,
    }


def report(seq: int, *claims: dict[str, Any], device: str = "amr-001") -> StatusReport:
    return StatusReport.model_validate(report_data(seq, *claims, device=device))


# --- ingest (pure) --------------------------------------------------------------------------------


def test_first_report_moves_the_record_and_brings_the_robot_online() -> None:
    after, events, rejected = ingest(device_file(), report(1, claim(MINE.id)), NOW, OFFLINE_AFTER_S)
    (record,) = after.records
    assert (record.activity, record.error, after.last_report_seq) == (
        Activity.DOWNLOADING,
        ErrorStatus.NONE,
        1,
    )
    assert (after.state.connectivity, after.state.last_seen) == (Connectivity.ONLINE, NOW)
    assert rejected == []
    (event,) = events
    assert (event.kind, event.device, event.reason) == (AuditKind.DEVICE_REPORT, "amr-001", None)
    assert event.data["changes"] == [
        {"deployment_id": MINE.id, "rollout": "nav", "generation": 1, "from": "queued", "to": "downloading"}
    ]


def test_stale_or_replayed_seq_is_ignored() -> None:
    before = device_file(seq=7)
    after, events, rejected = ingest(before, report(7, claim(MINE.id, "failed")), NOW, OFFLINE_AFTER_S)
    assert after is before and events == [] and rejected == []
    after, _, _ = ingest(before, report(3, claim(MINE.id, "failed")), NOW, OFFLINE_AFTER_S)
    assert after is before


def test_idle_heartbeat_changes_seq_but_writes_no_audit_line() -> None:
    first, _, _ = ingest(device_file(), report(1, claim(MINE.id)), NOW, OFFLINE_AFTER_S)
    later = NOW + timedelta(minutes=1)
    second, events, _ = ingest(first, report(2, claim(MINE.id)), later, OFFLINE_AFTER_S)
    assert events == [] and second.last_report_seq == 2 and second.records == first.records
    assert second.state.last_seen == later


def test_robot_coming_back_online_is_audited_even_without_record_changes() -> None:
    offline = device_file(seq=1, connectivity=Connectivity.OFFLINE, last_seen=T0 - timedelta(hours=2))
    after, events, _ = ingest(offline, report(2), NOW, OFFLINE_AFTER_S)
    assert after.state.connectivity is Connectivity.ONLINE
    assert [(e.kind, e.data["connectivity"]) for e in events] == [(AuditKind.DEVICE_REPORT, "online")]


def test_robot_claiming_another_robots_deployment_is_rejected_with_an_audit_event() -> None:
    owners = {MINE.id: "amr-001", THEIRS.id: "amr-002"}
    claims = (claim(THEIRS.id, "failed", error="failed"), claim(MINE.id))
    after, events, rejected = ingest(device_file(), report(1, *claims), NOW, OFFLINE_AFTER_S, owners=owners)
    assert rejected == [THEIRS.id]
    refused = [e for e in events if e.reason is not None]
    assert [(e.device, e.reason, e.data["deployment_id"], e.data["owner"]) for e in refused] == [
        ("amr-001", "foreign_deployment", THEIRS.id, "amr-002")
    ]
    assert after.records[0].activity is Activity.DOWNLOADING  # its own claim still counts


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ((claim("dep-" + "0" * 24),), "unknown_deployment"),
        ((claim(MINE.id, version="9.9.9"),), "mismatched_deployment"),
        ((claim(MINE.id), claim(MINE.id, "failed", error="failed")), "duplicate_deployment"),
    ],
    ids=["unknown-id", "wrong-version-for-id", "same-id-twice"],
)
def test_claims_a_robot_cannot_make_are_rejected(claims: tuple[dict[str, Any], ...], reason: str) -> None:
    after, events, rejected = ingest(device_file(), report(1, *claims), NOW, OFFLINE_AFTER_S)
    assert [e.reason for e in events if e.reason is not None] == [reason]
    assert len(rejected) == 1
    assert after.records[0].activity is not Activity.FAILED


def test_report_naming_another_robot_changes_nothing() -> None:
    before = device_file()
    after, events, rejected = ingest(
        before, report(1, claim(MINE.id), device="amr-002"), NOW, OFFLINE_AFTER_S
    )
    assert after is before and rejected == []
    assert [(e.reason, e.data["claimed_device"]) for e in events] == [("wrong_device", "amr-002")]


def test_a_finished_deployment_is_not_revived_by_a_late_report() -> None:
    done = MINE.model_copy(update={"activity": Activity.DEPLOYED})
    before = device_file().model_copy(update={"records": (done,)})
    after, events, _ = ingest(before, report(1, claim(MINE.id, "downloading")), NOW, OFFLINE_AFTER_S)
    assert after.records == (done,)
    assert [e.data.get("ignored") for e in events] == [{MINE.id: "finished"}]


# --- read_reports (real git) ----------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return open_or_init_bare(tmp_path / "fleet.git")


def push_status(repo: Repository, device: str, files: dict[str, bytes]) -> None:
    """What a robot's agent does: a commit holding its status.json on its own status ref."""
    ref = status_ref(device)
    old = ref_target(repo, ref)
    oid = commit(repo, None, write_tree(repo, files), "status", [old] if old else [], ROBOT, T0)
    update_refs(repo, {ref: (old, oid)})


def status_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def test_valid_reports_are_read_and_robots_without_a_ref_have_none(repo: Repository) -> None:
    push_status(repo, "amr-001", {STATUS_FILE: status_bytes(report_data(4, claim(MINE.id)))})
    found = read_reports(repo, ["amr-001", "amr-009"])
    got, problem = found["amr-001"]
    assert problem is None and got is not None and got.seq == 4
    assert found["amr-009"] == (None, None)


NESTED = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.parametrize(
    ("files", "reason", "field"),
    [
        ({STATUS_FILE: b" " * MAX_REPORT_BYTES + status_bytes(report_data(1))}, Reason.TOO_LARGE, None),
        ({STATUS_FILE: b'{"format": "fleetcd.dev/status/v1", "seq": '}, Reason.INVALID, None),
        ({STATUS_FILE: status_bytes(report_data(1))[:-1] + b', "seq": 99}'}, Reason.DUPLICATE_KEY, "seq"),
        (
            {STATUS_FILE: status_bytes(report_data(1)).replace(b'"seq": 1', b'"seq": NaN')},
            Reason.INVALID,
            None,
        ),
        ({STATUS_FILE: NESTED[: MAX_REPORT_BYTES - 10]}, Reason.TOO_DEEP, None),
        ({STATUS_FILE: b"\xff\xfe{}"}, Reason.NOT_UTF8, None),
        ({STATUS_FILE: status_bytes({**report_data(1), "seq": -1})}, Reason.SCHEMA, "seq"),
        ({STATUS_FILE: status_bytes(report_data(1, device="amr-002"))}, Reason.WRONG_DEVICE, "device"),
        ({"other.json": b"{}"}, Reason.INVALID, None),
    ],
    ids=[
        "oversized",
        "truncated-json",
        "duplicate-key",
        "nan",
        "deeply-nested",
        "not-utf8",
        "schema-violation",
        "speaks-for-another-robot",
        "no-status-file",
    ],
)
def test_bad_status_is_a_diagnostic_naming_the_ref(
    repo: Repository, files: dict[str, bytes], reason: Reason, field: str | None
) -> None:
    push_status(repo, "amr-001", files)
    push_status(repo, "amr-002", {STATUS_FILE: status_bytes(report_data(1, device="amr-002"))})
    found = read_reports(repo, ["amr-001", "amr-002"])
    got, problem = found["amr-001"]
    assert got is None and problem is not None
    assert problem.file == f"refs/fleetcd/status/amr-001/report:{STATUS_FILE}"
    assert (problem.reason, problem.field) == (reason, field)
    assert found["amr-002"][0] is not None  # one robot's bad report never hides another's
