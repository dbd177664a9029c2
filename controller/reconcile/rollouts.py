"""The plan step for one rollout: who is targeted, in which waves, which generation, then the engine.

Pure apart from signature checks, which go through the verifier handed in (the fleet's dedicated
keyring). Rollouts are processed one after another and each sees the records the previous ones
wrote in this reconcile, so two apps' deployments on one robot never overwrite each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import compress
from operator import is_not

from controller.delivery.bundles import stages_of
from controller.engine import EngineInput, EngineOutput, advance
from controller.engine.inputs import DeviceConfig
from controller.engine.ledger import MOST_CHANGED, LedgerMemo
from controller.records.ids import Generation, rollout_generation
from controller.state.model import Approver, DeviceFile, RolloutPhase, RolloutState
from fleetcd.desired.configset import merge_values, merged_sha256
from fleetcd.errors import SetupError
from fleetcd.layout import release_path
from fleetcd.loading.fleetspec import FleetSpec, RolloutEntry
from fleetcd.models import Device, Fleet, TrustRoot
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.release import Release
from fleetcd.models.requirement import Dependent
from fleetcd.models.rollout import Rollout
from fleetcd.planning.selection import (
    Selection,
    cohort_members,
    resolve_targets,
    rollout_stage,
)
from fleetcd.planning.waves import PlannedWave, effective_strategy, plan_waves
from fleetcd.trust.approval import approval_payload
from fleetcd.trust.policy import Verifier, check_approvals
from fleetcd.validation.configs import config_layers
from fleetcd.validation.context import Context

RELEASES_REMEMBERED = 10  # releases per rollout whose evidence stays reachable for rollbacks


@dataclass(frozen=True)
class RolloutPlan:
    """One rollout as planned from main: who is targeted (and skipped), the waves, and the config
    each member should run (:meth:`FleetContext.plan_of`)."""

    selection: Selection
    planned: list[PlannedWave]
    configs: Mapping[str, DeviceConfig]
    members: frozenset[str] | None = None  # every robot of the waves (None: the engine collects them)


@dataclass
class KeptLedger:
    """One rollout's ledger index as its last tick left it (:class:`~controller.engine.ledger.LedgerMemo`),
    and the robots the rollouts before it wrote in that tick (their files in its map were new)."""

    ledger: LedgerMemo = field(default_factory=LedgerMemo)
    before: frozenset[str] = frozenset()


_SAMPLE = 256  # robots looked at first, to tell a fleet-wide change without a pass over the fleet


@dataclass
class KeptLedgers:
    """Every rollout's kept ledger (``controller run``) and the plan step's starting device map as
    last seen: one pass over it per plan step, in C, names the robots whose file is another object
    for all rollouts; each rollout adds the robots the rollouts before it wrote, this step and the
    last. Past :attr:`most_changed` of the robots changed (the reconcile after a fleet-wide write),
    every ledger is built from every file, without a set of the changed robots. A plan step cut
    short (:meth:`finish` not reached) leaves every ledger to be built again."""

    names: list[str] = field(default_factory=list)  # the starting map's robots, in its order
    files: list[DeviceFile] = field(default_factory=list)  # and their files
    ledgers: dict[str, KeptLedger] = field(default_factory=dict)
    complete: bool = False
    changed: set[str] | None = None  # this plan step's, from the starting map; None: most or all
    written: set[str] = field(default_factory=set)  # robots the rollouts so far wrote this step
    most_changed: float = MOST_CHANGED  # each ledger's (LedgerMemo.most_changed)

    def start(self, devices: Mapping[str, DeviceFile], rollouts: Iterable[str]) -> None:
        """A plan step over ``devices`` (before any rollout wrote) for ``rollouts``."""
        if not self.complete:
            self.names, self.files, self.ledgers = [], [], {}
        self.complete = False
        names = set(rollouts)
        for gone in self.ledgers.keys() - names:  # a rollout gone from main keeps no ledger
            del self.ledgers[gone]
        self.changed, self.written = self._changes(devices), set()

    def _changes(self, devices: Mapping[str, DeviceFile]) -> set[str] | None:
        """The robots whose file in ``devices`` is not the very object it was, or that joined or
        left; None past ``most_changed`` of them. ``devices`` is remembered."""
        names, files = list(devices), list(devices.values())
        last_names, last_files = self.names, self.files
        self.names, self.files = names, files
        limit = len(names) * self.most_changed
        if not last_names:  # the first plan step (or after one cut short): every ledger is built
            return None
        if names == last_names:  # the same robots in the same order (the ingest keeps it)
            # Robots spread over the map first: when more than the share changed among them, most
            # did (a fleet-wide write) and every ledger is built anyway, which needs no exact set.
            # Each identity test touches the robot's file, 5-10 ms a pass at 100,000 robots.
            every = max(1, len(names) // _SAMPLE)
            sample = files[::every]
            if sum(map(is_not, sample, last_files[::every])) > len(sample) * self.most_changed:
                return None
            changed = set(compress(names, map(is_not, files, last_files)))
            return None if len(changed) > limit else changed
        last = dict(zip(last_names, last_files, strict=True))
        changed = set(compress(names, map(is_not, files, map(last.get, names))))
        changed.update(last.keys() - devices.keys())
        return None if len(changed) > limit else changed

    def take(self, rollout: str) -> tuple[LedgerMemo, set[str] | None]:
        """``rollout``'s memo and the robots whose file may differ from its last tick's map (None:
        too many, built from every file)."""
        kept = self.ledgers.get(rollout)
        if kept is None:
            kept = self.ledgers[rollout] = KeptLedger(LedgerMemo(most_changed=self.most_changed))
        changed = None if self.changed is None else self.changed.union(self.written, kept.before)
        kept.before = frozenset(self.written)
        return kept.ledger, changed

    def wrote(self, devices: Iterable[str]) -> None:
        self.written.update(devices)

    def finish(self) -> None:
        self.complete = True


@dataclass(frozen=True)
class FleetContext:
    """What every rollout of one reconcile shares: the spec, models by id, cohort windows, and the
    sha256 of each rollout's release file — hashed here once, read by every later step."""

    spec: FleetSpec
    fleet: Fleet
    trust: TrustRoot  # the newest trust-root version on main whose chain verified
    devices: Mapping[str, Device]
    members: Mapping[str, list[str]]
    cohort_windows: Mapping[str, list[MaintenanceWindow]]
    release_sha256: Mapping[str, str]  # rollout name -> sha256 of the release file it names
    # app -> the releases of other apps on main that require it (controller.engine.requires)
    dependents: Mapping[str, tuple[Dependent, ...]] = field(default_factory=dict)
    # sha256 of every release file a withdrawal on main names: never deployed anew (engine)
    withdrawn: frozenset[str] = frozenset()
    _configs: dict[tuple[str, tuple[str, ...]], DeviceConfig] = field(default_factory=dict, compare=False)
    # rollout name -> its plan (:meth:`plan_of`); shared by the fleet contexts of one tree of main
    plans: dict[str, RolloutPlan] = field(default_factory=dict, compare=False)

    @cached_property
    def retired(self) -> frozenset[str]:
        """The robots on main marked ``decommissioned`` (read once per fleet context: at 100,000
        robots a pass over every device model cost 0.1-0.5 s per reconcile)."""
        return frozenset(device for device, model in self.devices.items() if model.decommissioned)

    @cached_property
    def _layers(self) -> Context:
        return Context(self.spec)

    def device_config(self, app: str, device: str) -> DeviceConfig:
        """The config files of ``app`` that apply to ``device`` and the sha256 of their merge; the
        merge is computed once per distinct set of files (most robots share default + cohort)."""
        layers = config_layers(self._layers, app, device)
        key = (app, tuple(layer.path for layer in layers))
        if key not in self._configs:
            merged = merge_values(layer.model.values for layer in layers) if layers else None
            self._configs[key] = DeviceConfig(key[1], merged_sha256(merged))
        return self._configs[key]

    def plan_of(self, rollout: Rollout, release: Release) -> RolloutPlan:
        """``rollout``'s plan (:func:`plan_rollout`) and every member's config, computed once per
        tree of main: all of it comes from main's files alone (at 100,000 robots, resolving the
        targets, planning the waves and the members' config layers cost seconds per reconcile)."""
        held = self.plans.get(rollout.name)
        if held is None:
            selection, planned = plan_rollout(self, rollout, release)
            members = frozenset(d for wave in planned for d in wave.devices)
            configs = {d: self.device_config(rollout.app, d) for d in sorted(members)}
            held = self.plans[rollout.name] = RolloutPlan(selection, planned, configs, members)
        return held

    @classmethod
    def of(
        cls,
        spec: FleetSpec,
        fleet: Fleet,
        trust: TrustRoot,
        *,
        plans: dict[str, RolloutPlan] | None = None,
    ) -> FleetContext:
        """The context of a validated spec; ``plans``: the rollouts' plans already made from the
        same tree of main (:meth:`controller.reconcile.memo.RobotMemo.plans_for`), filled here."""
        devices = {k: v.model for k, v in spec.devices.items()}
        cohorts = {k: v.model for k, v in spec.cohorts.items()}
        members = {name: cohort_members(c, devices) for name, c in cohorts.items()}
        windows: dict[str, list[MaintenanceWindow]] = {}
        for name, cohort in cohorts.items():
            for device in members[name]:
                windows.setdefault(device, []).extend(cohort.maintenance_windows)
        digests = {
            name: hashlib.sha256(release.doc.raw).hexdigest()
            for name, entry in spec.rollouts.items()
            if (release := spec.release(entry.doc.model.app, entry.doc.model.release)) is not None
        }
        dependents: dict[str, list[Dependent]] = {}
        for (app, version), release in sorted(spec.releases.items()):
            for requirement in release.doc.model.requires:
                dependents.setdefault(requirement.app, []).append(Dependent(app, version, requirement))
        needed_by = {app: tuple(found) for app, found in dependents.items()}
        withdrawn = frozenset(
            hashlib.sha256(release.doc.raw).hexdigest()
            for app, version in spec.withdrawals
            if (release := spec.release(app, version)) is not None
        )
        return cls(
            spec,
            fleet,
            trust,
            devices,
            members,
            windows,
            digests,
            dependents=needed_by,
            withdrawn=withdrawn,
            plans=plans if plans is not None else {},
        )

    def signing_key(self, available: Sequence[str]) -> str:
        """The controller key this reconcile signs with: the first one the trust root lists whose
        secret key the controller holds (rotating the key lists the new one first)."""
        for key in self.trust.controller:
            if key.fingerprint in available:
                return key.fingerprint
        listed = ", ".join(f"{k.name} {k.fingerprint}" for k in self.trust.controller)
        raise SetupError(
            f"no secret key of a controller key of trust root version {self.trust.version} "
            f"({listed}) in the controller's keyring"
        )


