"""The ingest step's kept map and connectivity index, and the idle horizon's kept instants, against
the cold computation (issue 12): random fleets over many seeds in which robots report, go silent,
come back, are added to and removed from main's fleet, files are rewritten, deleted and read again
in another order, reconciles record nothing, and the clock jumps forward and steps back. After
every reconcile the memo's answers must be the cold ones, and a robot removed from the fleet never
comes back from the memo.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.reconcile import fleetmap
from controller.reconcile.due import DueMemo
from controller.reconcile.fleetmap import (
    Ageing,
    DevicesMemo,
    Journal,
    Lineage,
    Tracked,
    micros,
    starting_devices,
)
from controller.records.model import Connectivity, DeviceState, is_terminal
from controller.state.model import DeviceFile
from fleetcd.compat import UTC
from fleetcd.vocabulary import Activity
from tests.test_ingest import deployment

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OFFLINE_AFTER = timedelta(seconds=900)
NAMES = [f"r{n:02d}" for n in range(40)]


class Thing:
    """A value only its identity tells apart."""


def file_of(device: str, rng: random.Random, now: datetime) -> DeviceFile:
    """A device file as a report, a silence or an edit leaves it: any connectivity, any age."""
    seen = None if rng.random() < 0.15 else now - timedelta(seconds=rng.choice([0, 1, 899, 900, 901, 5000]))
    if seen is not None and rng.random() < 0.3:
        seen -= timedelta(microseconds=rng.choice([-1, 1]))
    link = rng.choice(list(Connectivity))
    records = []
    for _ in range(rng.randrange(0, 3)):
        deadline = now + timedelta(seconds=rng.randrange(-2000, 2000)) if rng.random() < 0.8 else None
        record = deployment(device, deadline_at=deadline)
        if rng.random() < 0.3:  # settled: its deadline no longer counts
            record = record.model_copy(update={"activity": Activity.DEPLOYED})
        records.append(record)
    state = DeviceState(device=device, connectivity=link, last_seen=seen)
    return DeviceFile(state=state, records=tuple(records))


def cold_aged(devices: Mapping[str, DeviceFile], since: datetime) -> dict[str, Connectivity]:
    """Every robot's connectivity as the cold ingest leaves it: online while seen at or after
    ``since``, offline before; a robot never seen keeps what it has."""
    out = {}
    for device, data in devices.items():
        seen = data.state.last_seen
        if seen is None:
            out[device] = data.state.connectivity
        else:
            out[device] = Connectivity.ONLINE if seen >= since else Connectivity.OFFLINE
    return out


def aged(devices: dict[str, DeviceFile], robots: list[str], since: datetime) -> None:
    """What the ingest step does to the robots it ages (controller.reconcile.steps.ingest)."""
    for device in robots:
        data = devices[device]
        seen = data.state.last_seen
        if seen is None:
            continue
        link = Connectivity.ONLINE if seen >= since else Connectivity.OFFLINE
        if link is not data.state.connectivity:
            devices[device] = data.model_copy(
                update={"state": data.state.model_copy(update={"connectivity": link})}
            )


def cold_earliest(
    devices: Mapping[str, DeviceFile], offline_after: timedelta, now: datetime
) -> datetime | None:
    """The earliest instant at or after ``now`` of any robot, read from every file."""
    found = []
    for data in devices.values():
        if data.state.last_seen is not None:
            found.append(data.state.last_seen + offline_after)
        found.extend(r.deadline_at for r in data.records if r.deadline_at is not None and not is_terminal(r))
    return min((at for at in found if at >= now), default=None)


class StateBranch:
    """The state branch as the state cache hands it over: a file written or changed is a new object
    appended at the end; a full read hands every robot a new object, in another order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.devices: dict[str, DeviceFile] = {}
        self.journal = Journal()  # as the state cache keeps it: a batch before each change

    def put(self, device: str, data: DeviceFile) -> None:
        self.journal.record([device])
        self.devices.pop(device, None)
        self.devices[device] = data.model_copy()  # parsed from the bytes written: another object

    def delete(self, device: str) -> None:
        self.journal.record([device])
        del self.devices[device]

    def read_again(self) -> None:
        items = [(d, data.model_copy()) for d, data in self.devices.items()]
        self.rng.shuffle(items)
        self.devices = dict(items)
        self.journal = Journal()  # a full read: a new map, a new journal

    def handed(self) -> dict[str, DeviceFile]:
        return dict(self.devices)  # fresh dicts, the same objects (statebranch._copy)

    def lineage(self) -> Lineage:
        return self.journal, self.journal.serial


