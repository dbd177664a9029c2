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

from controller.reconcile.fleetmap import Tracked
from controller.state.model import DeviceFile


@dataclass
class OwnersMemo:
    """Record ids to their robot, as of the devices map last looked up in."""

    files: Tracked[DeviceFile] = field(default_factory=Tracked)
    held: dict[str, tuple[str, ...]] = field(default_factory=dict)  # robot -> the ids its file holds
    owner: dict[str, str] = field(default_factory=dict)  # id -> the one robot holding it
    shared: dict[str, set[str]] = field(default_factory=dict)  # id -> the robots holding it (2+)
    ready: bool = False  # False while patching: an update cut short starts again from nothing
    rebuilt: int = 0  # maps built from every robot (tests count them)

    def update(self, devices: Mapping[str, DeviceFile]) -> None:
        """Patched to ``devices``: the robots whose file changed are taken out and read again."""
        if not self.ready:
            self.files, self.held, self.owner, self.shared = Tracked(), {}, {}, {}
            self.rebuilt += 1
        self.ready = False
        changed = self.files.changes(devices)
        for device in changed:
            self._drop(device)
        for device in changed:
            found = devices.get(device)
            if found is not None:
                self._add(device, tuple(dict.fromkeys(r.id for r in found.records)))
        self.ready = True

    def _drop(self, device: str) -> None:
        owner, shared = self.owner, self.shared
        for record_id in self.held.pop(device, ()):
            holders = shared.get(record_id)
            if holders is None:
                if owner.get(record_id) == device:
                    del owner[record_id]
                continue
            holders.discard(device)
            if len(holders) == 1:
                owner[record_id] = holders.pop()
                del shared[record_id]

    def _add(self, device: str, ids: tuple[str, ...]) -> None:
        owner, shared = self.owner, self.shared
        if ids:
            self.held[device] = ids
        for record_id in ids:
            holders = shared.get(record_id)
            if holders is not None:
                holders.add(device)
                continue
            other = owner.setdefault(record_id, device)
            if other != device:
                shared[record_id] = {other, device}
                del owner[record_id]


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

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())