@dataclass(frozen=True)
class PlannedRollout:
    """What the plan step planned for one rollout of main, passed forward to the receipts."""

    fingerprint: str  # the generation fingerprint of main's rollout content and release
    waves: list[PlannedWave]


def advance_rollout(
    ctx: FleetContext,
    entry: RolloutEntry,
    state: RolloutState | None,
    device_files: Mapping[str, DeviceFile],
    commit: str,
    verifier: Verifier,
    now: datetime,
    memo: LedgerMemo | None = None,
    changed: Iterable[str] | None = None,
) -> tuple[EngineOutput, PlannedRollout]:
    """Plan one rollout as of ``commit`` and let the engine move it forward at ``now``; also what
    was planned, so nothing plans it again. ``memo``: the rollout's ledger as the last tick left
    it (``controller run``), patched for the robots whose device file changed since."""
    rollout = entry.doc.model
    release = ctx.spec.release(rollout.app, rollout.release)
    sha = ctx.release_sha256.get(rollout.name)
    if release is None or sha is None:  # validation guarantees both; a stalled reconcile never gets here
        raise ValueError(f"{entry.doc.path}: release {rollout.app}@{rollout.release} is not loaded")
    current = Generation(state.generation, state.generation_fingerprint) if state is not None else None
    generation = rollout_generation(entry.doc.data, sha, current, ctx.spec.config_set(rollout.app).root)
    plan = ctx.plan_of(rollout, release.doc.model)
    selection, planned = plan.selection, plan.planned
    output = advance(
        EngineInput(
            rollout=rollout,
            release_sha256=sha,
            generation=generation,
            commit=commit,
            planned=planned,
            skipped=[(d, r.value) for d, r in selection.skipped],
            devices=ctx.devices,
            cohort_windows=ctx.cohort_windows,
            device_files=device_files,
            state=state,
            previous=_previous(state, generation, rollout.release),
            defaults=ctx.fleet.defaults,
            now=now,
            requires=tuple(release.doc.model.requires),
            required_by=ctx.dependents.get(rollout.app, ()),
            withdrawn=ctx.withdrawn,
            configs=plan.configs,
            members=plan.members,
        ),
        memo=memo,
        changed=changed,
    )
    # The engine rebuilds the state each tick; what only this step knows is carried forward here.
    known = {**(state.release_commits if state is not None else {}), **output.state.release_commits}
    update: dict[str, object] = {"release_commits": remember_release(known, sha, output.state.commit)}
    if state is None or state.generation != output.state.generation:
        update["approvers"] = verified_approvers(ctx, entry, verifier)
    elif state.approvers and not output.state.approvers:
        update["approvers"] = state.approvers
    new_state = output.state.model_copy(update=update)
    if new_state != output.state:
        output = EngineOutput(new_state, output.records, output.events)
    return output, PlannedRollout(generation.fingerprint, planned)


