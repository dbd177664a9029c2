"""What a change to the fleet repository will do: per changed rollout, who gets what in which wave.

Purely computational: takes the head snapshot's :class:`FleetSpec` and optionally the base's and
returns a :class:`Plan`; no disk, no git, no gpg, no clock. Signature and approval checks need gpg,
so the caller (``fleetcd plan``) runs them for the rollouts in the plan and attaches the outcome
with :func:`attach_trust`. Selection and waves come from :mod:`fleetcd.planning.selection` and
:mod:`fleetcd.planning.waves`, exactly as the controller computes them.

A rollout is in the plan when it is new, its file changed, it was deleted, or something it depends
on changed what it does (its release file or signatures, its approvals, its targeted robots, skips,
waves, stage, or the config files of its app). Without a base every rollout is in the plan.

A config change is a rollout (a deployment is a release plus its config): every robot in a wave
whose merged config differs from base is to be updated, and the plan lists, per robot, the config
keys that change (old → new), as dotted paths into the merged values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fleetcd.compat import StrEnum
from fleetcd.desired.configset import merge_values
from fleetcd.layout import config_path
from fleetcd.loading.fleetspec import FleetSpec, ReleaseEntry
from fleetcd.models import Cohort, Device, Stage
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.fleet import Approvals
from fleetcd.models.rollout import Rollout, Strategy
from fleetcd.planning.requires import unsatisfied_robots
from fleetcd.planning.schedule import WaveStart, wave_start
from fleetcd.planning.selection import cohort_members, device_stages, resolve_targets, rollout_stage
from fleetcd.planning.waves import PlannedWave, effective_strategy, plan_waves, unplaced
from fleetcd.reasons import HoldReason, SkipReason

REMOVED_NOTE = "robots keep what they run"  # deleting a rollout uninstalls nothing


class Change(StrEnum):
    """Why a rollout is in the plan."""

    PLANNED = "planned"  # no base to compare with
    NEW = "new"
    MODIFIED = "modified"  # its own file changed
    AFFECTED = "affected"  # something it depends on changed
    REMOVED = "removed"


@dataclass(frozen=True)
class SignatureStatus:
    """Distinct trusted release signatures that verified, against the fleet's threshold."""

    verified: int
    required: int

    @property
    def ok(self) -> bool:
        return self.verified >= self.required


@dataclass(frozen=True)
class ApprovalStatus:
    """Distinct trusted approvers whose approval of the current rollout content verified."""

    present: int
    approvers: tuple[str, ...] = ()  # their names from fleet.yaml, for the plan text


@dataclass(frozen=True)
class TrustFacts:
    """Outcome of the gpg checks, computed by the caller so planning stays pure."""

    approvals: Mapping[str, ApprovalStatus] = field(default_factory=dict)  # rollout name ->
    signatures: Mapping[tuple[str, str], SignatureStatus] = field(default_factory=dict)  # (app, version) ->


class _Unset:
    """A config key absent on one side of the comparison (never equal to any YAML value)."""

    def __repr__(self) -> str:
        return "(unset)"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class KeyChange:
    """One config key of one robot, at base and at head (``UNSET`` when absent on that side)."""

    key: str  # dotted path into the merged values
    old: Any
    new: Any


@dataclass(frozen=True)
class ConfigChange:
    """The config keys that change for one robot."""

    device: str
    keys: tuple[KeyChange, ...]


