"""Releases, rollouts, config instances or cohorts changed: the cross-file checks again at the
cost of the robots they reach.

The commonest operator commits add a release and point a rollout at it, pause or resume a
rollout, change its waves or its cohorts, or list robots in a cohort. A rollout's selection
(targeted, eligible, skipped) is a function of its own document, its release's and the robots and
cohorts it names (kept in the :class:`~fleetcd.validation.delta.RobotIndex`); a robot's deliveries
are the rollouts that select it, with their releases. So a commit whose documents changed are
releases, rollouts, config instances and cohorts added, edited or removed (maybe robot files,
which :mod:`.delta` patches, and signatures, approvals or keys, attached again) is rechecked by
:func:`fleetcd.validation.incremental.recheck_content` as follows, with *affected* the changed
rollouts and every rollout naming a changed or removed release:

* a changed cohort's members are found again over the index's robots (:func:`regroup`: its listed
  robots and, for a selector, one pass over the fleet); the robots that entered or left it, and
  listed robots that are not in the fleet, are patched as changed robots are (their memberships,
  stage and place in every selection: :func:`fleetcd.validation.delta.patch`); a cohort whose
  stage changed (or that came or went) gives each member its stage again;
* the affected rollouts' selections are computed again from the index's cohort members
  (:func:`select`, :func:`fleetcd.planning.selection.resolve_targets` over the index);
* the grouped robot errors (two rollouts of one app on a robot, two apps writing one config file,
  merged configs failing their schema) are judged for the robots an affected rollout targets
  before or after, the robots a changed config instance is a layer of (:func:`config_robots`),
  the robots a cohort change moved and the changed robots: kept empty when they were and none of
  those robots has one, every other robot's deliveries and layers being unchanged; otherwise run
  in full over the fleet (an error state, which blocks the commit anyway). The kept merged-config
  findings of a changed release or layer file are dropped first;
* references (run again over the cohort, rollout and config documents), requirement cycles (from
  each rollout's "delivers to anyone", not its robots), each affected rollout's warnings and those
  of every rollout whose targets or waves name a changed cohort;
* the checks of the release documents themselves: their config schemas (only the changed ones;
  their merged-config findings are dropped from the kept cache), reserved artifacts, requirement
  ranges, versions equal but for build metadata, withdrawals' references (all over the releases,
  whose number is not the fleet's).

A release no rollout names selects nobody, so it changes no robot's checks; its own document's
checks still run. A withdrawal, trust root or fleet.yaml changed, or a changed document that fails
to load before or after (or names another release, rollout, cohort, app or scope than its path)
takes the full check: falling back is always correct. Pure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from fleetcd.layout import cohort_path, release_path, rollout_path
from fleetcd.loading.documents import Loaded
from fleetcd.loading.fleetspec import FleetSpec, ReleaseEntry, RolloutEntry
from fleetcd.models import Cohort, ConfigInstance, Release, Rollout
from fleetcd.planning.selection import _skip_reason, cohort_members
from fleetcd.reasons import SkipReason
from fleetcd.validation.context import _STILL_OWNED, Delivery
from fleetcd.validation.delta import RobotIndex, _Targets

M = TypeVar("M", bound=BaseModel)
K = TypeVar("K")
V = TypeVar("V")
Loader = Callable[[str, bytes, type[M]], "Loaded[M] | None"]  # None: the document is invalid


@dataclass
class Documents:
    """A commit's changed releases, rollouts, config instances and cohorts, loaded (None: removed)."""

    releases: dict[tuple[str, str], ReleaseEntry | None] = field(default_factory=dict)
    rollouts: dict[str, RolloutEntry | None] = field(default_factory=dict)
    configs: dict[str, tuple[str, str, Loaded[ConfigInstance] | None]] = field(
        default_factory=dict
    )  # path ->
    cohorts: dict[str, Loaded[Cohort] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.releases or self.rollouts or self.configs or self.cohorts)

    def release_paths(self) -> set[str]:
        return {release_path(*key) for key in self.releases}


