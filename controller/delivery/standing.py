"""Per-robot desired state, step 6 (write) of a reconcile: the robots standing where the last
reconcile left them, indexed by renewal slot (pure).

A wave or an ingest touching 1,000 robots of 100,000 leaves 99,000 quiet
(:mod:`controller.delivery.quiet`: their inputs, so their bundle content, are their recorded ones).
Of those, a robot whose desired-state ref is still the commit the last reconcile left there is
**standing**: its ref is its recorded commit (kept), its content is unchanged, so of selection
(:mod:`controller.delivery.select`) only its renewal is left to decide, which depends on its
recorded expiry and its slot alone. :class:`StandingMemo`, kept between reconciles by ``controller
run``, holds

- the mirror's desired-state refs as the last reconcile left them (its own writes included): the
  next reconcile compares its listing with them (equal dicts, the usual case, in one C-level
  comparison) and takes every robot whose ref moved since the full way, so a ref deleted, planted
  or replayed on a quiet robot is still judged and healed (:mod:`controller.delivery.published`);
- the standing robots grouped by recorded expiry and renewal slot: a reconcile visits the groups
  (at most 16 per distinct expiry), takes the members of the groups that are due as its renewal
  candidates (the per-reconcile bound then applies as before) and learns the next renewal from the
  highest slot not yet due, without a pass over the robots;
- each standing robot's recorded serial, counted, for the highest serial recorded;
- the desired-state refs the controller owns, for the device ids they were made for.

Robots leave the index when they are not quiet or their ref moved (a set difference, then one
removal each), and enter it, or move to another group, when a reconcile leaves them alone or
gives them a new record: the work is the robots a reconcile touches. A robot is standing only
while it is quiet, so the quiet memo's checks (the very device file, or the record just written)
guard every entry: the index can miss a robot, never hold a stale one.
``controller reconcile --once`` keeps no memo and selects every robot the full way, which gives
the same selection (tests/test_delivery_standing.py, tests/test_reconcile_passes.py). No I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.delivery.select import slot
from controller.delivery.write import delivery_ref
from controller.state.model import PublishedDesired
from fleetcd.git import refs
from fleetcd.git.repo import Oid

# expiry -> slot -> the standing robots whose recorded bundle expires then, in that slot
Groups = dict[datetime, dict[int, set[str]]]


def moved_devices(listed: Mapping[str, Oid], before: Mapping[str, Oid]) -> set[str]:
    """The robots with a desired-state ref (of either layout) that differs between the listings."""
    if listed == before:
        return set()
    moved = {ref for ref, oid in listed.items() if before.get(ref) != oid}
    moved.update(before.keys() - listed.keys())
    return {found[0] for ref in moved if (found := refs.desired_ref_device(ref)) is not None}


@dataclass
class StandingMemo:
    """The robots standing after the last reconcile that delivered (see the module)."""

    listed: dict[str, Oid] | None = None  # the mirror's desired-state refs after that reconcile
    held: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # robot -> (expiry, serial)
    groups: Groups = field(default_factory=dict)
    serials: Counter[int] = field(default_factory=Counter)  # serial -> standing robots recording it
    owned_for: tuple[frozenset[str], bool] | None = None  # (device ids, layout) ``owned`` was made for
    owned: frozenset[str] = frozenset()

    def standing(self, quiet: frozenset[str], listed: Mapping[str, Oid]) -> frozenset[str]:
        """The robots of ``quiet`` still standing, their ref unmoved in ``listed``; every other robot
        leaves the index (so that afterwards it holds exactly the robots returned)."""
        if self.listed is None:
            standing: set[str] = set()
        else:
            standing = (self.held.keys() & quiet) - moved_devices(listed, self.listed)
        for device in self.held.keys() - standing:
            self._discard(device)
        return frozenset(standing)

    def highest_serial(self) -> int:
        """The highest serial a standing robot's record holds (0: none)."""
        return max(self.serials, default=0)

    def remember(
        self,
        listed: Mapping[str, Oid],
        records: Mapping[str, PublishedDesired | None],
        added: Iterable[str],
        written: Mapping[str, PublishedDesired],
    ) -> None:
        """After a reconcile whose refs are ``listed`` (its writes included): the robots ``added``
        (left alone, kept, not standing before) stand at their record in ``records``; the robots
        ``written`` a new record (moved or relabelled) stand at that one."""
        for device in added:
            record = records[device]
            if record is not None:
                self._put(device, record)
        for device, record in written.items():
            self._put(device, record)
        self.listed = dict(listed)

    def owned_refs(self, devices: Mapping[str, object], *, namespaces: bool) -> frozenset[str]:
        """The desired-state refs the controller owns for ``devices`` (made again only when the
        device ids or the layout changed)."""
        if self.owned_for is None or self.owned_for[1] != namespaces or devices.keys() != self.owned_for[0]:
            self.owned = frozenset(delivery_ref(device, namespaces=namespaces) for device in devices)
            self.owned_for = (frozenset(devices), namespaces)
        return self.owned

    def _put(self, device: str, record: PublishedDesired) -> None:
        self._discard(device)
        expiry = record.expires_at
        self.held[device] = (expiry, record.serial)
        self.groups.setdefault(expiry, {}).setdefault(slot(device), set()).add(device)
        self.serials[record.serial] += 1

    def _discard(self, device: str) -> None:
        entry = self.held.pop(device, None)
        if entry is None:
            return
        expiry, serial = entry
        slots = self.groups[expiry]
        members = slots[slot(device)]
        members.discard(device)
        if not members:
            del slots[slot(device)]
            if not slots:
                del self.groups[expiry]
        self.serials[serial] -= 1
        if not self.serials[serial]:
            del self.serials[serial]