@dataclass(frozen=True)
class RolloutPlan:
    name: str
    change: Change
    why: tuple[str, ...]
    app: str
    version: str
    previous_version: str | None  # the rollout's release at base, when it differs
    release_found: bool
    stage: Stage | None  # None for a removed rollout
    strategy: Strategy | None
    waves: tuple[PlannedWave, ...]
    unplaced: tuple[str, ...]  # eligible robots no explicit wave picks
    skipped: tuple[tuple[str, SkipReason], ...]
    to_update: tuple[str, ...]  # robots in a wave, not already on this release through this rollout
    approvals_required: int
    not_before: datetime | None = None
    aborted: bool = False  # an aborted rollout waits for no reviewers
    approvals: ApprovalStatus | None = None  # None: not checked
    signatures: SignatureStatus | None = None  # None: not checked
    # The release's ``requires`` ("navstack >=1.2.0"): each robot waits until they run there; and
    # the eligible robots no live rollout on main delivers a satisfying release to (never dispatched).
    requires: tuple[str, ...] = ()
    requirement_waits: tuple[str, ...] = ()
    config_changes: tuple[ConfigChange, ...] = ()  # robots in a wave whose merged config changes
    # When each wave could start (attach_schedule, with the caller's clock); () when not computed.
    schedule: tuple[WaveStart, ...] = ()
    respects_windows: bool = True  # the rollout's schedule.respect_maintenance_windows
    # What each robot to update would wait for at the caller's ``now`` by the schedule (attach_schedule):
    # not_before, an earlier wave, a maintenance window; robots absent go out at once.
    schedule_waits: tuple[tuple[str, HoldReason], ...] = ()

    @property
    def eligible(self) -> tuple[str, ...]:
        return tuple(sorted({d for w in self.waves for d in w.devices} | set(self.unplaced)))

    @property
    def update_wave_count(self) -> int:
        updating = set(self.to_update)
        return sum(1 for w in self.waves if updating.intersection(w.devices))

    @property
    def approvals_missing(self) -> int:
        if self.change is Change.REMOVED or self.aborted:
            return 0
        present = self.approvals.present if self.approvals is not None else 0
        return max(0, self.approvals_required - present)

    @property
    def waiting(self) -> dict[str, HoldReason]:
        """Each robot to update that would not get its deployment at once, and the one reason why
        (the controller's vocabulary, controller/state/holds.py): missing approvals hold them all;
        then ``not_before``, an earlier wave, the release's ``requires``, a maintenance window."""
        if self.change is Change.REMOVED:
            return {}
        if self.approvals is not None and self.approvals_missing:
            return dict.fromkeys(self.to_update, HoldReason.APPROVAL_MISSING)
        out = dict(self.schedule_waits)
        for device in self.requirement_waits:
            if out.get(device) not in (HoldReason.NOT_BEFORE, HoldReason.EARLIER_WAVE):
                out[device] = HoldReason.REQUIREMENT_UNMET
        return {d: out[d] for d in sorted(out)}


@dataclass(frozen=True)
class Plan:
    base: str | None  # the base ref as the operator named it
    rollouts: tuple[RolloutPlan, ...]

    @property
    def has_changes(self) -> bool:
        return bool(self.rollouts)

    @property
    def robots_to_update(self) -> tuple[str, ...]:
        return tuple(sorted({d for r in self.rollouts for d in r.to_update}))

    @property
    def robots_with_config_changes(self) -> tuple[str, ...]:
        return tuple(sorted({c.device for r in self.rollouts for c in r.config_changes}))

    @property
    def wave_count(self) -> int:
        """Waves that update at least one robot (a config-only change updates nobody in no wave)."""
        return sum(r.update_wave_count for r in self.rollouts)

    @property
    def skipped_robots(self) -> tuple[str, ...]:
        return tuple(sorted({d for r in self.rollouts for d, _ in r.skipped}))

    @property
    def approvals_missing(self) -> int:
        return sum(r.approvals_missing for r in self.rollouts)


@dataclass(frozen=True)
class _Resolved:
    """One rollout worked out against one snapshot."""

    version: str
    release_found: bool
    stage: Stage
    strategy: Strategy
    waves: tuple[PlannedWave, ...]
    unplaced: tuple[str, ...]
    eligible: frozenset[str]
    skipped: tuple[tuple[str, SkipReason], ...]
    required: int
    requires: tuple[str, ...] = ()
    requirement_waits: tuple[str, ...] = ()


