"""Rollout lifecycle: a new generation, wave membership, deadlines, and the operator's switches (pure).

* **New generation** (first sight, or the content approvers signed changed): in-flight records of
  older generations are archived (superseded); a fresh state lists the planned waves and starts
  ``scheduled`` (``schedule.not_before`` ahead) or ``progressing``. ``promote_seen`` starts at the
  rollout's current ``promote`` so only bumps made after creation promote anything.
* **Membership** follows the plan on every reconcile (a robot added to a cohort joins; one that
  left has its in-flight deployment archived as untargeted) — except while paused or aborted,
  when selection skips everyone and membership is frozen instead.
* **Retired robots** (``decommissioned: true``) leave every rollout at once, paused, aborted or
  rolling back alike: their open records (a rollback's too) are archived as ``decommissioned``, so
  a robot that is gone is never waited for, timed out or counted as a failure. Finished records
  keep their outcome: history stays.
* **Deadlines**: any unfinished record past its deadline fails as ``timed_out`` whatever the phase,
  so nothing hangs forever.
* **Switches** (``paused``, ``aborted`` on main): abort is final for the generation — records the
  robot has not started are archived (:func:`~controller.engine.dispatch.cancel_reason`: those
  a bundle already delivered stay open to a late report of what the robot did), in-flight ones
  finish; an automatic rollback in progress is finished first. Pause stops dispatch and promotion until
  unpaused. A halted, completed or aborted rollout ignores pause; only a new generation starts
  it again. A phase the reconcile loop set itself (``stalled``, ``removed``) is re-derived.
* **Withdrawn release** (a withdrawal on main names the rollout's release): the rollout stalls
  with ``release_withdrawn`` and retires what robots have not started, like an abort; a halted or
  rolling-back rollout finishes its rollback, a completed one no longer dispatches late joiners.
No I/O, no clock: everything comes from the :class:`~controller.engine.inputs.EngineInput`.
"""

from __future__ import annotations

from controller.audit.events import AuditKind
from controller.engine.dispatch import cancel_reason
from controller.engine.inputs import EngineInput
from controller.engine.journal import Journal
from controller.engine.ledger import Ledger
from controller.engine.rollback import in_scope
from controller.records.model import Action, is_terminal
from controller.records.transitions import archive, time_out
from controller.state.model import GateNumbers, RolloutPhase, RolloutState, WavePhase, WaveState
from fleetcd.layout import release_path
from fleetcd.planning.waves import PlannedWave
from fleetcd.reasons import EngineReason, RecordReason, SkipReason

_FROZEN_SKIPS = frozenset({SkipReason.PAUSED.value, SkipReason.ABORTED.value})
_OUT_OF_REACH = frozenset({RolloutPhase.HALTED, RolloutPhase.ROLLING_BACK, RolloutPhase.COMPLETED})


def not_yet(inp: EngineInput) -> bool:
    not_before = inp.rollout.schedule.not_before
    return not_before is not None and inp.now < not_before


def running_phase(inp: EngineInput) -> tuple[RolloutPhase, str | None]:
    """Where an unpaused, unhalted rollout stands: waiting for ``not_before``, or progressing."""
    if not_yet(inp):
        return RolloutPhase.SCHEDULED, EngineReason.NOT_BEFORE.value
    return RolloutPhase.PROGRESSING, None


def create(inp: EngineInput, ledger: Ledger, journal: Journal) -> RolloutState:
    """The state of a new generation; older generations' in-flight records are archived."""
    for record in list(ledger.ours()):
        if record.generation != inp.generation.number and not is_terminal(record):
            ledger.put(archive(record, inp.now, RecordReason.SUPERSEDED))
    rollout = inp.rollout
    phase, reason = running_phase(inp)
    previous = inp.previous
    state = RolloutState(
        name=rollout.name,
        app=rollout.app,
        version=rollout.release,
        release_path=release_path(rollout.app, rollout.release),
        release_sha256=inp.release_sha256,
        generation=inp.generation.number,
        generation_fingerprint=inp.generation.fingerprint,
        previous_version=previous[0] if previous else None,
        previous_release_sha256=previous[1] if previous else None,
        phase=phase,
        reason=reason,
        waves=tuple(
            WaveState(index=p.index, name=p.name, action=p.action.value, devices=p.devices, gate=gate_of(p))
            for p in inp.planned
        ),
        skipped=tuple((device, why) for device, why in inp.skipped),
        commit=inp.commit,
        promote_seen=rollout.promote,
        created_at=inp.now,
        updated_at=inp.now,
    )
    journal.emit(
        AuditKind.ROLLOUT_CREATED,
        version=rollout.release,
        release_sha256=inp.release_sha256,
        previous_version=state.previous_version,
        waves=[p.name for p in inp.planned],
        devices=len({d for p in inp.planned for d in p.devices}),
        skipped=len(inp.skipped),
    )
    return state


def gate_of(planned: PlannedWave) -> GateNumbers:
    """The planned wave's gate, as the state keeps it (``history --at`` quotes it later)."""
    threshold = planned.failure_threshold
    return GateNumbers(
        failure_threshold_count=threshold.count,
        failure_threshold_percent=threshold.percent,
        min_reported_percent=planned.min_reported_percent,
        soak_seconds=planned.soak_seconds,
        manual_promotion=planned.manual_promotion,
    )


