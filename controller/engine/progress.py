"""Waves over time: gates, soak, promotion, dispatch, halt and rollback for one tick (pure).

The first wave that has not passed is the *active* one. Each tick, in order:

1. Count every wave from its records (:mod:`controller.engine.gates`).
2. Gate the active wave: a crossed failure threshold fails it and halts the rollout (even while
   paused — stopping damage never waits); gate numbers met → ``soaking`` until ``soak_seconds``
   passed (an empty wave has nothing to soak) → ``awaiting_promotion`` when the wave wants a
   manual promotion and ``promote`` was not bumped past ``promote_seen`` → ``passed`` (one
   promotion consumed). A pause holds a wave at its gate. A passed wave starts the next one at
   once, so one tick can pass several waves.
3. Dispatch due robots (:mod:`controller.engine.dispatch`); robots held by a window or the rate
   limit make the active wave ``waiting`` with the hold reasons, else it is ``running``.
4. Halted: the rollout's ``on_halt`` picks the waves that go back — every wave that ran
   (``rollback_all``, the default), the failed one (``rollback_wave``) or none (``pause``: the
   rollout stays ``halted`` and waits for a commit). Their robots that may run the release get
   rollback records — at once for those whose bundle held it, else as they finish
   (:mod:`controller.engine.rollback`); when none is in flight any more the rollout is ``halted``.
   The policy applied is recorded in the state (``halt_policy``) for receipts and pages.
5. Every wave passed and every robot's deployment finished → ``completed``. A completed rollout
   still dispatches robots that join its cohorts later.

Each transition is reached from the state it starts from, so feeding the output state back in at
the same ``now`` finds nothing more to do (the idempotency the reconcile loop relies on).
No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from controller.audit.events import AuditKind
from controller.engine import gates, lifecycle
from controller.engine.dispatch import cancel_reason, dispatch
from controller.engine.inputs import EngineInput
from controller.engine.journal import Journal, counts_data
from controller.engine.ledger import Ledger
from controller.engine.rollback import Previous, in_scope, roll_back, rollback_counts, rollback_finished
from controller.records.model import Connectivity, connectivity, is_terminal
from controller.records.transitions import archive
from controller.state.model import RolloutPhase, RolloutState, WavePhase, WaveState
from fleetcd.models.rollout import FailureThreshold, HaltPolicy
from fleetcd.planning.waves import PlannedWave
from fleetcd.reasons import EngineReason, HoldReason, RecordReason


def hold_text(reasons: Iterable[HoldReason]) -> str | None:
    """A wave's reason: the hold reasons, sorted and comma-joined (None when nothing is held)."""
    return ",".join(sorted({r.value for r in reasons})) or None


def held_by_reason(held: Mapping[str, HoldReason]) -> dict[str, tuple[str, ...]]:
    """A wave's ``held``: each hold reason's robots, sorted (robot -> reason, turned around)."""
    out: dict[str, list[str]] = {}
    for device in sorted(held):
        out.setdefault(held[device].value, []).append(device)
    return {reason: tuple(devices) for reason, devices in sorted(out.items())}


_GATED = frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED, RolloutPhase.SCHEDULED})
_DISPATCHING = frozenset({RolloutPhase.PROGRESSING, RolloutPhase.COMPLETED})
_HOLD_THRESHOLD = FailureThreshold(count=0)
_UNGATED_WAVE = frozenset({WavePhase.PENDING, WavePhase.WAITING, WavePhase.RUNNING})