class _Fleet:
    """Per-snapshot lookups shared by every rollout (membership is computed once)."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.devices: dict[str, Device] = {k: v.model for k, v in spec.devices.items()}
        self.cohorts: dict[str, Cohort] = {k: v.model for k, v in spec.cohorts.items()}
        self.members = {name: cohort_members(c, self.devices) for name, c in self.cohorts.items()}
        self.stages = device_stages(self.cohorts, self.devices)
        fleet = spec.fleet.model if spec.fleet is not None else None
        self.fleet = fleet
        root = spec.trust_root
        self.approvals = root.approvals if root is not None else Approvals()
        self.configs = _config_files(spec.files)
        self.memberships: dict[str, list[str]] = {}
        for name in sorted(self.members):
            for device in self.members[name]:
                self.memberships.setdefault(device, []).append(name)
        self._merged: dict[tuple[str, tuple[str, ...]], dict[str, Any] | None] = {}

    def merged_config(self, app: str, device: str) -> dict[str, Any] | None:
        """The robot's merged values for ``app`` (default < cohorts by name < device); None: no file."""
        by_path = {doc.path: doc.model.values for doc in self.spec.configs.get(app, [])}
        stems = ["default", *(f"cohort-{c}" for c in self.memberships.get(device, ())), f"device-{device}"]
        layers = tuple(p for p in (config_path(app, stem) for stem in stems) if p in by_path)
        key = (app, layers)
        if key not in self._merged:
            self._merged[key] = merge_values(by_path[p] for p in layers) if layers else None
        return self._merged[key]

    def resolve(self, name: str) -> _Resolved:
        rollout = self.spec.rollouts[name].doc.model
        entry = self.spec.release(rollout.app, rollout.release)
        release = entry.doc.model if entry is not None else None
        selection = resolve_targets(rollout, release, self.devices, self.cohorts)
        if self.spec.withdrawal(rollout.app, rollout.release) is not None:
            # The controller deploys a withdrawn release nowhere: every robot is skipped, and why.
            withdrawn = tuple((d, SkipReason.RELEASE_WITHDRAWN) for d in selection.eligible)
            skipped = tuple(sorted((*selection.skipped, *withdrawn)))
            selection = replace(selection, eligible=(), skipped=skipped)
        strategy = effective_strategy(rollout, self.fleet)
        waves = plan_waves(name, strategy, selection.eligible, selection.cohorts_of, self.members)
        stage = rollout_stage(rollout, self.cohorts, self.stages)
        requires = release.requires if release is not None else []
        waits = unsatisfied_robots(self.spec, requires, selection.eligible, self.devices, self.cohorts)
        return _Resolved(
            version=rollout.release,
            release_found=entry is not None,
            stage=stage,
            strategy=strategy,
            waves=tuple(waves),
            unplaced=unplaced(selection.eligible, waves),
            eligible=frozenset(selection.eligible),
            skipped=selection.skipped,
            required=self.approvals.required(stage),
            requires=tuple(str(r) for r in requires),
            requirement_waits=waits,
        )


def build_plan(head: FleetSpec, base: FleetSpec | None = None, base_label: str | None = None) -> Plan:
    """The plan of every rollout changed between ``base`` and ``head`` (all of them without a base)."""
    now = _Fleet(head)
    before = _Fleet(base) if base is not None else None
    plans = [p for p in (_plan_one(name, now, before) for name in sorted(head.rollouts)) if p is not None]
    if before is not None:
        gone = sorted(set(before.spec.rollouts) - set(head.rollouts))
        plans.extend(_removed(before, name) for name in gone)
    return Plan(base=base_label, rollouts=tuple(sorted(plans, key=lambda p: p.name)))


def _plan_one(name: str, now: _Fleet, before: _Fleet | None) -> RolloutPlan | None:
    resolved = now.resolve(name)
    previous = before.resolve(name) if before is not None and name in before.spec.rollouts else None
    change, why = _change(name, now, before, resolved, previous)
    if change is None:
        return None
    same_release = previous is not None and previous.version == resolved.version
    # "Already on it": this very rollout made the robot eligible for the same release at base.
    already = previous.eligible if previous is not None and same_release else frozenset()
    rollout = now.spec.rollouts[name].doc.model
    in_waves = resolved.eligible - set(resolved.unplaced)
    changes = _config_changes(rollout.app, sorted(in_waves), now, before) if previous is not None else ()
    return RolloutPlan(
        name=name,
        change=change,
        why=why,
        app=rollout.app,
        version=resolved.version,
        previous_version=previous.version if previous is not None and not same_release else None,
        release_found=resolved.release_found,
        stage=resolved.stage,
        strategy=resolved.strategy,
        waves=resolved.waves,
        unplaced=resolved.unplaced,
        skipped=resolved.skipped,
        to_update=tuple(sorted((in_waves - already) | {c.device for c in changes})),
        approvals_required=resolved.required,
        not_before=rollout.schedule.not_before,
        aborted=rollout.aborted,
        requires=resolved.requires,
        requirement_waits=resolved.requirement_waits,
        config_changes=changes,
    )