def load_documents(
    spec: FleetSpec,
    files: Mapping[str, bytes],
    releases: Mapping[str, tuple[str, str]],
    rollouts: Mapping[str, str],
    load: Loader[BaseModel],
    configs: Mapping[str, tuple[str, str]] | None = None,
    cohorts: Mapping[str, str] | None = None,
) -> Documents | None:
    """The changed releases (path -> (app, version)), rollouts (path -> name), config instances
    (path -> (app, stem)) and cohorts (path -> name) of ``files`` over ``spec``'s snapshot, or None
    when one must take the full check: a document that failed to load before or fails now, or one
    naming another release, rollout, cohort, app or scope than its path."""
    out = Documents()
    for path, name in (cohorts or {}).items():
        if path in spec.files and name not in spec.cohorts:
            return None
        raw = files.get(path)
        cohort = _load(load, path, raw, Cohort) if raw is not None else None
        if raw is not None and (cohort is None or cohort.model.name != name):
            return None
        out.cohorts[name] = cohort
    for path, (app, stem) in (configs or {}).items():
        if path in spec.files and not any(doc.path == path for doc in spec.configs.get(app, ())):
            return None
        raw = files.get(path)
        config = _load(load, path, raw, ConfigInstance) if raw is not None else None
        if raw is not None and (config is None or config.model.app != app or config.model.file_stem != stem):
            return None
        out.configs[path] = (app, stem, config)
    for path, key in releases.items():
        if path in spec.files and key not in spec.releases:
            return None
        raw = files.get(path)
        if raw is None:
            out.releases[key] = None
            continue
        release = _load(load, path, raw, Release)
        if release is None or (release.model.app, release.model.version) != key:
            return None
        out.releases[key] = ReleaseEntry(release, {})
    for path, name in rollouts.items():
        if path in spec.files and name not in spec.rollouts:
            return None
        raw = files.get(path)
        if raw is None:
            out.rollouts[name] = None
            continue
        rollout = _load(load, path, raw, Rollout)
        if rollout is None or rollout.model.name != name:
            return None
        out.rollouts[name] = RolloutEntry(rollout, {})
    return out


def _load(load: Loader[BaseModel], path: str, raw: bytes, model: type[M]) -> Loaded[M] | None:
    return load(path, raw, model)  # type: ignore[return-value]  # the loader returns ``model``'s


def patched(
    releases: Mapping[tuple[str, str], ReleaseEntry],
    rollouts: Mapping[str, RolloutEntry],
    docs: Documents,
) -> tuple[dict[tuple[str, str], ReleaseEntry], dict[str, RolloutEntry]]:
    """The spec's releases and rollouts with ``docs`` in, in the loader's (path) order."""
    return (
        _with_changes(releases, docs.releases, lambda key: release_path(*key)),
        _with_changes(rollouts, docs.rollouts, rollout_path),
    )


def _with_changes(
    old: Mapping[K, V], changes: Mapping[K, V | None], path_of: Callable[[K], str]
) -> dict[K, V]:
    """``old`` with ``changes`` in (None: removed); re-sorted by path, as the loader lists documents,
    only when one was added (a replaced or removed one keeps the others' order)."""
    out = dict(old)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    if any(key not in old for key in changes):
        out = {key: out[key] for key in sorted(out, key=path_of)}
    return out


def patched_configs(
    configs: Mapping[str, list[Loaded[ConfigInstance]]], docs: Documents
) -> dict[str, list[Loaded[ConfigInstance]]]:
    """The spec's config instances with ``docs``' in, each app's by path, as the loader lists them."""
    out = {app: list(found) for app, found in configs.items()}
    for path, (app, _, config) in docs.configs.items():
        mine = [doc for doc in out.get(app, []) if doc.path != path]
        if config is not None:
            mine = sorted([*mine, config], key=lambda doc: doc.path)
        out[app] = mine
    return {app: out[app] for app in sorted(out, key=lambda app: f"{app}/") if out[app]}


def patched_cohorts(cohorts: Mapping[str, Loaded[Cohort]], docs: Documents) -> dict[str, Loaded[Cohort]]:
    """The spec's cohorts with ``docs``' in, in the loader's (path) order."""
    return _with_changes(cohorts, docs.cohorts, cohort_path)


@dataclass
class Regrouped:
    """What the changed cohorts moved: the robots whose memberships (or place in a selection, for
    a listed robot not in the fleet) may have changed, and those whose stage may have."""

    robots: set[str] = field(default_factory=set)
    staged: set[str] = field(default_factory=set)


def regroup(index: RobotIndex, old: FleetSpec, spec: FleetSpec, docs: Documents) -> Regrouped:
    """The index's members of each changed cohort brought to ``spec`` (over the index's robots, as
    planning's ``cohort_members``: its static list of known robots and every robot its selector
    takes); the robots that entered or left one, and the listed robots that are not in the fleet
    (their place in a selection is "unknown"), are returned for :func:`.delta.patch`, which decides
    their memberships, stages and selections. A cohort that changed stage (or came or went) changes
    the stage of every member. The robots the same commit changed are patched after this: their
    memberships here are the ones before, and corrected there."""
    out = Regrouped()
    for name, loaded in docs.cohorts.items():
        before = old.cohorts.get(name)
        was = index.members.pop(name, [])
        if loaded is None:
            now: list[str] = []
        else:
            now = cohort_members(loaded.model, index.devices)
            index.members[name] = now
        out.robots.update(set(was).symmetric_difference(now))
        listed_before = set(before.model.devices) if before is not None else set()
        listed = set(loaded.model.devices) if loaded is not None else set()
        out.robots.update(listed_before.symmetric_difference(listed))
        if before is None or loaded is None or before.model.stage != loaded.model.stage:
            out.staged.update(was, now)
    index.members = {name: index.members[name] for name in sorted(index.members)}
    return out


