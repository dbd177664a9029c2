"""The page ``fleetcd history ROBOT --at T`` prints for people, from :func:`controller.ops.asof.history_at`.

One paragraph per app: a line saying where the app stood (running, dispatched, applying, rolled
back, failed, nothing installed yet), then the running deployment and the one handed to the robot
with their provenance, then the robot's own last report. Robots' words (messages) are untrusted
and pass through :func:`~controller.ops.output.clean_cell`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.ops.asof import RanState
from controller.ops.output import clean_cell, when

INDENT = "    "


def render_history_at(answer: Mapping[str, Any]) -> str:
    lines = [_heading(answer)]
    lines += [f"note: {note}" for note in answer["notes"]]
    if not answer["apps"]:
        lines.append("\nnothing installed yet: no deployment dispatched and no app reported")
    for app in answer["apps"]:
        lines.append("")
        lines.append(f"{app['app']}: {summary(app)}")
        for role in ("running", "handed"):
            if app[role] is not None:
                lines += _deployment(role, app[role])
    lines.append("")
    lines += _report(answer["report"])
    return "\n".join(lines)


def _heading(answer: Mapping[str, Any]) -> str:
    head = f"{answer['device']} at {when(answer['at'])}"
    if answer["main_commit"]:
        head += f" (as the controller processed main commit {answer['main_commit'][:12]})"
    state = answer["state_commit"]
    if state is None:
        return head + ": no state commit of the controller yet"
    main = state["main_commit"]
    on = f", main {main[:12]}" if main else ""
    return head + f"\nstate commit {state['id'][:12]} of {when(state['at'])}{on}"


def _version(deployment: Mapping[str, Any] | None) -> str:
    return str(deployment["version"]) if deployment is not None and deployment["version"] else "nothing"


def summary(app: Mapping[str, Any]) -> str:
    """One line: where the app stood at the instant."""
    state, running, handed = RanState(app["state"]), app["running"], app["handed"]
    ran = _version(running)
    if state is RanState.NOTHING_INSTALLED:
        return "nothing installed yet"
    if state is RanState.RUNNING:
        return f"running {ran}"
    if state is RanState.DISPATCHED:
        kind = "rollback to " if handed and handed.get("action") == "rollback" else ""
        return f"{kind}{_version(handed)} dispatched, not yet applied; running {ran}"
    if state is RanState.APPLYING:
        kind = "rolling back to " if handed and handed.get("action") == "rollback" else "applying "
        return f"{kind}{_version(handed)} ({handed and handed['robot_activity']}); running {ran}"
    if state is RanState.ROLLED_BACK:
        if handed is None or handed.get("action") == "rollback":
            return f"rolled back: running {ran} (a rollback deployment)"
        return f"rolled back from {_version(handed)}; running {ran}"
    return f"{_version(handed)} failed; running {ran}"


def _deployment(role: str, found: Mapping[str, Any]) -> list[str]:
    label = role  # "running" or "handed"
    if found.get("deployment") is None:
        return [f"  {label}: {found['version']} (no report in reach names its deployment)"]
    said = f"; robot says {found['robot_activity']}" if found.get("robot_activity") else ""
    if found["robot_message"]:
        said += f": {clean_cell(found['robot_message'])}"
    lines = [f"  {label}: {found['version']} deployment {found['deployment']}{said}"]
    if not found["recorded"]:
        return [*lines, f"{INDENT}no record of it on the state branch at or before the instant"]
    config = ""  # a release without config files has no config digest
    if found["config_sha256"]:
        config = f"; config {found['config_sha256'][:12]} ({', '.join(found['config_files'])})"
    lines.append(
        f"{INDENT}rollout {found['rollout']} generation {found['generation']} ({found['action']}), "
        f"dispatched {when(found['dispatched_at'])}; release sha256 {found['release_sha256'][:16]}{config}"
    )
    lines.append(f"{INDENT}asked for by main commit {_commit(found['requested_by'])}")
    if found["commit"] != found["requested_by"]:
        lines.append(f"{INDENT}delivers the signed files of main commit {_commit(found['commit'])}")
    lines.append(f"{INDENT}{_approvals(found['approvals'])}")
    lines += _wave(found["wave"], found["rollout_state"])
    return lines


def _commit(commit: Mapping[str, Any] | str | None) -> str:
    if commit is None:
        return "unknown"
    if isinstance(commit, str):
        return commit
    subject = f' "{clean_cell(commit["subject"])}"' if commit["subject"] else ""
    return f"{commit['id'][:12]}{subject} ({when(commit['at'])})"


def _approvals(approvals: Mapping[str, Any] | str) -> str:
    if isinstance(approvals, str):
        return f"approvals: {approvals}"
    names = ", ".join(_approver(a) for a in approvals["approvers"]) or "nobody"
    return (
        f"approved by {names}; verified at main commit {approvals['commit']['id'][:12]} "
        f"(generation {approvals['generation']})"
    )


def _approver(approver: Mapping[str, Any]) -> str:
    signed = f", signed in {approver['commit']['id'][:12]}" if approver["commit"] else ""
    return f"{approver['name']} ({approver['fingerprint'][-16:]}{signed})"


def _wave(wave: Mapping[str, Any], rollout: Mapping[str, Any] | None) -> list[str]:
    phase = f" (rollout {rollout['phase']})" if rollout else ""
    if "name" not in wave:
        return [f"{INDENT}wave {wave['index']}: its rollout state is older than the state commits searched"]
    lines = [f"{INDENT}wave {wave['index']} {wave['name']}: {wave['phase']}{phase}"]
    gate = wave["gate"]
    if isinstance(gate, str):
        lines.append(f"{INDENT}  gate: {gate}")
    else:
        count, percent = gate["failure_threshold_count"], gate["failure_threshold_percent"]
        bounds = [f"> {count} robots"] if count is not None else []
        bounds += [f"> {percent:g}%"] if percent is not None else []
        manual = "yes" if gate["manual_promotion"] else "no"
        lines.append(
            f"{INDENT}  gate: fails at {' or '.join(bounds)} failed; needs "
            f"{gate['min_reported_percent']:g}% reported; soak {gate['soak_seconds']} s; "
            f"manual promotion {manual}"
        )
    decided = wave["decided_counts"]
    counts, label = (decided, "decided on") if decided else (wave["counts"], "counted")
    lines.append(
        f"{INDENT}  {label}: {counts['total']} robots, {counts['succeeded']} succeeded, "
        f"{counts['failed']} failed, {counts['rolled_back']} rolled back, {counts['timed_out']} timed out, "
        f"{counts['in_progress']} in progress, {counts['queued']} queued, {counts['offline']} offline"
    )
    return lines


def _report(report: Mapping[str, Any] | None) -> list[str]:
    if report is None:
        return ["the robot had not reported before the instant"]
    lines = [
        f"the robot's last report before the instant: seq {report['seq']} at {when(report['reported_at'])}, "
        f"agent {clean_cell(report['agent_version'])}, bundle serial {report['bundle_serial']}"
    ]
    for app in report["apps"]:
        current, previous = app["current"] or "nothing", app["previous"] or "-"
        lines.append(f"  {app['app']}: runs {current} (previous {previous})")
    for d in report["deployments"]:
        error = f" ({d['error']})" if d["error"] != "none" else ""
        message = f": {clean_cell(d['message'])}" if d["message"] else ""
        lines.append(f"  {d['app']} {d['version']} {d['deployment']} {d['activity']}{error}{message}")
    progress = report["progress"]
    if progress is not None and progress["phase"] == "downloading":
        lines.append(
            f"  progress of {progress['deployment_id']}: downloaded {progress['done_bytes']} of "
            f"{progress['total_bytes']} bytes"
        )
    elif progress is not None:
        lines.append(
            f"  progress of {progress['deployment_id']}: {progress['phase']}, "
            f"{progress['seconds_left']} of {progress['window_seconds']} s left"
        )
    if report["last_error"]:
        lines.append(f"  last error: {clean_cell(report['last_error'])}")
    return lines