@dataclass
class Tick:
    """The rollout state being worked on during one call."""

    inp: EngineInput
    ledger: Ledger
    journal: Journal
    phase: RolloutPhase
    reason: str | None
    waves: list[WaveState]
    promote_seen: int
    rolled_back: set[str]
    halt_policy: HaltPolicy | None = None
    planned: dict[int, PlannedWave] = field(default_factory=dict)
    links: dict[str, Connectivity] = field(default_factory=dict)
    counted_at: int = -1  # ledger version the wave counts were taken at

    def plan(self, wave: WaveState) -> PlannedWave:
        """The wave's gate from the plan, over the members the state holds (frozen while paused)."""
        planned = self.planned.get(wave.index)
        if planned is None:
            # Paused with a plan that skipped everyone: never pass a wave the plan does not describe.
            return PlannedWave(wave.index, wave.name, wave.devices, 0, _HOLD_THRESHOLD, 100.0, True)
        if planned.devices == wave.devices:
            return planned
        return replace(planned, devices=wave.devices)

    def set(self, position: int, **update: object) -> WaveState:
        self.waves[position] = self.waves[position].model_copy(update=update)
        return self.waves[position]

    def active(self) -> int | None:
        return next((i for i, w in enumerate(self.waves) if w.phase is not WavePhase.PASSED), None)

    def link(self, device: str) -> Connectivity:
        known = self.links.get(device)
        if known is None:
            known = self.links[device] = self._link(device)
        return known

    def _link(self, device: str) -> Connectivity:
        device_file = self.inp.device_files.get(device)
        if device_file is None:
            return Connectivity.UNKNOWN
        seen = device_file.state.last_seen
        if seen is None:
            return device_file.state.connectivity
        return connectivity(seen, self.inp.now, self.inp.defaults.offline_after_seconds)

    def recount(self) -> None:
        # Counts depend only on the records (membership is fixed for the call): skip when unchanged.
        if self.counted_at == self.ledger.version:
            return
        self.counted_at = self.ledger.version
        sha = self.inp.release_sha256
        recorded = self.ledger.recorded(sha)  # the others have no deployment: queued, not looked up
        for i, wave in enumerate(self.waves):
            counts = gates.count_wave(
                self.plan(wave), lambda d: self.ledger.find(d, sha), self.link, recorded
            )
            if counts != wave.counts:
                self.set(i, counts=counts)

    def rollback_waves(self, failed: int) -> list[PlannedWave]:
        """The waves the rollout's ``on_halt`` rolls back after wave ``failed`` crossed its threshold."""
        policy = self.inp.rollout.on_halt
        return [self.plan(w) for w in self.waves if in_scope(policy, w.index, failed)]

    def previous(self) -> Previous | None:
        state = self.inp.state
        pair: tuple[str, str] | None = self.inp.previous
        current = state is not None and state.generation == self.ledger.generation
        if current and state is not None and state.previous_version and state.previous_release_sha256:
            pair = (state.previous_version, state.previous_release_sha256)
        if pair is None or pair[1] == self.inp.release_sha256:
            return None
        return Previous(*pair)


def run(inp: EngineInput, state: RolloutState, ledger: Ledger, journal: Journal) -> RolloutState:
    tick = Tick(
        inp=inp,
        ledger=ledger,
        journal=journal,
        phase=state.phase,
        reason=state.reason,
        waves=list(state.waves),
        promote_seen=state.promote_seen,
        rolled_back=set(state.rolled_back_devices),
        halt_policy=state.halt_policy,
        planned={p.index: p for p in inp.planned},
    )
    if not lifecycle.frozen(inp):
        # Waves the plan no longer has (only after a stale state) are dropped, not gated.
        tick.waves = [w for w in tick.waves if w.index in tick.planned]
    _gate(tick)
    if tick.phase in _DISPATCHING and inp.release_sha256 not in inp.withdrawn:
        _dispatch(tick)  # a completed rollout of a withdrawn release takes no late joiners
    else:
        _clear_holds(tick)
    if tick.phase is RolloutPhase.PAUSED:
        _hold_for_pause(tick)
    if tick.phase is RolloutPhase.ROLLING_BACK:
        _roll_back(tick)
    if tick.phase is RolloutPhase.PROGRESSING and tick.active() is None:
        _complete(tick)
    tick.recount()
    return state.model_copy(
        update={
            "phase": tick.phase,
            "reason": tick.reason,
            "waves": tuple(tick.waves),
            "promote_seen": tick.promote_seen,
            "rolled_back_devices": tuple(sorted(tick.rolled_back)),
            "halt_policy": tick.halt_policy,
        }
    )


