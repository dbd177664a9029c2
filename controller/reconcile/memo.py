"""Per-robot values a long-running controller keeps between reconciles, so that a reconcile's
passes cost what changed (issue 12), not the fleet's size.

``fleetcd controller run`` keeps one :class:`RobotMemo` in its
:class:`~controller.reconcile.cache.ReconcileCache`; ``controller reconcile --once`` has none and
computes everything. Each entry is reused only while everything it was computed from is the same,
compared by content (the very objects the state branch gave, or equal ones; git ids; digests), so
an entry can be missing but never stale:

* robots' bundle inputs digests (:class:`~controller.delivery.inputs.InputsMemo`): a wave to
  1,000 robots of 100,000 digests about 1,000 robots' inputs, not 100,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.delivery.inputs import InputsMemo


@dataclass
class RobotMemo:
    inputs: InputsMemo = field(default_factory=InputsMemo)
