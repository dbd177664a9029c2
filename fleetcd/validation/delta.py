"""Robot files changed, nothing else: the cross-file checks again at the cost of those robots.

A long-running caller's last full content check keeps a :class:`RobotIndex`: every cohort's
members, every robot's cohorts and stage, every rollout's selection (targeted, eligible, skipped),
the release schemas' validators and the merged-config findings by layer files. A commit that only
adds, removes or edits ``devices/<id>.yaml`` files (each loading cleanly before and after; maybe
signatures, approvals or keys too, which no cross-file check reads) changes no cohort, release,
rollout or config document, and a robot's memberships, selections and deliveries depend on its
own file and those documents only. So :func:`patch` brings the index to the changed robots and
:func:`fleetcd.validation.incremental.recheck_content` recomputes only the parts of the checks
they feed (``ContentCheck.parts``, named in :mod:`fleetcd.validation.pipeline`):

* references that name robots: run again over the cohort, rollout and config documents (their
  size, not the fleet's); robot ids equal but for letter case: the changed robots' folded ids only;
* requirement cycles: kept unless a rollout starts or stops delivering to anyone;
* the grouped robot errors (two rollouts of one app on a robot, two apps writing one config file,
  merged configs failing their schema): kept when the last check had none and no changed robot has
  one (each robot's is a function of its own deliveries, so none can appear elsewhere); otherwise
  that check runs in full over the fleet (an error state, which blocks the commit anyway);
* rollouts that do nothing (warnings): each rollout a changed robot is or was targeted by, or that
  names a cohort whose members changed, is judged again in full (its waves are planned over all
  its robots); the others are kept.

Anything else (a robot file that fails to load before or after, another kind of file) is
:mod:`fleetcd.validation.incremental`'s full check. The index is patched in place: only the
content check it was last patched for (``files``) may be rechecked from it. Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fleetcd.errors import Diagnostic
from fleetcd.layout import device_path
from fleetcd.loading.documents import Loaded
from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.models import Cohort, Device, Stage
from fleetcd.models.rollout import Waves
from fleetcd.planning.selection import Selection, _skip_reason, selector_matches
from fleetcd.planning.waves import effective_strategy
from fleetcd.reasons import SkipReason
from fleetcd.validation import references
from fleetcd.validation.configs import FindingCache, Validators
from fleetcd.validation.context import _STILL_OWNED, Context, Delivery

Loader = Callable[[str, bytes], "Loaded[Device] | None"]  # a device file's document, None: invalid


@dataclass
class _Targets:
    """One rollout's selection, as sorted lists patched in place."""

    cohorts_of: dict[str, tuple[str, ...]]
    eligible: list[str]
    skipped: list[tuple[str, SkipReason]]

    def selection(self) -> Selection:
        """The selection now; its ``cohorts_of`` is this one's own (not copied): valid until the
        next patch, which is why a kept content check's context keeps no selections."""
        return Selection(tuple(self.eligible), tuple(self.skipped), self.cohorts_of)

    def owns_anyone(self) -> bool:
        return bool(self.eligible) or any(why in _STILL_OWNED for _, why in self.skipped)

    def targets(self, device: str) -> bool:
        return _find(self.eligible, device) or _find_skipped(self.skipped, device) is not None


