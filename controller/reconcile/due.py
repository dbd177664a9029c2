"""When the clock alone next changes what a reconcile decides: the idle fast path's horizon (pure).

A reconcile is a function of main, the state branch, robots' status refs and ``now``. With the
first three unchanged, its outcome can only change once ``now`` reaches one of these instants:

* a deployment's ``deadline_at`` (it times out) or a robot's ``last_seen + offline_after_seconds``
  (its connectivity ages to offline);
* the end of a soaking wave's soak, and ``schedule.not_before``;
* a maintenance window opening or closing for a robot still waiting to be dispatched or switched:
  every daily start and end in the window's zone (both instants of an hour the clock shows twice)
  and the zone's next UTC offset change, so a daylight-saving jump never hides a boundary;
* a download-rate minute freeing up, and the next robot's bundle renewal coming due
  (:mod:`controller.delivery.select`: staggered, so not one instant for the whole fleet).

:func:`next_due` returns the earliest of them not yet passed, and never later than
:data:`FULL_RECONCILE_EVERY` after ``now``: a bound on what is not listed here, such as a signing
key expiring. Every instant is a lower bound (a window boundary on a day the window is off), so an
early one costs a full reconcile that finds nothing to do, never a missed one. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from heapq import heapify, heappop, heappush
from itertools import compress
from zoneinfo import ZoneInfo

from controller.engine.dispatch import waiting_for_switch
from controller.engine.inputs import RATE_WINDOW
from controller.reconcile.fleetmap import MOST_CHANGED, Tracked
from controller.reconcile.rollouts import FleetContext
from controller.records.model import Action, DeploymentRecord, is_terminal
from controller.state.model import DeviceFile, RolloutPhase, RolloutState, WavePhase
from fleetcd.compat import UTC
from fleetcd.models import Rollout
from fleetcd.models.rollout import Canary, Rolling, Strategy, Waves
from fleetcd.planning.waves import effective_strategy
from fleetcd.reasons import EngineReason

FULL_RECONCILE_EVERY = timedelta(minutes=10)  # an idle controller still re-checks everything this often
_DISPATCHING = frozenset({RolloutPhase.PROGRESSING, RolloutPhase.COMPLETED})
_DAYS_AHEAD = 3  # today's, tomorrow's and the day after's boundaries: every daily one is among them
_OFFSET_SCAN = timedelta(hours=49)  # how far ahead a zone's next UTC offset change is looked for
_OFFSET_STEP = timedelta(hours=1)  # offsets are compared hourly, then the change is bisected
_OFFSET_PRECISION = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # micros(), inline where every robot is read
_MICROSECOND = timedelta(microseconds=1)
_SLACK = 1024  # entries the heaps may hold beyond twice the live ones before they are compacted


# What next_due reads of one robot's device file for one dispatching rollout generation: whether
# the robot still waits for its deployment (none yet, or a blue/green switch) and when each of its
# downloads leaves the rate limit's window.
_Dispatch = tuple[bool, tuple[datetime, ...]]
_Members = dict[str, tuple[DeviceFile | None, _Dispatch]]  # robot -> (its device file, what it said)


_Instant = tuple[datetime, str, int]  # (the instant, its robot, the stamp it was read under)


@dataclass
class DueMemo:
    """What :func:`next_due` read of each robot's device file last time, kept between reconciles by
    ``controller run`` (:class:`~controller.reconcile.memo.RobotMemo`) so that a reconcile reads
    only the device files that changed. A robot is read again unless its device file is the very
    object it was read from (:class:`~controller.reconcile.fleetmap.Tracked`: the state branch's
    cache hands an unchanged robot the same object; the memo keeps it alive, so its identity is
    its own).

    Every robot's instants (its connectivity ageing, its open deadlines) are kept: ``ahead`` those
    at or after the last ``now``, a heap, earliest first; ``passed`` the others, in no order. A
    later ``now`` pops the instants it passes off ``ahead``; an earlier one (the clock stepped
    back) moves those of ``passed`` at or after it back, a pass over ``passed`` paid only then. The
    earliest robot instant is the top of ``ahead``. An entry counts while its robot's stamp is the
    entry's; a robot read again gets a new stamp. After a write of most robots' files every robot
    is read again in one plain loop, about what the cold computation costs."""

    offline_after: timedelta | None = None
    seen: Tracked[DeviceFile] = field(default_factory=Tracked)
    stamps: dict[str, int] = field(default_factory=dict)  # robot -> the stamp its entries count under
    counts: dict[str, int] = field(default_factory=dict)  # robot -> its instants, where not one
    ahead: list[_Instant] = field(default_factory=list)
    passed: list[_Instant] = field(default_factory=list)
    now: datetime | None = None  # the last ``now``: ``ahead`` holds what is at or after it
    live: int = 0  # instants of the robots as last read: the entries that count
    counter: int = 0
    dispatch: dict[tuple[str, int], _Members] = field(default_factory=dict)  # by (rollout, generation)

    def earliest(
        self, devices: Mapping[str, DeviceFile], offline_after: timedelta, now: datetime
    ) -> datetime | None:
        """The earliest instant at or after ``now`` of any robot of ``devices``, reading only the
        robots whose device file is not the one read last time. An exception (an instant out of
        range) leaves the memo empty: the next call reads every robot again."""
        try:
            return self._earliest(devices, offline_after, now)
        except BaseException:
            self.offline_after = None
            self._forget()
            raise

    def _forget(self) -> None:
        self.seen, self.stamps, self.counts = Tracked(), {}, {}
        self.ahead, self.passed, self.live, self.now = [], [], 0, None

    def _earliest(
        self, devices: Mapping[str, DeviceFile], offline_after: timedelta, now: datetime
    ) -> datetime | None:
        if self.offline_after != offline_after:  # every robot's ageing instant moves: all read again
            self.offline_after = offline_after
            self._forget()
        if not self.seen.names and not self.stamps:  # nothing read yet: every robot is read
            self.seen = Tracked(list(devices), list(devices.values()))
            self._rebuild(devices, offline_after, now)
        else:
            changed = self.seen.changes(devices)
            if len(changed) > len(devices) * MOST_CHANGED:  # every robot read again, the heap built at once
                self._rebuild(devices, offline_after, now)
            else:
                for device in changed:
                    self._read(device, devices.get(device), offline_after)
        ahead, passed, counts = self.ahead, self.passed, self._counts
        if self.now is not None and now < self.now and passed:  # the clock stepped back
            back = [e for e in passed if e[0] >= now]
            if back:
                self.passed = passed = [e for e in passed if e[0] < now]
                for entry in back:
                    if counts(entry[1], entry[2]):
                        heappush(ahead, entry)
        self.now = now
        while ahead and ahead[0][0] < now:  # the clock moved on past them
            entry = heappop(ahead)
            if counts(entry[1], entry[2]):
                passed.append(entry)
        while ahead and not counts(ahead[0][1], ahead[0][2]):
            heappop(ahead)
        if len(ahead) + len(passed) > 2 * self.live + _SLACK:
            self.ahead = [e for e in ahead if counts(e[1], e[2])]
            self.passed = [e for e in passed if counts(e[1], e[2])]
            heapify(self.ahead)
        return self.ahead[0][0] if self.ahead else None

    def _rebuild(self, devices: Mapping[str, DeviceFile], offline_after: timedelta, now: datetime) -> None:
        """Every robot of ``devices`` read again (after a write of most robots' files: a bootstrap,
        a fan-out, the first reconcile of a process) in one loop as plain as the cold
        computation's, every robot under one stamp, each instant put straight on its side; the heap
        is then ordered once, in C."""
        counter = self.counter + 1
        ahead: list[_Instant] = []
        passed: list[_Instant] = []
        counts: dict[str, int] = {}  # the robots whose instants are not one
        keep, put, live = ahead.append, passed.append, 0
        for device, data in devices.items():
            seen, records = data.state.last_seen, data.records
            count = 0
            if seen is not None:
                at = seen + offline_after
                (keep if at >= now else put)((at, device, counter))
                count = 1
            if records:
                for record in records:
                    deadline = record.deadline_at
                    if deadline is not None and not is_terminal(record):
                        (keep if deadline >= now else put)((deadline, device, counter))
                        count += 1
            if count != 1:
                counts[device] = count
            live += count
        heapify(ahead)
        self.ahead, self.passed, self.stamps, self.counts = (
            ahead,
            passed,
            dict.fromkeys(devices, counter),
            counts,
        )
        self.counter, self.live, self.now = counter, live, now

    def _read(self, device: str, data: DeviceFile | None, offline_after: timedelta) -> None:
        """``device``'s instants as its file ``data`` (None: it left) says, on ``ahead`` under a new
        stamp (those already passed move on to ``passed`` as the heap is popped)."""
        if self.stamps.pop(device, None) is not None:
            self.live -= self.counts.pop(device, 1)
        if data is None:  # left the fleet
            return
        instants = _robot_instants(data, offline_after)
        self.counter += 1
        self.stamps[device] = self.counter
        if len(instants) != 1:
            self.counts[device] = len(instants)
        self.live += len(instants)
        for at in instants:
            heappush(self.ahead, (at, device, self.counter))

    def _counts(self, device: str, stamp: int) -> bool:
        return self.stamps.get(device) == stamp


def next_due(
    ctx: FleetContext,
    rollouts: Mapping[str, RolloutState],
    devices: Mapping[str, DeviceFile],
    *,
    renewal_due_at: datetime | None,
    now: datetime,
    memo: DueMemo | None = None,
) -> datetime:
    """The earliest instant at or after ``now`` at which the clock alone may change the outcome."""
    due = [now + FULL_RECONCILE_EVERY]
    if renewal_due_at is not None:
        due.append(max(renewal_due_at, now))  # ``now``: renewals wait over this reconcile's bound
    offline_after = timedelta(seconds=ctx.fleet.defaults.offline_after_seconds)
    if memo is None:  # a reconcile of its own (--once): every file read, nothing kept
        memo, robot = DueMemo(), earliest_cold(devices, offline_after, now)
    else:
        robot = memo.earliest(devices, offline_after, now)
    if robot is not None:
        due.append(robot)
    kept = memo.dispatch
    memo.dispatch = {}
    for name, state in rollouts.items():
        entry = ctx.spec.rollouts.get(name)
        if entry is not None:
            key = (name, state.generation)
            memo.dispatch[key] = kept.get(key, {})
            due.extend(_rollout_due(ctx, entry.doc.model, state, devices, now, memo.dispatch[key]))
    return min(at for at in due if at >= now)


def earliest_cold(
    devices: Mapping[str, DeviceFile], offline_after: timedelta, now: datetime
) -> datetime | None:
    """What :meth:`DueMemo.earliest` gives, from every robot's file, keeping nothing."""
    found: list[datetime] = []
    put = found.append
    for data in devices.values():
        seen, records = data.state.last_seen, data.records
        if seen is not None:
            put(seen + offline_after)
        if records:
            found.extend(r.deadline_at for r in records if r.deadline_at is not None and not is_terminal(r))
    return min(compress(found, map(now.__le__, found)), default=None)


