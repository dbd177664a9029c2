"""Agent step 6 (report): the robot's status report, assembled from the journals at the end of a cycle
(and read back from ``status.json``); :mod:`agent.report.build` gives it its final, bounded form.

Per app: the deployment the bundle gives it as the journal sees it (activity and error mapped by
:func:`agent.converge.machine.reported`, the reason as message, events carried over from the last
report of the same deployment and the ones this cycle added), and what is installed (current and
previous version). Deployments the bundle no longer names are not reported: the controller has
moved on from them. When no trustworthy desired state is known this cycle, every journal is
reported, so an offline robot still tells what it is doing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from agent.converge.apply import AppOutcome
from agent.converge.machine import reported
from agent.errors import CorruptState
from agent.executors.base import Executor
from agent.report.build import add_event, build_report, clip
from agent.state.atomic import read_bytes
from agent.state.journal import Journal, JournalEntry
from agent.state.migrations import Ledger
from agent.sync.accept import Desired
from fleetcd.models.release import MAX_STEPS
from fleetcd.reports import (
    DeploymentReport,
    InstalledApp,
    Progress,
    ReportedMigration,
    ReportEvent,
    RuntimeDrift,
    StatusReport,
)
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)
CONFIG_DRIFT_NOTE = "config files were edited on the robot"
DEPLOYMENT_ID = re.compile(r"^dep-[0-9a-f]{24}$")  # fleetcd.reports.DeploymentReport's pattern


def load_status(path: Path, *, strict: bool = False) -> StatusReport | None:
    """The last report built (``status.json``); None when missing. Unreadable, it is None too (the
    next report replaces it), or, ``strict``, :class:`CorruptState` (to report and set it aside)."""
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        return StatusReport.model_validate_json(raw)
    except ValidationError as exc:
        if strict:
            raise CorruptState(path, f"not a status report: {exc.errors()[0]['msg']}") from exc
        log.warning("%s: unreadable, starting a fresh report: %s", path, exc.errors()[0]["msg"])
        return None


def status_report(
    device: str,
    seq: int,
    now: datetime,
    *,
    journals: Mapping[str, Journal],
    executor: Executor | None,
    desired: Desired,
    ledgers: Mapping[str, Ledger] | None = None,
    outcomes: Mapping[str, AppOutcome],
    previous: StatusReport | None,
    drift: Mapping[str, Sequence[str]],
    last_error: str | None,
    runtime_drift: Sequence[RuntimeDrift] = (),
    progress: Progress | None = None,
) -> StatusReport:
    """The report of this cycle; ``journals`` holds every app the robot knows of; ``progress`` when
    it is pushed mid-step (agent.report.progress)."""
    earlier = {d.deployment_id: d for d in previous.deployments} if previous is not None else {}
    apps: list[InstalledApp] = []
    deployments: list[DeploymentReport] = []
    for app, journal in sorted(journals.items()):
        outcome = outcomes.get(app)
        entry = outcome.entry if outcome is not None else _load(journal)
        apps.extend(_installed(app, entry, executor))
        if entry is None or not DEPLOYMENT_ID.fullmatch(entry.deployment_id):
            continue
        given = desired.assignments.get(app)
        if desired.known and (given is None or given.deployment.deployment_id != entry.deployment_id):
            continue
        events = outcome.events if outcome is not None else ()
        left = [d.detail for d in runtime_drift if d.app == app and not d.restored]
        note = "; ".join(left) if left else CONFIG_DRIFT_NOTE
        report = deployment_report(
            app,
            entry,
            earlier.get(entry.deployment_id),
            events,
            drifted=app in drift or bool(left),
            note=note,
        )
        ledger = (ledgers or {}).get(app)
        deployments.append(report.model_copy(update={"migrations": _migrations(ledger, entry.deployment_id)}))
    return build_report(
        device,
        seq,
        now,
        bundle_serial=desired.serial,
        trust_version=desired.trust_version,
        stale=desired.stale,
        apps=apps,
        deployments=deployments,
        last_error=last_error,
        drift=[path for paths in drift.values() for path in paths],
        runtime_drift=runtime_drift,
        progress=progress,
    )


def _migrations(ledger: Ledger | None, deployment_id: str) -> list[ReportedMigration]:
    """The migrations the deployment ran, in run order (unreadable ledger: none, and a warning)."""
    if ledger is None:
        return []
    try:
        runs = ledger.load().of(deployment_id)
    except CorruptState as exc:
        log.warning("%s", exc)
        return []
    return [ReportedMigration(name=r.name, state=r.state) for r in runs][-MAX_STEPS:]


def _load(journal: Journal) -> JournalEntry | None:
    """The journal's entry; None when it is corrupt (reported, and repaired once the executor is up:
    agent.converge.repair), so that the report is still built."""
    try:
        return journal.load()
    except CorruptState as exc:
        log.warning("%s", exc)
        return None


def _installed(app: str, entry: JournalEntry | None, executor: Executor | None) -> list[InstalledApp]:
    try:
        current = executor.active(app) if executor is not None else None
    except Exception as exc:  # an engine that does not answer must not stop the report
        log.warning("%s: active version unknown: %s", app, exc)
        current = entry.version if entry is not None and entry.state.value == "healthy" else None
    previous = entry.previous_version if entry is not None else None
    if current is None and previous is None:
        return []
    return [InstalledApp(app=app, current=current, previous=previous if previous != current else None)]


def deployment_report(
    app: str,
    entry: JournalEntry,
    previous: DeploymentReport | None,
    events: tuple[ReportEvent, ...],
    *,
    drifted: bool = False,
    note: str = "",
) -> DeploymentReport:
    """The report of ``entry``'s deployment, carrying on the events of the last report of it."""
    activity, error = reported(entry)
    if drifted and activity is Activity.DEPLOYED:
        activity = Activity.DRIFTED
    same = previous is not None and previous.deployment_id == entry.deployment_id
    report = DeploymentReport(
        deployment_id=entry.deployment_id,
        app=app,
        version=entry.version,
        activity=activity,
        error=error,
        message=clip(entry.reason or ""),
        updated_at=entry.updated_at,
        events=list(previous.events) if same and previous is not None else [],
    )
    for event in events:
        last = report.events[-1] if report.events else None
        if last is None or (last.activity, last.error) != (event.activity, event.error):
            report = add_event(report, event)  # a resumed state is not news
    drifted_now = drifted and activity is Activity.DRIFTED
    if drifted_now and (not report.events or report.events[-1].activity is not Activity.DRIFTED):
        message = clip(note or CONFIG_DRIFT_NOTE)
        report = add_event(
            report, ReportEvent(at=entry.updated_at, activity=Activity.DRIFTED, message=message)
        )
    return report
