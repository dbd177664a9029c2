"""The agent's Prometheus metrics: a node_exporter textfile, rewritten at the end of every cycle.

:func:`write_metrics` renders what the cycle knows — each app's running version (a label of an
info-style gauge), its deployment's status, the last successful poll and apply, how long the last
download and apply took, rollbacks, the bundle's serial and expiry, the outbox — with
prometheus_client into ``<state dir>/metrics/agent.prom`` (temp file + rename, so node_exporter
never reads half a file). Point node_exporter's ``--collector.textfile.directory`` at that folder
(docs/agent.md).

Values that outlive a cycle (the last successful poll and apply, durations, the rollback counter)
are carried over from the previous file, parsed back with prometheus_client's parser; a missing or
unreadable file starts them afresh (Prometheus reads a counter that restarts at 0 as a reset).
Only apps the robot knows now are carried over, so no series outlives its app.

Labels are bounded and come from verified data only: app names and versions from the verified
bundle or the robot's own journals, statuses from :class:`fleetcd.vocabulary.Status`. Writing is
best effort: :func:`write_metrics` never raises (a read-only or full disk, a bug here) — it logs,
and the cycle goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.converge.apply import AppOutcome
from agent.state.atomic import read_bytes, write_atomic
from fleetcd.reports import StatusReport
from fleetcd.vocabulary import Activity, Status, merged_status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
METRICS_FILE_MODE = 0o644  # node_exporter runs as its own user
MAX_PREVIOUS_BYTES = 256 * 1024  # the file we wrote holds a few kB; anything bigger is not ours
DOWNLOAD_STEP = Activity.DOWNLOADING.value
# Steps after the download that install and prove a version (the apply): verify, pre-flight and
# install, switch, health watch, commit.
APPLY_STEPS = frozenset(
    a.value
    for a in (Activity.VERIFYING, Activity.APPLYING, Activity.SWITCHED, Activity.WATCHING, Activity.HEALTHY)
)
CARRIED = (
    "fleetcd_agent_last_successful_poll_timestamp_seconds",
    "fleetcd_agent_last_successful_apply_timestamp_seconds",
    "fleetcd_agent_download_duration_seconds",
    "fleetcd_agent_apply_duration_seconds",
    "fleetcd_agent_rollbacks",  # the counter family's name; its sample is ``..._total``
)


@dataclass(frozen=True)
class CycleFacts:
    """What one cycle knows, as the loop hands it over (plain data, no I/O)."""

    now: datetime
    poll_interval_seconds: float
    polled: bool  # this cycle's poll succeeded
    serial: int | None
    expires_at: datetime | None
    outbox: int  # reports waiting to be pushed (the outbox holds at most one)
    report: StatusReport | None
    outcomes: Mapping[str, AppOutcome] = field(default_factory=dict)
    apps: Iterable[str] = ()  # every app the robot knows (journals, bundle)


def write_metrics(path: Path, facts: CycleFacts) -> bool:
    """Rewrite ``path`` from ``facts`` and the previous file; False (logged) when it could not."""
    try:
        previous = _previous(path)
        data = render(facts, previous)
        path.parent.mkdir(mode=0o755, exist_ok=True)
        write_atomic(path, data, mode=METRICS_FILE_MODE)
    except Exception as exc:  # OSError, DiskFull, or a bug: metrics never stop a cycle
        log.warning("metrics textfile %s not written: %s", path, exc)
        return False
    return True


def render(facts: CycleFacts, previous: Mapping[str, Mapping[str, float]]) -> bytes:
    """The textfile for ``facts``; ``previous`` maps carried metric names to ``{app or "": value}``."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest

    disable_created_metrics()  # type: ignore[no-untyped-call]  # no <counter>_created series
    apps = sorted(set(facts.apps) | set(facts.outcomes))
    r = CollectorRegistry(auto_describe=True)
    running = Gauge(
        "fleetcd_agent_app_info",
        "1 per app with the version it runs as a label.",
        ["app", "version"],
        registry=r,
    )
    status = Gauge(
        "fleetcd_agent_deployment_status",
        "1 for the status of each app's deployment as the robot reports it, 0 for the others.",
        ["app", "status"],
        registry=r,
    )
    interval = Gauge("fleetcd_agent_poll_interval_seconds", "agent.yaml's poll.interval_seconds.", registry=r)
    applied = Gauge(
        "fleetcd_agent_last_successful_apply_timestamp_seconds",
        "When each app last reached deployed (Unix time).",
        ["app"],
        registry=r,
    )
    download = Gauge(
        "fleetcd_agent_download_duration_seconds",
        "Wall time of each app's last download.",
        ["app"],
        registry=r,
    )
    apply = Gauge(
        "fleetcd_agent_apply_duration_seconds",
        "Wall time of each app's last apply that reached deployed: verify, pre-flight, install, switch, "
        "health watch and commit (the download not included).",
        ["app"],
        registry=r,
    )
    rollbacks = Counter(
        "fleetcd_agent_rollbacks", "Times the robot rolled each app back on its own.", ["app"], registry=r
    )
    outbox = Gauge("fleetcd_agent_outbox_reports", "Status reports waiting to be pushed.", registry=r)

    interval.set(facts.poll_interval_seconds)
    outbox.set(facts.outbox)
    # Unlabelled gauges exist only with a value: a 0 would say "polled in 1970" or "expired".
    last_poll = facts.now.timestamp() if facts.polled else previous.get(CARRIED[0], {}).get("")
    _gauge(
        r, CARRIED[0], "When the robot last fetched and accepted its desired state (Unix time).", last_poll
    )
    _gauge(r, "fleetcd_agent_bundle_serial", "Serial of the accepted desired-state bundle.", facts.serial)
    _gauge(
        r,
        "fleetcd_agent_bundle_expiry_timestamp_seconds",
        "When the accepted bundle expires (Unix time): past it, the robot starts nothing new.",
        facts.expires_at.timestamp() if facts.expires_at is not None else None,
    )
    if facts.report is not None:
        for installed in facts.report.apps:
            if installed.current is not None:
                running.labels(installed.app, installed.current).set(1)
        latest = {d.app: merged_status(d.activity, d.error) for d in facts.report.deployments}
        for app, current in sorted(latest.items()):
            for value in Status:
                status.labels(app, value.value).set(1 if value is current else 0)
    for app in apps:
        outcome = facts.outcomes.get(app)
        seconds = dict(outcome.seconds) if outcome is not None else {}
        reached = _deployed_at(outcome)
        carried = {name: previous.get(name, {}).get(app) for name in CARRIED[1:]}
        when = reached.timestamp() if reached is not None else carried[CARRIED[1]]
        if when is not None:
            applied.labels(app).set(when)
        took = seconds.get(DOWNLOAD_STEP, carried[CARRIED[2]])
        if took is not None:
            download.labels(app).set(took)
        spent = sum(v for k, v in seconds.items() if k in APPLY_STEPS) if reached is not None else None
        took = spent if spent is not None else carried[CARRIED[3]]
        if took is not None:
            apply.labels(app).set(took)
        rolled = (carried[CARRIED[4]] or 0.0) + _rolled_back(outcome)
        rollbacks.labels(app).inc(rolled)
    return generate_latest(r)


def _gauge(registry: CollectorRegistry, name: str, documentation: str, number: float | None) -> None:
    from prometheus_client import Gauge

    if number is not None:
        Gauge(name, documentation, registry=registry).set(number)


def _deployed_at(outcome: AppOutcome | None) -> datetime | None:
    if outcome is None:
        return None
    done = [e.at for e in outcome.events if e.activity is Activity.DEPLOYED]
    return max(done) if done else None


def _rolled_back(outcome: AppOutcome | None) -> int:
    if outcome is None:
        return 0
    return 1 if any(e.activity is Activity.ROLLED_BACK for e in outcome.events) else 0


def _previous(path: Path) -> dict[str, dict[str, float]]:
    """The carried values of the file written last: ``{metric: {app or "": value}}``; empty when
    there is none or it does not parse (then those values start afresh)."""
    raw = read_bytes(path)
    if raw is None or len(raw) > MAX_PREVIOUS_BYTES:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    try:
        for family in text_string_to_metric_families(raw.decode("utf-8")):
            if family.name not in CARRIED:
                continue
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                out.setdefault(family.name, {})[sample.labels.get("app", "")] = float(sample.value)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("%s: previous metrics unreadable, starting afresh: %s", path, exc)
        return {}
    return out