def _gate(tick: Tick) -> None:
    now = tick.inp.now
    while True:
        tick.recount()
        position = tick.active()
        if tick.phase not in _GATED or position is None:
            return
        wave, plan = tick.waves[position], tick.plan(tick.waves[position])
        if tick.phase is RolloutPhase.SCHEDULED:
            tick.set(position, phase=WavePhase.WAITING, reason=EngineReason.NOT_BEFORE.value)
            return
        if wave.started_at is None:
            if tick.phase is RolloutPhase.PAUSED:
                return
            wave = tick.set(position, phase=WavePhase.RUNNING, started_at=now, reason=None)
            tick.journal.emit(
                AuditKind.WAVE_STARTED, wave=wave.index, name=wave.name, devices=len(wave.devices)
            )
        verdict = gates.verdict(plan, wave.counts)
        if verdict is gates.Verdict.FAILED:
            _fail(tick, position)
            return
        if verdict is gates.Verdict.OPEN:
            return
        met_at = wave.gates_met_at or now
        soak = timedelta(seconds=0 if plan.empty else plan.soak_seconds)
        if now < met_at + soak:
            tick.set(position, phase=WavePhase.SOAKING, gates_met_at=met_at, reason=None)
            return
        if tick.phase is RolloutPhase.PAUSED:
            tick.set(position, phase=WavePhase.SOAKING, gates_met_at=met_at, reason=EngineReason.PAUSED.value)
            return
        if plan.manual_promotion and tick.inp.rollout.promote <= tick.promote_seen:
            tick.set(
                position,
                phase=WavePhase.AWAITING_PROMOTION,
                gates_met_at=met_at,
                reason=EngineReason.AWAITING_PROMOTION.value,
            )
            tick.reason = EngineReason.AWAITING_PROMOTION.value
            return
        if plan.manual_promotion:
            tick.promote_seen += 1
        tick.reason = None
        wave = tick.set(
            position,
            phase=WavePhase.PASSED,
            gates_met_at=met_at,
            finished_at=now,
            reason=None,
            decided_counts=wave.counts,
        )
        tick.journal.emit(
            AuditKind.WAVE_PASSED,
            wave=wave.index,
            name=wave.name,
            soak_seconds=int(soak.total_seconds()),
            min_reported_percent=plan.min_reported_percent,
            promoted=plan.manual_promotion,
            gates_met_at=met_at.isoformat(),
            extra=counts_data(wave.counts),
        )


def _fail(tick: Tick, position: int) -> None:
    inp, now = tick.inp, tick.inp.now
    wave, plan = tick.waves[position], tick.plan(tick.waves[position])
    threshold = plan.failure_threshold
    crossed = EngineReason.THRESHOLD_CROSSED.value
    tick.set(position, phase=WavePhase.FAILED, finished_at=now, reason=crossed, decided_counts=wave.counts)
    tick.journal.emit(
        AuditKind.WAVE_FAILED,
        reason=crossed,
        wave=wave.index,
        name=wave.name,
        failures=gates.failures(wave.counts),
        threshold_count=threshold.count,
        threshold_percent=threshold.percent,
        extra=counts_data(wave.counts),
    )
    policy = inp.rollout.on_halt
    previous = tick.previous()
    if policy is HaltPolicy.PAUSE:
        rollback = EngineReason.HALT_POLICY_PAUSE
    elif previous is None:
        rollback = EngineReason.NO_PREVIOUS_RELEASE
    elif previous.release_sha256 in inp.withdrawn:
        rollback = EngineReason.PREVIOUS_WITHDRAWN
    else:
        rollback = EngineReason.ROLLBACK_STARTED
    rolling_back = rollback is EngineReason.ROLLBACK_STARTED
    # Halted: nothing new starts, so what robots have not started is retired. In the waves being
    # rolled back, robots whose bundle already held the release get their rollback this same tick
    # instead (_roll_back): they may have installed it, their report not in yet.
    waves_back = tick.rollback_waves(wave.index) if rolling_back else []
    to_roll_back = frozenset(d for w in waves_back for d in w.devices)
    for record in list(tick.ledger.current()):
        why = cancel_reason(tick.ledger, record)
        if why is RecordReason.ABORTED_AFTER_DELIVERY and record.device in to_roll_back:
            continue
        if why is not None:
            tick.ledger.put(archive(record, now, why))
    tick.phase = RolloutPhase.ROLLING_BACK if rolling_back else RolloutPhase.HALTED
    tick.reason = crossed
    tick.halt_policy = policy
    tick.journal.emit(
        AuditKind.ROLLOUT_HALTED,
        reason=crossed,
        wave=wave.index,
        rollback=rollback.value,
        on_halt=policy.value,
    )