def step_clock(rng: random.Random, now: datetime) -> datetime:
    return now + rng.choice(
        [
            timedelta(0),
            timedelta(microseconds=1),
            timedelta(seconds=1),
            timedelta(seconds=rng.randrange(1, 1200)),
            timedelta(hours=3),
            -timedelta(microseconds=1),
            -timedelta(seconds=rng.randrange(1, 2000)),  # the clock steps back
        ]
    )


@pytest.mark.parametrize("journaled", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_the_kept_map_ageing_and_horizon_are_the_cold_ones_after_every_reconcile(
    seed: int, journaled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``journaled``: the state branch's devices come with their place in the state cache's journal
    (a running controller), which then names the robots to look up again; it is dropped and
    replaced on full reads, outrun by a reader left behind (a small journal), and a reconcile may
    load the branch and stop before the ingest step."""
    if journaled:
        monkeypatch.setattr(fleetmap, "JOURNAL_BATCHES", 6)
    rng = random.Random(seed)
    now = T0
    branch = StateBranch(rng)
    members: dict[str, object] = {d: Thing() for d in rng.sample(NAMES, rng.randrange(1, 30))}
    for device in rng.sample(sorted(members), len(members) // 2):
        branch.put(device, file_of(device, rng, now))
    memo, due = DevicesMemo(), DueMemo()
    offline_after = OFFLINE_AFTER
    for _ in range(25):
        now = step_clock(rng, now)
        what = rng.random()
        if what < 0.12:  # main's robots change: some added, some removed
            keep = [d for d in members if rng.random() < 0.8]
            members = {d: members[d] for d in keep} | {d: Thing() for d in rng.sample(NAMES, 3)}
        elif what < 0.2:  # a new commit to main: the same robots, another dict
            members = dict(members)
        elif what < 0.25:
            branch.read_again()
        elif what < 0.3 and branch.devices:  # a file deleted behind the controller's back
            branch.delete(rng.choice(sorted(branch.devices)))
        elif what < 0.35:
            offline_after = timedelta(seconds=rng.choice([30, 900, 86400]))
        state, lineage = branch.handed(), branch.lineage() if journaled else None
        if journaled and rng.random() < 0.1:  # loaded, then stopped before the ingest: recorded meanwhile
            for device in rng.sample(sorted(members), min(len(members), 2)):
                branch.put(device, file_of(device, rng, now))
            continue
        devices = starting_devices(members, state, memo, lineage)
        cold = starting_devices(members, state, None)
        assert list(devices) == list(cold) == sorted(members)
        assert devices == cold
        for device, data in devices.items():  # a file on the branch is handed on as the very object
            assert device in members
            assert data is state[device] if device in state else data.state.last_seen is None
        # The ingest: some robots report (a new file), then the silent ones age.
        moved = rng.sample(sorted(devices), rng.randrange(0, len(devices) + 1) // 3)
        for device in moved:
            devices[device] = file_of(device, rng, now)
        since = now - offline_after
        before = dict(devices)
        aged(devices, [*memo.ageing.flipping(since), *moved], since)
        assert {d: data.state.connectivity for d, data in devices.items()} == cold_aged(before, since)
        for device, data in devices.items():  # nothing else of a file is touched
            assert data.state.last_seen == before[device].state.last_seen
            assert data.records == before[device].records
        # The write step's horizon, over the map as plan and deliver leave it.
        earliest = due.earliest(devices, offline_after, now)
        assert earliest == cold_earliest(devices, offline_after, now)
        assert earliest == DueMemo().earliest(devices, offline_after, now)
        if rng.random() < 0.8:  # recorded: the files that changed come back as new objects
            for device, data in devices.items():
                if state.get(device) is not data:
                    branch.put(device, data)
        # else: stalled, failed or lost the push race: the branch is as it was
    assert memo.journaled > 0 if journaled else memo.journaled == 0


@pytest.mark.parametrize("seed", range(40))
def test_a_robot_removed_from_the_fleet_never_comes_back_from_the_memo(seed: int) -> None:
    """Its file stays on the state branch (nothing deletes it) and its index entries stay on the
    heaps, but the map is main's robots only, it is never aged, and when it rejoins it comes back
    with the file the branch holds then, not the one the memo last saw."""
    rng = random.Random(seed)
    now = T0
    branch = StateBranch(rng)
    everyone = rng.sample(NAMES, 10)
    for device in everyone:
        branch.put(device, file_of(device, rng, now))
    memo = DevicesMemo()
    members: dict[str, object] = dict.fromkeys(everyone)
    starting_devices(members, branch.handed(), memo)
    gone = rng.choice(everyone)
    members = {d: None for d in everyone if d != gone}
    for _ in range(5):
        now = step_clock(rng, now)
        devices = starting_devices(members, branch.handed(), memo)
        assert gone not in devices
        assert gone not in memo.ageing.flipping(now - OFFLINE_AFTER)
    branch.put(gone, file_of(gone, rng, now))  # rewritten meanwhile (say, by another controller)
    members = dict.fromkeys(everyone)
    state = branch.handed()
    devices = starting_devices(members, state, memo)
    assert devices[gone] is state[gone]
    since = now - OFFLINE_AFTER
    flips = set(memo.ageing.flipping(since))
    expected = cold_aged(devices, since)
    assert flips == {d for d, data in devices.items() if data.state.connectivity is not expected[d]}


def test_silent_exactly_offline_after_stays_online_flips_a_microsecond_later_and_back_on_a_step_back() -> (
    None
):
    """The boundary the ingest step keeps: online while ``last_seen >= now - offline_after``."""
    seen = T0
    online = DeviceFile(state=DeviceState(device="r", connectivity=Connectivity.ONLINE, last_seen=seen))
    offline = online.model_copy(
        update={"state": online.state.model_copy(update={"connectivity": Connectivity.OFFLINE})}
    )
    ageing = Ageing()
    ageing.index("r", online)
    at = seen + OFFLINE_AFTER
    assert ageing.flipping(at - OFFLINE_AFTER) == []  # exactly offline_after silent: online
    assert ageing.flipping(at + timedelta(microseconds=1) - OFFLINE_AFTER) == ["r"]
    assert ageing.flipping(at + timedelta(microseconds=1) - OFFLINE_AFTER) == ["r"]  # not recorded: again
    ageing.index("r", offline)  # recorded offline
    assert ageing.flipping(at + timedelta(hours=1) - OFFLINE_AFTER) == []
    assert ageing.flipping(at - OFFLINE_AFTER) == ["r"]  # the clock stepped back: online again
    assert ageing.flipping(at + timedelta(microseconds=1) - OFFLINE_AFTER) == []


def test_a_robot_never_seen_is_never_aged_and_an_unknown_one_is_aged_either_way() -> None:
    ageing = Ageing()
    ageing.index("never", DeviceFile(state=DeviceState(device="never")))
    unknown = DeviceState(device="u", connectivity=Connectivity.UNKNOWN, last_seen=T0)
    ageing.index("u", DeviceFile(state=unknown))
    assert ageing.flipping(T0) == ["u"]  # seen at since: online
    assert ageing.flipping(T0 + timedelta(microseconds=1)) == ["u"]  # seen before since: offline
    assert ageing.flipping(datetime(1970, 1, 1, tzinfo=UTC)) == ["u"]


def test_stale_entries_are_compacted_away_and_the_answers_stay() -> None:
    """A robot reporting over and over leaves an entry each time; the heaps stay within a bound."""
    ageing = Ageing()
    for n in range(20_000):
        seen = T0 + timedelta(seconds=n)
        state = DeviceState(device=f"r{n % 3}", connectivity=Connectivity.ONLINE, last_seen=seen)
        ageing.index(state.device, DeviceFile(state=state))
        ageing.compact()
        assert len(ageing.fading) + len(ageing.reviving) <= 4 * 3 + 1024 + 1
    last = T0 + timedelta(seconds=19_999)
    assert sorted(ageing.flipping(last)) == ["r0", "r2"]  # r1 was seen last, at since: online
    assert sorted(ageing.flipping(last + timedelta(seconds=1))) == ["r0", "r1", "r2"]


def test_the_horizon_compacts_its_heaps_and_forgets_a_robot_that_left() -> None:
    memo = DueMemo()
    devices: dict[str, DeviceFile] = {}
    for n in range(5_000):
        state = DeviceState(device="r", connectivity=Connectivity.ONLINE, last_seen=T0 + timedelta(seconds=n))
        devices["r"] = DeviceFile(state=state)
        now = T0 + timedelta(seconds=n)
        assert memo.earliest(devices, OFFLINE_AFTER, now) == now + OFFLINE_AFTER
        assert len(memo.ahead) + len(memo.passed) <= 2 * memo.live + 1024 + 1
    assert memo.earliest({}, OFFLINE_AFTER, T0) is None and memo.live == 0
    # the clock steps back to before the instants it passed: they count again
    back = {"r": devices["r"]}
    assert memo.earliest(back, OFFLINE_AFTER, T0) == devices["r"].state.last_seen + OFFLINE_AFTER  # type: ignore[operator]


def test_micros_orders_exactly_as_the_datetimes_whatever_their_zone() -> None:
    from datetime import timezone

    rng = random.Random(7)
    for _ in range(500):
        a = T0 + timedelta(microseconds=rng.randrange(-(10**12), 10**12))
        b = a + timedelta(microseconds=rng.choice([-1, 0, 1, rng.randrange(-(10**9), 10**9)]))
        zone = timezone(timedelta(hours=rng.randrange(-12, 14)))
        assert (micros(a) < micros(b.astimezone(zone))) == (a < b)
        assert (micros(a) == micros(b)) == (a == b)


@pytest.mark.parametrize("changed", [0, 1, 63, 64, 65, 500, 2_000])
@pytest.mark.parametrize("kind", ["in place", "appended"])
def test_a_map_mostly_rewritten_is_told_apart_exactly_in_c(changed: int, kind: str) -> None:
    """After a write of every robot's file the walk gives up robot by robot; the answer is the
    same set, whichever way it was found."""
    rng = random.Random(changed)
    names = [f"robot-{n:04d}" for n in range(2_000)]
    before = {d: Thing() for d in names}
    tracked: Tracked[Thing] = Tracked()
    tracked.changes(before)
    after = dict(before)
    for device in rng.sample(names, changed):
        if kind == "appended":
            del after[device]
        after[device] = Thing()
    after["robot-new"] = Thing()
    del after[names[7]]
    assert tracked.changes(after) == reference(before, after)


def reference(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    return {d for d in before.keys() | after.keys() if before.get(d) is not after.get(d)}


@pytest.mark.parametrize("seed", range(300))
def test_the_identity_walk_finds_every_robot_whose_entry_is_another_object(seed: int) -> None:
    """Whatever happened to the map (entries replaced in place, moved to the end, deleted, added,
    the whole map shuffled), every robot whose entry is not the very object it was is found, and in
    the orders the state cache and the ingest keep, nothing else is."""
    rng = random.Random(seed)
    before = {d: Thing() for d in rng.sample(NAMES, rng.randrange(0, len(NAMES)))}
    tracked: Tracked[Thing] = Tracked()
    assert tracked.changes(before) == set(before)
    after = dict(before)
    kind = rng.choice(["in place", "appended", "mixed", "shuffled"])
    for _ in range(rng.randrange(0, 10)):
        device = rng.choice(NAMES)
        if kind == "in place" and device in after:
            after[device] = Thing()
        elif kind == "appended":
            after.pop(device, None)
            if rng.random() < 0.7:
                after[device] = Thing()
        elif kind in ("mixed", "shuffled"):
            choice = rng.random()
            if choice < 0.3:
                after.pop(device, None)
            elif choice < 0.6:
                after[device] = Thing()
            else:
                value = after.pop(device, None)
                after[device] = value if value is not None else Thing()
    if kind == "shuffled":
        items = list(after.items())
        rng.shuffle(items)
        after = dict(items)
    found = tracked.changes(after)
    truth = reference(before, after)
    assert truth <= found
    if kind in ("in place", "appended"):
        assert found == truth
    assert tracked.names == list(after) and all(
        a is b for a, b in zip(tracked.values, after.values(), strict=True)
    )
    assert tracked.changes(after) == set()  # nothing changed since


@pytest.mark.parametrize("seed", range(30))
def test_the_horizon_follows_a_clock_swinging_back_and_forth_over_many_deadlines(seed: int) -> None:
    """Robots with several open deadlines each, the clock stepping forward and back across them
    again and again (instants moving between the two heaps both ways), some robots rewritten or
    leaving: the kept horizon is the cold one every time."""
    rng = random.Random(seed)
    now = T0
    devices = {d: file_of(d, rng, now) for d in rng.sample(NAMES, 20)}
    memo = DueMemo()
    for _ in range(40):
        now += timedelta(seconds=rng.randrange(-2500, 2500))
        for device in rng.sample(sorted(devices), rng.randrange(0, 3)):
            if rng.random() < 0.2:
                del devices[device]
            else:
                devices[device] = file_of(device, rng, now)
        assert memo.earliest(devices, OFFLINE_AFTER, now) == cold_earliest(devices, OFFLINE_AFTER, now)
        assert memo.live == sum(
            (d.state.last_seen is not None)
            + sum(r.deadline_at is not None and not is_terminal(r) for r in d.records)
            for d in devices.values()
        )


def test_a_changed_offline_after_moves_every_robots_ageing_instant() -> None:
    rng = random.Random(3)
    devices = {d: file_of(d, rng, T0) for d in NAMES}
    memo = DueMemo()
    for seconds in (900, 30, 86400, 900):
        offline_after = timedelta(seconds=seconds)
        for now in (T0, T0 + timedelta(seconds=600), T0 - timedelta(hours=2)):
            assert memo.earliest(devices, offline_after, now) == cold_earliest(devices, offline_after, now)


def test_a_new_fleet_dict_with_the_same_robots_keeps_the_map_and_a_changed_one_rebuilds_it() -> None:
    """A new commit to main hands over another dict of the same robots: nothing is built again.
    A robot added, or one removed and another added (the same count), rebuilds the map."""
    rng = random.Random(5)
    state = {d: file_of(d, rng, T0) for d in NAMES[:10]}
    memo = DevicesMemo()
    members: dict[str, object] = dict.fromkeys(NAMES[:12])
    first = starting_devices(members, state, memo)
    assert memo.rebuilt == 1
    again = starting_devices(dict(members), dict(state), memo)
    assert memo.rebuilt == 1 and again == first and all(again[d] is first[d] for d in NAMES[:10])
    swapped = dict.fromkeys([*NAMES[1:12], NAMES[20]])
    assert list(starting_devices(swapped, state, memo)) == sorted(swapped)
    assert memo.rebuilt == 2 and NAMES[0] not in memo.base
    assert starting_devices(swapped, state, memo) == starting_devices(swapped, state, None)


@pytest.mark.parametrize("seed", range(10))
def test_the_ageing_index_answers_the_cold_flips_through_many_rewrites_and_compactions(seed: int) -> None:
    """Thousands of rewrites of a few robots leave stale entries behind; compactions drop them,
    and at any instant the robots the index says flip are those a pass over every file says."""
    rng = random.Random(seed)
    files = {d: file_of(d, rng, T0) for d in NAMES[:8]}
    ageing = Ageing.of(files.items())
    for n in range(3_000):
        device = rng.choice(NAMES[:8])
        files[device] = file_of(device, rng, T0 + timedelta(seconds=n))
        ageing.index(device, files[device])
        ageing.compact()
        if n % 250 == 0:
            since = T0 + timedelta(seconds=rng.randrange(-3000, 4000))
            cold = cold_aged(files, since)
            flips = {d for d, f in files.items() if f.state.connectivity is not cold[d]}
            assert set(ageing.flipping(since)) == flips
    assert len(ageing.fading) + len(ageing.reviving) <= 4 * 8 + 1024 + 2


def test_a_journal_names_every_robot_since_a_serial_and_nothing_it_no_longer_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches after ``then`` up to ``now`` exactly; an empty batch is not one; a serial out of
    order or from a journal that has dropped the batches after it answers None (compare in full)."""
    monkeypatch.setattr(fleetmap, "JOURNAL_BATCHES", 3)
    journal = Journal()
    journal.record(["a", "b"])
    journal.record([])
    journal.record(["c"])
    assert journal.serial == 2
    assert journal.since(0, 2) == {"a", "b", "c"}
    assert journal.since(0, 1) == {"a", "b"}  # a map handed out at 1, read by one left at 0
    assert journal.since(1, 2) == {"c"}
    assert journal.since(2, 2) == set()
    for then, now in ((2, 1), (0, 3), (-1, 2), (3, 3)):
        assert journal.since(then, now) is None
    journal.record(["d"])
    journal.record(["e", "a"])  # batches 2, 3, 4 kept: the one after serial 0 is gone
    assert journal.since(0, 4) is None
    assert journal.since(1, 4) == {"c", "d", "e", "a"}
    assert journal.since(3, 4) == {"e", "a"}
    monkeypatch.setattr(fleetmap, "JOURNAL_NAMES", 2)
    journal.record(["f", "g"])  # over the robots kept: the older batches go, the last one stays
    assert [serial for serial, _ in journal.batches] == [5] and journal.names == 2
    assert journal.since(4, 5) == {"f", "g"} and journal.since(3, 5) is None


def test_a_map_told_apart_by_another_journal_or_after_a_failure_is_built_again() -> None:
    """A journal other than the last map's (the state cache read in full meanwhile) is never
    asked; an exception while the map is updated leaves a memo that builds it whole next time, and
    the journal's robots are read again even when their file is the same object."""
    rng = random.Random(4)
    members: dict[str, object] = dict.fromkeys(NAMES[:6])
    branch = StateBranch(rng)
    for device in NAMES[:6]:
        branch.put(device, file_of(device, rng, T0))
    memo = DevicesMemo()
    starting_devices(members, branch.handed(), memo, branch.lineage())
    branch.read_again()  # a new journal: the map is compared by identity, every file is new
    state = branch.handed()
    devices = starting_devices(members, state, memo, branch.lineage())
    assert memo.journaled == 0 and all(devices[d] is state[d] for d in members if d in state)
    branch.put(NAMES[0], file_of(NAMES[0], rng, T0))
    state = branch.handed()

    class Boom(dict[str, DeviceFile]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("interrupted while the map is updated")

    with pytest.raises(RuntimeError):
        starting_devices(members, Boom(state), memo, branch.lineage())
    assert memo.lineage is None and memo.members is None
    journaled, rebuilt = memo.journaled, memo.rebuilt
    devices = starting_devices(members, state, memo, branch.lineage())
    assert devices == starting_devices(members, state, None) and devices[NAMES[0]] is state[NAMES[0]]
    assert memo.journaled == journaled and memo.rebuilt == rebuilt + 1  # built whole
    branch.put(NAMES[1], file_of(NAMES[1], rng, T0))
    state = branch.handed()
    devices = starting_devices(members, state, memo, branch.lineage())
    assert memo.journaled == journaled + 1 and devices == starting_devices(members, state, None)