def _robot_instants(data: DeviceFile, offline_after: timedelta) -> tuple[datetime, ...]:
    """When the robot's connectivity ages to offline and its open deployments' deadlines, sorted."""
    found = [data.state.last_seen + offline_after] if data.state.last_seen is not None else []
    found.extend(r.deadline_at for r in data.records if r.deadline_at is not None and not is_terminal(r))
    return tuple(sorted(found))


def _rollout_due(
    ctx: FleetContext,
    rollout: Rollout,
    state: RolloutState,
    devices: Mapping[str, DeviceFile],
    now: datetime,
    held: _Members,
) -> Iterator[datetime]:
    not_before = rollout.schedule.not_before
    if not_before is not None and not_before > now:
        yield not_before
    strategy = effective_strategy(rollout, ctx.fleet)
    for wave in state.waves:
        if wave.phase is WavePhase.SOAKING and wave.gates_met_at is not None:
            end = wave.gates_met_at + timedelta(seconds=soak_seconds(strategy, wave.index))
            # A soak already over that still holds the wave can only be a pause (a commit ends
            # it); anything else means this module misreads the plan: stay on the full path.
            yield end if end >= now or wave.reason == EngineReason.PAUSED.value else now
    if state.phase in _DISPATCHING:
        yield from _dispatch_due(ctx, rollout, state, devices, now, held)


