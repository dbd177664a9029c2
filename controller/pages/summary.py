"""The status pages' view model: what ``STATUS.md`` and ``status.html`` show, computed from state.

Step 6 (write) of the reconcile renders the pages from the state it is about to commit; this module
is the pure half of that: rollout states, device files and the fleet's models plus ``now`` in, one
:class:`FleetView` out. No I/O, no clock. Both renderers read only this view, so the Markdown and the
HTML page can never disagree about a robot.

A robot's *state* on the pages is one of :class:`RobotState`, derived from its latest deployment
record for the rollout's current generation and its connectivity. The counts are recomputed here
from those records (not copied from ``WaveState.counts``) so that a wave's bar and its robot grid
always add up to the same robots.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, compress
from operator import attrgetter, is_, is_not, or_

from controller.pages.memo import PagesMemo, RobotEntry, RolloutMemo, WaveMemo
from controller.records.model import (
    Action,
    Connectivity,
    DeploymentRecord,
    Outcome,
    TargetStatus,
    outcome,
)
from controller.records.progress import device_progress
from controller.state.holds import Holds
from controller.state.model import DeviceFile, RolloutPhase, RolloutState, WavePhase, WaveState
from fleetcd.compat import UTC, StrEnum
from fleetcd.models import Cohort, Device, Stage
from fleetcd.models.rollout import HaltPolicy
from fleetcd.planning.selection import cohort_members
from fleetcd.reasons import HoldReason, RecordReason
from fleetcd.vocabulary import Activity

NO_COHORT = "(direct targets)"  # robots a rollout names directly, outside every cohort
MESSAGE_SHOWN_CHARS = 80  # robots' messages are untrusted and up to 500 chars; tables show a prefix
ELLIPSIS = "…"
# Phases after which robots without a record will never be dispatched this generation.
_STOPPED_PHASES = frozenset({RolloutPhase.HALTED, RolloutPhase.ROLLING_BACK})


class RobotState(StrEnum):
    """What one robot's square, row and bar segment say. Order = bar order = legend order."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ROLLED_BACK = "rolled_back"
    IN_PROGRESS = "in_progress"
    QUEUED = "queued"
    NOT_DISPATCHED = "not_dispatched"  # the rollout halted before the robot's wave: it never gets it
    OFFLINE = "offline"
    RETIRED = "retired"

    @property
    def label(self) -> str:
        if self is RobotState.NOT_DISPATCHED:
            return "not dispatched (halted)"
        return str(self.value).replace("_", " ")

    @property
    def severity(self) -> int:
        """Sort key: problems first, so truncated tables still show every failure they can."""
        return _SEVERITY[self]


_SEVERITY = {
    RobotState.FAILED: 0,
    RobotState.TIMED_OUT: 1,
    RobotState.ROLLED_BACK: 2,
    RobotState.OFFLINE: 3,
    RobotState.IN_PROGRESS: 4,
    RobotState.QUEUED: 5,
    RobotState.NOT_DISPATCHED: 6,
    RobotState.SUCCEEDED: 7,
    RobotState.RETIRED: 8,
}


# Rollouts that need a person come first on the pages; finished ones sink to the bottom.
_PHASE_ORDER = (
    RolloutPhase.HALTED,
    RolloutPhase.ROLLING_BACK,
    RolloutPhase.STALLED,
    RolloutPhase.PAUSED,
    RolloutPhase.PROGRESSING,
    RolloutPhase.SCHEDULED,
    RolloutPhase.COMPLETED,
    RolloutPhase.ABORTED,
    RolloutPhase.REMOVED,
)


@dataclass(frozen=True, slots=True)
class RobotView:
    device: str
    site: str
    state: RobotState
    status: str  # the record's merged status, "waiting (<hold reason>)", or "not dispatched"
    version: str | None  # the version this rollout's deployment to the robot carries; None: none
    last_seen: datetime | None
    connectivity: Connectivity
    message: str  # the latest event's whole message (records bound it to 500 chars)
    wave: str | None = None
    wave_index: int = 0
    running: str | None = None  # what the robot's reports say it runs; None: they do not say
    progress: str | None = None  # its live progress in words (controller.records.progress); None: none
    # What it waits for while it has no deployment (controller.state.holds); None: a removed rollout.
    hold: HoldReason | None = None

    @property
    def status_text(self) -> str:
        """The live progress while there is one (``downloading 41 % (…)``), else the status words."""
        return self.progress or self.status.replace("_", " ")

    @property
    def short_message(self) -> str:
        """The message cut at a word to :data:`MESSAGE_SHOWN_CHARS`, with an ellipsis if cut."""
        return shorten(self.message)

    @property
    def version_text(self) -> str:
        """``1.0.0``, or ``1.0.0 (deployment 1.1.0)`` where the robot runs other than it was sent."""
        if self.running is None and self.version is None:
            return "—"
        if self.version is None or self.running == self.version:
            return str(self.running)
        return f"{self.running or 'unknown'} (deployment {self.version})"


