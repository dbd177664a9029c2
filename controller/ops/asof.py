"""``fleetcd history ROBOT --at T``: what ran on one robot at one instant, and on whose word.

Per app, from git alone (:mod:`controller.ops.instant` reads it):

* **what ran** is what the robot itself reported running in its reports up to T, not what the
  controller dispatched: the newest deployment a report called ``deployed`` (or ``drifted``) that no
  later report called failed or rolled back. Beside it, the deployment the controller had handed
  the robot at T, if another, and how far the robot's last report says it got (:func:`robot_state`);
* each deployment's release digest, config, rollout, generation and wave come from its record on
  the state branch at or before T; the main commit that asked for it, its approvers and its
  wave's gate numbers from its generation's rollout state at or before T (a rollback deployment
  quotes the approvals of the generation that first put its release out);
* the robot's own last report before T.

States written before the state kept a field answer "unknown (recorded before …)" for it. The
decisions (:func:`robot_state`, :func:`running_ids`) are pure; :func:`history_at` gathers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.ops.asof_question import Instant
from controller.ops.instant import Report, ReportWalk, StateWalk, aware, brought_to_main, state_at
from controller.records.model import Action, DeploymentRecord, TargetStatus
from controller.state.model import Approver, RolloutState, WaveState
from fleetcd.compat import StrEnum
from fleetcd.git.log import LogEntry, commit_subject, commit_time, first_parent_log
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import status_ref
from fleetcd.git.repo import Repository
from fleetcd.layout import approval_path
from fleetcd.reports import DeploymentReport, StatusReport
from fleetcd.vocabulary import Activity, ErrorStatus

MAIN_COMMITS = 100_000  # main's first parents walked back to its first commit ("before the fleet")
NO_SHARDS = "the fleet repository (with status shards, give --status-shard as the controller does)"
UNKNOWN_GATE = "unknown (recorded before the state branch kept gate numbers)"
UNKNOWN_COMMIT = "unknown (recorded before deployment records named their main commit)"
UNKNOWN_APPROVALS = "unknown (the generation's rollout state is older than the state commits searched)"


class RanState(StrEnum):
    """Where one app on the robot stood at the instant, as the robot's own reports tell it."""

    NOTHING_INSTALLED = "nothing_installed"  # no release of the app reported or dispatched yet
    DISPATCHED = "dispatched"  # handed to the robot, which had not reported starting on it
    APPLYING = "applying"  # downloading, verifying, installing or watching its health
    RUNNING = "running"
    ROLLED_BACK = "rolled_back"  # back on the previous release: its agent rolled back, or a rollback
    FAILED = "failed"  # the newest deployment failed; the robot runs what it ran before


_LIVE = frozenset({Activity.DEPLOYED, Activity.DRIFTED})
_UNDONE = frozenset({Activity.ROLLED_BACK, Activity.FAILED})
_APPLYING = frozenset(
    {
        Activity.DOWNLOADING,
        Activity.VERIFYING,
        Activity.APPLYING,
        Activity.WATCHING,
        Activity.STAGED,
        Activity.REMOVING,
    }
)


def robot_state(handed: DeploymentRecord | None, said: DeploymentReport | None, running: bool) -> RanState:
    """The app's state from the deployment the robot was handed, what its last report said of that
    deployment (None: nothing), and whether some deployment of the app was running."""
    idle = RanState.RUNNING if running else RanState.NOTHING_INSTALLED
    if handed is None:
        return idle
    if said is None or said.activity in (Activity.QUEUED, Activity.ARCHIVED):
        return RanState.DISPATCHED
    if said.activity == Activity.ROLLED_BACK:
        return RanState.ROLLED_BACK
    if said.activity == Activity.FAILED or said.error == ErrorStatus.FAILED:
        return RanState.FAILED
    if said.activity in _APPLYING:
        return RanState.APPLYING
    return RanState.ROLLED_BACK if handed.action is Action.ROLLBACK else RanState.RUNNING


def running_ids(reports: Iterable[StatusReport], apps: set[str]) -> dict[str, DeploymentReport]:
    """app -> the deployment the robot last reported live (deployed or drifted), walking its reports
    newest first; a deployment a later report called failed or rolled back no longer runs."""
    found: dict[str, DeploymentReport] = {}
    undone: set[str] = set()
    for report in reports:
        for said in report.deployments:
            if said.app in found or said.app not in apps:
                continue
            if said.activity in _UNDONE or said.error == ErrorStatus.FAILED:
                undone.add(said.deployment_id)
            elif said.activity in _LIVE and said.deployment_id not in undone:
                found[said.app] = said
        if len(found) == len(apps):
            break
    return found