def plan_rollout(
    ctx: FleetContext, rollout: Rollout, release: Release
) -> tuple[Selection, list[PlannedWave]]:
    """Who ``rollout`` targets and its waves with their gates (receipts quote the same gates).

    Planned as if running: the engine freezes membership itself while paused or aborted.
    """
    cohorts = {k: v.model for k, v in ctx.spec.cohorts.items()}
    running = rollout.model_copy(update={"paused": False, "aborted": False})
    selection = resolve_targets(running, release, ctx.devices, cohorts)
    planned = plan_waves(
        rollout.name,
        effective_strategy(rollout, ctx.fleet),
        selection.eligible,
        selection.cohorts_of,
        ctx.members,
    )
    return selection, planned


def remember_release(known: Mapping[str, str], sha: str, commit: str) -> dict[str, str]:
    """Add (release digest → approving commit), keeping the newest ``RELEASES_REMEMBERED``."""
    merged = {k: v for k, v in known.items() if k != sha}
    merged[sha] = known.get(sha, commit)
    return dict(list(merged.items())[-RELEASES_REMEMBERED:])


def _previous(state: RolloutState | None, generation: Generation, version: str) -> tuple[str, str] | None:
    """What robots ran before this generation: the last generation's release, when it differs."""
    if state is None:
        return None
    if state.generation == generation.number:
        if state.previous_version and state.previous_release_sha256:
            return state.previous_version, state.previous_release_sha256
        return None
    if state.version == version:
        return (
            (state.previous_version, state.previous_release_sha256)
            if state.previous_release_sha256 and state.previous_version
            else None
        )
    return state.version, state.release_sha256


