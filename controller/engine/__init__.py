"""The controller's rollout engine: waves over time, as a pure function of models and ``now``.

:func:`advance` takes one rollout's :class:`EngineInput` (models from main, its state on the
state branch, the device files, the wave plan, ``now``) and returns an :class:`EngineOutput`
(new rollout state, changed deployment records, audit events). No I/O, no clock, no gpg, no git:
the reconcile loop does all of that around it.
"""

from __future__ import annotations

from controller.engine.advance import advance
from controller.engine.inputs import EngineInput, EngineOutput
from fleetcd.reasons import EngineReason, HoldReason

__all__ = ["EngineInput", "EngineOutput", "EngineReason", "HoldReason", "advance"]
