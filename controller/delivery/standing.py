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
- the desired-state refs of that listing the controller does not own (to be removed after the
  push: :mod:`controller.delivery.prune`), for the robots and layout they were judged for, so that
  the next reconcile patches them by the refs that moved instead of judging every ref again.

A reconcile names the robots that are not quiet (:meth:`QuietMemo.touched
<controller.delivery.quiet.QuietMemo.touched>`): they leave the index, with the robots whose ref
moved, one removal each, and enter it again, or move to another group, when the reconcile leaves
them alone or gives them a new record: the work is the robots a reconcile touches. The index then
holds exactly the robots standing, which one comparison of counts in C checks (a reconcile that
stopped half way leaves robots out, found by a pass over the fleet). A robot is standing only
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
from types import MappingProxyType

from controller.delivery.prune import stale_refs
from controller.delivery.select import slot
from controller.delivery.write import delivery_ref
from controller.state.model import PublishedDesired
from fleetcd.git import refs
from fleetcd.git.repo import Oid

# expiry -> slot -> the standing robots whose recorded bundle expires then, in that slot
Groups = dict[datetime, dict[int, set[str]]]


def changed_refs(listed: Mapping[str, Oid], before: Mapping[str, Oid]) -> set[str]:
    """The refs whose value differs between the listings (added, removed or moved): for two dicts
    a symmetric difference of their items, in C (about 6 ms at 200,000 refs; equal listings, the
    usual case, one dict comparison)."""
    if listed == before:
        return set()
    if isinstance(listed, dict) and isinstance(before, dict):
        return {ref for ref, _ in listed.items() ^ before.items()}
    moved = {ref for ref, oid in listed.items() if before.get(ref) != oid}
    moved.update(before.keys() - listed.keys())
    return moved


def plain_copy(listed: Mapping[str, Oid]) -> dict[str, Oid]:
    """``listed`` as a dict of its own. The fetch hands its listing out as a read-only view
    (``MappingProxyType`` over the dict it patches at the next fetch): ``dict(view)`` looks every
    ref up through the view (100,000 refs: 21 ms), the view's own ``copy`` copies the dict in C
    (1 ms); any other mapping is copied the usual way."""
    if isinstance(listed, MappingProxyType):
        copied = listed.copy()
        if type(copied) is dict:
            return copied
    return dict(listed)


def moved_devices(listed: Mapping[str, Oid], before: Mapping[str, Oid]) -> set[str]:
    """The robots with a desired-state ref (of either layout) that differs between the listings."""
    return _devices_of(changed_refs(listed, before))


def _devices_of(moved: Iterable[str]) -> set[str]:
    return {found[0] for ref in moved if (found := refs.desired_ref_device(ref)) is not None}


@dataclass
class StandingMemo:
    """The robots standing after the last reconcile that delivered (see the module)."""

    listed: dict[str, Oid] | None = None  # the mirror's desired-state refs after that reconcile
    held: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # robot -> (expiry, serial)
    groups: Groups = field(default_factory=dict)
    serials: Counter[int] = field(default_factory=Counter)  # serial -> standing robots recording it
    # The desired-state refs of ``listed`` the controller does not own, judged for the robots
    # ``ids`` in the layout ``namespaces`` (prune.stale_refs), patched by the refs that moved since.
    stale: dict[str, Oid] = field(default_factory=dict)
    stale_for: tuple[list[str], bool] | None = None
    moved: set[str] | None = None  # the refs that moved since ``listed`` (:meth:`stand` finds them)

    def stand(
        self, devices: Mapping[str, object], others: Iterable[str], listed: Mapping[str, Oid]
    ) -> set[str]:
        """The robots of ``devices`` that do not stand: ``others`` (the robots not quiet, and any
        gone from the fleet), the robots whose ref moved in ``listed`` since the last reconcile,
        and quiet robots the memo does not hold. Afterwards the memo holds exactly the standing
        ones: ``devices`` less those returned. The work is the robots returned, with one check in
        C that the memo holds every other robot (else a pass over the fleet sets it right)."""
        if self.listed is None:
            self.moved = None
            self.held.clear()
            self.groups.clear()
            self.serials.clear()
            return set(devices)
        self.moved = changed_refs(listed, self.listed)
        out = set(others) | _devices_of(self.moved)
        for device in out:
            self._discard(device)
        out = {device for device in out if device in devices}
        if len(self.held) + len(out) != len(devices) or not self.held.keys() <= devices.keys():
            # Not every quiet robot held (a reconcile stopped half way): set right over the fleet.
            for device in self.held.keys() - devices.keys():
                self._discard(device)
            out.update(devices.keys() - self.held.keys())
        return out

    def stale_refs(
        self, listed: Mapping[str, Oid], devices: Mapping[str, object], ids: list[str], *, namespaces: bool
    ) -> dict[str, Oid]:
        """:func:`controller.delivery.prune.stale_refs` of ``listed``: the memo's, patched by the
        refs that moved since (:meth:`stand` first), while the robots (``ids``, in order) and the
        layout are the ones it was judged for; otherwise judged over every ref."""
        if self.moved is None or self.stale_for is None or self.stale_for != (ids, namespaces):
            return stale_refs(listed, devices, namespaces=namespaces)
        stale = {ref: oid for ref, oid in self.stale.items() if ref not in self.moved}
        for ref in self.moved:
            oid = listed.get(ref)
            found = refs.desired_ref_device(ref)
            if oid is None or found is None:
                continue
            if found[0] not in devices or ref != delivery_ref(found[0], namespaces=namespaces):
                stale[ref] = oid
        return dict(sorted(stale.items()))

    def highest_serial(self) -> int:
        """The highest serial a standing robot's record holds (0: none)."""
        return max(self.serials, default=0)

    def remember(
        self,
        listed: Mapping[str, Oid],
        records: Mapping[str, PublishedDesired | None],
        added: Iterable[str],
        written: Mapping[str, PublishedDesired],
        *,
        stale: tuple[dict[str, Oid], list[str], bool] | None = None,
    ) -> None:
        """After a reconcile whose refs are ``listed`` (its writes included): the robots ``added``
        (left alone, kept, not standing before) stand at their record in ``records``; the robots
        ``written`` a new record (moved or relabelled) stand at that one. ``stale``: the refs of
        ``listed`` the controller does not own, and the robots and layout they were judged for."""
        for device in added:
            record = records[device]
            if record is not None:
                self._put(device, record)
        for device, record in written.items():
            self._put(device, record)
        self.listed = plain_copy(listed)  # the fetch patches its listing in place next time
        self.stale, self.stale_for = (stale[0], (stale[1], stale[2])) if stale is not None else ({}, None)

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
