"""What every cross-file check needs to know about a loaded fleet: models by id, who gets what.

Built once per validation from a :class:`~fleetcd.loading.fleetspec.FleetSpec`. The questions it
answers ("which rollouts would deliver app X to robot R", "which cohorts is R in") go through
:mod:`fleetcd.planning.selection`, so validation and planning agree on membership. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fleetcd.errors import Diagnostic
from fleetcd.layout import cohort_path, device_path, release_path
from fleetcd.loading.documents import Loaded
from fleetcd.loading.fleetspec import FleetSpec, ReleaseEntry
from fleetcd.loading.strict_yaml import field_path
from fleetcd.models import Cohort, Device, Stage
from fleetcd.planning.selection import Selection, cohort_members, device_stages, resolve_targets
from fleetcd.reasons import Reason, SkipReason

# A paused rollout still owns its robots (resuming needs no new approval), so it counts for overlap
# and config checks; aborted, unknown, decommissioned and incompatible robots get nothing from it.
_STILL_OWNED = frozenset({SkipReason.PAUSED})


@dataclass(frozen=True)
class Delivery:
    """One rollout that would deliver a release of an app to a robot."""

    rollout: str
    release: ReleaseEntry | None  # None when the rollout names a release that does not exist


class Context:
    """A loaded fleet plus derived lookups, computed lazily and at most once."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.devices: dict[str, Device] = {k: v.model for k, v in spec.devices.items()}
        self.cohorts: dict[str, Cohort] = {k: v.model for k, v in spec.cohorts.items()}

    def for_trust(self) -> Context:
        """A context over the same spec keeping, of the lookups made, only :attr:`stages` (what the
        trust checks use): a kept validation holds no per-robot deliveries or memberships."""
        return self.with_spec(self.spec)

    def with_spec(self, spec: FleetSpec) -> Context:
        """A context over ``spec``, whose robots and cohorts must be this context's spec's own (only
        signatures, approvals, keys or the withdrawals in force differ): the robots' lookups and
        :attr:`stages`, a function of them, are carried over (not rebuilt over the whole fleet)."""
        other = Context.__new__(Context)
        other.spec, other.devices, other.cohorts = spec, self.devices, self.cohorts
        if "stages" in self.__dict__:
            other.__dict__["stages"] = self.__dict__["stages"]
        return other

    @cached_property
    def stages(self) -> dict[str, Stage]:
        """Robot id → the highest stage of the cohorts it is in (robots in none are absent)."""
        return device_stages(self.cohorts, self.devices)

    def release_of(self, rollout: str) -> ReleaseEntry | None:
        model = self.spec.rollouts[rollout].doc.model
        return self.spec.release(model.app, model.release)

    @cached_property
    def selections(self) -> dict[str, Selection]:
        out = {}
        for name in sorted(self.spec.rollouts):
            release = self.release_of(name)
            model = self.spec.rollouts[name].doc.model
            out[name] = resolve_targets(
                model, release.doc.model if release else None, self.devices, self.cohorts
            )
        return out

    def owned(self, rollout: str) -> tuple[str, ...]:
        """The robots ``rollout`` delivers to, a paused one as if running (sorted)."""
        selection = self.selections[rollout]
        paused = (d for d, why in selection.skipped if why in _STILL_OWNED)
        return tuple(sorted({*selection.eligible, *paused}))

    @cached_property
    def deliveries(self) -> dict[tuple[str, str], tuple[Delivery, ...]]:
        """(app, robot) → the rollouts that would deliver that app to that robot, by rollout name."""
        out: dict[tuple[str, str], list[Delivery]] = {}
        for name in self.selections:
            app = self.spec.rollouts[name].doc.model.app
            for device in self.owned(name):
                out.setdefault((app, device), []).append(Delivery(name, self.release_of(name)))
        return {key: tuple(found) for key, found in sorted(out.items())}

    @cached_property
    def members(self) -> dict[str, list[str]]:
        """Cohort name → its robots (static list or selector), as planning computes them."""
        return {name: cohort_members(cohort, self.devices) for name, cohort in sorted(self.cohorts.items())}

    @cached_property
    def memberships(self) -> dict[str, tuple[str, ...]]:
        """Robot id → every cohort it belongs to (static list or selector), sorted by name."""
        out: dict[str, list[str]] = {}
        for name, members in self.members.items():
            for member in members:
                out.setdefault(member, []).append(name)
        return {device: tuple(names) for device, names in out.items()}

    # A file that exists but failed to load was already reported by the loader; reporting every
    # reference to it as "unknown" too would bury the one real error.
    def device_file_exists(self, device_id: str) -> bool:
        return device_path(device_id) in self.spec.files

    def cohort_file_exists(self, name: str) -> bool:
        return cohort_path(name) in self.spec.files

    def release_file_exists(self, app: str, version: str) -> bool:
        return release_path(app, version) in self.spec.files


def at(
    doc: Loaded[Any],
    path: Sequence[str | int],
    message: str,
    reason: Reason,
    severity: str = "error",
) -> Diagnostic:
    """A diagnostic at ``path`` inside ``doc``: its line (or the nearest ancestor's) and field name."""
    return Diagnostic(
        file=doc.path,
        line=doc.line(*path),
        field=field_path(list(path)) or None,
        message=message,
        reason=reason,
        severity=severity,
    )


def robots_phrase(robots: Sequence[str], limit: int = 5) -> str:
    """'robot r1' / 'robots r1, r2, r3 (+4 more)': bounded so one bad default stays one short line."""
    shown = ", ".join(robots[:limit])
    more = f" (+{len(robots) - limit} more)" if len(robots) > limit else ""
    return f"robot{'s' if len(robots) > 1 else ''} {shown}{more}"


def known(values: Mapping[str, object] | Sequence[str], limit: int = 8) -> str:
    names = sorted(values)
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
