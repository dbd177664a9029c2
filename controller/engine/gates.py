"""Wave statistics from deployment records, and the gate verdict on them (pure).

Counting, per robot of a wave, its deployment of this generation:

* ``succeeded`` — deployed (or, in a blue/green *stage* wave, staged);
* ``rolled_back`` — the robot's agent rolled itself back; ``timed_out`` — silent past its
  deadline; ``failed`` — any other failure. These three are the wave's *failures*;
* ``offline`` — not finished and the robot is offline: not a failure until its deadline passes;
* ``in_progress`` — working on it; ``queued`` — dispatched but not picked up, or not dispatched
  yet (held by a window or the rate limit, or waiting for the blue/green switch).

Gate order: a crossed failure threshold fails the wave, whatever else holds; otherwise the wave's
gate numbers are met once ``reported`` (succeeded + failures) reaches ``min_reported_percent``.
An empty wave meets its gate at once. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet

from controller.records.model import Connectivity, DeploymentRecord, Outcome, outcome
from controller.state.model import WaveCounts
from fleetcd.compat import StrEnum
from fleetcd.planning.waves import PlannedWave, WaveAction
from fleetcd.reasons import RecordReason
from fleetcd.vocabulary import Activity


class Verdict(StrEnum):
    FAILED = "failed"  # failure threshold crossed
    MET = "met"  # enough robots reported, threshold not crossed
    OPEN = "open"  # still waiting for reports


def failures(counts: WaveCounts) -> int:
    return counts.failed + counts.rolled_back + counts.timed_out


def count_wave(
    wave: PlannedWave,
    record_of: Callable[[str], DeploymentRecord | None],
    connectivity_of: Callable[[str], Connectivity],
    recorded: AbstractSet[str] | None = None,
) -> WaveCounts:
    """The wave's statistics; ``record_of(device)`` is the robot's deployment of this generation.

    ``recorded``: every robot ``record_of`` may answer for, when the caller knows them (the
    ledger does); the wave's other robots have none and are queued uncounted, so counting costs
    the wave's robots with a deployment, not the wave (1,000 of a 100,000-robot wave: 1,000
    lookups, where looking up every robot cost 0.16 s of a reconcile, profiled)."""
    tally = {"succeeded": 0, "failed": 0, "rolled_back": 0, "timed_out": 0}
    tally |= {"in_progress": 0, "queued": 0, "offline": 0}
    devices: Iterable[str] = wave.devices
    if recorded is not None and len(wave.members) == len(wave.devices):  # no robot listed twice
        devices = wave.members.intersection(recorded)
        tally["queued"] = len(wave.devices) - len(devices)
    for device in devices:
        record = record_of(device)
        bucket = _bucket(wave, record, device, connectivity_of) if record is not None else "queued"
        if bucket is not None:
            tally[bucket] += 1
    return WaveCounts(total=len(wave.devices), **tally)


def _bucket(
    wave: PlannedWave,
    record: DeploymentRecord,
    device: str,
    connectivity_of: Callable[[str], Connectivity],
) -> str | None:
    result = outcome(record)
    if result is Outcome.FAILED:
        if record.reason == RecordReason.TIMED_OUT.value:
            return "timed_out"
        return "rolled_back" if record.activity is Activity.ROLLED_BACK else "failed"
    if result is Outcome.SUCCEEDED:
        return "succeeded"
    if result is Outcome.STAGED and wave.action is WaveAction.STAGE:
        return "succeeded"
    if result is Outcome.RETIRED:
        return None  # cancelled before it finished (abort, halt): neither a success nor a failure
    if connectivity_of(device) is Connectivity.OFFLINE:  # asked only for unfinished deployments
        return "offline"
    if result in (Outcome.PENDING, Outcome.STAGED):
        return "queued"  # not picked up yet, or staged and waiting for the switch
    return "in_progress"


def verdict(wave: PlannedWave, counts: WaveCounts) -> Verdict:
    if wave.failure_threshold.crossed(failures(counts), counts.total):
        return Verdict.FAILED
    if counts.reported * 100.0 >= wave.min_reported_percent * counts.total:
        return Verdict.MET
    return Verdict.OPEN