def _dispatch(tick: Tick) -> None:
    position = tick.active()
    last = len(tick.waves) - 1 if position is None else position
    due = [tick.plan(w) for w in tick.waves[: last + 1]]
    holds = dispatch(tick.inp, tick.ledger, due, frozenset(tick.rolled_back))
    # Every wave records whom this tick held and why (a passed wave's late joiners too); a wave
    # not due yet holds no one by name: its robots wait for the active wave (state/holds.py).
    for at, each in enumerate(tick.waves):
        held = held_by_reason(holds.get(each.index, {}))
        if held != each.held:
            tick.set(at, held=held)
    if position is None:
        return
    wave = tick.waves[position]
    if wave.phase in _UNGATED_WAVE and wave.started_at is not None:
        reasons = holds.get(wave.index, {}).values()
        phase = WavePhase.WAITING if reasons else WavePhase.RUNNING
        tick.set(position, phase=phase, reason=hold_text(reasons))


def _clear_holds(tick: Tick) -> None:
    """No dispatch this tick (scheduled, paused, halted, rolling back, withdrawn): nobody is held
    by name; the rollout's phase is every waiting robot's reason (state/holds.py)."""
    for at, wave in enumerate(tick.waves):
        if wave.held:
            tick.set(at, held={})


def _hold_for_pause(tick: Tick) -> None:
    position = tick.active()
    if position is None:
        return
    wave = tick.waves[position]
    if wave.started_at is not None and wave.phase in _UNGATED_WAVE:
        tick.set(position, phase=WavePhase.WAITING, reason=HoldReason.PAUSED.value)


def _roll_back(tick: Tick) -> None:
    failed = next((w for w in tick.waves if w.phase is WavePhase.FAILED), None)
    previous = tick.previous()
    withdrawn = previous is not None and previous.release_sha256 in tick.inp.withdrawn
    if failed is None or previous is None or withdrawn or tick.inp.rollout.on_halt is HaltPolicy.PAUSE:
        tick.phase = RolloutPhase.HALTED
        return
    waves = tick.rollback_waves(failed.index)
    for plan in waves:
        for record in roll_back(tick.inp, tick.ledger, plan, previous, frozenset(tick.rolled_back)):
            tick.rolled_back.add(record.device)
            tick.journal.emit(
                AuditKind.ROLLBACK,
                device=record.device,
                wave=plan.index,
                deployment_id=record.id,
                from_version=tick.inp.rollout.release,
                to_version=previous.version,
                to_release_sha256=previous.release_sha256,
            )
    if rollback_finished(tick.inp, tick.ledger, waves, previous):
        tick.phase = RolloutPhase.HALTED
        tick.journal.emit(
            AuditKind.ROLLBACK,
            reason=EngineReason.ROLLBACK_FINISHED.value,
            wave=failed.index,
            on_halt=tick.inp.rollout.on_halt.value,
            waves=[plan.index for plan in waves],
            extra=rollback_counts(tick.inp, tick.ledger, waves, previous),
        )


def _complete(tick: Tick) -> None:
    sha = tick.inp.release_sha256
    for wave in tick.waves:
        for device in wave.devices:
            record = tick.ledger.find(device, sha)
            if device not in tick.rolled_back and (record is None or not is_terminal(record)):
                tick.reason = EngineReason.DRAINING.value
                return
    tick.phase, tick.reason = RolloutPhase.COMPLETED, None
    tick.recount()
    total = {"devices": len({d for w in tick.waves for d in w.devices})}
    succeeded = sum(w.counts.succeeded for w in tick.waves if w.action != "stage")
    tick.journal.emit(AuditKind.ROLLOUT_COMPLETED, waves=len(tick.waves), succeeded=succeeded, extra=total)