@dataclass
class RobotIndex:
    """What a device-only change is rechecked from; see the module docstring."""

    files: Mapping[str, bytes] | None  # the snapshot it describes; None while being patched
    devices: dict[str, Device]
    members: dict[str, list[str]]  # cohort -> sorted robots
    memberships: dict[str, tuple[str, ...]]  # robot -> its cohorts, sorted
    stages: dict[str, Stage]
    targets: dict[str, _Targets]  # rollout -> selection, by rollout name
    folds: dict[str, tuple[str, ...]]  # casefolded robot id -> the robot ids
    collisions: set[str]  # the folded ids of more than one robot
    validators: Validators
    membership_unknown: bool
    release_apps: set[str]
    findings: FindingCache = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)  # parts the latest recheck ran in full

    @classmethod
    def build(cls, ctx: Context, validators: Validators, membership_unknown: bool) -> RobotIndex:
        """From a full check's context (its lookups, already computed, are taken over)."""
        folds: dict[str, tuple[str, ...]] = {}
        for name in ctx.devices:
            fold = name.casefold()
            folds[fold] = (*folds[fold], name) if fold in folds else (name,)
        return cls(
            files=ctx.spec.files,
            devices=dict(ctx.devices),
            members={name: list(robots) for name, robots in ctx.members.items()},
            memberships=dict(ctx.memberships),
            stages=dict(ctx.stages),
            targets={
                name: _Targets(dict(s.cohorts_of), list(s.eligible), list(s.skipped))
                for name, s in ctx.selections.items()
            },
            folds=folds,
            collisions={fold for fold, names in folds.items() if len(names) > 1},
            validators=validators,
            membership_unknown=membership_unknown,
            release_apps=references.release_apps(ctx),
        )

    def context(self, spec: FleetSpec) -> Context:
        """A context over ``spec`` whose lookups are this index's (copied where a later patch would
        change what a kept content check holds)."""
        ctx = Context.__new__(Context)
        ctx.spec, ctx.devices = spec, dict(self.devices)
        ctx.cohorts = {name: loaded.model for name, loaded in spec.cohorts.items()}
        ctx.__dict__["members"] = self.members
        ctx.__dict__["memberships"] = self.memberships
        ctx.__dict__["stages"] = dict(self.stages)
        ctx.__dict__["selections"] = {name: t.selection() for name, t in self.targets.items()}
        return ctx


def load_changed(
    spec: FleetSpec, files: Mapping[str, bytes], changed: Mapping[str, str], load: Loader
) -> dict[str, Loaded[Device] | None] | None:
    """The changed robots' documents (id -> loaded, None when removed), or None when one fails to
    load before or after (or names another id): those go through a full check."""
    out: dict[str, Loaded[Device] | None] = {}
    for path, robot in changed.items():
        if path in spec.files and robot not in spec.devices:
            return None  # it failed to load before
        raw = files.get(path)
        if raw is None:
            out[robot] = None
            continue
        loaded = load(path, raw)
        if loaded is None or loaded.model.id != robot:
            return None
        out[robot] = loaded
    return out


def patched_devices(
    devices: dict[str, Loaded[Device]], changed: Mapping[str, Loaded[Device] | None]
) -> dict[str, Loaded[Device]]:
    """``devices`` with the changed robots replaced, added or removed, in the loader's (path) order."""
    out = dict(devices)
    added = False
    for robot, loaded in changed.items():
        if loaded is None:
            out.pop(robot, None)
        else:
            added = added or robot not in out
            out[robot] = loaded
    if added:
        out = {robot: out[robot] for robot in sorted(out, key=device_path)}
    return out


@dataclass
class Patch:
    """What patching the index for the changed robots touched."""

    cohorts: set[str] = field(default_factory=set)  # whose members changed
    rollouts: set[str] = field(default_factory=set)  # that target (or targeted) a changed robot
    owners_changed: bool = False  # a rollout started or stopped delivering to anyone


def patch(index: RobotIndex, spec: FleetSpec, changed: Iterable[str]) -> Patch:
    """The index brought to ``spec`` (whose devices differ from its own only in ``changed``)."""
    done = Patch()
    cohorts = {name: loaded.model for name, loaded in spec.cohorts.items()}
    owning = {name: t.owns_anyone() for name, t in index.targets.items()}
    added = False
    for robot in changed:
        loaded = spec.devices.get(robot)
        model = loaded.model if loaded is not None else None
        fold = robot.casefold()
        twins = tuple(name for name in index.folds.pop(fold, ()) if name != robot)
        if model is None:
            index.devices.pop(robot, None)
        else:
            added = added or robot not in index.devices
            index.devices[robot] = model
            twins = (*twins, robot)
        if twins:
            index.folds[fold] = twins
        if len(twins) > 1:
            index.collisions.add(fold)
        else:
            index.collisions.discard(fold)
        # cohorts: static list (known robots) or selector, as planning's cohort_members
        mine: list[str] = []
        for name, cohort in cohorts.items():
            member = model is not None and (robot in cohort.devices or selector_matches(cohort, model))
            if _set(index.members[name], robot, member):
                done.cohorts.add(name)
            if member:
                mine.append(name)
        if mine:
            index.memberships[robot] = tuple(sorted(mine))
        else:
            index.memberships.pop(robot, None)
        restage(index, cohorts, robot, mine)
        for name, targets in index.targets.items():
            if _retarget(index, spec, cohorts, name, targets, robot, model):
                done.rollouts.add(name)
    if added:  # the loader's order, as a full check's context has it
        index.devices = {robot: index.devices[robot] for robot in spec.devices}
    done.owners_changed = any(owning[name] != t.owns_anyone() for name, t in index.targets.items())
    return done