def _config_changes(
    app: str, devices: list[str], now: _Fleet, before: _Fleet | None
) -> tuple[ConfigChange, ...]:
    if before is None:
        return ()
    out = []
    for device in devices:
        keys = diff_values(before.merged_config(app, device) or {}, now.merged_config(app, device) or {})
        if keys:
            out.append(ConfigChange(device, keys))
    return tuple(out)


def diff_values(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> tuple[KeyChange, ...]:
    """Keys whose value differs, as dotted paths; nested mappings are compared key by key."""
    changes: list[KeyChange] = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key, UNSET), new.get(key, UNSET)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes.extend(diff_values(a, b, f"{path}."))
        elif a != b or type(a) is not type(b):
            changes.append(KeyChange(path, a, b))
    return tuple(changes)


def attach_schedule(plan: Plan, head: FleetSpec, now: datetime) -> Plan:
    """``plan`` with, per wave, when it could start at ``now`` (the caller's clock): each robot's
    maintenance windows (its own and its cohorts') in its local time and when the next one opens."""
    devices = {k: v.model for k, v in head.devices.items()}
    windows: dict[str, list[MaintenanceWindow]] = {}
    for loaded in head.cohorts.values():
        for device in cohort_members(loaded.model, devices):
            windows.setdefault(device, []).extend(loaded.model.maintenance_windows)
    rollouts = []
    for r in plan.rollouts:
        entry = head.rollouts.get(r.name)
        if r.change is Change.REMOVED or entry is None:
            rollouts.append(r)
            continue
        respect = entry.doc.model.schedule.respect_maintenance_windows
        starts = tuple(
            wave_start(w.name, w.devices, devices, windows, now, r.not_before, respect) for w in r.waves
        )
        waits = _schedule_waits(r, starts, now)
        rollouts.append(replace(r, schedule=starts, respects_windows=respect, schedule_waits=waits))
    return replace(plan, rollouts=tuple(rollouts))


def _schedule_waits(
    r: RolloutPlan, starts: tuple[WaveStart, ...], now: datetime
) -> tuple[tuple[str, HoldReason], ...]:
    """Why each robot to update would wait at ``now`` by the schedule alone (a robot is in its
    first wave only): ``not_before`` ahead, a wave after the first, its window closed."""
    updating, placed = set(r.to_update), set()
    out: list[tuple[str, HoldReason]] = []
    for wave, start in zip(r.waves, starts, strict=True):
        closed = {w.device for w in start.robots if w.opens_at is None or w.opens_at > now}
        for device in wave.devices:
            if device in placed or device not in updating:
                continue
            placed.add(device)
            if r.not_before is not None and r.not_before > now:
                out.append((device, HoldReason.NOT_BEFORE))
            elif wave.index > 0:
                out.append((device, HoldReason.EARLIER_WAVE))
            elif device in closed:
                out.append((device, HoldReason.MAINTENANCE_WINDOW))
    return tuple(sorted(out))


def attach_trust(plan: Plan, trust: TrustFacts) -> Plan:
    """``plan`` with the approval and signature outcomes the caller computed with gpg."""
    rollouts = tuple(
        r
        if r.change is Change.REMOVED
        else replace(
            r,
            approvals=trust.approvals.get(r.name, ApprovalStatus(0)),
            signatures=trust.signatures.get((r.app, r.version)),
        )
        for r in plan.rollouts
    )
    return replace(plan, rollouts=rollouts)


def _change(
    name: str, now: _Fleet, before: _Fleet | None, resolved: _Resolved, previous: _Resolved | None
) -> tuple[Change | None, tuple[str, ...]]:
    if before is None:
        return Change.PLANNED, ("no base to compare with",)
    if previous is None:
        return Change.NEW, ("new rollout",)
    head_doc, base_doc = now.spec.rollouts[name].doc, before.spec.rollouts[name].doc
    inputs = _inputs_changed(now, before, head_doc.model.app, resolved, previous)
    if head_doc.raw != base_doc.raw:
        # Its own edit explains the new waves, skips and voided approvals: name the edit only.
        own = _own_changes(base_doc.model, head_doc.model) or ["rollout file changed"]
        return Change.MODIFIED, (*own, *inputs)
    why = [*inputs, *_effects_changed(now, before, name, resolved, previous)]
    return (Change.AFFECTED, tuple(why)) if why else (None, ())


