"""Why a robot a rollout targets is still waiting for its deployment: one hold reason each (pure).

A robot waits when the rollout's state has no deployment of this generation for it yet. Its one
reason (:class:`~fleetcd.reasons.HoldReason`) comes from the state alone, in this order:

1. the rollout's phase, when nothing is dispatched in it: ``scheduled`` (``not_before``),
   ``paused``, ``halted`` or ``rolling_back`` (``halted``), ``aborted``, ``stalled``
   (``release_withdrawn`` when a withdrawal stalled it, else ``stalled``);
2. the reason the engine's dispatch held the robot for on the last tick (``WaveState.held``: a
   maintenance window, the download rate limit, a release requirement);
3. for a robot whose wave comes after the active one (the first that has not passed), what that
   wave waits for: its soak (``earlier_wave_soaking``), a promotion (``awaiting_promotion``), or
   its gate — reports still to come within its failure budget — (``earlier_wave``);
4. otherwise nothing holds it (``due``): a robot that joined since the last tick; the next
   reconcile writes its deployment.

``fleetcd get devices`` and the status pages show it; the engine's walks check that every
waiting robot has one. A removed rollout keeps no robot waiting (None).
"""

from __future__ import annotations

from controller.state.model import RolloutPhase, RolloutState, WavePhase
from fleetcd.reasons import EngineReason, HoldReason

_PHASE_HOLDS = {
    RolloutPhase.SCHEDULED: HoldReason.NOT_BEFORE,
    RolloutPhase.PAUSED: HoldReason.PAUSED,
    RolloutPhase.HALTED: HoldReason.HALTED,
    RolloutPhase.ROLLING_BACK: HoldReason.HALTED,
    RolloutPhase.ABORTED: HoldReason.ABORTED,
    RolloutPhase.STALLED: HoldReason.STALLED,
}
_EARLIER_WAVE_HOLDS = {
    WavePhase.SOAKING: HoldReason.EARLIER_WAVE_SOAKING,
    WavePhase.AWAITING_PROMOTION: HoldReason.AWAITING_PROMOTION,
}
_KNOWN = frozenset(HoldReason)


class Holds:
    """One rollout's hold reasons, worked out once from its state; :meth:`of` per robot."""

    def __init__(self, rollout: RolloutState) -> None:
        self.removed = rollout.phase is RolloutPhase.REMOVED
        fixed = _PHASE_HOLDS.get(rollout.phase)
        if fixed is HoldReason.STALLED and rollout.reason == EngineReason.RELEASE_WITHDRAWN.value:
            fixed = HoldReason.RELEASE_WITHDRAWN
        self.fixed = fixed
        active = next((w for w in rollout.waves if w.phase is not WavePhase.PASSED), None)
        self.active = None if active is None else active.index
        self.later = HoldReason.EARLIER_WAVE
        if active is not None:
            self.later = _EARLIER_WAVE_HOLDS.get(active.phase, HoldReason.EARLIER_WAVE)
        self.held: dict[tuple[int, str], HoldReason] = {}
        for wave in rollout.waves if fixed is None else ():
            for reason, devices in wave.held.items():
                # A reason this controller does not know (a newer one wrote it) reads as the wave's.
                why = HoldReason(reason) if reason in _KNOWN else HoldReason.EARLIER_WAVE
                for device in devices:
                    self.held[(wave.index, device)] = why

    def of(self, wave: int, device: str) -> HoldReason | None:
        """Why ``device``, of wave ``wave``, would wait if it has no deployment yet (the caller
        knows whether it has); None only in a removed rollout."""
        if self.removed:
            return None
        if self.fixed is not None:
            return self.fixed
        held = self.held.get((wave, device))
        if held is not None:
            return held
        if self.active is not None and wave > self.active:
            return self.later
        return HoldReason.DUE
