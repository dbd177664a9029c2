"""``fleetcd get rollouts|devices|releases``: the rows, computed from a fetched view (pure apart from gpg).

Rollouts and devices come from the state branch (what the controller observed), device sites and
releases from main (what people declared), and whether a robot accepts its desired state from its
own last status report (read as untrusted input, exactly as ingest reads it): a robot that refuses
its bundles, runs on an expired one or sees two layouts of its desired ref says so in its report's
``last_error`` / ``stale``, and ``get devices`` shows it (``refusing: <reason>``); a robot
still waiting for its deployment in a rollout shows the one reason it waits for (``WAITING``). Each function
returns JSON-ready rows; the matching ``*_COLUMNS`` say what the table shows. Release signatures
go through the same threshold check as validation and the reconcile
(:func:`fleetcd.trust.policy.check_release`), so "verified" here means exactly what it means to
the controller. A release an approved withdrawal on main names says so (``withdrawn``, with the reason), and
every release lists the robots whose reports say they run it (``running``): after a withdrawal,
the robots still to move off it. ``get release APP VERSION`` shows one release with those robots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.ingest.reports import read_reports
from controller.ops.output import Column, Row, field, when
from controller.ops.remote import RemoteView, open_keyring
from controller.records.model import DeploymentRecord, DeviceState, Outcome, outcome
from controller.records.progress import live_progress, progress_text
from controller.state.holds import Holds
from controller.state.model import DeviceFile, RolloutState, WavePhase, WaveState
from fleetcd.models.base import parse_version
from fleetcd.reports import StatusReport
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.policy import check_release
from fleetcd.validation import withdrawals

WAVE_MARKS = {WavePhase.PASSED: "✓", WavePhase.FAILED: "✗", WavePhase.PENDING: "…"}


def wave_progress(wave: WaveState) -> str:
    """``staging ✓``, ``canary 2/3``, ``production …`` (succeeded of robots while a wave runs)."""
    mark = WAVE_MARKS.get(wave.phase)
    if mark is None:
        mark = f"{wave.counts.succeeded}/{len(wave.devices)}"
        if wave.phase is WavePhase.AWAITING_PROMOTION:
            mark += " (promote)"
        elif wave.phase is WavePhase.WAITING:
            mark += " (waiting)"
    return f"{wave.name} {mark}"


def _wave_json(wave: WaveState) -> dict[str, Any]:
    return {
        "name": wave.name,
        "action": wave.action,
        "phase": wave.phase.value,
        "devices": len(wave.devices),
        **wave.counts.model_dump(),
        "reason": wave.reason,
    }


def rollout_rows(view: RemoteView) -> list[dict[str, Any]]:
    """Every rollout the controller knows, by name."""
    return [_rollout_row(view.state.rollouts[name]) for name in sorted(view.state.rollouts)]


def _rollout_row(state: RolloutState) -> dict[str, Any]:
    return {
        "name": state.name,
        "app": state.app,
        "version": state.version,
        "generation": state.generation,
        "phase": state.phase.value,
        "reason": state.reason,
        "progress": " ".join(wave_progress(w) for w in state.waves),
        "waves": [_wave_json(w) for w in state.waves],
        "previous_version": state.previous_version,
        # what a failed wave did (the rollout's on_halt when it halted) and whom it rolled back
        "halt_policy": state.halt_policy.value if state.halt_policy is not None else None,
        "rolled_back": list(state.rolled_back_devices),
        "commit": state.commit,
        "updated_at": state.updated_at.isoformat(),
    }


ROLLOUT_COLUMNS = (
    field("NAME", "name"),
    Column("RELEASE", lambda r: f"{r['app']}@{r['version']}"),
    field("GEN", "generation"),
    field("PHASE", "phase"),
    field("WAVES", "progress"),
    field("REASON", "reason"),
)


def _newest(records: Sequence[DeploymentRecord]) -> DeploymentRecord | None:
    return max(records, key=lambda r: (r.created_at, r.updated_at, r.generation), default=None)


def app_versions(
    records: Sequence[DeploymentRecord], state: DeviceState | None = None
) -> dict[str, dict[str, Any]]:
    """Per app: the version the robot last reported deployed, and its newest deployment with, while
    its download or health watch runs, how far it is (``progress``, from the robot's ``state``)."""
    apps: dict[str, dict[str, Any]] = {}
    for app in sorted({r.app for r in records}):
        mine = [r for r in records if r.app == app]
        succeeded = _newest([r for r in mine if outcome(r) is Outcome.SUCCEEDED])
        latest = _newest(mine)
        assert latest is not None
        apps[app] = {
            "current": succeeded.version if succeeded else None,
            "latest": {
                "version": latest.version,
                "rollout": latest.rollout,
                "generation": latest.generation,
                "action": latest.action.value,
                "status": latest.status.value,
                "updated_at": latest.updated_at.isoformat(),
                "progress": _progress_json(state, latest),
            },
        }
    return apps


def _progress_json(state: DeviceState | None, record: DeploymentRecord) -> dict[str, Any] | None:
    live = None if state is None else live_progress(state.progress, record)
    if live is None:
        return None
    return {**live.model_dump(mode="json", exclude={"deployment_id"}), "text": progress_text(live)}


def _apps_cell(apps: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for app, info in apps.items():
        latest = info["latest"]
        current = info["current"] or "-"
        status = latest["progress"]["text"] if latest.get("progress") else latest["status"]
        label = status if latest["action"] == "deploy" else f"{latest['action']} {status}"
        if latest["version"] != info["current"]:
            label = f"{latest['version']} {label}"
        parts.append(f"{app} {current} ({label})")
    return ", ".join(parts)


# The agent reports its first error as ``<class name>: <message>`` (agent.loop). These classes say
# the robot does not act on the desired state it fetched; the value is how ``get devices`` says it.
DESIRED_PROBLEMS = {
    "BundleRejected": "refusing",  # failed verification: it keeps its last good state
    "BundleExpired": "stale",  # authentic but expired: no new deployment starts
    "LayoutConflict": "conflict",  # both names of its desired ref exist (agent.sync.layout)
}


def desired_state(report: StatusReport | None, problem: str | None) -> dict[str, Any]:
    """What the robot's last report says about its desired state: the serial it holds and, when it
    does not act on what it fetched, ``state`` (refusing, stale, conflict) and the reason."""
    if report is None:
        return {"serial": None, "state": "unreadable report" if problem else None, "reason": problem}
    kind, sep, message = (report.last_error or "").partition(": ")
    state = DESIRED_PROBLEMS.get(kind) if sep else None
    if state is None and report.stale:
        state, message = "stale", "its desired state expired"
    return {"serial": report.bundle_serial, "state": state, "reason": message if state else None}


def _desired_cell(row: Row) -> str:
    desired = row["desired"]
    serial = "-" if desired["serial"] is None else f"serial {desired['serial']}"
    if desired["state"] is None:
        return serial
    if desired["state"] == "conflict":  # the message starts with "layout conflict: "
        return f"{serial}, {desired['reason']}"
    return f"{serial}, {desired['state']}: {desired['reason']}"


def waiting_for(
    rollouts: Mapping[str, RolloutState], files: Mapping[str, DeviceFile]
) -> dict[str, list[dict[str, Any]]]:
    """Robot -> each rollout it waits in for its deployment: the rollout, its wave and the one hold
    reason (:mod:`controller.state.holds`), for robots with no deployment of its generation yet."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(rollouts):
        rollout = rollouts[name]
        holds = Holds(rollout)
        placed: set[str] = set()
        for wave in rollout.waves:
            for device in wave.devices:
                if device in placed or device in rollout.rolled_back_devices:
                    continue
                placed.add(device)
                known = files.get(device)
                records = known.records if known is not None else ()
                if any(r.rollout == name and r.generation == rollout.generation for r in records):
                    continue
                reason = holds.of(wave.index, device)
                if reason is not None:
                    out.setdefault(device, []).append(
                        {"rollout": name, "wave": wave.name, "reason": reason.value}
                    )
    return out


def _waiting_cell(row: Row) -> str:
    return ", ".join(f"{w['rollout']}: {w['reason']}" for w in row.get("waiting") or []) or "-"


def device_rows(view: RemoteView) -> list[dict[str, Any]]:
    """Every robot declared on main or known to the state branch, by id."""
    rows = []
    devices = sorted(set(view.spec.devices) | set(view.state.devices))
    reports = read_reports(view.repo, devices, present=view.status)
    waiting = waiting_for(view.state.rollouts, view.state.devices)
    for device in devices:
        report, problem = reports[device]
        declared = view.spec.devices.get(device)
        known = view.state.devices.get(device)
        last_seen = known.state.last_seen if known else None
        rows.append(
            {
                "id": device,
                "site": declared.model.site if declared else None,
                "declared": declared is not None,
                "decommissioned": bool(declared and declared.model.decommissioned),
                "connectivity": known.state.connectivity.value if known else "unknown",
                "last_seen": last_seen.isoformat() if last_seen else None,
                "apps": app_versions(known.records, known.state) if known else {},
                "desired": desired_state(report, str(problem) if problem else None),
                "trust": trust_state(report, view.state.meta.trust_version),
                "drift": drift_state(report),
                "waiting": waiting.get(device, []),
            }
        )
    return rows


def trust_state(report: StatusReport | None, current: int) -> dict[str, Any]:
    """The trust-root version the robot's last report says it holds, and whether it is older than
    the one the controller signs under (``current``; 0 before its first reconcile): after a
    rotation, the robots still to move on."""
    held = report.trust_version if report is not None else None
    return {"version": held, "behind": held is not None and 0 < held < current}


def _trust_cell(row: Row) -> str:
    trust = row["trust"]
    if trust["version"] is None:
        return "-"
    return f"v{trust['version']} (old)" if trust["behind"] else f"v{trust['version']}"


def drift_state(report: StatusReport | None) -> list[dict[str, Any]]:
    """What the robot's last report says was changed on it by hand: config files and runtime drift."""
    if report is None:
        return []
    files = [{"app": None, "kind": "config_file", "detail": path, "restored": False} for path in report.drift]
    return files + [d.model_dump(mode="json") for d in report.runtime_drift]


def _drift_cell(row: Row) -> str:
    drift = row.get("drift") or []
    if not drift:
        return "-"
    left = [d for d in drift if not d["restored"]]
    kinds = ", ".join(sorted({str(d["kind"]) for d in drift}))
    restored = len(drift) - len(left)
    return f"{len(left)} left, {restored} restored ({kinds})" if restored else f"{len(left)} ({kinds})"


def _site(row: Row) -> str:
    if not row["declared"]:
        return "(not on main)"
    site = row["site"] or "-"
    return f"{site} (decommissioned)" if row["decommissioned"] else site


DEVICE_COLUMNS = (
    field("ID", "id"),
    Column("SITE", _site),
    field("CONNECTIVITY", "connectivity"),
    Column("LAST SEEN", lambda r: when(r["last_seen"])),
    Column("APPS", lambda r: _apps_cell(r["apps"])),
    Column("WAITING", _waiting_cell),
    Column("DESIRED STATE", _desired_cell),
    Column("TRUST", _trust_cell),
    Column("DRIFT", _drift_cell),
)


def running_releases(view: RemoteView) -> dict[tuple[str, str], list[str]]:
    """(app, version) -> the robots whose newest succeeded deployment of the app is that version."""
    running: dict[tuple[str, str], list[str]] = {}
    for device in sorted(view.state.devices):
        for app, info in app_versions(view.state.devices[device].records).items():
            if info["current"] is not None:
                running.setdefault((app, info["current"]), []).append(device)
    return running


def release_rows(
    view: RemoteView,
    keyring_factory: Callable[[dict[str, bytes]], Keyring] = open_keyring,
    only: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every release on main (or ``only`` that one) with its signature threshold status, whether it
    is withdrawn and the robots running it, by app then version."""
    spec = view.spec
    keys = sorted(spec.releases, key=lambda k: (k[0], parse_version(k[1])))
    if only is not None:
        keys = [k for k in keys if k == only]
    running = running_releases(view)
    root = spec.trust_root
    if root is None:
        return [_release_row(view, k, None, None, (), running, frozenset()) for k in keys]
    signers = root.release_signers
    names = {key.fingerprint: key.name for key in signers.keys}
    rows = []
    with keyring_factory(dict(spec.keys)) as keyring:
        # Only an approved withdrawal withdraws anything (what the controller acts on).
        in_force = withdrawals.check(spec, root, keyring).in_force
        for key in keys:
            entry = spec.releases[key]
            status = check_release(entry.doc.path, entry.doc.raw, entry.signatures, signers, keyring)
            verified = tuple(names.get(f, f) for f in status.verified)
            rows.append(
                _release_row(view, key, len(status.verified), status.required, verified, running, in_force)
            )
    return rows


NOTES_CELL_CHARS = 60


def _notes_cell(row: Row) -> str:
    """The first line of the release's notes, clipped for a table cell."""
    first = (row.get("notes") or "").strip().splitlines()[:1]
    text = first[0] if first else "-"
    return text if len(text) <= NOTES_CELL_CHARS else text[: NOTES_CELL_CHARS - 1] + "…"


def _release_row(
    view: RemoteView,
    key: tuple[str, str],
    verified: int | None,
    required: int | None,
    signers: Sequence[str],
    running: Mapping[tuple[str, str], list[str]],
    in_force: frozenset[tuple[str, str]],
) -> dict[str, Any]:
    ok = verified is not None and required is not None and verified >= required
    withdrawal = view.spec.withdrawals.get(key) if key in in_force else None
    return {
        "app": key[0],
        "version": key[1],
        "path": view.spec.releases[key].doc.path,
        "signatures": {"verified": verified, "required": required, "signers": list(signers), "ok": ok},
        "withdrawn": (
            {"path": withdrawal.path, "reason": withdrawal.model.reason} if withdrawal is not None else None
        ),
        "running": running.get(key, []),
        "notes": view.spec.releases[key].doc.model.notes,
    }


def release_detail(view: RemoteView, app: str, version: str) -> dict[str, Any] | None:
    """One release: its row, the rollouts naming it with their phase, and each robot running it
    (site, connectivity, last seen); None when main has no such release."""
    rows = release_rows(view, only=(app, version))
    if not rows:
        return None
    row = rows[0]
    robots = []
    for device in row["running"]:
        declared = view.spec.devices.get(device)
        known = view.state.devices[device]
        robots.append(
            {
                "id": device,
                "site": declared.model.site if declared else None,
                "connectivity": known.state.connectivity.value,
                "last_seen": known.state.last_seen.isoformat() if known.state.last_seen else None,
            }
        )
    rollouts = [
        {
            "name": state.name,
            "generation": state.generation,
            "phase": state.phase.value,
            "reason": state.reason,
        }
        for name, state in sorted(view.state.rollouts.items())
        if (state.app, state.version) == (app, version)
    ]
    return {**row, "robots": robots, "rollouts": rollouts}


def _withdrawn_cell(row: Row) -> str:
    withdrawn = row["withdrawn"]
    return "-" if withdrawn is None else f"yes: {withdrawn['reason']}"


def _signatures(row: Row) -> str:
    sig = row["signatures"]
    if sig["required"] is None:
        return "unknown (no trust root on main loads: see fleetcd validate)"
    verdict = "verified" if sig["ok"] else "below threshold"
    return f"{sig['verified']}/{sig['required']} {verdict}"


RELEASE_COLUMNS = (
    field("APP", "app"),
    field("VERSION", "version"),
    Column("SIGNATURES", _signatures),
    Column("SIGNED BY", lambda r: ", ".join(r["signatures"]["signers"])),
    Column("RUNNING", lambda r: str(len(r["running"]))),
    Column("WITHDRAWN", _withdrawn_cell),
    Column("NOTES", _notes_cell),
)

RUNNING_COLUMNS = (
    field("ROBOT", "id"),
    Column("SITE", lambda r: r["site"] or "(not on main)"),
    field("CONNECTIVITY", "connectivity"),
    Column("LAST SEEN", lambda r: when(r["last_seen"])),
)
