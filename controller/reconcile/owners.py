"""Whose each deployment id is, for the ingest step: a report claiming an id that is not its own
robot's is told apart from one naming an unknown id (:func:`controller.ingest.reports.ingest`).

Cold (``controller reconcile --once``), the first such claim of a reconcile maps every record id of
every robot's file to that robot (a pass over the fleet's records; the last robot in the map's
order wins an id several files hold). ``controller run`` keeps the map between reconciles
(:class:`OwnersMemo`) and, on the first claim of a reconcile, reads again only the robots whose
file is another object than last time, or that joined or left
(:class:`~controller.reconcile.fleetmap.Tracked`, one identity test per robot in C): a lookup
costs the changed robots, not the fleet. An id held by
more than one robot (only a forged state branch holds one) is answered by the cold map, so the
answers are the cold ones whatever the map's order. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from controller.reconcile.fleetmap import Tracked
from controller.state.model import DeviceFile


@dataclass
class OwnersMemo:
    """Record ids to their robot, as of the devices map last looked up in."""

    devices: Mapping[str, DeviceFile] = field(default_factory=dict)  # that map (the ingest's copy)
    files: Tracked[DeviceFile] = field(default_factory=Tracked)  # its files, by identity
    owner: dict[str, str] = field(default_factory=dict)  # id -> the one robot holding it
    shared: dict[str, set[str]] = field(default_factory=dict)  # id -> the robots holding it (2+)
    ready: bool = False  # False while patching: an update cut short starts again from nothing
    rebuilt: int = 0  # maps built from every robot (tests count them)

    def update(self, devices: Mapping[str, DeviceFile]) -> None:
        """Patched to ``devices``: the robots whose file changed are taken out and read again."""
        ready, self.ready = self.ready, False
        if not ready:
            self._build(devices)
        else:
            last = self.devices
            changed = self.files.changes(devices)
            for device in changed:
                old = last.get(device)
                if old is not None:
                    self._drop(device, old)
            for device in changed:
                new = devices.get(device)
                if new is not None:
                    self._add(device, new)
        self.devices = devices
        self.ready = True

    def _build(self, devices: Mapping[str, DeviceFile]) -> None:
        """From every robot's file, at the cost of the cold map (the robots holding an id twice,
        which only a forged state branch has, are sorted out in a second pass)."""
        self.rebuilt += 1
        self.owner = owner = {r.id: d for d, f in devices.items() for r in f.records}
        self.shared = {}
        if sum(map(len, map(attrgetter("records"), devices.values()))) != len(owner):
            holders: dict[str, set[str]] = {}
            for device, found in devices.items():
                for record in found.records:
                    holders.setdefault(record.id, set()).add(device)
            self.shared = {i: held for i, held in holders.items() if len(held) > 1}
            for record_id in self.shared:
                del owner[record_id]
        self.files = Tracked(list(devices), list(devices.values()))

    def _drop(self, device: str, old: DeviceFile) -> None:
        owner, shared = self.owner, self.shared
        for record in old.records:
            holders = shared.get(record.id)
            if holders is None:
                if owner.get(record.id) == device:
                    del owner[record.id]
                continue
            holders.discard(device)
            if len(holders) == 1:
                owner[record.id] = holders.pop()
                del shared[record.id]

    def _add(self, device: str, new: DeviceFile) -> None:
        owner, shared = self.owner, self.shared
        for record in new.records:
            holders = shared.get(record.id)
            if holders is not None:
                holders.add(device)
                continue
            other = owner.setdefault(record.id, device)
            if other != device:
                shared[record.id] = {other, device}
                del owner[record.id]


class Owners(Mapping[str, str]):
    """Deployment id -> the robot whose file holds it, over ``devices``; nothing is read before the
    first lookup (most reconciles have no claim on another robot's id)."""

    def __init__(self, devices: Mapping[str, DeviceFile], memo: OwnersMemo | None = None) -> None:
        self._devices = devices
        self._memo = memo
        self._updated = False
        self._cold: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        if self._cold is None:
            self._cold = {r.id: d for d, f in self._devices.items() for r in f.records}
        return self._cold

    def __getitem__(self, key: str) -> str:
        memo = self._memo
        if memo is None:
            return self._built()[key]
        if not self._updated:
            memo.update(self._devices)
            self._updated = True
        if key in memo.shared:  # several robots' files hold it: the cold map's answer
            return self._built()[key]
        return memo.owner[key]

    def __bool__(self) -> bool:
        # ``owners or {}`` (the ingest) must not build the cold map through __len__.
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())