def config_robots(index: RobotIndex, spec: FleetSpec, docs: Documents) -> set[str]:
    """The robots a changed config instance is (or was) a layer of, for an app they receive: the
    robot itself, the cohort's members, or every robot a rollout of the app delivers to."""
    robots: set[str] = set()
    for app, stem, _ in docs.configs.values():
        if stem.startswith("device-"):
            robots.add(stem.removeprefix("device-"))
        elif stem.startswith("cohort-"):
            robots.update(index.members.get(stem.removeprefix("cohort-"), ()))
        else:
            for name, targets in index.targets.items():
                if spec.rollouts[name].doc.model.app == app:
                    robots.update(owned(targets))
    return robots


def affected(spec: FleetSpec, docs: Documents) -> set[str]:
    """The rollouts whose selection or deliveries ``docs`` may change: the changed ones (removed
    too) and every rollout naming a changed (or removed) release. A changed cohort's rollouts are
    followed robot by robot (:func:`regroup`)."""
    names = set(docs.rollouts)
    for name, entry in spec.rollouts.items():
        if (entry.doc.model.app, entry.doc.model.release) in docs.releases:
            names.add(name)
    return names


def targeted(targets: _Targets) -> list[str]:
    """Every robot a selection names, eligible or skipped."""
    return [*targets.eligible, *(robot for robot, _ in targets.skipped)]


def owned(targets: _Targets) -> list[str]:
    """The robots a selection delivers to (a paused rollout's too), sorted."""
    paused = [robot for robot, why in targets.skipped if why in _STILL_OWNED]
    return sorted([*targets.eligible, *paused]) if paused else targets.eligible


def select(index: RobotIndex, spec: FleetSpec, name: str) -> _Targets:
    """``name``'s selection over the index's robots and cohort members, as resolve_targets makes it
    (cohort members are the index's, not a pass over the fleet for each selector)."""
    rollout = spec.rollouts[name].doc.model
    release = spec.release(rollout.app, rollout.release)
    cohorts_of: dict[str, list[str]] = {}
    for cohort_name in rollout.targets.cohorts:
        loaded = spec.cohorts.get(cohort_name)
        if loaded is None:
            continue
        unknown = [robot for robot in loaded.model.devices if robot not in index.devices]
        for member in [*index.members[cohort_name], *unknown]:
            cohorts_of.setdefault(member, []).append(cohort_name)
    eligible: list[str] = []
    skipped: list[tuple[str, SkipReason]] = []
    model = release.doc.model if release is not None else None
    for robot in sorted(set(cohorts_of) | set(rollout.targets.devices)):
        reason = _skip_reason(rollout, model, index.devices.get(robot))
        if reason is None:
            eligible.append(robot)
        else:
            skipped.append((robot, reason))
    return _Targets({robot: tuple(sorted(set(c))) for robot, c in cohorts_of.items()}, eligible, skipped)


def deliveries(
    spec: FleetSpec, index: RobotIndex, robots: Iterable[str]
) -> dict[str, dict[str, list[Delivery]]]:
    """robot -> app -> the rollouts that deliver it there (by rollout name), as Context.deliveries,
    for the known ``robots``: per rollout, a look-up of each robot or a pass over its own robots,
    whichever is shorter."""
    wanted = sorted({robot for robot in robots if robot in index.devices})
    out: dict[str, dict[str, list[Delivery]]] = {robot: {} for robot in wanted}
    for name in sorted(index.targets):
        mine = owned(index.targets[name])
        model = spec.rollouts[name].doc.model
        delivery = Delivery(name, spec.release(model.app, model.release))
        if len(wanted) * 8 < len(mine):
            hits = [robot for robot in wanted if _find(mine, robot)]
        else:
            hits = [robot for robot in mine if robot in out]
        for robot in hits:
            out[robot].setdefault(model.app, []).append(delivery)
    return out


def _find(robots: list[str], robot: str) -> bool:
    at = bisect_left(robots, robot)
    return at < len(robots) and robots[at] == robot
