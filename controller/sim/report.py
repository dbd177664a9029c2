"""What a simulation found: per-wave timings and a summary, from the robots' traces and the state branch.

Place in the flow: the last step of ``fleetcd sim``. Times are seconds since the merge on the
simulation's clock. A robot's deployment is *applied* when the report saying so reached the
server. Each traced deployment is matched, by its deterministic id, to the controller's record on
the state branch, which says which rollout, wave and action (deploy, stage, rollback) it belongs to;
the wave's own phase and start time come from the controller's rollout state. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from controller.ops.output import Column, render_table
from controller.records.model import DeploymentRecord
from controller.sim.model import Trace
from controller.state.model import RolloutState

APPLIED = frozenset({"deployed", "staged"})


@dataclass(frozen=True)
class WaveTiming:
    rollout: str
    generation: int
    wave: str
    index: int
    action: str  # deploy, stage or rollback
    robots: int  # in the wave (deploy, stage) or given a rollback
    phase: str | None  # the controller's phase of the wave (None for rollbacks)
    controller_started_s: float | None
    first_started_s: float | None  # first robot began applying
    last_applied_s: float | None  # last robot's "applied" report reached the server
    applied: int
    failed: int
    rolled_back: int
    pending: int  # received, outcome not reported yet
    merge_to_applied_p50_s: float | None
    merge_to_applied_p99_s: float | None


@dataclass(frozen=True)
class Summary:
    robots: int
    offline: int
    applied: int  # deployments (deploy, stage) applied
    failed: int
    rolled_back: int
    rollbacks_applied: int  # the controller's rollback deployments robots carried out
    pending: int
    rejected_bundles: int
    merge_to_applied_p50_s: float | None
    merge_to_applied_p99_s: float | None


@dataclass(frozen=True)
class SimReport:
    settings: dict[str, Any]
    stopped: str  # done, time limit, stalled
    stalled_reason: str | None
    simulated_seconds: float
    wall_seconds: float
    rollouts: dict[str, str]  # name -> phase
    waves: list[WaveTiming]
    summary: Summary
    costs: dict[str, float | int]
    traces: list[Trace] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("traces")
        return data

    def render_text(self) -> str:
        s, c = self.settings, self.costs
        virtual = bool(s["virtual_time"])
        clock, kind = ("virtual clock", "simulated") if virtual else ("real clock", "elapsed")
        lines = [
            f"fleetcd sim: {self.summary.robots} robots ({self.summary.offline} offline), {clock}, "
            f"seed {s['seed']}; poll {s['poll_seconds']:g} s ±{s['jitter_percent']:g} %, apply "
            f"{s['apply_seconds']:g} s, failure rate {s['failure_rate']:g}, latency "
            f"{s['latency_seconds'] * 1000:g} ms, controller every {s['controller_seconds']:g} s",
            f"stopped: {self.stopped} at {self.simulated_seconds:.0f} s {kind}, "
            f"{self.wall_seconds:.1f} s wall"
            + (f" — STALLED: {self.stalled_reason}" if self.stalled_reason else ""),
            "",
        ]
        if self.waves:
            lines += [render_table([asdict(w) for w in self.waves], _COLUMNS), ""]
        m = self.summary
        lines.append(
            f"summary: {m.applied} applied, {m.failed} failed, {m.rolled_back} rolled back, "
            f"{m.rollbacks_applied} rollbacks applied, {m.pending} pending, {m.offline} offline, "
            f"{m.rejected_bundles} bundles refused; merge→applied p50 {_s(m.merge_to_applied_p50_s)}, "
            f"p99 {_s(m.merge_to_applied_p99_s)}"
        )
        phases = ", ".join(f"{name} {phase}" for name, phase in sorted(self.rollouts.items()))
        lines.append(f"rollouts: {phases or 'none'}")
        lines.append(
            f"costs: {c['polls']} polls ({c['fetches']} brought a new commit, {c['skipped_polls']} "
            f"skipped), {c['verifications']} bundles verified, {c['gpg_checks']} gpg checks "
            f"({c['gpg_cache_hits']} answered from the cache), {c['pushes']} pushes, {c['reconciles']} "
            f"reconciles ({c['idle_reconciles']} idle, {c['new_roots']} new roots, "
            f"{c['controller_wall_seconds']:.1f} s wall)"
        )
        return "\n".join(lines)


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if abs(value) >= 10 else f"{value:.1f} s"


_COLUMNS = [
    Column("rollout", lambda r: r["rollout"]),
    Column("gen", lambda r: r["generation"]),
    Column("wave", lambda r: r["wave"] + (" (rollback)" if r["action"] == "rollback" else "")),
    Column("robots", lambda r: r["robots"]),
    Column("wave start", lambda r: _s(r["controller_started_s"])),
    Column("first start", lambda r: _s(r["first_started_s"])),
    Column("last applied", lambda r: _s(r["last_applied_s"])),
    Column("p50", lambda r: _s(r["merge_to_applied_p50_s"])),
    Column("p99", lambda r: _s(r["merge_to_applied_p99_s"])),
    Column("applied", lambda r: r["applied"]),
    Column("failed", lambda r: r["failed"]),
    Column("rolled back", lambda r: r["rolled_back"]),
    Column("pending", lambda r: r["pending"]),
    Column("phase", lambda r: r["phase"]),
]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in (0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def wave_timings(
    traces: Iterable[Trace],
    records: Mapping[str, DeploymentRecord],
    rollouts: Mapping[str, RolloutState],
    start: datetime,
) -> list[WaveTiming]:
    """One row per (rollout, generation, wave, action) planned by the controller or worked on by a robot.

    Waves are named and phased from the rollout's current generation; a row of an older generation
    (robots finishing what an earlier run started) is named by its wave index.
    """
    groups: dict[tuple[str, int, int, str], list[Trace]] = {}
    for trace in traces:
        record = records.get(trace.deployment_id)
        key = (
            (record.rollout, record.generation, record.wave, record.action.value)
            if record
            else ("(unknown)", 0, 0, trace.action)
        )
        groups.setdefault(key, []).append(trace)
    for name, state in rollouts.items():
        for planned in state.waves:
            groups.setdefault((name, state.generation, planned.index, planned.action), [])
    rows = []
    for (rollout, generation, index, action), group in sorted(groups.items()):
        known = rollouts.get(rollout)
        current = known is not None and known.generation == generation
        wave = next((w for w in known.waves if w.index == index), None) if known and current else None
        started = [t.started_s for t in group if t.started_s is not None]
        applied = [t.finished_s for t in group if t.outcome in APPLIED and t.finished_s is not None]
        mine = wave is not None and action != "rollback"
        rows.append(
            WaveTiming(
                rollout=rollout,
                generation=generation,
                wave=wave.name if wave is not None else str(index),
                index=index,
                action=action,
                robots=len(wave.devices) if mine and wave is not None else len({t.device for t in group}),
                phase=wave.phase.value if mine and wave is not None else None,
                controller_started_s=(wave.started_at - start).total_seconds()
                if mine and wave is not None and wave.started_at is not None
                else None,
                first_started_s=min(started, default=None),
                last_applied_s=max(applied, default=None),
                applied=len(applied),
                failed=sum(t.outcome == "failed" for t in group),
                rolled_back=sum(t.outcome == "rolled_back" for t in group),
                pending=sum(t.outcome is None for t in group),
                merge_to_applied_p50_s=percentile(applied, 50),
                merge_to_applied_p99_s=percentile(applied, 99),
            )
        )
    return rows


def summarize(traces: Sequence[Trace], robots: int, offline: int, rejected: int) -> Summary:
    deploys = [t for t in traces if t.action != "rollback"]
    applied = [t.finished_s for t in deploys if t.outcome in APPLIED and t.finished_s is not None]
    return Summary(
        robots=robots,
        offline=offline,
        applied=len(applied),
        failed=sum(t.outcome == "failed" for t in deploys),
        rolled_back=sum(t.outcome == "rolled_back" for t in deploys),
        rollbacks_applied=sum(t.action == "rollback" and t.outcome in APPLIED for t in traces),
        pending=sum(t.outcome is None for t in traces),
        rejected_bundles=rejected,
        merge_to_applied_p50_s=percentile(applied, 50),
        merge_to_applied_p99_s=percentile(applied, 99),
    )
