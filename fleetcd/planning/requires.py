"""What a plan says about a release's ``requires``: the requirements, and the robots no rollout on
main will ever satisfy them for (pure).

The controller holds each robot's deployment until the required apps run there at a version in
range (reason ``requirement_unmet``, :mod:`controller.engine.requires`); what a robot runs is
observed state, not in main. What main does decide is whether some live (not aborted) rollout of
the required app delivers a satisfying release to that robot. Robots for which none does wait
until someone rolls one out (or already run one from an older rollout): the plan names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.models import Cohort, Device
from fleetcd.models.requirement import Requirement
from fleetcd.planning.selection import resolve_targets


def unsatisfied_robots(
    spec: FleetSpec,
    requires: Sequence[Requirement],
    robots: Sequence[str],
    devices: Mapping[str, Device],
    cohorts: Mapping[str, Cohort],
) -> tuple[str, ...]:
    """Robots of ``robots`` for which some requirement is in no live rollout's release on main."""
    if not requires:
        return ()
    delivered: dict[str, set[tuple[str, str]]] = {}  # robot -> (app, version) some rollout delivers
    for entry in spec.rollouts.values():
        rollout = entry.doc.model
        if rollout.aborted or not any(r.app == rollout.app for r in requires):
            continue
        release = spec.release(rollout.app, rollout.release)
        selection = resolve_targets(rollout, release.doc.model if release else None, devices, cohorts)
        for device in selection.eligible:
            delivered.setdefault(device, set()).add((rollout.app, rollout.release))
    waiting = []
    for device in robots:
        gets = delivered.get(device, set())
        if not all(any(app == r.app and r.allows(version) for app, version in gets) for r in requires):
            waiting.append(device)
    return tuple(sorted(waiting))