def frozen(inp: EngineInput) -> bool:
    return inp.rollout.paused or inp.rollout.aborted or any(w in _FROZEN_SKIPS for _, w in inp.skipped)


def follow_plan(inp: EngineInput, state: RolloutState, ledger: Ledger) -> RolloutState:
    """Wave membership and skips from this reconcile's plan; robots that left are archived."""
    if frozen(inp):
        return state
    old = {w.index: w for w in state.waves}
    waves = []
    for planned in inp.planned:
        wave = old.get(planned.index)
        if wave is None or wave.name != planned.name:
            wave = WaveState(index=planned.index, name=planned.name)
        update = {"devices": planned.devices, "action": planned.action.value, "gate": gate_of(planned)}
        waves.append(wave.model_copy(update=update))
    members = inp.members if inp.members is not None else {d for p in inp.planned for d in p.devices}
    for record in list(ledger.current()):
        if record.device not in members and record.action is not Action.ROLLBACK and not is_terminal(record):
            ledger.put(archive(record, inp.now, RecordReason.UNTARGETED))
    skipped = tuple((device, why) for device, why in inp.skipped)
    return state.model_copy(update={"waves": tuple(waves), "skipped": skipped})


def retire_decommissioned(inp: EngineInput, ledger: Ledger) -> None:
    """Archive every open record of this rollout held by a robot that is decommissioned on main."""
    for record in list(ledger.ours()):
        device = inp.devices.get(record.device)
        if device is not None and device.decommissioned and not is_terminal(record):
            ledger.put(archive(record, inp.now, RecordReason.DECOMMISSIONED))


def enforce_deadlines(inp: EngineInput, ledger: Ledger) -> None:
    for record in list(ledger.current()):
        ledger.put(time_out(record, inp.now))


def apply_switches(inp: EngineInput, state: RolloutState, ledger: Ledger, journal: Journal) -> RolloutState:
    """The phase after ``paused``/``aborted`` on main (and ``not_before`` passing)."""
    phase = state.phase
    if phase is RolloutPhase.ABORTED:
        return state
    if inp.rollout.aborted and phase is not RolloutPhase.ROLLING_BACK:
        for record in list(ledger.current()):
            why = cancel_reason(ledger, record)
            if why is not None:
                ledger.put(archive(record, inp.now, why))
        journal.emit(AuditKind.ROLLOUT_ABORTED, reason=EngineReason.ABORTED.value, phase=phase.value)
        return state.model_copy(update={"phase": RolloutPhase.ABORTED, "reason": EngineReason.ABORTED.value})
    if inp.release_sha256 in inp.withdrawn and phase not in _OUT_OF_REACH:
        return _stall_withdrawn(inp, state, ledger, journal)
    if phase in _OUT_OF_REACH:
        return state
    if phase not in (RolloutPhase.SCHEDULED, RolloutPhase.PROGRESSING, RolloutPhase.PAUSED):
        return _recover(inp, state, ledger)
    if inp.rollout.paused:
        if phase is RolloutPhase.PAUSED:
            return state
        journal.emit(AuditKind.ROLLOUT_PAUSED, reason=EngineReason.PAUSED.value)
        return state.model_copy(update={"phase": RolloutPhase.PAUSED, "reason": EngineReason.PAUSED.value})
    new_phase, reason = running_phase(inp)
    if phase is RolloutPhase.PAUSED:
        journal.emit(AuditKind.ROLLOUT_RESUMED, phase=new_phase.value)
    return state.model_copy(update={"phase": new_phase, "reason": reason})


def _stall_withdrawn(inp: EngineInput, state: RolloutState, ledger: Ledger, journal: Journal) -> RolloutState:
    """The rollout's release is withdrawn: nothing new starts; what robots have not started is
    retired (as an abort does); in-flight deployments end on their own. Lifting the withdrawal (a
    commit deleting it) lets :func:`_recover` re-derive the phase."""
    for record in list(ledger.current()):
        why = cancel_reason(ledger, record)
        if why is not None:
            ledger.put(archive(record, inp.now, why))
    reason = EngineReason.RELEASE_WITHDRAWN.value
    if state.phase is RolloutPhase.STALLED and state.reason == reason:
        return state
    journal.emit(AuditKind.STALLED, reason=reason, phase=state.phase.value, version=inp.rollout.release)
    return state.model_copy(update={"phase": RolloutPhase.STALLED, "reason": reason})


def _recover(inp: EngineInput, state: RolloutState, ledger: Ledger) -> RolloutState:
    # The loop overwrote the phase (stalled on invalid content, or the file was removed and came
    # back): re-derive it from the waves and records instead of guessing from the label.
    failed = [w for w in state.waves if w.phase is WavePhase.FAILED]
    if failed:
        policy = inp.rollout.on_halt
        members = {d for w in state.waves if in_scope(policy, w.index, failed[0].index) for d in w.devices}
        busy = any(r.device in members and not is_terminal(r) for r in ledger.current())
        phase = RolloutPhase.ROLLING_BACK if busy else RolloutPhase.HALTED
        return state.model_copy(update={"phase": phase, "reason": EngineReason.THRESHOLD_CROSSED.value})
    if inp.rollout.paused:
        return state.model_copy(update={"phase": RolloutPhase.PAUSED, "reason": EngineReason.PAUSED.value})
    phase, reason = running_phase(inp)
    return state.model_copy(update={"phase": phase, "reason": reason})