def handed(records: Sequence[DeploymentRecord], app: str) -> DeploymentRecord | None:
    """The deployment of ``app`` the robot's desired state carried: its newest one not archived."""
    live = [r for r in records if r.app == app and r.target_status is not TargetStatus.ARCHIVED]
    return max(live, key=lambda r: (r.created_at, r.generation, r.id), default=None)


def history_at(repo: Repository, main: str, question: Instant) -> dict[str, Any]:
    """The answer to ``question`` as JSON-ready data (``history --at`` prints it)."""
    at = question.at
    start, oldest = (question.state, None) if question.state is not None else state_at(repo, at)
    walk = StateWalk(repo, start, question.device)
    tip = question.reports_tip if question.sharded else ref_target(repo, status_ref(question.device))
    reports = ReportWalk(repo, question.device, at, tip)
    cached: list[Report] = []
    iterator = iter(reports)

    def newest_first() -> Iterable[StatusReport]:
        yield from (r.report for r in cached)
        for report in iterator:
            cached.append(report)
            yield report.report

    last = next(iter(newest_first()), None)
    apps = sorted({r.app for r in walk.at_start} | _reported_apps(last))
    live = running_ids(newest_first(), set(apps))
    notes = _notes(repo, main, at, start, oldest)
    answer_apps = []
    for app in apps:
        given = handed(walk.at_start, app)
        said = _said(last, given)
        run = live.get(app)
        # No report in reach names a live deployment, but the robot may still say what runs.
        if run is None:
            running = _installed_only(last, app)
        else:
            running = _deployment(repo, walk, run.deployment_id, run)
        state = robot_state(given, said, running is not None)
        pending = None
        if given is not None and (run is None or given.id != run.deployment_id):
            pending = _deployment(repo, walk, given.id, said)
        answer_apps.append({"app": app, "state": state.value, "running": running, "handed": pending})
    if walk.commits_read >= walk.limit:
        notes.append(f"read the {walk.limit} state commits before the instant; older ones were not read")
    notes += question.notes
    meta = walk.meta
    if meta is not None and meta.stalled_commit is not None:
        stalled = f"the controller was stalled on main commit {meta.stalled_commit[:12]}"
        notes.append(f"{stalled} ({meta.stalled_reason}): robots kept what they had been handed before it")
    if tip is None:
        where = "its status shard" if question.sharded else NO_SHARDS
        notes.append(f"no status ref of the robot in {where}: nothing it reported is known")
    if reports.unreadable:
        notes.append(f"{reports.unreadable} of the robot's reports were unreadable and skipped")
    return {
        "device": question.device,
        "at": at.isoformat(),
        "main_commit": question.main_commit,
        "state_commit": None
        if start is None
        else {
            "id": start.commit,
            "at": start.when.isoformat(),
            "main_commit": walk.meta.last_processed_commit if walk.meta is not None else None,
        },
        "apps": answer_apps,
        "report": _report(cached[0]) if cached else None,
        "notes": notes,
    }


def _reported_apps(report: StatusReport | None) -> set[str]:
    if report is None:
        return set()
    return {d.app for d in report.deployments} | {a.app for a in report.apps if a.current is not None}


def _said(report: StatusReport | None, record: DeploymentRecord | None) -> DeploymentReport | None:
    if report is None or record is None:
        return None
    return next((d for d in report.deployments if d.deployment_id == record.id), None)


def _installed_only(report: StatusReport | None, app: str) -> dict[str, Any] | None:
    """The version the robot says runs, when no report in reach names its deployment."""
    installed = next((a for a in report.apps if a.app == app), None) if report is not None else None
    if installed is None or installed.current is None:
        return None
    return {"version": installed.current, "deployment": None}


