"""Agent step 6 (report), pure part: assemble the :class:`~fleetcd.reports.StatusReport` to push.

No I/O and no clock (``now`` is passed in). Whatever the converge loop hands over, the result is a
report the controller will accept: texts are clipped to the format's limits, events keep only the
newest :data:`~fleetcd.reports.MAX_EVENTS`, lists are cut to their maximum length (newest
deployments first), and if the encoded report would still exceed
:data:`~fleetcd.reports.MAX_REPORT_BYTES`, old events are dropped until it fits — a report that is
too big would be refused whole, which is worse than one with a shorter history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from fleetcd.desired.bundle import canonical_bytes
from fleetcd.reports import (
    MAX_DEPLOYMENTS,
    MAX_EVENTS,
    MAX_REPORT_BYTES,
    MAX_RUNTIME_DRIFT,
    MESSAGE_MAX,
    DeploymentReport,
    InstalledApp,
    Progress,
    ReportEvent,
    RuntimeDrift,
    StatusReport,
)

MAX_APPS = 64
MAX_DRIFT = 64
DRIFT_PATH_MAX = 512
AGENT_VERSION_MAX = 64
ELLIPSIS = "…"
# Event history lengths tried, longest first, when a report is over MAX_REPORT_BYTES.
EVENT_BUDGETS = (MAX_EVENTS, 10, 5, 2, 1, 0)


def agent_version() -> str:
    """The installed fleetcd distribution's version (the agent ships inside it)."""
    try:
        found = version("fleetcd")
    except PackageNotFoundError:
        found = "unknown"
    return found[:AGENT_VERSION_MAX]


def clip(text: str, limit: int = MESSAGE_MAX) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def add_event(dep: DeploymentReport, event: ReportEvent) -> DeploymentReport:
    """``dep`` with ``event`` appended, keeping the newest MAX_EVENTS events."""
    events = [*dep.events, event][-MAX_EVENTS:]
    return dep.model_copy(update={"events": events})


def build_report(
    device: str,
    seq: int,
    now: datetime,
    *,
    bundle_serial: int | None,
    trust_version: int | None = None,
    stale: bool,
    apps: Sequence[InstalledApp],
    deployments: Sequence[DeploymentReport],
    last_error: str | None,
    drift: Sequence[str],
    runtime_drift: Sequence[RuntimeDrift] = (),
    progress: Progress | None = None,
) -> StatusReport:
    """The report for ``seq`` (which must grow with every report this robot makes); ``progress``
    only in a report pushed while a long step runs (agent.report.progress)."""
    newest_first = sorted(deployments, key=lambda d: (d.updated_at, d.deployment_id), reverse=True)
    kept = sorted(newest_first[:MAX_DEPLOYMENTS], key=lambda d: (d.app, d.deployment_id))
    report = StatusReport(
        format="fleetcd.dev/status/v1",
        device=device,
        seq=seq,
        agent_version=agent_version(),
        reported_at=now,
        bundle_serial=bundle_serial,
        trust_version=trust_version,
        stale=stale,
        apps=sorted(apps, key=lambda a: a.app)[:MAX_APPS],
        deployments=kept,
        last_error=None if last_error is None else clip(last_error),
        drift=[clip(path, DRIFT_PATH_MAX) for path in sorted(set(drift))][:MAX_DRIFT],
        runtime_drift=list(runtime_drift)[:MAX_RUNTIME_DRIFT],
        progress=progress,
    )
    for budget in EVENT_BUDGETS:
        trimmed = report.model_copy(update={"deployments": [_last_events(d, budget) for d in kept]})
        if len(canonical_bytes(trimmed)) <= MAX_REPORT_BYTES:
            return trimmed
    # Unreachable with the format's limits (20 deployments of ~1 KiB without events); say so loudly.
    raise ValueError(f"report of {device} exceeds {MAX_REPORT_BYTES} bytes even without events")


def _last_events(dep: DeploymentReport, count: int) -> DeploymentReport:
    return dep.model_copy(update={"events": dep.events[-count:] if count else []})
