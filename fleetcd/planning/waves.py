"""Splitting a rollout's eligible robots into waves: the single source of truth for wave membership.

Purely computational (no I/O, no clock). ``fleetcd plan`` shows these waves on a pull request and
the controller schedules exactly the same ones, so what reviewers approve is what runs.

Rules, per strategy:

* ``all_at_once`` — one wave ``all``.
* ``rolling`` — waves ``batch-1``, ``batch-2``… of ``batch_size`` robots; ``delay_seconds`` is the
  soak after each batch but the last.
* ``canary`` — ``canary``: ceil(percent % of n) robots, at least 1 when n ≥ 1, whose failure
  threshold is a count of 0 (any canary failure halts); then ``rest`` with the strategy's threshold.
* ``waves`` — the explicit list, in order. A wave's candidates are the eligible robots not placed in
  an earlier wave, intersected with its cohort when it names one; its ``percent`` (ceil, at least 1
  when there are candidates) is taken of those candidates. No implicit last wave is added: robots no
  wave picked are returned by :func:`unplaced` so the operator sees them.
* ``blue_green`` — ``stage`` (everyone stages into the inactive slot; the switch waits until
  ``min_staged_percent`` have reported) then ``switch`` (everyone switches).

Percent selections take robots in the order of sha256(``"<rollout>/<device>"``): spread across the
fleet rather than the alphabetically first robots, stable under re-planning, and adding one robot
moves at most that robot (and the one it displaces) in or out of a canary. Each wave's ``devices``
are then sorted by id for display. Empty waves are kept (``devices == ()``), never dropped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from fleetcd.compat import StrEnum
from fleetcd.models.fleet import Fleet
from fleetcd.models.rollout import (
    AllAtOnce,
    BlueGreen,
    Canary,
    FailureThreshold,
    Rolling,
    Rollout,
    Strategy,
    Waves,
    default_strategy,
)

FULL_REPORT_PERCENT = 100.0  # strategies without a reporting gate wait for every robot of a wave
CANARY_THRESHOLD = FailureThreshold(count=0)  # "any canary failure halts"


class WaveAction(StrEnum):
    """What robots do in a wave: a normal install, or one of blue/green's two phases."""

    DEPLOY = "deploy"
    STAGE = "stage"
    SWITCH = "switch"


@dataclass(frozen=True)
class PlannedWave:
    """One wave: who is in it and the gate that must hold before the next wave starts."""

    index: int
    name: str
    devices: tuple[str, ...]
    soak_seconds: int  # wait after this wave is done before the next one starts
    failure_threshold: FailureThreshold
    min_reported_percent: float
    manual_promotion: bool
    action: WaveAction = WaveAction.DEPLOY

    @property
    def empty(self) -> bool:
        return not self.devices

    @cached_property
    def members(self) -> frozenset[str]:
        """:attr:`devices` as a set, made once per plan (a plan is kept while main's tree is the
        same): the wave counts look up the few robots with a deployment in it."""
        return frozenset(self.devices)


def effective_strategy(rollout: Rollout, fleet: Fleet | None) -> Strategy:
    """The rollout's own strategy, else the fleet default, else the safe built-in (rolling)."""
    if rollout.strategy is not None:
        return rollout.strategy
    if fleet is not None and fleet.defaults.strategy is not None:
        return fleet.defaults.strategy
    return default_strategy()


def spread_order(rollout_name: str, devices: Sequence[str]) -> list[str]:
    """``devices`` ordered by sha256("<rollout>/<device>"): deterministic, spread, per rollout."""
    return sorted(set(devices), key=lambda d: (hashlib.sha256(f"{rollout_name}/{d}".encode()).digest(), d))


def percent_count(percent: float, total: int) -> int:
    """ceil(percent % of total), at least 1 when total ≥ 1, never more than total.

    Exact arithmetic on the decimal the operator wrote: 7 % of 100 is 7, not 8 from float error.
    """
    if total <= 0:
        return 0
    wanted = math.ceil(Fraction(str(percent)) * total / 100)
    return min(total, max(1, wanted))