def soak_seconds(strategy: Strategy, index: int) -> int:
    """The soak of wave ``index`` as :func:`fleetcd.planning.waves.plan_waves` plans it.

    Only asked for a soaking wave, which is never empty and never a wave planned without soak.
    """
    if isinstance(strategy, Rolling):
        return strategy.delay_seconds
    if isinstance(strategy, Canary):
        return strategy.soak_seconds if index == 0 else 0
    if isinstance(strategy, Waves) and index < len(strategy.waves):
        return strategy.waves[index].soak_seconds
    return 0


def _dispatch_due(
    ctx: FleetContext,
    rollout: Rollout,
    state: RolloutState,
    devices: Mapping[str, DeviceFile],
    now: datetime,
    held: _Members,
) -> Iterator[datetime]:
    """Window changes and rate-limit minutes ending, for robots without their deployment yet.

    ``held``: per robot, what its device file said last time (:class:`DueMemo`), updated here."""
    waiting: list[str] = []
    recent: list[datetime] = []  # downloads the rate limit still counts
    members = dict.fromkeys(d for wave in state.waves for d in wave.devices)
    for device in members:
        data = devices.get(device)
        found = held.get(device)
        if found is None or found[0] is not data:
            records = data.records if data is not None else ()
            found = held[device] = (data, _dispatch_of(records, rollout.name, state.generation))
        waits, downloads = found[1]
        if waits:
            waiting.append(device)
        if downloads:
            recent.extend(at for at in downloads if at > now)
    if len(held) != len(members):  # robots that left the waves: forgotten
        for device in [d for d in held if d not in members]:
            del held[device]
    if not waiting:
        return
    limit = rollout.download_rate_per_minute or ctx.fleet.defaults.download_rate_per_minute
    if limit is not None:
        yield from recent
    if rollout.schedule.respect_maintenance_windows:
        yield from window_changes(_boundaries(ctx, waiting), now)


