"""The fleet's gauges from what one reconcile recorded (pure: models in, counts out; no I/O, no clock).

:func:`fleet_gauges` turns an :class:`~controller.reconcile.result.Observed` into
:class:`FleetGauges`. Every label value comes from validated data and is bounded: rollout, wave and
app names from ``main`` (people write them; validation checks them), phases, connectivity and
statuses from the enums of :mod:`controller.state.model`, :mod:`controller.records.model` and
:mod:`fleetcd.vocabulary`. Robot ids are never labels: at 100,000 robots one series per robot
would be 100,000 series per metric, which is a job for the status pages and ``fleetcd get
devices``, not for a time-series database. Robots are counted, and the per-robot view stays
in git.

Per-wave numbers are the engine's own (:class:`~controller.state.model.WaveCounts`, the numbers
its gates compare), so a dashboard shows what the gate saw. One correction: robots still
``queued`` in a wave that never started, of a rollout that halted, will never be dispatched; they
are counted ``not_dispatched`` (the status pages say the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.records.model import Connectivity, DeploymentRecord
from controller.state.model import DeviceFile, RolloutPhase, RolloutState, WaveCounts, WavePhase

# Robots of a wave, by where they stand: the engine's buckets (``queued`` is ``pending`` here).
WAVE_STATES = (
    "succeeded",
    "failed",
    "rolled_back",
    "timed_out",
    "in_progress",
    "pending",
    "offline",
    "not_dispatched",
)
NO_DEPLOYMENT = "none"  # a robot that has no deployment record at all
_STOPPED = frozenset({RolloutPhase.HALTED, RolloutPhase.ROLLING_BACK})
_NEVER_STARTED = frozenset({WavePhase.PENDING, WavePhase.WAITING})


@dataclass(frozen=True)
class WaveGauges:
    rollout: str
    wave: str
    index: int
    phase: WavePhase
    robots: tuple[tuple[str, int], ...]  # (state, count) for every state of WAVE_STATES, zeros included


@dataclass(frozen=True)
class FleetGauges:
    """Rollouts by phase, robots by connectivity and by status, and each wave's progress.

    ``robots_by_status`` maps (app, status) to robots whose newest deployment of the app has that
    status (as ``fleetcd get devices`` shows it). ``None`` parts were not observed this time.
    """

    rollout_phases: tuple[tuple[str, str, RolloutPhase], ...]  # (rollout, app, phase)
    waves: tuple[WaveGauges, ...]
    robots_by_connectivity: tuple[tuple[Connectivity, int], ...] | None = None
    robots_by_status: tuple[tuple[str, str, int], ...] | None = None  # (app, status, robots)

    def rollouts_by_phase(self) -> dict[RolloutPhase, int]:
        counts = dict.fromkeys(RolloutPhase, 0)
        for _, _, phase in self.rollout_phases:
            counts[phase] += 1
        return counts


def fleet_gauges(
    rollouts: Mapping[str, RolloutState],
    devices: Mapping[str, DeviceFile] | None,
    retired: Iterable[str] = (),
) -> FleetGauges:
    """The gauges for ``rollouts`` and (when read) ``devices``, leaving out ``retired`` robots."""
    phases = tuple((name, state.app, state.phase) for name, state in sorted(rollouts.items()))
    waves = tuple(
        WaveGauges(name, wave.name, wave.index, wave.phase, wave_robots(state, wave.phase, wave.counts))
        for name, state in sorted(rollouts.items())
        for wave in state.waves
    )
    if devices is None:
        return FleetGauges(phases, waves)
    out = frozenset(retired)
    active = [data for device, data in devices.items() if device not in out]
    links = dict.fromkeys(Connectivity, 0)
    statuses: dict[tuple[str, str], int] = {}
    for data in active:
        links[data.state.connectivity] += 1
        for app, record in newest_by_app(data.records).items():
            key = (app, record.status.value)
            statuses[key] = statuses.get(key, 0) + 1
    return FleetGauges(
        phases,
        waves,
        tuple(links.items()),
        tuple((app, status, n) for (app, status), n in sorted(statuses.items())),
    )


def wave_robots(rollout: RolloutState, phase: WavePhase, counts: WaveCounts) -> tuple[tuple[str, int], ...]:
    """(state, robots) of one wave in :data:`WAVE_STATES` order."""
    never = rollout.phase in _STOPPED and phase in _NEVER_STARTED
    tally = {
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "rolled_back": counts.rolled_back,
        "timed_out": counts.timed_out,
        "in_progress": counts.in_progress,
        "pending": 0 if never else counts.queued,
        "offline": counts.offline,
        "not_dispatched": counts.queued if never else 0,
    }
    return tuple((state, tally[state]) for state in WAVE_STATES)


def newest_by_app(records: Iterable[DeploymentRecord]) -> dict[str, DeploymentRecord]:
    """Each app's newest record (created, then updated, then generation), as ``get devices`` picks it."""
    newest: dict[str, DeploymentRecord] = {}
    for record in records:
        held = newest.get(record.app)
        key = (record.created_at, record.updated_at, record.generation)
        if held is None or key > (held.created_at, held.updated_at, held.generation):
            newest[record.app] = record
    return newest