def restage(index: RobotIndex, cohorts: Mapping[str, Cohort], robot: str, mine: Iterable[str]) -> None:
    """``robot``'s stage in the index: the highest of its cohorts' (``mine``, in spec order; the
    first on a tie), none when it is in no cohort."""
    stage: Stage | None = None
    for name in mine:
        if stage is None or cohorts[name].stage.rank > stage.rank:
            stage = cohorts[name].stage
    if stage is None:
        index.stages.pop(robot, None)
    else:
        index.stages[robot] = stage


def _retarget(
    index: RobotIndex,
    spec: FleetSpec,
    cohorts: Mapping[str, object],
    name: str,
    targets: _Targets,
    robot: str,
    model: Device | None,
) -> bool:
    """One robot's place in one rollout's selection, as resolve_targets decides it; True when the
    rollout targets it before or after."""
    rollout = spec.rollouts[name].doc.model
    release = spec.release(rollout.app, rollout.release)
    via = sorted(
        {
            c
            for c in rollout.targets.cohorts
            if c in cohorts
            and (
                _find(index.members[c], robot)
                if model is not None
                else robot in spec.cohorts[c].model.devices  # listed, unknown: skipped as unknown
            )
        }
    )
    was = targets.targets(robot)
    if via:
        targets.cohorts_of[robot] = tuple(via)
    else:
        targets.cohorts_of.pop(robot, None)
    spot = bisect_left(targets.eligible, robot)
    if spot < len(targets.eligible) and targets.eligible[spot] == robot:
        del targets.eligible[spot]  # by position: ``remove`` would compare it with every robot before
    at = _find_skipped(targets.skipped, robot)
    if at is not None:
        del targets.skipped[at]
    now = bool(via) or robot in rollout.targets.devices
    if now:
        reason = _skip_reason(rollout, release.doc.model if release else None, model)
        if reason is None:
            targets.eligible.insert(bisect_left(targets.eligible, robot), robot)
        else:
            spot = bisect_left(targets.skipped, robot, key=lambda item: item[0])
            targets.skipped.insert(spot, (robot, reason))
    return was or now


def _find(robots: list[str], robot: str) -> bool:
    at = bisect_left(robots, robot)
    return at < len(robots) and robots[at] == robot


def _find_skipped(skipped: list[tuple[str, SkipReason]], robot: str) -> int | None:
    at = bisect_left(skipped, robot, key=lambda item: item[0])
    return at if at < len(skipped) and skipped[at][0] == robot else None


def _set(robots: list[str], robot: str, member: bool) -> bool:
    """``robot`` in or out of the sorted list; True when that changed it."""
    at = bisect_left(robots, robot)
    there = at < len(robots) and robots[at] == robot
    if member and not there:
        robots.insert(at, robot)
    elif there and not member:
        del robots[at]
    return member != there


def wave_cohorts(spec: FleetSpec, rollout: str) -> set[str]:
    """The cohorts a rollout's warnings read: those it targets and its (effective) waves'."""
    model = spec.rollouts[rollout].doc.model
    names = set(model.targets.cohorts)
    strategy = effective_strategy(model, spec.fleet.model if spec.fleet else None)
    if isinstance(strategy, Waves):
        names.update(w.cohort for w in strategy.waves if w.cohort is not None)
    return names


def robot_deliveries(spec: FleetSpec, index: RobotIndex, robot: str) -> dict[str, list[Delivery]]:
    """app -> the rollouts that deliver it to ``robot`` (by rollout name), as Context.deliveries."""
    out: dict[str, list[Delivery]] = {}
    for name, targets in index.targets.items():
        at = _find_skipped(targets.skipped, robot)
        if _find(targets.eligible, robot) or (at is not None and targets.skipped[at][1] in _STILL_OWNED):
            rollout = spec.rollouts[name].doc.model
            out.setdefault(rollout.app, []).append(Delivery(name, spec.release(rollout.app, rollout.release)))
    return out


def case_errors(spec: FleetSpec, index: RobotIndex) -> tuple[Diagnostic, ...]:
    """Robot ids equal but for letter case, from the index's folded ids."""
    found: list[Diagnostic] = []
    for fold in index.collisions:
        found.extend(references.robot_case_group(spec.devices, index.folds[fold]))
    return tuple(found)