def _dispatch_of(records: Iterable[DeploymentRecord], rollout: str, generation: int) -> _Dispatch:
    mine = [r for r in records if r.rollout == rollout and r.generation == generation]
    waits = not mine or any(waiting_for_switch(r) for r in mine)
    downloads = tuple(r.created_at + RATE_WINDOW for r in mine if r.action in (Action.DEPLOY, Action.STAGE))
    return waits, downloads


def _boundaries(ctx: FleetContext, devices: Iterable[str]) -> set[tuple[str, str]]:
    """(wall-clock "HH:MM", zone) of every window start and end that applies to ``devices``."""
    found: set[tuple[str, str]] = set()
    for device in devices:
        model = ctx.devices.get(device)
        zone = model.timezone if model is not None else "UTC"
        own = model.maintenance_windows if model is not None else []
        for window in [*own, *ctx.cohort_windows.get(device, ())]:
            found.add((window.start, window.timezone or zone))
            found.add((window.end, window.timezone or zone))
    return found


def window_changes(boundaries: Iterable[tuple[str, str]], now: datetime) -> list[datetime]:
    """The next instant of every (wall clock, zone) boundary, plus each zone's next offset change."""
    out: list[datetime] = []
    zones: set[str] = set()
    for clock, zone_name in boundaries:
        zones.add(zone_name)
        ahead = [at for at in _wall_clock_instants(clock, ZoneInfo(zone_name), now) if at >= now]
        if ahead:
            out.append(min(ahead))
    for zone_name in sorted(zones):
        change = next_offset_change(ZoneInfo(zone_name), now)
        if change is not None:
            out.append(change)
    return out


def _wall_clock_instants(clock: str, zone: ZoneInfo, now: datetime) -> Iterator[datetime]:
    hours, minutes = clock.split(":")
    local_day = now.astimezone(zone).date()
    for days in range(-1, _DAYS_AHEAD):
        day = local_day + timedelta(days=days)
        for fold in (0, 1):
            local = datetime.combine(day, time(int(hours), int(minutes)), tzinfo=zone).replace(fold=fold)
            yield local.astimezone(UTC)


def next_offset_change(zone: ZoneInfo, now: datetime) -> datetime | None:
    """An instant at most a second before ``zone`` next changes its UTC offset (None: not soon)."""
    low = now.astimezone(UTC)
    offset = low.astimezone(zone).utcoffset()
    end = low + _OFFSET_SCAN
    while low < end:
        high = low + _OFFSET_STEP
        if high.astimezone(zone).utcoffset() != offset:
            while high - low > _OFFSET_PRECISION:
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            return low
        low = high
    return None
