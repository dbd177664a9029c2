"""The controller's metrics in the Prometheus text format (prometheus_client: registry and exposition).

:class:`ControllerMetrics` is one process's registry. The loop calls :meth:`~ControllerMetrics.
observe` after every reconcile with its result (or the error that ended it) and how long it took;
:meth:`~ControllerMetrics.render` is the text that ``/metrics`` serves and ``--metrics-file``
holds. Counters count since the process started (Prometheus handles the reset on a restart); the
fleet's gauges are those of the last reconcile that recorded something (an idle reconcile changes
nothing, so they stay), built fresh on every scrape so a rollout removed from ``main`` leaves no
series behind. Names follow Prometheus' conventions: the ``fleetcd_`` prefix, base units
(``_seconds``), ``_total`` on counters, ``_timestamp_seconds`` for instants (docs/metrics.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.errors import LoopAction, StateConflict, loop_action
from controller.metrics.fleet import FleetGauges, fleet_gauges
from controller.reconcile.result import ReconcileResult
from controller.records.model import Connectivity
from controller.state.model import RolloutPhase, WavePhase

RESULTS = ("applied", "stalled", "failed", "idle")
SIGNATURE_KINDS = ("desired_root", "audit_head")
REPOSITORIES = ("mirror", "server")  # what housekeeping repacks (controller.reconcile.result.Repack)
# A reconcile of 10 robots takes well under a second; one of 100,000 takes minutes (docs/scaling.md).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))
MAX_REJECTION_REASONS = 64  # reasons are enum values (fleetcd.reasons); this only guards the bound


def result_of(result: ReconcileResult | None, error: BaseException | None) -> str:
    """One of :data:`RESULTS` for a reconcile that returned ``result`` or raised ``error``."""
    if error is not None:
        stall = isinstance(error, Exception) and loop_action(error) is LoopAction.STALL
        return "stalled" if stall else "failed"
    assert result is not None
    if result.idle:
        return "idle"
    return "stalled" if result.stalled else "applied"


class ControllerMetrics:
    """The controller's registry; thread-safe (the HTTP server scrapes while the loop observes)."""

    def __init__(self, push_attempts: int) -> None:
        # No ``<counter>_created`` series: the text format 0.0.4 carries them as extra gauges that
        # double every counter and no alert needs (process-wide, as prometheus_client keeps it).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._push_attempts = push_attempts
        self._lock = threading.Lock()
        self._fleet: FleetGauges | None = None
        r = self.registry
        self.reconciles = Counter(
            "fleetcd_reconciles",
            "Reconciles by result: applied, stalled (invalid content), failed "
            "(git, network, setup or a bug; retried with backoff), idle (nothing new, nothing due).",
            ["result"],
            registry=r,
        )
        self.duration = Histogram(
            "fleetcd_reconcile_duration_seconds",
            "Wall time of one reconcile, by result.",
            ["result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "fleetcd_last_successful_reconcile_timestamp_seconds",
            "When the last reconcile that applied main or found nothing to do ran (Unix time).",
            registry=r,
        )
        self.ingested = Counter(
            "fleetcd_reports_ingested",
            "Robots' status reports with a new seq applied to their records.",
            registry=r,
        )
        self.rejected = Counter(
            "fleetcd_reports_rejected",
            "Robots' reports, or claims in one, refused (reason: fleetcd/reasons.py), "
            "counted when the audit log first records the refusal.",
            ["reason"],
            registry=r,
        )
        self.signatures = Counter(
            "fleetcd_signatures",
            "gpg signatures the controller made: over the desired-state root "
            "(desired_root) and over the audit log's new head (audit_head).",
            ["kind"],
            registry=r,
        )
        self.bundles_built = Counter(
            "fleetcd_bundles_built",
            "Robots' bundles built: whose inputs changed, or whose desired-state ref was written "
            "(a wave to K robots builds about K, whatever the fleet's size).",
            registry=r,
        )
        self.push_retries = Counter(
            "fleetcd_state_push_retries",
            "State-branch pushes lost to another writer, retried from a fresh fetch.",
            registry=r,
        )
        self.repacks = Counter(
            "fleetcd_repacks",
            "Housekeeping repacks (git gc --auto past git's thresholds) of the controller's mirror "
            "and of a local server it pushed into by hand, by result: done, or failed (retried "
            "after the next reconcile).",
            ["repository", "result"],
            registry=r,
        )
        for repository in REPOSITORIES:
            for outcome in ("done", "failed"):
                self.repacks.labels(repository, outcome)
        for result in RESULTS:  # every series from the start: rate() and absent() need no first event
            self.reconciles.labels(result)
            self.duration.labels(result)
        for kind in SIGNATURE_KINDS:
            self.signatures.labels(kind)
        r.register(_FleetCollector(self))

    def observe(
        self,
        result: ReconcileResult | None,
        seconds: float,
        *,
        error: BaseException | None = None,
        now: datetime | None = None,
    ) -> None:
        """Count one reconcile that returned ``result`` (or raised ``error``) after ``seconds``."""
        outcome = result_of(result, error)
        self.reconciles.labels(outcome).inc()
        self.duration.labels(outcome).observe(max(0.0, seconds))
        if isinstance(error, StateConflict):  # every attempt lost the race
            self.push_retries.inc(self._push_attempts)
        if result is None:
            return
        if outcome in ("applied", "idle") and now is not None:
            self.last_success.set(now.timestamp())
        self.ingested.inc(result.reports_ingested)
        for reason, count in list(result.reports_rejected.items())[:MAX_REJECTION_REASONS]:
            self.rejected.labels(reason).inc(count)
        self.signatures.labels("audit_head").inc(result.head_signatures)
        self.signatures.labels("desired_root").inc(result.signatures - result.head_signatures)
        self.push_retries.inc(result.push_retries)
        self.bundles_built.inc(result.bundles_built)
        for repack in result.repacks:
            if repack.repository in REPOSITORIES:
                self.repacks.labels(repack.repository, "done" if repack.ok else "failed").inc()
        if result.observed is not None:
            seen = result.observed
            gauges = fleet_gauges(seen.rollouts, seen.devices, seen.retired)
            with self._lock:
                if gauges.robots_by_connectivity is None and self._fleet is not None:
                    # A stall reads no robots: their last counts still hold.
                    gauges = FleetGauges(
                        gauges.rollout_phases,
                        gauges.waves,
                        self._fleet.robots_by_connectivity,
                        self._fleet.robots_by_status,
                    )
                self._fleet = gauges

    def fleet(self) -> FleetGauges | None:
        with self._lock:
            return self._fleet

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4), as ``/metrics`` serves it."""
        return generate_latest(self.registry)


class _FleetCollector(Collector):
    """The fleet's gauges, built from the last observed :class:`FleetGauges` at every scrape."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # labelled families whose series come and go: nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        fleet = self._metrics.fleet()
        if fleet is None:
            return
        by_phase = GaugeMetricFamily(
            "fleetcd_rollouts", "Rollouts on the state branch by phase.", labels=["phase"]
        )
        for phase, count in fleet.rollouts_by_phase().items():
            by_phase.add_metric([phase.value], count)
        yield by_phase
        phase_of = GaugeMetricFamily(
            "fleetcd_rollout_phase",
            "1 for each rollout's current phase, 0 for the others.",
            labels=["rollout", "app", "phase"],
        )
        for name, app, current in fleet.rollout_phases:
            for phase in RolloutPhase:
                phase_of.add_metric([name, app, phase.value], 1 if phase is current else 0)
        yield phase_of
        waves = GaugeMetricFamily(
            "fleetcd_wave_robots",
            "Robots of each wave of each rollout's current generation, by where "
            "they stand (the engine's gate numbers).",
            labels=["rollout", "wave", "state"],
        )
        wave_phase = GaugeMetricFamily(
            "fleetcd_wave_phase",
            "1 for each wave's current phase, 0 for the others.",
            labels=["rollout", "wave", "phase"],
        )
        for wave in fleet.waves:
            for state, count in wave.robots:
                waves.add_metric([wave.rollout, wave.wave, state], count)
            for step in WavePhase:
                wave_phase.add_metric([wave.rollout, wave.wave, step.value], 1 if step is wave.phase else 0)
        yield waves
        yield wave_phase
        if fleet.robots_by_connectivity is not None:
            links = GaugeMetricFamily(
                "fleetcd_robots",
                "Robots on main (retired ones left out) by connectivity.",
                labels=["connectivity"],
            )
            counted = dict(fleet.robots_by_connectivity)
            for link in Connectivity:
                links.add_metric([link.value], counted.get(link, 0))
            yield links
        if fleet.robots_by_status is not None:
            statuses = GaugeMetricFamily(
                "fleetcd_robot_deployments",
                "Robots by the status of their newest deployment of each app "
                "(as `fleetcd get devices` shows it).",
                labels=["app", "status"],
            )
            for app, status, count in fleet.robots_by_status:
                statuses.add_metric([app, status], count)
            yield statuses