def shorten(text: str, limit: int = MESSAGE_SHOWN_CHARS) -> str:
    """``text`` whole if it fits, else cut at the last space before ``limit`` with an ellipsis;
    never mid-word (a single word longer than the limit is cut, it has no word boundary)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS) + 1]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut[: limit - len(ELLIPSIS)]
    return head.rstrip(" .,;:") + ELLIPSIS


@dataclass(frozen=True)
class Counts:
    """Robots per :class:`RobotState`; ``by_state`` lists every state, zeros included, in bar order."""

    by_state: tuple[tuple[RobotState, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.by_state)

    def __getitem__(self, state: RobotState) -> int:
        return dict(self.by_state)[state]

    def nonzero(self) -> list[tuple[RobotState, int]]:
        return [(s, n) for s, n in self.by_state if n]


@dataclass(frozen=True)
class WaveView:
    index: int
    name: str
    action: str
    phase: WavePhase
    reason: str | None
    counts: Counts
    robots: tuple[RobotView, ...]  # in device-id order: the grid's layout is stable across reconciles


@dataclass(frozen=True)
class CohortTable:
    name: str
    stage: str | None
    counts: Counts
    robots: tuple[RobotView, ...]  # all of them, worst first; renderers cut to their own bounds
    # (wave, members in it) in wave order: a cohort's members may sit in several waves (an earlier
    # wave took some), so its count is not its wave's (:func:`by_wave`; kept per wave by the memo).
    by_wave: tuple[tuple[str, int], ...] = ()

    @property
    def waves_text(self) -> str:
        """``in waves: staging 1 · canary 2 · production 3``; ``in wave production`` when one."""
        waves = self.by_wave
        if len(waves) == 1:
            return f"in wave {waves[0][0]}"
        return "in waves: " + " · ".join(f"{name} {n}" for name, n in waves)


@dataclass(frozen=True)
class RolloutView:
    name: str
    app: str
    version: str
    previous_version: str | None
    generation: int
    phase: RolloutPhase
    reason: str | None
    commit: str
    updated_at: datetime
    approvers: tuple[str, ...]
    skipped: int
    counts: Counts
    waves: tuple[WaveView, ...]
    cohorts: tuple[CohortTable, ...]
    halt_policy: HaltPolicy | None = None  # the on_halt a failed wave applied; None: no halt
    rolled_back: int = 0  # robots the halt sent back to the previous release


RUNNING_SHOWN = 50  # robots named per withdrawn release on a page; `fleetcd get release` lists all


@dataclass(frozen=True)
class WithdrawnView:
    """A release a withdrawal on main names, and the robots whose records say they still run it."""

    app: str
    version: str
    reason: str  # from main: text people wrote, escaped by the renderers
    running: tuple[str, ...]


@dataclass(frozen=True)
class FleetView:
    fleet: str | None
    generated_at: datetime
    commit: str | None
    rollouts: tuple[RolloutView, ...]
    withdrawn: tuple[WithdrawnView, ...] = ()
    description: str = ""  # fleet.yaml's description, under the title


def count(robots: Iterable[RobotView]) -> Counts:
    tally = dict.fromkeys(RobotState, 0)
    for robot in robots:
        tally[robot.state] += 1
    return Counts(tuple(tally.items()))


PerWave = Counter[tuple[int, str | None]]  # (wave index, wave name) -> robots
_AT_WAVE = attrgetter("wave_index", "wave")


def per_wave(robots: Iterable[RobotView]) -> PerWave:
    """``robots`` counted per wave index and name (in C), in the order met."""
    return Counter(map(_AT_WAVE, robots))


def by_wave(robots: Sequence[RobotView], tally: PerWave | None = None) -> tuple[tuple[str, int], ...]:
    """(wave, robots in it) in wave order, robots of waves of one name added up; from ``tally``
    (:func:`per_wave` of ``robots`` in another order, kept up to date robot by robot) when given
    and each wave index has one name (then the order names are met in cannot matter), else
    counted from ``robots`` (each index's names in the order met)."""
    per_index = _per_index(tally if tally is not None else per_wave(robots))
    if tally is not None and any(len(names) != 1 for names in per_index.values()):
        per_index = _per_index(per_wave(robots))
    out: dict[str, int] = {}
    for index in sorted(per_index):
        for name, n in per_index[index].items():
            out[name] = out.get(name, 0) + n
    return tuple(out.items())


def _per_index(tally: PerWave) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for (index, wave), n in tally.items():
        if n:
            names = out.setdefault(index, {})
            names[wave or "?"] = names.get(wave or "?", 0) + n
    return out


def robot_state(
    record: DeploymentRecord | None, connectivity: Connectivity, *, halted: bool = False
) -> RobotState:
    """One robot's state in a rollout: its record's outcome, with offline told apart from failed;
    ``halted``: the rollout stopped, so a robot with no record will never be dispatched."""
    if record is None:
        if halted:
            return RobotState.NOT_DISPATCHED
        return RobotState.OFFLINE if connectivity is Connectivity.OFFLINE else RobotState.QUEUED
    result = outcome(record)
    if record.reason == RecordReason.TIMED_OUT and result is Outcome.FAILED:
        return RobotState.TIMED_OUT
    if result is Outcome.FAILED:
        return RobotState.ROLLED_BACK if record.activity is Activity.ROLLED_BACK else RobotState.FAILED
    if result is Outcome.SUCCEEDED:
        # A finished rollback deployment means the robot is back on the previous release.
        return RobotState.ROLLED_BACK if record.action is Action.ROLLBACK else RobotState.SUCCEEDED
    if result is Outcome.RETIRED:
        return RobotState.RETIRED
    if connectivity is Connectivity.OFFLINE:
        return RobotState.OFFLINE
    return RobotState.QUEUED if result is Outcome.PENDING else RobotState.IN_PROGRESS


def _latest(records: Sequence[DeploymentRecord], wave: int) -> DeploymentRecord | None:
    # Prefer the wave's own records; a rollback record may carry its own wave index.
    own = [r for r in records if r.wave == wave] or list(records)
    return max(own, key=lambda r: (r.created_at, r.updated_at), default=None)


ConfigOf = Callable[[str, str], str | None]  # (app, device) -> the merged config sha256 it should run


def carried(
    records: Sequence[DeploymentRecord], rollout: RolloutState, device: str, config_of: ConfigOf | None
) -> DeploymentRecord | None:
    """The earlier generation's record a robot keeps because it already runs this generation's
    release with the config it should run now (the engine's ledger rule: no new deployment, the
    wave counts it as succeeded); None without ``config_of`` or when the robot needs a deployment."""
    earlier = [
        r
        for r in records
        if r.rollout == rollout.name
        and r.generation < rollout.generation
        and r.target_status is not TargetStatus.ARCHIVED
    ]
    held = max(earlier, key=lambda r: (r.generation, r.created_at, r.id), default=None)
    if held is None or config_of is None or held.release_sha256 != rollout.release_sha256:
        return None
    if outcome(held) is not Outcome.SUCCEEDED or held.config_sha256 != config_of(rollout.app, device):
        return None
    return held


def _robot(
    device: str,
    wave: int,
    wave_name: str,
    rollout: RolloutState,
    files: Mapping[str, DeviceFile],
    site: str,
    config_of: ConfigOf | None = None,
    hold: HoldReason | None = None,
) -> RobotView:
    file = files.get(device)
    records = (
        []
        if file is None
        else [r for r in file.records if r.rollout == rollout.name and r.generation == rollout.generation]
    )
    record = _latest(records, wave)
    status = "not dispatched" if record is None else record.status.value
    if record is None and file is not None:
        record = carried(file.records, rollout, device, config_of)
        if record is not None:
            status = f"{record.status.value}, unchanged since generation {record.generation}"
    if record is None and hold is not None and rollout.phase not in _STOPPED_PHASES:
        status = f"waiting ({hold.value.replace('_', ' ')})"
    conn = Connectivity.UNKNOWN if file is None else file.state.connectivity
    message = record.events[-1].message if record is not None and record.events else ""
    return RobotView(
        device=device,
        site=site,
        state=robot_state(record, conn, halted=rollout.phase in _STOPPED_PHASES),
        status=status,
        version=None if record is None else record.version,
        last_seen=None if file is None else file.state.last_seen,
        connectivity=conn,
        message=message,
        wave=wave_name,
        wave_index=wave,
        running=None if file is None else running_version(file.records, rollout),
        progress=None if file is None else device_progress(file.state, record),
        hold=hold,
    )


def running_version(records: Sequence[DeploymentRecord], rollout: RolloutState) -> str | None:
    """What the robot runs of the rollout's app, as its reports show: its newest succeeded
    deployment (a rollback included), or the rollout's previous version when its agent rolled the
    newest deployment back on its own; None when the records do not say."""
    mine = [r for r in records if r.app == rollout.app]
    newest = max(mine, key=lambda r: (r.created_at, r.updated_at, r.generation), default=None)
    done = [r for r in mine if outcome(r) is Outcome.SUCCEEDED]
    running = max(done, key=lambda r: (r.created_at, r.updated_at, r.generation), default=None)
    if newest is not None and newest is not running and newest.activity is Activity.ROLLED_BACK:
        # The agent went back to what it ran before this deployment.
        return running.version if running is not None else rollout.previous_version
    return None if running is None else running.version


def _cohort_order(name: str, cohorts: Mapping[str, Cohort]) -> tuple[int, str]:
    # Tables follow the blast radius (staging, canary, production); direct targets come last.
    cohort = cohorts.get(name)
    return (cohort.stage.rank if cohort is not None else len(Stage), name)


def _robot_key(rollout: RolloutState) -> tuple[object, ...]:
    """The rollout's fields one robot's view reads (:func:`_robot`): while they stay the same, a
    robot whose device file, wave and site are the same has the same view."""
    return (
        rollout.name,
        rollout.generation,
        rollout.app,
        rollout.release_sha256,
        rollout.previous_version,
        rollout.phase in _STOPPED_PHASES,
    )


def _tracking(config_of: ConfigOf, used: list[str | None]) -> ConfigOf:
    """``config_of`` noting each answer in ``used``: a view that read one depends on the fleet."""

    def tracked(app: str, device: str) -> str | None:
        used.append(config_of(app, device))
        return used[-1]

    return tracked


class _Builder:
    """Robot views for one rollout: a kept entry whose inputs are the same objects costs a lookup;
    anything else is built (and counted in :attr:`made`)."""

    def __init__(
        self,
        rollout: RolloutState,
        files: Mapping[str, DeviceFile],
        config_of: ConfigOf | None,
        config_same: bool,
    ) -> None:
        self.rollout, self.files, self.config_of, self.config_same = rollout, files, config_of, config_same
        self.holds = Holds(rollout)
        self.made = 0
        self.same_robots = True  # no robot joined or left the counts (decommissioned, new)

    def entry(
        self, old: RobotEntry | None, device_id: str, model: Device | None, wave: WaveState
    ) -> RobotEntry:
        file = self.files.get(device_id)
        if old is None:
            self.same_robots = False
            return self.new(device_id, model, file, wave)
        if model is not old.model:
            if model is None or old.model is None or model != old.model:
                if (model is not None and model.decommissioned) != (old.view is None):
                    self.same_robots = False
                return self.new(device_id, model, file, wave)
            old = RobotEntry(device_id, model, old.file, old.used_config, old.view)
        if old.view is not None and old.view.hold is not self.holds.of(wave.index, device_id):
            return self.new(device_id, model, file, wave)  # what it waits for changed
        if old.view is None or (file is old.file and not (old.used_config and not self.config_same)):
            return old
        # Another file object: changed, or the same record parsed again from the bytes the last
        # reconcile wrote. Comparing the two costs about as much as building the view (measured),
        # so it is built: a robot whose file is written costs two builds, this and the next.
        return self.new(device_id, model, file, wave)

    def new(
        self, device_id: str, model: Device | None, file: DeviceFile | None, wave: WaveState
    ) -> RobotEntry:
        if model is not None and model.decommissioned:
            return RobotEntry(device_id, model, file, False, None)  # out of every count
        used: list[str | None] = []
        tracked = None if self.config_of is None else _tracking(self.config_of, used)
        site = model.site if model is not None else "?"
        hold = self.holds.of(wave.index, device_id)
        view = _robot(device_id, wave.index, wave.name, self.rollout, self.files, site, tracked, hold)
        self.made += 1
        return RobotEntry(device_id, model, file, bool(used), view)


# Robot states from the worst: a cohort table lists its robots in this order, by device within each.
_WORST_FIRST = tuple(sorted(RobotState, key=lambda state: _SEVERITY[state]))


def _split(members: Iterable[RobotView]) -> dict[RobotState, list[RobotView]]:
    """``members`` by state, each state's in the order given (device order)."""
    by_state: dict[RobotState, list[RobotView]] = {}
    for robot in members:
        by_state.setdefault(robot.state, []).append(robot)
    return by_state


def _table(
    name: str,
    cohorts: Mapping[str, Cohort],
    by_state: Mapping[RobotState, list[RobotView]],
    tally: PerWave | None = None,
) -> CohortTable:
    """A cohort's table from its members by state, each in device order: worst first, by device
    within a state (the order of ``sorted(key=(severity, device))``, without a sort); its members
    per wave from ``tally`` (:func:`per_wave` of them) when given."""
    robots = tuple(chain.from_iterable(by_state.get(state, ()) for state in _WORST_FIRST))
    return CohortTable(
        name=name,
        stage=cohorts[name].stage.value if name in cohorts else None,
        counts=Counts(tuple((state, len(by_state.get(state, ()))) for state in RobotState)),
        robots=robots,
        by_wave=by_wave(robots, tally),
    )


def _rollout_view(
    rollout: RolloutState,
    files: Mapping[str, DeviceFile],
    memberships: Mapping[str, tuple[str, ...]],
    cohorts: Mapping[str, Cohort],
    devices: Mapping[str, Device],
    config_of: ConfigOf | None = None,
    memo: RolloutMemo | None = None,
    config_same: bool = False,
) -> RolloutView:
    """``memo``: the rollout's robot views of the last build, reused where their inputs are the same
    (``config_same``: the config source is the one they were built with) and replaced by this one's.

    With a memo whose waves, rollout fields and device models are the same, the work per robot is
    a lookup of its device file and an identity check; only the robots whose file changed are
    built again."""
    memo = memo if memo is not None else RolloutMemo()
    key = _robot_key(rollout)
    built = _Builder(rollout, files, config_of, config_same)
    patched = _patched(rollout, key, files, memberships, cohorts, devices, memo, built)
    memo.patched = patched is not None
    if patched is not None:
        return patched
    memo.reused = False
    kept = memo.waves if memo.key == key else {}
    # The last view's waves, whose robots and counts a wave none of whose robots changed keeps.
    last = {w.index: w for w in memo.view.waves} if memo.view is not None and kept else {}
    waves: list[WaveView] = []
    wave_memos: dict[int, WaveMemo] = {}
    seen: dict[str, RobotView] = {}
    same_order = len(kept) == len(rollout.waves)
    for wave in rollout.waves:
        old = kept.get(wave.index)
        if old is None or old.name != wave.name or old.devices != wave.devices:
            old, same_order = None, False
        ids = old.ids if old is not None else sorted(wave.devices)
        if old is None:
            entries = [built.entry(None, d, devices.get(d), wave) for d in ids]
        else:
            entries = _entries(old, wave, files, devices, built, config_same)
        previous = last.get(wave.index) if old is not None else None
        if previous is not None and old is not None and all(map(is_, entries, old.entries)):
            # no robot of it changed: the last view's robots and counts (the same views, in order)
            wave_memos[wave.index] = old
            counts, robots = previous.counts, previous.robots
        else:
            wave_memos[wave.index] = WaveMemo(wave.devices, wave.name, ids, entries)
            robots = tuple(e.view for e in entries if e.view is not None)
            counts = count(robots)
        for robot in robots:
            seen[robot.device] = robot  # a later (e.g. rollback) wave's view of a robot wins
        waves.append(WaveView(wave.index, wave.name, wave.action, wave.phase, wave.reason, counts, robots))
    order = memo.order if same_order and built.same_robots else sorted(seen)
    memo.key, memo.waves, memo.order, memo.built = key, wave_memos, order, built.made
    groups: dict[str, list[RobotView]] = {}
    for device_id in order:  # in device order: each cohort's members come out sorted by device
        robot = seen[device_id]
        for name in memberships.get(device_id) or (NO_COHORT,):
            groups.setdefault(name, []).append(robot)
    memo.lists = {name: _split(members) for name, members in groups.items()}
    memo.waves_of = {name: per_wave(members) for name, members in groups.items()}
    memo.tables = {name: _table(name, cohorts, memo.lists[name], memo.waves_of[name]) for name in groups}
    counts = count(seen.values())
    memo.holds, memo.seen, memo.tally = built.holds, seen, dict(counts.by_state)
    memo.view = _shell(rollout, counts, tuple(waves), _ordered(memo.tables, cohorts))
    memo.grouped_by = (memberships, dict(cohorts))  # a copy: the caller's mapping may change in place
    return memo.view


def _entries(
    old: WaveMemo,
    wave: WaveState,
    files: Mapping[str, DeviceFile],
    devices: Mapping[str, Device],
    built: _Builder,
    config_same: bool,
) -> list[RobotEntry]:
    """:meth:`_Builder.entry` of every robot of ``wave`` (the same name and robots as ``old``), its
    test that an entry stands as built (the very device file and model, the same config source if
    the view read one, the same hold reason) made inline, with the method called only for the
    robots that fail it: in the wave reconcile at 30,000 robots the changed rollout's 31,000
    entries were walked through the method in 0.36 s of a 0.78 s pages step (profiled)."""
    file_of, model_of, hold_of, index, entry = files.get, devices.get, built.holds.of, wave.index, built.entry
    return [
        e
        if file_of(e.device) is e.file
        and model_of(e.device) is e.model
        and (config_same or not e.used_config)
        and (e.view is None or e.view.hold is hold_of(index, e.device))
        else entry(e, e.device, model_of(e.device), wave)
        for e in old.entries
    ]


def _shell(
    rollout: RolloutState, counts: Counts, waves: tuple[WaveView, ...], tables: tuple[CohortTable, ...]
) -> RolloutView:
    """A rollout's view: its own fields from ``rollout``, its robots' from the rest."""
    return RolloutView(
        name=rollout.name,
        app=rollout.app,
        version=rollout.version,
        previous_version=rollout.previous_version,
        generation=rollout.generation,
        phase=rollout.phase,
        reason=rollout.reason,
        commit=rollout.commit,
        updated_at=rollout.updated_at,
        approvers=tuple(f"{a.name} ({a.fingerprint[-16:]})" for a in rollout.approvers),
        skipped=len(rollout.skipped),
        counts=counts,
        waves=waves,
        cohorts=tables,
        halt_policy=rollout.halt_policy,
        rolled_back=len(rollout.rolled_back_devices),
    )


_FILE, _MODEL, _VIEW, _USED = (
    attrgetter("file"),
    attrgetter("model"),
    attrgetter("view"),
    attrgetter("used_config"),
)
_DEVICE = attrgetter("device")


def _ordered(tables: Mapping[str, CohortTable], cohorts: Mapping[str, Cohort]) -> tuple[CohortTable, ...]:
    return tuple(tables[name] for name in sorted(tables, key=lambda name: _cohort_order(name, cohorts)))


def _held_changed(old: Holds, new: Holds) -> tuple[dict[int, set[str]], int | None] | None:
    """Per wave, the robots whose hold reason differs between ``old`` and ``new``, and the active
    wave after which every robot's may differ (what it waits for changed: it soaks now), or None
    for no such wave; None when every robot's may (the rollout's phase or its active wave
    changed: a pause, a wave passed)."""
    if (old.removed, old.fixed, old.active) != (new.removed, new.fixed, new.active):
        return None
    out: dict[int, set[str]] = {}
    for (wave, device), _ in old.held.items() ^ new.held.items():
        out.setdefault(wave, set()).add(device)
    return out, None if old.later is new.later else new.active


def _stale(
    old: WaveMemo,
    files: Mapping[str, DeviceFile],
    devices: Mapping[str, Device],
    config_same: bool,
    held: Iterable[str],
    every: bool = False,
) -> list[int]:
    """Positions of ``old``'s entries whose inputs may differ, in order: another device file or
    model object (compared over the wave by ``map`` in C, no Python bytecode per robot: about 30
    ns a robot), a view that read the config when the config source is another one, a robot whose
    hold reason changed (``every``: any robot's may have). The rest stand as built."""
    ids, entries = old.ids, old.entries
    positions = range(len(ids))
    if every:
        return list(positions)
    moved = map(is_not, map(files.get, ids), map(_FILE, entries))
    if not all(map(is_, map(devices.get, ids), map(_MODEL, entries))):  # main's models parsed again
        moved = map(or_, moved, map(is_not, map(devices.get, ids), map(_MODEL, entries)))
    stale = set(compress(positions, moved))
    if not config_same:
        stale.update(compress(positions, map(_USED, entries)))
    for device in held:
        i = bisect_left(ids, device)
        if i < len(ids) and ids[i] == device:
            stale.add(i)
    return sorted(stale)


def _patched(
    rollout: RolloutState,
    key: tuple[object, ...],
    files: Mapping[str, DeviceFile],
    memberships: Mapping[str, tuple[str, ...]],
    cohorts: Mapping[str, Cohort],
    devices: Mapping[str, Device],
    memo: RolloutMemo,
    built: _Builder,
) -> RolloutView | None:
    """The last build's view of ``rollout`` with only the robots whose inputs changed built again,
    and its counts, robot lists and cohort tables patched by them; its own fields taken anew.
    Taken when the rollout fields a robot reads, its waves' names and robots, the memberships and
    cohorts and every hold reason not held by name are the ones the last view was built with. A
    wave none of whose robots changed keeps its robot list and counts (the same objects); a
    cohort none of whose robots changed keeps its table. None: build it."""
    last = memo.view
    if last is None or memo.key != key or memo.holds is None or len(last.waves) != len(rollout.waves):
        return None
    grouped, grouped_cohorts = memo.grouped_by
    if (grouped is not memberships and grouped != memberships) or grouped_cohorts != cohorts:
        return None
    holds = _held_changed(memo.holds, built.holds)
    if holds is None:
        return None
    held, later_than = holds
    olds: list[WaveMemo] = []
    for wave, kept in zip(rollout.waves, last.waves, strict=True):
        old = memo.waves.get(wave.index)
        if old is None or kept.index != wave.index or old.name != wave.name:
            return None
        if old.devices is not wave.devices and old.devices != wave.devices:
            return None
        olds.append(old)
    waves: list[WaveView] = []
    memo.reused = True  # until a robot's entry is looked at again
    changed: dict[str, None] = {}  # robots whose view changed in some wave, in the order found
    for wave, kept, old in zip(rollout.waves, last.waves, olds, strict=True):
        entries, moved = old.entries, []
        every = (
            later_than is not None and wave.index > later_than
        )  # its waiting robots wait for another reason
        stale = _stale(old, files, devices, built.config_same, held.get(wave.index, ()), every)
        if stale:
            entries = list(entries)
            for i in stale:
                was = entries[i]
                entries[i] = built.entry(was, was.device, devices.get(was.device), wave)
                if entries[i].view is not was.view:
                    moved.append((was.view, entries[i].view))
        counts, robots = kept.counts, kept.robots
        if moved:
            tally = dict(counts.by_state)
            for before, after in moved:
                changed[_DEVICE(before or after)] = None
                if before is not None:
                    tally[before.state] -= 1
                if after is not None:
                    tally[after.state] += 1
            counts, robots = Counts(tuple(tally.items())), tuple(filter(None, map(_VIEW, entries)))
        memo.waves[wave.index] = WaveMemo(wave.devices, wave.name, old.ids, entries)
        memo.reused = memo.reused and not stale
        waves.append(WaveView(wave.index, wave.name, wave.action, wave.phase, wave.reason, counts, robots))
    counts, tables = last.counts, last.cohorts
    if _reseat(changed, [memo.waves[w.index] for w in rollout.waves], memberships, cohorts, memo):
        counts, tables = Counts(tuple(memo.tally.items())), _ordered(memo.tables, cohorts)
    memo.holds, memo.built = built.holds, built.made
    memo.view = _shell(rollout, counts, tuple(waves), tables)
    return memo.view


def _winner(device: str, waves: Sequence[WaveMemo]) -> RobotView | None:
    """``device``'s view in the rollout's counts and tables: its last wave's (a rollback wave's)."""
    for wave in reversed(waves):
        i = bisect_left(wave.ids, device)
        if i < len(wave.ids) and wave.ids[i] == device and wave.entries[i].view is not None:
            return wave.entries[i].view
    return None


def _reseat(
    changed: Iterable[str],
    waves: Sequence[WaveMemo],
    memberships: Mapping[str, tuple[str, ...]],
    cohorts: Mapping[str, Cohort],
    memo: RolloutMemo,
) -> bool:
    """Each ``changed`` robot's view put in the rollout's counts and its cohorts' tables in place of
    the one they held; only the tables of cohorts with a changed robot are made again. False: none
    of them changed the rollout's view."""
    gone: dict[str, dict[RobotState, set[str]]] = {}
    added: dict[str, dict[RobotState, list[RobotView]]] = {}
    joined = False  # a robot joined or left the counts: the rollout's device order changes
    left: dict[str, list[RobotView]] = {}  # per cohort, the views its changed robots held
    for device in changed:
        was, now = memo.seen.get(device), _winner(device, waves)
        if was is now:
            continue
        joined = joined or was is None or now is None
        for name in memberships.get(device) or (NO_COHORT,):
            if was is not None:
                gone.setdefault(name, {}).setdefault(was.state, set()).add(device)
                left.setdefault(name, []).append(was)
            if now is not None:
                added.setdefault(name, {}).setdefault(now.state, []).append(now)
        if was is not None:
            memo.tally[was.state] -= 1
            del memo.seen[device]
        if now is not None:
            memo.tally[now.state] += 1
            memo.seen[device] = now
    if joined:
        memo.order = sorted(memo.seen)
    for name in gone.keys() | added.keys():
        lists = memo.lists.setdefault(name, {})
        removed, joining = gone.get(name, {}), added.get(name, {})
        for state in removed.keys() | joining.keys():
            lists[state] = _spliced(lists.get(state, []), removed.get(state, set()), joining.get(state, []))
        tally = memo.waves_of.setdefault(name, Counter())
        tally.update(per_wave(chain.from_iterable(joining.values())))
        tally.subtract(per_wave(left.get(name, ())))
        if any(lists.values()):
            memo.tables[name] = _table(name, cohorts, lists, memo.waves_of[name])
        else:
            del memo.lists[name], memo.tables[name], memo.waves_of[name]
    return bool(gone or added)


def _spliced(views: list[RobotView], gone: set[str], added: list[RobotView]) -> list[RobotView]:
    """``views`` (in device order) without the robots ``gone`` and with ``added``, in device order:
    cut and joined in slices, so K changes cost K bisections and one copy of the list."""
    cuts = sorted(
        [(bisect_left(views, robot.device, key=_DEVICE), 0, robot.device) for robot in added]
        + [(bisect_left(views, device, key=_DEVICE), 1, device) for device in gone]
    )
    joining = {robot.device: robot for robot in added}
    out: list[RobotView] = []
    start = 0
    for at, kind, device in cuts:
        out.extend(views[start:at])
        if kind == 0:
            out.append(joining[device])
            start = at
        else:
            start = at + 1
    out.extend(views[start:])
    return out


HALT_WORDS = {
    HaltPolicy.ROLLBACK_ALL: "every robot that received the release goes back",
    HaltPolicy.ROLLBACK_WAVE: "the failed wave goes back; passed waves keep the release",
    HaltPolicy.PAUSE: "nothing rolls back; waiting for the operator's commit",
}


def halt_text(rollout: RolloutView) -> str | None:
    """``on halt: rollback_all (every robot … goes back): 3 rolled back``, or None without a halt."""
    if rollout.halt_policy is None:
        return None
    policy = rollout.halt_policy
    return f"on halt: {policy.value} ({HALT_WORDS[policy]}): {rollout.rolled_back} rolled back"


def build_view(
    rollouts: Sequence[RolloutState],
    device_files: Mapping[str, DeviceFile],
    cohorts: Mapping[str, Cohort],
    devices: Mapping[str, Device],
    now: datetime,
    commit: str | None,
    *,
    fleet: str | None = None,
    withdrawals: Mapping[tuple[str, str], str] | None = None,
    description: str = "",
    config_of: ConfigOf | None = None,
    members: Mapping[str, Sequence[str]] | None = None,
    memo: PagesMemo | None = None,
    config_source: object = None,
) -> FleetView:
    """Everything the status pages show, from the state about to be committed (pure);
    ``withdrawals`` maps each withdrawn (app, version) to its reason; ``config_of(app, device)`` is
    the merged config sha256 the robot should run (a robot already running the release with it
    keeps its earlier generation's record, as the controller counts it).

    ``members``: each cohort's members as :func:`cohort_members` lists them, when the caller has
    them (the fleet context does). ``memo`` (:mod:`controller.pages.memo`): the views of the last
    build, reused for every robot whose inputs are the same, and replaced by this build's;
    ``config_source`` is the object ``config_of`` answers from (the same one: the same answers).
    The view is the same with or without them."""
    memo = memo if memo is not None else PagesMemo()
    config_same = config_source is not None and config_source is memo.config_source
    memo.config_source = config_source
    if members is None or members is not memo.members:
        member_of: dict[str, list[str]] = {}
        for name in sorted(cohorts):
            listed = members[name] if members is not None else cohort_members(cohorts[name], devices)
            for device_id in listed:
                member_of.setdefault(device_id, []).append(name)
        memo.memberships = {d: tuple(names) for d, names in member_of.items()}
        memo.members = members
    kept, memo.rollouts = memo.rollouts, {}
    views = []
    try:
        for r in sorted(rollouts, key=lambda r: (_PHASE_ORDER.index(r.phase), r.name)):
            rollout_memo = memo.rollouts[r.name] = kept.get(r.name) or RolloutMemo()
            views.append(
                _rollout_view(
                    r, device_files, memo.memberships, cohorts, devices, config_of, rollout_memo, config_same
                )
            )  # fmt: skip
    except BaseException:
        memo.rollouts = {}  # a rollout's memo may be half patched: the next build starts cold
        raise
    memo.robots_built = sum(m.built for m in memo.rollouts.values())
    runs = _runs_by_device(device_files, memo) if withdrawals else {}
    withdrawn = tuple(
        WithdrawnView(app, version, reason, tuple(d for d, (_, on) in runs.items() if on.get(app) == version))
        for (app, version), reason in sorted((withdrawals or {}).items())
    )
    return FleetView(
        fleet=fleet,
        generated_at=now,
        commit=commit,
        rollouts=tuple(views),
        withdrawn=withdrawn,
        description=description,
    )


def running_robots(device_files: Mapping[str, DeviceFile], app: str, version: str) -> tuple[str, ...]:
    """Robots whose newest succeeded deployment of ``app`` is ``version`` (what they run)."""
    return tuple(d for d in sorted(device_files) if _running_apps(device_files[d]).get(app) == version)


def _running_apps(file: DeviceFile) -> dict[str, str]:
    """App -> the version of the robot's newest succeeded deployment of it (the first of equals)."""
    newest: dict[str, tuple[tuple[datetime, datetime, int], str]] = {}
    for r in file.records:
        if outcome(r) is not Outcome.SUCCEEDED:
            continue
        key = (r.created_at, r.updated_at, r.generation)
        held = newest.get(r.app)
        if held is None or key > held[0]:
            newest[r.app] = (key, r.version)
    return {app: version for app, (_, version) in newest.items()}


def _runs_by_device(
    device_files: Mapping[str, DeviceFile], memo: PagesMemo
) -> dict[str, tuple[DeviceFile, dict[str, str]]]:
    """Every robot, in device order, with what it runs; from ``memo`` for files that are the same
    objects (the withdrawn releases' lists of robots still running them)."""
    if device_files.keys() != memo.running.keys():
        kept, ids = memo.running, sorted(device_files)
    else:
        kept, ids = memo.running, list(memo.running)
    runs: dict[str, tuple[DeviceFile, dict[str, str]]] = {}
    for device in ids:
        file = device_files[device]
        held = kept.get(device)
        runs[device] = held if held is not None and held[0] is file else (file, _running_apps(file))
    memo.running = runs
    return runs


def counts_text(counts: Counts) -> str:
    """``2/3 ok · 1 failed``: the words next to every bar and node, so colour is never the only cue."""
    parts = [f"{counts[RobotState.SUCCEEDED]}/{counts.total} ok"]
    parts += [f"{n} {state.label}" for state, n in counts.nonzero() if state is not RobotState.SUCCEEDED]
    return " · ".join(parts)


def when(at: datetime | None, now: datetime) -> str:
    """``2024-05-01 12:00Z (5m ago)``, or ``never``."""
    if at is None:
        return "never"
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    seconds = int((now - at).total_seconds())
    if seconds < 0:
        return stamp
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{stamp} ({seconds // size}{unit} ago)"
    return f"{stamp} (just now)"
