"""Status ingest, step 4 of a reconcile: robots' reports → deployment records and audit events.

Two halves. :func:`read_reports` is the I/O edge: it reads each robot's
``refs/fleetcd/status/<id>/report`` (fetched into the controller's mirror) and parses
``status.json`` as *untrusted* input. The ref must name a commit whose tree holds a regular file
``status.json`` (not a blob, tree, tag, missing object, symlink, submodule or directory: see
:func:`fleetcd.git.untrusted.read_commit_file`), sizes are checked from object headers before a
byte is loaded, the JSON is strict (duplicate keys, NaN and Infinity refused, integers of more than
:data:`~fleetcd.reports.MAX_INT_DIGITS` digits refused before conversion), every number within its
bound in the typed model (a ``seq`` above :data:`~fleetcd.reports.MAX_SEQ` is refused, never
stored), and the report must name the robot whose ref it sits under. A bad report never stops the
reconcile: it becomes a :class:`~fleetcd.errors.Diagnostic` naming the ref, the object and why,
which the reconcile logs as an audit line for that robot, and the robot's records stay as they
were.

:func:`ingest` is pure (takes ``now``): it applies one robot's report to its
:class:`~controller.state.model.DeviceFile`. A robot speaks only for itself: a deployment id that
is not one of its own records — another robot's deployment, or an id nobody issued — is rejected
with an audit event naming the robot and the id. Record moves follow
:func:`controller.records.transitions.apply_report` (one-way, one-time use).

A report's ``progress`` (a download's bytes, a watch's seconds left) is kept on the robot's state
only when it is about a deployment the same report claims, in that phase, and the claim was
accepted (:func:`controller.records.progress.accepted_progress`); the next report without one
clears it.

``last_seen`` is the controller's ``now`` when it sees a new ``seq``, not the robot's
``reported_at``: a robot's clock may be reset to 1970 or run ahead, and a fresh seq is proof of
life within one reconcile interval whatever that clock says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from pydantic import ValidationError

from controller.audit.events import AuditEvent, AuditKind
from controller.records.model import DeploymentRecord, connectivity
from controller.records.progress import accepted_progress
from controller.records.transitions import apply_report, judge_report
from controller.state.model import DeviceFile
from fleetcd.compat import UTC
from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import STATUS_LEAF, STATUS_PREFIX, status_ref
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.untrusted import Unreadable, UnreadableCommit, read_commit_file
from fleetcd.reasons import IgnoredReport, Reason, RefusedClaim
from fleetcd.reports import (
    MAX_INT_DIGITS,
    MAX_REPORT_BYTES,
    MAX_SEQ,
    STATUS_FILE,
    DeploymentReport,
    StatusReport,
)

ReadResult = tuple[StatusReport | None, Diagnostic | None]
_REPORT_TAIL = f"/{STATUS_LEAF}"


_UNREADABLE_REASONS = {
    Unreadable.MISSING: Reason.NOT_A_COMMIT,
    Unreadable.NOT_A_COMMIT: Reason.NOT_A_COMMIT,
    Unreadable.NO_FILE: Reason.INVALID,
    Unreadable.NOT_A_FILE: Reason.INVALID,
    Unreadable.TOO_LARGE: Reason.TOO_LARGE,
}


class _Duplicate(ValueError):
    pass


class _TooLong(ValueError):
    pass


def read_reports(
    repo: Repository, devices: Iterable[str], *, present: Mapping[str, Oid] | None = None
) -> dict[str, ReadResult]:
    """Each robot's latest report, or a diagnostic naming its ref; (None, None) when it has none.

    ``present`` (status ref -> commit, the commits already in ``repo``) says where each report is
    when it is not the mirror's own ``refs/fleetcd/status/`` (status shards:
    :func:`controller.reconcile.shards.locate`).
    """
    if present is None:
        present = list_refs(repo, STATUS_PREFIX)
    out: dict[str, ReadResult] = {}
    for device in devices:
        ref = status_ref(device)
        target = present.get(ref)
        out[device] = (None, None) if target is None else _read_one(repo, device, ref, target)
    return out


@dataclass(frozen=True)
class MovedReport:
    """A status ref that names another object than when it was last read, and what it holds."""

    target: str  # the object the ref names now (hex): the device file's next ``last_report_oid``
    report: StatusReport | None
    problem: Diagnostic | None


def read_moved_reports(
    repo: Repository, last_read: Mapping[str, str | None], *, present: Mapping[str, Oid] | None = None
) -> dict[str, MovedReport]:
    """The reports of the robots whose status ref moved, in device name order: ``last_read`` maps
    each robot to the object its ref named when last read (None: never read). A ref still naming
    that object holds nothing new (a report's ``seq`` is ingested once), so it is not read again: K
    robots reporting cost K reads in a fleet of any size. What is read is checked exactly as by
    :func:`read_reports` (``present`` as there: where the reports are, with status shards).

    The pass is over the status refs present, not the fleet: a robot that never reported costs
    nothing, and a ref that names no robot of ``last_read`` (a stray, a removed robot, a name that
    is no device id) is skipped without a read.
    """
    if present is None:
        present = list_refs(repo, STATUS_PREFIX)
    out: dict[str, MovedReport] = {}
    start, end = len(STATUS_PREFIX), -len(_REPORT_TAIL)
    for ref, target in present.items():
        if not (ref.startswith(STATUS_PREFIX) and ref.endswith(_REPORT_TAIL)):
            continue
        device = ref[start:end]
        if device not in last_read or str(target) == last_read[device]:
            continue
        if status_ref(device) != ref:  # raises for a device id that cannot name a ref
            continue
        report, problem = _read_one(repo, device, ref, target)
        out[device] = MovedReport(str(target), report, problem)
    return dict(sorted(out.items()))


def _read_one(repo: Repository, device: str, ref: str, target: Oid) -> ReadResult:
    where = f"{ref}:{STATUS_FILE}"
    try:
        raw = read_commit_file(repo, target, STATUS_FILE, max_bytes=MAX_REPORT_BYTES)
    except UnreadableCommit as exc:
        return None, Diagnostic(where, None, None, str(exc), _UNREADABLE_REASONS[exc.kind])
    try:
        report = parse_report(raw, where)
    except ReportRejected as exc:
        return None, exc.diagnostic
    if report.device != device:
        message = f"report names device {report.device!r}, but sits under {device!r}'s ref"
        return None, Diagnostic(where, None, "device", message, Reason.WRONG_DEVICE)
    return report, None


class ReportRejected(InvalidContent):
    """A robot's ``status.json`` that cannot be ingested; ``diagnostic`` names the ref and why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLong(f"an integer of {len(digits.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def parse_report(raw: bytes, where: str) -> StatusReport:
    """Strict parse of ``status.json`` bytes; :class:`ReportRejected` names ``where`` and why not."""
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportRejected(
            Diagnostic(where, None, None, f"over {MAX_REPORT_BYTES} bytes", Reason.TOO_LARGE)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportRejected(
            Diagnostic(where, None, None, f"not UTF-8: {exc.reason}", Reason.NOT_UTF8)
        ) from None
    try:
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_int=_bounded_int
        )
    except _TooLong as exc:
        raise ReportRejected(Diagnostic(where, None, None, str(exc), Reason.OUT_OF_RANGE)) from None
    except _Duplicate as exc:
        message = f"key {exc.args[0]!r} appears twice"
        raise ReportRejected(
            Diagnostic(where, None, str(exc.args[0]), message, Reason.DUPLICATE_KEY)
        ) from None
    except json.JSONDecodeError as exc:
        raise ReportRejected(
            Diagnostic(where, exc.lineno, None, f"not JSON: {exc.msg}", Reason.INVALID)
        ) from None
    except ValueError as exc:  # NaN/Infinity, integers of thousands of digits
        raise ReportRejected(Diagnostic(where, None, None, str(exc), Reason.INVALID)) from None
    except RecursionError:
        message = "nested too deeply to be a report"
        raise ReportRejected(Diagnostic(where, None, None, message, Reason.TOO_DEEP)) from None
    try:
        return StatusReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        spot = ".".join(str(p) for p in first["loc"]) or None
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        # Above a documented bound (a seq no agent reaches): refused with its own reason.
        reason = Reason.OUT_OF_RANGE if first["type"] == "less_than_equal" else Reason.SCHEMA
        raise ReportRejected(Diagnostic(where, None, spot, first["msg"] + more, reason)) from None


def ingest(
    device_file: DeviceFile,
    report: StatusReport,
    now: datetime,
    offline_after_seconds: float,
    *,
    owners: Mapping[str, str] | None = None,
) -> tuple[DeviceFile, list[AuditEvent], list[str]]:
    """(new device file, audit events, rejected deployment ids) after one robot's report.

    A report whose ``seq`` is not above the last one ingested changes nothing. ``owners`` (every
    live deployment id → its robot) lets a claim on another robot's deployment be told apart from
    an unknown id; both are rejected. The device-report audit event is emitted only when a record,
    the robot's connectivity or the trust-root version it holds changed, so an idle fleet does not
    grow the log.
    """
    device = device_file.state.device
    # A seq above MAX_SEQ can only have been stored before reports were bounded; it would freeze
    # this robot's status for good (no report can beat it), so it counts as no report yet.
    last_seq = device_file.last_report_seq if device_file.last_report_seq <= MAX_SEQ else -1
    if report.seq <= last_seq:
        return device_file, [], []
    if report.device != device:
        event = _rejection(now, device, report, None, Reason.WRONG_DEVICE, {"claimed_device": report.device})
        return device_file, [event], []
    records = {record.id: record for record in device_file.records}
    events: list[AuditEvent] = []
    rejected: list[str] = []
    changes: list[dict[str, Any]] = []
    ignored: dict[str, str] = {}
    seen: set[str] = set()
    for claim in report.deployments:
        why, extra = _refusal(claim, records, seen, device, owners or {})
        seen.add(claim.deployment_id)
        if why is not None:
            rejected.append(claim.deployment_id)
            events.append(_rejection(now, device, report, claim.deployment_id, why, extra))
            continue
        record = records[claim.deployment_id]
        updated = apply_report(
            record, claim.activity, claim.error, claim.message, min(_aware(claim.updated_at), now)
        )
        if updated is record:
            reason = judge_report(record, claim.activity, claim.error)
            if reason is not None and reason is not IgnoredReport.UNCHANGED:
                ignored[record.id] = reason.value
            continue
        records[record.id] = updated
        changes.append(_change(record, updated))
    seen_at = max(now, device_file.state.last_seen or now)
    # A report without the field (an agent from before trust rotation) leaves the version known.
    trust_version = device_file.state.trust_version if report.trust_version is None else report.trust_version
    state = device_file.state.model_copy(
        update={
            "last_seen": seen_at,
            "connectivity": connectivity(seen_at, now, offline_after_seconds),
            "trust_version": trust_version,
            # Only this report's: one without progress (the end of the robot's cycle) clears it.
            "progress": accepted_progress(report, records, set(rejected)),
        }
    )
    reconnected = state.connectivity is not device_file.state.connectivity
    trust_moved = trust_version != device_file.state.trust_version
    new_file = device_file.model_copy(
        update={
            "state": state,
            "last_report_seq": report.seq,
            "records": tuple(records[r.id] for r in device_file.records),
        }
    )
    if changes or reconnected or trust_moved:
        data: dict[str, Any] = {
            "seq": report.seq,
            "changes": changes,
            "connectivity": state.connectivity.value,
        }
        if trust_moved:
            data["trust_version"] = {"from": device_file.state.trust_version, "to": trust_version}
        if ignored:
            data["ignored"] = ignored
        events.insert(0, AuditEvent(at=now, kind=AuditKind.DEVICE_REPORT, device=device, data=data))
    return new_file, events, rejected


def _refusal(
    claim: DeploymentReport,
    records: Mapping[str, DeploymentRecord],
    seen: set[str],
    device: str,
    owners: Mapping[str, str],
) -> tuple[RefusedClaim | None, dict[str, Any]]:
    """Why a claim about one deployment is refused (None: it is this robot's to report)."""
    if claim.deployment_id in seen:
        return RefusedClaim.DUPLICATE_DEPLOYMENT, {}
    record = records.get(claim.deployment_id)
    if record is None:
        owner = owners.get(claim.deployment_id)
        if owner is not None and owner != device:
            return RefusedClaim.FOREIGN_DEPLOYMENT, {"owner": owner}
        return RefusedClaim.UNKNOWN_DEPLOYMENT, {}
    if (claim.app, claim.version) != (record.app, record.version):
        claimed = f"{claim.app} {claim.version}"
        return RefusedClaim.MISMATCHED_DEPLOYMENT, {
            "claimed": claimed,
            "expected": f"{record.app} {record.version}",
        }
    return None, {}


def _rejection(
    now: datetime,
    device: str,
    report: StatusReport,
    deployment_id: str | None,
    why: RefusedClaim | Reason,
    extra: Mapping[str, Any],
) -> AuditEvent:
    data: dict[str, Any] = {"seq": report.seq, **extra}
    if deployment_id is not None:
        data["deployment_id"] = deployment_id
    return AuditEvent(at=now, kind=AuditKind.DEVICE_REPORT, device=device, reason=why.value, data=data)


def _change(before: DeploymentRecord, after: DeploymentRecord) -> dict[str, Any]:
    return {
        "deployment_id": after.id,
        "rollout": after.rollout,
        "generation": after.generation,
        "from": before.status.value,
        "to": after.status.value,
    }


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