def _own_changes(then: Rollout, now: Rollout) -> list[str]:
    """What an edit of the rollout file changed, in the words an operator would use."""
    why: list[str] = []
    if then.release != now.release:
        why.append(f"release {then.release} → {now.release}")
    if then.targets != now.targets:
        why.append("targets changed")
    if then.strategy != now.strategy:
        why.append("strategy changed")
    if then.schedule != now.schedule:
        why.append("schedule changed")
    if then.gates != now.gates:
        why.append("gates changed")
    for name, words in (
        ("download_rate_per_minute", "download rate"),
        ("device_timeout_seconds", "device timeout"),
    ):
        before, after = getattr(then, name), getattr(now, name)
        if before != after:
            why.append(f"{words} {_or_default(before)} → {_or_default(after)}")
    if then.on_halt != now.on_halt:
        why.append(f"on_halt {then.on_halt.value} → {now.on_halt.value}")
    if then.paused != now.paused:
        why.append("paused" if now.paused else "resumed")
    if then.aborted != now.aborted:
        why.append("aborted" if now.aborted else "un-aborted")
    if then.promote != now.promote:
        why.append(f"promote {then.promote} → {now.promote}")
    return why


def _or_default(value: int | None) -> str:
    return "default" if value is None else str(value)


def _inputs_changed(
    now_fleet: _Fleet, then_fleet: _Fleet, app: str, now: _Resolved, then: _Resolved
) -> list[str]:
    """Files outside the rollout that feed what its robots receive."""
    why: list[str] = []
    if now.version == then.version:
        now_release = now_fleet.spec.release(app, now.version)
        then_release = then_fleet.spec.release(app, now.version)
        if _raw(now_release) != _raw(then_release):
            why.append("release file changed")
        if _signatures(now_release) != _signatures(then_release):
            why.append("release signatures changed")
    if now_fleet.configs.get(app) != then_fleet.configs.get(app):
        why.append(f"configs/{app}/ changed")
    withdrawn_now = now_fleet.spec.withdrawal(app, now.version) is not None
    if withdrawn_now != (then_fleet.spec.withdrawal(app, now.version) is not None):
        why.append(
            f"release {now.version} withdrawn" if withdrawn_now else f"withdrawal of {now.version} lifted"
        )
    return why


def _effects_changed(
    now_fleet: _Fleet, then_fleet: _Fleet, name: str, now: _Resolved, then: _Resolved
) -> list[str]:
    """What changed in the outcome although the rollout file did not (cohorts, devices, fleet.yaml)."""
    why: list[str] = []
    # Who approved, not the signature bytes: re-signing the same approval changes nothing.
    if set(now_fleet.spec.rollouts[name].approvals) != set(then_fleet.spec.rollouts[name].approvals):
        why.append("approvals changed")
    if now.eligible != then.eligible:
        why.append("targeted robots changed")
    if now.skipped != then.skipped:
        why.append("skipped robots changed")
    if now.strategy != then.strategy:
        why.append("strategy changed (fleet default)")
    if now.waves != then.waves or now.unplaced != then.unplaced:
        why.append("waves changed")
    if now.stage != then.stage:
        why.append(f"stage {then.stage} → {now.stage}")
    if now.required != then.required:
        why.append(f"approvals required {then.required} → {now.required}")
    return why


def _raw(entry: ReleaseEntry | None) -> bytes | None:
    return entry.doc.raw if entry is not None else None


def _signatures(entry: ReleaseEntry | None) -> set[str]:
    return set(entry.signatures) if entry is not None else set()


def _config_files(files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """Raw config files per app (invalid ones included: a broken config is a change too)."""
    out: dict[str, dict[str, bytes]] = {}
    for path, raw in files.items():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "configs":
            out.setdefault(parts[1], {})[path] = raw
    return out


def _removed(before: _Fleet, name: str) -> RolloutPlan:
    rollout = before.spec.rollouts[name].doc.model
    return RolloutPlan(
        name=name,
        change=Change.REMOVED,
        why=(REMOVED_NOTE,),
        app=rollout.app,
        version=rollout.release,
        previous_version=None,
        release_found=before.spec.release(rollout.app, rollout.release) is not None,
        stage=None,
        strategy=None,
        waves=(),
        unplaced=(),
        skipped=(),
        to_update=(),
        approvals_required=0,
    )