def verified_approvers(ctx: FleetContext, entry: RolloutEntry, verifier: Verifier) -> tuple[Approver, ...]:
    """The approvers whose signatures verify over this generation's payload (for receipts)."""
    rollout = entry.doc.model
    release = ctx.spec.release(rollout.app, rollout.release)
    assert release is not None
    cohorts = {k: v.model for k, v in ctx.spec.cohorts.items()}
    stage = rollout_stage(rollout, cohorts, stages_of(cohorts, ctx.devices, rollout.targets.devices))
    configs = ctx.spec.config_set(rollout.app)
    payload = approval_payload(
        rollout.name,
        entry.doc.data,
        release_path(rollout.app, rollout.release),
        release.doc.raw,
        (configs.root, configs.count),
    )
    status = check_approvals(
        entry.doc.path,
        payload,
        entry.approvals,
        ctx.trust.approvers,
        ctx.trust.approvals.required(stage),
        verifier,
    )
    names = {k.fingerprint: k.name for k in ctx.trust.approvers}
    return tuple(Approver(fingerprint=f, name=names.get(f, f)) for f in status.verified)


def removed(state: RolloutState, now: datetime) -> RolloutState:
    """A rollout whose file was deleted: robots keep what they run, nothing new is dispatched."""
    if state.phase is RolloutPhase.REMOVED:
        return state
    return state.model_copy(
        update={"phase": RolloutPhase.REMOVED, "reason": "rollout file deleted", "updated_at": now}
    )
