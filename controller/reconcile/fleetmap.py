"""The device files the ingest step starts from, and the robots whose connectivity the clock flips,
kept between reconciles by ``controller run`` so that ingesting K reports costs K robots, not the
fleet (issue 12). Pure: device files and instants in, no I/O, no clock.

Cold (``controller reconcile --once``), the ingest step maps every robot of main's fleet, in name
order, to its device file on the state branch (a fresh one when it has none) and compares every
robot's ``last_seen`` with ``now - offline_after``. :class:`DevicesMemo` gives the same map from
the last one: the state branch's devices are compared with those it saw last time by identity
(:class:`Tracked`; the state cache hands an unchanged robot the very object it handed before), and
only the robots whose file is another object, joined or left are looked up again. :class:`Ageing`
holds the robots by ``last_seen``, so the robots whose stored connectivity the clock flips are
popped off a heap, not searched for among all. An entry is never stale: a robot whose file changed
is indexed again under a new stamp, a robot that left main's fleet rebuilds the map (it never comes
back from the memo), and a fresh process computes all of it in full, with the same answers
(tests/test_fleetmap.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from heapq import heapify, heappop, heappush
from itertools import compress, count, islice
from operator import is_not
from typing import Generic, TypeVar

from controller.records.model import Connectivity, DeviceState
from controller.state.model import DeviceFile
from fleetcd.compat import UTC

V = TypeVar("V")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SLACK = 1024  # entries a heap may hold beyond twice the live ones before it is compacted
# Past this share of a map's robots changed, they are read again in bulk, not one by one.
MOST_CHANGED = 0.25
_FEW = 64  # changed robots the walk meets before it judges how many change
_Entry = tuple[int, str, int]  # (instant in µs, negated where latest comes first; robot; stamp)


def micros(at: datetime) -> int:
    """``at`` as whole microseconds since 1970 (exact: a datetime is whole microseconds), so that
    one instant orders a heap both ways and compares exactly as the datetimes do."""
    return (at - _EPOCH) // _MICROSECOND


@dataclass
class Tracked(Generic[V]):
    """A robot map as last seen, in its order, to tell which robots differ in the next one."""

    names: list[str] = field(default_factory=list)
    values: list[V] = field(default_factory=list)

    def changes(self, after: Mapping[str, V]) -> set[str]:
        """The robots whose value in ``after`` is not the very object it was last time, or that
        joined or left; ``after`` is remembered for the next call.

        The same robots in the same order are compared pairwise in one pass in C. Otherwise both
        are walked in step, comparing identities: while ``after`` keeps the last order, with
        changed robots moved anywhere (the state cache appends the files it parsed; the ingest
        keeps each robot's place), each run of unchanged robots is passed over in C and each changed
        robot costs a lookup or two. Any other order is still answered right, robot by robot, with
        more robots than changed (read again, never missed): a robot is left out only for the very
        object it had, which no other robot's entry can hold. Once more than :data:`MOST_CHANGED`
        of the robots walked have changed, the walk stops and each robot is looked up in
        ``after`` in C instead (a lookup each costs more than a run of unchanged robots, less than
        a changed robot in Python): after a write of every robot's file."""
        names, values, get = self.names, self.values, after.get
        new_names, new_values = list(after), list(after.values())
        if new_names == names:  # the same robots in the same order (the ingest's map): one pass in C
            self.values = new_values
            return set(compress(names, map(is_not, new_values, values)))
        found: set[str] = set()
        i = j = 0  # the next robot of ``after`` and of the last map to compare
        news, olds = iter(new_values), iter(values)  # at i and at j
        while i < len(new_values) and j < len(values):
            if (
                len(found) > i * MOST_CHANGED + _FEW
            ):  # after a write of every robot's file: told apart in C instead
                found = set(compress(names, map(is_not, map(get, names), values)))  # left, replaced
                found.update(after.keys() - set(names))  # joined
                self.names, self.values = new_names, new_values
                return found
            span = min(len(new_values) - i, len(values) - j)
            run = next(compress(count(), map(is_not, islice(news, span), islice(olds, span))), span)
            i, j = i + run, j + run
            if run == span:
                continue
            start = j  # new_values[i] is not values[j]; both iterators are one past them
            while j < len(values) and get(names[j]) is not values[j]:  # left, or replaced
                found.add(names[j])
                j += 1
            if j < len(values) and new_values[i] is values[j]:
                j += 1
            else:
                found.add(new_names[i])  # joined, replaced, or out of the last order
            i += 1
            if j == start:  # values[j] is still in ``after``, further on (or out of order)
                while i < len(new_values) and new_values[i] is not values[j]:
                    found.add(new_names[i])
                    i += 1
                    next(news)
                if i < len(new_values):  # met: both iterators are one past the pair again
                    i, j = i + 1, j + 1
                    next(news)
            for _ in range(j - start - 1):  # the old entries passed over, to bring olds to j
                next(olds)
        found.update(new_names[i:])
        found.update(names[j:])
        self.names, self.values = new_names, new_values
        return found


@dataclass
class Ageing:
    """Robots with a ``last_seen``, by it. ``fading``: those stored as anything but offline, least
    recently seen first; they go offline once ``since`` (``now - offline_after``) passes their
    ``last_seen``. ``reviving``: those stored as anything but online, most recently seen first;
    they come online while ``since`` is at or before it (the clock stepped back). An entry counts
    while its robot's stamp is the entry's: a robot indexed again gets a new stamp, and its old
    entries are dropped as they surface or when the heaps are compacted."""

    fading: list[_Entry] = field(default_factory=list)
    reviving: list[_Entry] = field(default_factory=list)
    stamps: dict[str, int] = field(default_factory=dict)
    counter: int = 0

    def index(self, device: str, data: DeviceFile) -> None:
        """``device``'s file as it is now; what was indexed of it before no longer counts."""
        seen = data.state.last_seen
        if seen is None:  # never aged
            self.stamps.pop(device, None)
            return
        self.counter += 1
        stamp = self.stamps[device] = self.counter
        key, link = micros(seen), data.state.connectivity
        if link is not Connectivity.OFFLINE:
            heappush(self.fading, (key, device, stamp))
        if link is not Connectivity.ONLINE:
            heappush(self.reviving, (-key, device, stamp))

    @classmethod
    def of(cls, files: Iterable[tuple[str, DeviceFile]]) -> Ageing:
        """An index of ``files`` built at once (:meth:`index` of each, each heap ordered in one pass)."""
        ageing = cls()
        fading, reviving, stamps, stamp = ageing.fading, ageing.reviving, ageing.stamps, 0
        for device, data in files:
            seen, link = data.state.last_seen, data.state.connectivity
            if seen is None:
                continue
            stamp = stamps[device] = stamp + 1
            key = (seen - _EPOCH) // _MICROSECOND
            if link is not Connectivity.OFFLINE:
                fading.append((key, device, stamp))
            if link is not Connectivity.ONLINE:
                reviving.append((-key, device, stamp))
        ageing.counter = stamp
        heapify(fading)
        heapify(reviving)
        return ageing

    def flipping(self, since: datetime) -> list[str]:
        """The robots indexed whose stored connectivity is not what ``last_seen >= since`` says.
        Their entries stay: a reconcile that records nothing leaves them to flip next time, and
        one that records the flip indexes their new file."""
        limit, found = micros(since), []
        for heap, sign, due in ((self.fading, 1, _before), (self.reviving, -1, _at_or_after)):
            kept: list[_Entry] = []
            while heap and due(sign * heap[0][0], limit):
                entry = heappop(heap)
                if self.stamps.get(entry[1]) == entry[2]:
                    kept.append(entry)
            for entry in kept:
                heappush(heap, entry)
                found.append(entry[1])
        return found

    def compact(self) -> None:
        """Drop the entries that no longer count once the heaps hold over twice the most the live
        ones can be (two a robot): the work is paid for by the indexing that left them behind."""
        if len(self.fading) + len(self.reviving) > 4 * len(self.stamps) + _SLACK:
            stamps = self.stamps
            self.fading = [e for e in self.fading if stamps.get(e[1]) == e[2]]
            self.reviving = [e for e in self.reviving if stamps.get(e[1]) == e[2]]
            heapify(self.fading)
            heapify(self.reviving)


def _before(key: int, limit: int) -> bool:
    return key < limit


def _at_or_after(key: int, limit: int) -> bool:
    return key >= limit


# Batches of changed robots a journal keeps, and robots in them all: a reader further behind
# compares its map by identity instead (Tracked).
JOURNAL_BATCHES = 64
JOURNAL_NAMES = 200_000


@dataclass
class Journal:
    """The robots whose entry in one devices map (the state cache's) changed, batch by batch: a
    map handed out at ``serial`` s differs from one handed out at t > s at most in the robots of
    the batches numbered s+1 .. t. The state cache records a batch before it changes the map (an
    exception midway leaves a batch naming robots that may not have changed: read again, never
    missed) and starts a new journal whenever it replaces the map (a full read): a journal is
    compared by identity, so an answer never spans two maps. ``since`` tells a reader that last
    saw the map at serial s which robots to look up again, instead of comparing 100,000 entries
    by identity (Tracked.changes: 0.034 s of the 1,000-report ingest at 100,000 robots)."""

    serial: int = 0
    batches: list[tuple[int, frozenset[str]]] = field(default_factory=list)  # (serial, robots)
    names: int = 0  # robots in ``batches``, counted with repeats

    def record(self, robots: Iterable[str]) -> None:
        batch = frozenset(robots)
        if not batch:
            return
        self.serial += 1
        self.batches.append((self.serial, batch))
        self.names += len(batch)
        while len(self.batches) > JOURNAL_BATCHES or (self.names > JOURNAL_NAMES and len(self.batches) > 1):
            self.names -= len(self.batches.pop(0)[1])

    def since(self, then: int, now: int) -> set[str] | None:
        """The robots of the batches after ``then`` up to ``now``; None when the journal no longer
        holds all of them (or never did)."""
        if not 0 <= then <= now <= self.serial:
            return None
        if then == now:
            return set()
        if not self.batches or self.batches[0][0] > then + 1:
            return None  # dropped already
        found: set[str] = set()
        for serial, batch in reversed(self.batches):
            if serial <= then:
                break
            if serial <= now:
                found |= batch
        return found


# Where a devices map stands in a journal: the journal, and the serial the map was handed out at.
Lineage = tuple[Journal, int]


@dataclass
class DevicesMemo:
    """The ingest step's starting map as last built, for main's fleet ``members``."""

    members: Mapping[str, object] | None = None  # main's robots the map holds (the fleet's dict)
    base: dict[str, DeviceFile] = field(default_factory=dict)  # each one's file, in name order
    state: Tracked[DeviceFile] = field(default_factory=Tracked)  # the state branch's devices then
    ageing: Ageing = field(default_factory=Ageing)  # the robots of ``base``, by last_seen
    rebuilt: int = 0  # maps built again for main's robots joining or leaving (tests count them)
    lineage: Lineage | None = None  # where the state branch's devices then stood in their journal
    journaled: int = 0  # maps told apart by the journal, not by identity (tests count them)


def starting_devices(
    members: Mapping[str, object],
    state: Mapping[str, DeviceFile],
    memo: DevicesMemo | None,
    lineage: Lineage | None = None,
) -> dict[str, DeviceFile]:
    """Every robot of ``members`` (main's fleet), in name order, to its device file in ``state`` (the
    state branch's) or a fresh one: a new dict, free to change. With ``memo``, from the last map,
    looking up only the robots whose file changed; the whole map again when main's robots did.
    ``lineage``: where ``state`` stands in the state cache's :class:`Journal`; when the last map's
    stood in the same journal, the robots to look up are the journal's since then."""
    if memo is None:
        return _built(members, state)
    try:
        return _from_memo(members, state, memo, lineage)
    except BaseException:  # the map may be half updated: the next call builds it again
        memo.state, memo.lineage, memo.members = Tracked(), None, None
        raise


def _from_memo(
    members: Mapping[str, object], state: Mapping[str, DeviceFile], memo: DevicesMemo, lineage: Lineage | None
) -> dict[str, DeviceFile]:
    last, memo.lineage = memo.lineage, None  # set again once the map is built
    changed = (
        last[0].since(last[1], lineage[1])
        if lineage is not None and last is not None and last[0] is lineage[0]
        else None
    )
    if changed is None:
        changed = memo.state.changes(state)
    else:  # the identity map is not kept up: whoever compares with it next finds every robot changed
        memo.state = Tracked()
        memo.journaled += 1
    joined_or_left = memo.members is not members and (
        memo.members is None or memo.members.keys() != members.keys()
    )
    if joined_or_left or len(changed) > len(memo.base) * MOST_CHANGED:
        memo.base = _built(members, state)
        memo.ageing = Ageing.of(memo.base.items())
        memo.rebuilt += joined_or_left
    else:
        base = memo.base
        updated = [(d, _file_of(d, state)) for d in changed if d in base]
        base.update(updated)  # a robot already in the map keeps its place: the name order holds
        _index(memo.ageing, updated)
        memo.ageing.compact()
    memo.members, memo.lineage = members, lineage
    return dict(memo.base)


def _built(members: Iterable[str], state: Mapping[str, DeviceFile]) -> dict[str, DeviceFile]:
    return {d: _file_of(d, state) for d in sorted(members)}


def _file_of(device: str, state: Mapping[str, DeviceFile]) -> DeviceFile:
    found = state.get(device)
    return found if found is not None else DeviceFile(state=DeviceState(device=device))


def _index(ageing: Ageing, files: Iterable[tuple[str, DeviceFile]]) -> None:
    for device, data in files:
        ageing.index(device, data)