def _deployment(
    repo: Repository, walk: StateWalk, deployment: str, said: DeploymentReport | None
) -> dict[str, Any]:
    record = walk.record(deployment)
    out: dict[str, Any] = {
        "deployment": deployment,
        "robot_activity": str(said.activity) if said is not None else None,
        "robot_error": str(said.error) if said is not None else None,
        "robot_message": said.message if said is not None else None,
    }
    if record is None:
        return {**out, "version": said.version if said is not None else None, "recorded": False}
    state = walk.rollout(record.rollout, record.generation)
    out |= {
        "recorded": True,
        "version": record.version,
        "app": record.app,
        "release_sha256": record.release_sha256,
        "config_sha256": record.config_sha256,
        "config_files": list(record.config_files),
        "rollout": record.rollout,
        "generation": record.generation,
        "action": record.action.value,
        "dispatched_at": record.created_at.isoformat(),
        "controller_status": record.status.value,
        "commit": _commit(repo, record.commit) if record.commit is not None else UNKNOWN_COMMIT,
        "rollout_state": None,
        "wave": {"index": record.wave},
        "requested_by": None,
        "approvals": UNKNOWN_APPROVALS,
    }
    if state is None:
        return out
    out["rollout_state"] = {"phase": state.phase.value, "reason": state.reason}
    out["requested_by"] = _commit(repo, state.commit)
    wave = next((w for w in state.waves if w.index == record.wave), None)
    if wave is not None:
        out["wave"] = _wave(wave)
    approving = state if record.action is not Action.ROLLBACK else _put_out(walk, record)
    if approving is not None:
        out["approvals"] = {
            "generation": approving.generation,
            "commit": _commit(repo, approving.commit),
            "approvers": [_approver(repo, approving, a) for a in sorted(approving.approvers, key=_by_name)],
        }
    return out


def _by_name(approver: Approver) -> tuple[str, str]:
    return approver.name, approver.fingerprint


def _approver(repo: Repository, state: RolloutState, approver: Approver) -> dict[str, Any]:
    """Name, fingerprint and the main commit that brought the signature the controller verified."""
    found = brought_to_main(repo, state.commit, approval_path(state.name, approver.fingerprint))
    signed = _commit(repo, found) if found is not None else None
    return {"name": approver.name, "fingerprint": approver.fingerprint, "commit": signed}


def _put_out(walk: StateWalk, record: DeploymentRecord) -> RolloutState | None:
    """The rollout's newest earlier generation that released what this rollback deployment restores."""
    for generation in range(record.generation - 1, 0, -1):
        state = walk.rollout(record.rollout, generation)
        if state is not None and state.release_sha256 == record.release_sha256:
            return state
    return None


def _wave(wave: WaveState) -> dict[str, Any]:
    gate: Mapping[str, Any] | str = UNKNOWN_GATE if wave.gate is None else wave.gate.model_dump(mode="json")
    return {
        "index": wave.index,
        "name": wave.name,
        "phase": wave.phase.value,
        "reason": wave.reason,
        "gate": gate,
        "counts": wave.counts.model_dump(mode="json"),
        "decided_counts": wave.decided_counts.model_dump(mode="json") if wave.decided_counts else None,
        "started_at": wave.started_at.isoformat() if wave.started_at else None,
        "gates_met_at": wave.gates_met_at.isoformat() if wave.gates_met_at else None,
        "finished_at": wave.finished_at.isoformat() if wave.finished_at else None,
    }


def _commit(repo: Repository, commit: str) -> dict[str, Any]:
    when = commit_time(repo, commit)
    return {
        "id": commit,
        "subject": commit_subject(repo, commit),
        "at": when.isoformat() if when is not None else None,
    }


def _report(found: Report) -> dict[str, Any]:
    report = found.report
    return {
        "commit": found.commit,
        "seq": report.seq,
        "reported_at": aware(report.reported_at).isoformat(),
        "agent_version": report.agent_version,
        "bundle_serial": report.bundle_serial,
        "trust_version": report.trust_version,
        "stale": report.stale,
        "apps": [a.model_dump(mode="json") for a in report.apps],
        "deployments": [
            {
                "deployment": d.deployment_id,
                "app": d.app,
                "version": d.version,
                "activity": str(d.activity),
                "error": str(d.error),
                "message": d.message,
            }
            for d in report.deployments
        ],
        "last_error": report.last_error,
        # A report pushed mid-step: bytes downloaded, or seconds left of the health watch.
        "progress": report.progress.model_dump(mode="json") if report.progress is not None else None,
    }


def _notes(
    repo: Repository, main: str, at: datetime, start: LogEntry | None, oldest: LogEntry | None
) -> list[str]:
    notes = []
    if start is None:
        first = None
        for entry in first_parent_log(repo, main, MAIN_COMMITS):
            first = entry
        if first is not None and at < first.when:
            notes.append(f"before the fleet existed: main's first commit is at {first.when.isoformat()}")
        if oldest is not None:
            notes.append(
                f"before the controller's first state commit ({oldest.when.isoformat()}): "
                "nothing had been dispatched"
            )
        else:
            notes.append("the controller has not written its state branch yet")
    return notes