def plan_waves(
    rollout_name: str,
    strategy: Strategy,
    eligible: Sequence[str],
    cohorts_of: Mapping[str, Sequence[str]],
    cohort_members: Mapping[str, Sequence[str]],
) -> list[PlannedWave]:
    """The waves of one rollout over its ``eligible`` robots (see the module docstring for the rules).

    ``cohorts_of`` maps a device to the targeted cohorts it is in; ``cohort_members`` maps every
    cohort name to its members. Both are consulted for an explicit wave's cohort, since a wave may
    name a cohort the rollout does not target directly.
    """
    order = spread_order(rollout_name, eligible)
    if isinstance(strategy, AllAtOnce):
        return [_wave(0, "all", order, 0, strategy.failure_threshold)]
    if isinstance(strategy, Rolling):
        return _rolling(strategy, order)
    if isinstance(strategy, Canary):
        first = percent_count(strategy.percent, len(order))
        return [
            _wave(0, "canary", order[:first], strategy.soak_seconds, CANARY_THRESHOLD),
            _wave(1, "rest", order[first:], 0, strategy.failure_threshold),
        ]
    if isinstance(strategy, Waves):
        return _explicit(strategy, order, cohorts_of, cohort_members)
    if isinstance(strategy, BlueGreen):
        everyone = tuple(sorted(order))
        threshold = strategy.failure_threshold
        # The switch starts once min_staged_percent of robots reported "staged": the stage wave's gate.
        stage = PlannedWave(
            0, "stage", everyone, 0, threshold, strategy.min_staged_percent, False, WaveAction.STAGE
        )
        switch = PlannedWave(
            1, "switch", everyone, 0, threshold, FULL_REPORT_PERCENT, False, WaveAction.SWITCH
        )
        return [stage, switch]
    raise TypeError(f"unknown strategy {type(strategy).__name__}")


def unplaced(eligible: Sequence[str], waves: Sequence[PlannedWave]) -> tuple[str, ...]:
    """Eligible robots no wave picked (only explicit ``waves`` can leave some), sorted."""
    placed = {d for wave in waves for d in wave.devices}
    return tuple(sorted(set(eligible) - placed))


def _wave(
    index: int, name: str, devices: Sequence[str], soak: int, threshold: FailureThreshold
) -> PlannedWave:
    return PlannedWave(index, name, tuple(sorted(devices)), soak, threshold, FULL_REPORT_PERCENT, False)


def _rolling(strategy: Rolling, order: list[str]) -> list[PlannedWave]:
    size = strategy.batch_size
    batches = [order[i : i + size] for i in range(0, len(order), size)] or [[]]
    last = len(batches) - 1
    return [
        _wave(
            i, f"batch-{i + 1}", batch, 0 if i == last else strategy.delay_seconds, strategy.failure_threshold
        )
        for i, batch in enumerate(batches)
    ]


def _explicit(
    strategy: Waves,
    order: list[str],
    cohorts_of: Mapping[str, Sequence[str]],
    cohort_members: Mapping[str, Sequence[str]],
) -> list[PlannedWave]:
    remaining = list(order)
    planned: list[PlannedWave] = []
    for index, wave in enumerate(strategy.waves):
        candidates = remaining
        if wave.cohort is not None:
            members = set(cohort_members.get(wave.cohort, ()))
            candidates = [d for d in remaining if d in members or wave.cohort in cohorts_of.get(d, ())]
        if wave.percent is not None:
            candidates = candidates[: percent_count(wave.percent, len(candidates))]
        picked = set(candidates)
        remaining = [d for d in remaining if d not in picked]
        planned.append(
            PlannedWave(
                index=index,
                name=wave.name,
                devices=tuple(sorted(picked)),
                soak_seconds=wave.soak_seconds,
                failure_threshold=wave.failure_threshold,
                min_reported_percent=wave.min_reported_percent,
                manual_promotion=wave.manual_promotion,
            )
        )
    return planned
