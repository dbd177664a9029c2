"""What a long-running controller keeps between reconciles: parsed git objects, keyed by their ids.

``fleetcd controller run`` hands one :class:`ReconcileCache` to every reconcile
(``ControllerSettings.cache``); ``controller reconcile --once`` has none and reads everything. A
reconcile still starts from git every time: the fetch, the refs and the ids of the trees it reads
are git's, and only the *parsing* of content already parsed under the same id is skipped. A git id
names the exact bytes, so an entry can never be stale, and nothing the cache holds came from
anywhere but git:

* main's tree, its files and their validation (strict loading, cross-file checks, signatures and
  approvals), and the fleet context built from them, under main's tree id: robots reporting while
  main stays put cost no YAML parsing at all (at 10,000 robots, loading main was 14 of a 38 s
  reconcile that ingested 1,000 reports, profiled);
* the state branch as last parsed (:class:`~controller.reconcile.statebranch.StateCache`): the
  next reconcile diffs the trees and parses only the files that changed.

Only the newest entry of each is kept, so memory stays one parsed fleet, as one reconcile needs
anyway. Validation is a function of the files alone (the controller judges the trust root's
expiry against ``now`` itself), so a cached result is the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.reconcile.rollouts import FleetContext
from controller.reconcile.statebranch import StateCache
from fleetcd.errors import Diagnostic
from fleetcd.validation import ValidationResult


@dataclass
class MainCache:
    """Main's tree as last read and validated (the fleet context once a reconcile built one)."""

    tree: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    validation: ValidationResult | None = None
    fleet: FleetContext | None = None

    def holds(self, tree: str) -> bool:
        return self.tree == tree

    def remember(self, tree: str, files: dict[str, bytes], problems: list[Diagnostic]) -> None:
        """A newly read tree: what was validated from another tree is dropped."""
        self.tree, self.files, self.problems = tree, files, problems
        self.validation = self.fleet = None


@dataclass
class ReconcileCache:
    main: MainCache = field(default_factory=MainCache)
    state: StateCache = field(default_factory=StateCache)
