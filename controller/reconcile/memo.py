"""Per-robot values a long-running controller keeps between reconciles, so that a reconcile's
passes cost what changed (issue 12), not the fleet's size.

``fleetcd controller run`` keeps one :class:`RobotMemo` in its
:class:`~controller.reconcile.cache.ReconcileCache`; ``controller reconcile --once`` has none and
computes everything. Each entry is reused only while everything it was computed from is the same,
compared by content (the very objects the state branch gave, or equal ones; git ids; digests), so
an entry can be missing but never stale:

* robots' bundle inputs digests (:class:`~controller.delivery.inputs.InputsMemo`): a wave to
  1,000 robots of 100,000 digests about 1,000 robots' inputs, not 100,000;
* the robots the last reconcile left alone (:class:`~controller.delivery.quiet.QuietMemo`), by
  the very device file object and the delivery's scope: a wave or an ingest touching 1,000 robots
  of 100,000 reads no historic evidence, computes no inputs digest and builds nothing for the
  99,000 others;
* of the quiet robots, those whose desired-state ref is where the last reconcile left it, by
  renewal slot (:class:`~controller.delivery.standing.StandingMemo`), with the mirror's
  desired-state refs then: their selection visits the due slots, not the robots;
* main's delivery source (:class:`~controller.delivery.bundles.DeliverySource`), by the very
  spec and release hashes it was built from;
* the rollouts' plans (targets, waves, each member's config:
  :class:`~controller.reconcile.rollouts.RolloutPlan`), by main's tree id: a function of main's
  files alone, so a validation made afresh for the same tree (every
  :data:`~controller.reconcile.cache.VALIDATION_MAX_AGE`) plans nothing again;
* what the idle fast path's horizon reads of each device file
  (:class:`~controller.reconcile.due.DueMemo`), by the very device file object it was read from,
  with every robot's instants on two heaps: the earliest ahead is the top of one;
* the ingest step's starting map, every robot of main's fleet to its state-branch file, and the
  robots by ``last_seen`` (:class:`~controller.reconcile.fleetmap.DevicesMemo`), by the very device
  file objects of the state branch and main's robots: the ingest looks up the files that changed
  and ages the robots whose connectivity flips;
* each rollout's ledger index (:class:`~controller.reconcile.rollouts.KeptLedgers`), by its
  generation and the very device file objects the plan step gave it: a tick reads again the
  robots whose file changed and those the last tick gave records, not every robot's file;
* every record id to its robot (:class:`~controller.reconcile.owners.OwnersMemo`), for the ingest's
  claims on other robots' deployments, by the very device file objects of its starting map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.delivery.bundles import DeliverySource
from controller.delivery.inputs import InputsMemo
from controller.delivery.quiet import QuietMemo
from controller.delivery.standing import StandingMemo
from controller.reconcile.due import DueMemo
from controller.reconcile.fleetmap import DevicesMemo
from controller.reconcile.owners import OwnersMemo
from controller.reconcile.rollouts import KeptLedgers, RolloutPlan


@dataclass
class RobotMemo:
    inputs: InputsMemo = field(default_factory=InputsMemo)
    quiet: QuietMemo = field(default_factory=QuietMemo)
    standing: StandingMemo = field(default_factory=StandingMemo)
    due: DueMemo = field(default_factory=DueMemo)
    devices: DevicesMemo = field(default_factory=DevicesMemo)  # the ingest step's starting map
    # main's delivery source (per-robot lookups, rollouts' evidence), while main's spec is the same
    source: DeliverySource | None = None
    plans_tree: str | None = None  # main's tree the plans were made from
    plans: dict[str, RolloutPlan] = field(default_factory=dict)  # rollout name -> its plan
    # each rollout's ledger index and the plan step's device files they were patched to
    ledgers: KeptLedgers = field(default_factory=KeptLedgers)
    owners: OwnersMemo = field(default_factory=OwnersMemo)  # the ingest's record ids to their robot

    def plans_for(self, tree: str) -> dict[str, RolloutPlan]:
        """The plans made from ``tree`` (empty for a new tree), for the fleet context to fill."""
        if tree != self.plans_tree:
            self.plans_tree, self.plans = tree, {}
        return self.plans
