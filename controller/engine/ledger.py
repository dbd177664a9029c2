"""The working copy of deployment records during one :func:`~controller.engine.advance.advance` call.

Pure bookkeeping: it starts from the device files the reconcile loop read from the state branch,
takes record updates from the engine and hands back, per robot, the full new record tuple of the
robots whose records changed. Records of other rollouts on the same robot are carried along
untouched. A device file holds at most ``MAX_RECORDS_PER_DEVICE`` records; older finished ones are
dropped first (they stay in git history), never this generation's, and each app's newest
successful record (what the robot runs) last.

Unchanged robots are not redeployed. When a new generation starts (say, a config edit), a robot
whose newest record of this rollout from an earlier generation already runs the same release
with the same merged config, and succeeded, *carries* that record: :meth:`Ledger.find` returns it
for the generation's release, so dispatch creates nothing, the wave counts it as succeeded, and
its bundle keeps the deployment (and bytes) it already verified. Only robots whose release or
merged config changes get a new deployment and go through the waves.

It also remembers which records were *delivered*: the reconcile publishes every robot's bundle,
built from its records, in the same push as the state-branch commit holding them, so a record
that came in with the device files, with target ``deployed``, was in a bundle the robot may have
fetched. That — not the robot's silence — decides whether a halt may treat it as never run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.engine.inputs import DeviceConfig
from controller.records.model import DeploymentRecord, TargetStatus, is_success, is_terminal
from controller.state.model import MAX_RECORDS_PER_DEVICE, DeviceFile

# Past this share of the robots named as changed, the index is built again from every file.
MOST_CHANGED = 0.25


@dataclass
class _Kept:
    """A ledger's index at the end of a tick (see :class:`LedgerMemo`)."""

    key: tuple[str, int]  # (rollout, generation): what the index depends on besides the files
    ours: dict[str, DeploymentRecord]
    current: dict[tuple[str, str], DeploymentRecord]
    devices_of: dict[str, set[str]]
    earlier: dict[str, DeploymentRecord]
    delivered: set[str]
    held: dict[str, list[DeploymentRecord]]
    order: list[str] | None


@dataclass
class LedgerMemo:
    """One rollout's ledger index, kept between reconciles by ``controller run``.

    The index is a function of the rollout's name, its generation and each robot's own records
    (never another robot's: see :meth:`Ledger._read`). The next tick of the same generation
    starts from it and reads again only the robots its caller names as changed (their device
    file is another object, or they joined or left) and those the last tick edited, so a tick
    costs the robots that changed, not the fleet. The release and the configs are read at lookup
    time, never indexed. A tick that raises leaves nothing kept (the next builds from every file),
    and an index holding one id for two robots (a forged state branch) is not kept either.
    """

    kept: _Kept | None = None
    dirty: frozenset[str] = frozenset()  # robots the last tick put records for
    rebuilt: int = 0  # indexes built from every robot's file (tests count them)
    most_changed: float = MOST_CHANGED  # the share of robots changed past which it is built again


class Ledger:
    """Records of every robot, with lookups by id for one rollout's records."""

    def __init__(
        self,
        device_files: Mapping[str, DeviceFile],
        rollout: str,
        generation: int,
        release_sha256: str = "",
        configs: Mapping[str, DeviceConfig] | None = None,
        *,
        memo: LedgerMemo | None = None,
        changed: Iterable[str] | None = None,
    ) -> None:
        self._files = device_files
        self.rollout = rollout
        self.generation = generation
        self.release_sha256 = release_sha256
        self._configs = configs or {}
        self.version = 0  # bumped on every change: lets callers skip recounting an unchanged ledger
        self._edited: dict[str, list[DeploymentRecord]] = {}
        self._memo = memo
        self._clash = False  # one id indexed for two robots: not kept (see LedgerMemo)
        kept = memo.kept if memo is not None else None
        if memo is not None:
            memo.kept = None  # until settle(): a tick that raises leaves nothing half-patched to reuse
        patch = _to_patch(memo, kept, changed, (rollout, generation), len(device_files))
        if kept is not None and patch is not None:
            self._adopt(kept)
            self._patch(patch)
            return
        # device -> its newest live record of an earlier generation (see "unchanged robots" above)
        self._earlier: dict[str, DeploymentRecord] = {}
        self._ours: dict[str, DeploymentRecord] = {}
        # This generation's records by (device, release digest): the deterministic id says the same,
        # and a dict lookup is much cheaper than a sha256 per robot per tick.
        self._current: dict[tuple[str, str], DeploymentRecord] = {}
        self._devices_of: dict[str, set[str]] = {}  # release digest -> the robots in _current with it
        self._order: list[str] | None = None
        self._delivered: set[str] = set()
        # device -> every record indexed for it (from its file or put), to take back out: kept only
        # with a memo, for the next tick to patch the robots that changed.
        self._held: dict[str, list[DeploymentRecord]] | None = None
        if memo is not None:
            self._held = {}
            memo.rebuilt += 1
        for device, device_file in device_files.items():
            self._read(device, device_file)

    def _read(self, device: str, device_file: DeviceFile) -> None:
        for record in device_file.records:
            # Only the robot's own records: one naming another robot (its deployment id) in
            # this robot's file would otherwise stand in for that robot's and count for it.
            if record.rollout == self.rollout and record.device == device:
                self._index(record)
                if record.generation == self.generation and record.target_status is TargetStatus.DEPLOYED:
                    self._delivered.add(record.id)

    def _adopt(self, kept: _Kept) -> None:
        self._ours, self._current, self._devices_of = kept.ours, kept.current, kept.devices_of
        self._earlier, self._delivered, self._held, self._order = (
            kept.earlier,
            kept.delivered,
            kept.held,
            kept.order,
        )

    def _patch(self, devices: set[str]) -> None:
        """The kept index with ``devices`` taken out and read again from their files (gone ones
        stay out): what a build from every file gives, since each entry is one robot's own."""
        held, order = self._held, self._order
        gone: set[str] = set()
        came: set[str] = set()
        assert held is not None
        for device in devices:
            for record in held.pop(device, ()):
                ours = self._ours.get(record.id)
                if ours is not None and ours.device == device:
                    del self._ours[record.id]
                    gone.add(record.id)
                if record.generation == self.generation:
                    self._current.pop((device, record.release_sha256), None)
                    found = self._devices_of.get(record.release_sha256)
                    if found is not None:
                        found.discard(device)
                        if not found:
                            del self._devices_of[record.release_sha256]
                self._delivered.discard(record.id)
            self._earlier.pop(device, None)
        for device in devices:
            device_file = self._files.get(device)
            if device_file is not None:
                self._read(device, device_file)
                came.update(r.id for r in held.get(device, ()))
        # The sorted ids hold while the same ids came back (a record updated, not added or dropped).
        self._order = order if order is not None and came == gone else None

    def settle(self) -> None:
        """The tick is over: the index is kept in the memo (with the robots this tick edited, to be
        read again from their files next time); nothing is kept when one id was indexed for two
        robots, which only a forged state branch holds."""
        memo, held = self._memo, self._held
        if memo is None or held is None or self._clash:
            return
        memo.dirty = frozenset(self._edited)
        memo.kept = _Kept(
            (self.rollout, self.generation),
            self._ours,
            self._current,
            self._devices_of,
            self._earlier,
            self._delivered,
            held,
            self._order,
        )

    def _index(self, record: DeploymentRecord) -> None:
        known = self._ours.get(record.id)
        if known is None:
            self._order = None
        elif known.device != record.device:
            self._clash = True
        if self._held is not None:
            self._held.setdefault(record.device, []).append(record)
        self._ours[record.id] = record
        if record.generation == self.generation:
            self._current[(record.device, record.release_sha256)] = record
            self._devices_of.setdefault(record.release_sha256, set()).add(record.device)
        elif record.generation < self.generation:
            held = self._earlier.get(record.device)
            if record.target_status is TargetStatus.ARCHIVED:
                if held is not None and held.id == record.id:
                    del self._earlier[record.device]
            elif held is None or _newer(record, held):
                self._earlier[record.device] = record

    def find(self, device: str, release_sha256: str) -> DeploymentRecord | None:
        """This generation's deployment of ``release_sha256`` to ``device``, if there is one — or
        the earlier generation's deployment the robot carries over (see above)."""
        found = self._current.get((device, release_sha256))
        if found is None and release_sha256 == self.release_sha256:
            return self.carried(device)
        return found

    def recorded(self, release_sha256: str) -> set[str]:
        """Every robot :meth:`find` may answer for with ``release_sha256``: those with a deployment
        of it this generation and, for the generation's release, those holding an earlier
        generation's live record (they may carry it); :meth:`find` is None for every other robot.
        Read-only: the ledger's own set while no earlier record can be carried."""
        found = self._devices_of.get(release_sha256, set())
        if release_sha256 == self.release_sha256 and self._earlier:
            return found.union(self._earlier)
        return found

    def earlier(self, device: str) -> DeploymentRecord | None:
        """The robot's newest live record of this rollout from an earlier generation."""
        return self._earlier.get(device)

    def carried(self, device: str) -> DeploymentRecord | None:
        """The earlier generation's record ``device`` keeps because it already runs this
        generation's release with the config it should run now; None when it needs a deployment."""
        record = self._earlier.get(device)
        if record is None or record.release_sha256 != self.release_sha256 or not is_success(record):
            return None
        wanted = self._configs.get(device)
        if wanted is None or record.config_sha256 != wanted.sha256:
            return None
        return record

    def delivered(self, record: DeploymentRecord) -> bool:
        """True when a published bundle already told the robot to run ``record`` (see above)."""
        return record.id in self._delivered

    def ours(self) -> list[DeploymentRecord]:
        """This rollout's records (every generation), in a stable order (by id)."""
        if self._order is None:
            self._order = sorted(self._ours)
        return [self._ours[record_id] for record_id in self._order]

    def current(self) -> list[DeploymentRecord]:
        """This rollout's records of the current generation (deploys and rollbacks)."""
        return [r for r in self.ours() if r.generation == self.generation]

    def put(self, record: DeploymentRecord) -> None:
        """Add ``record`` or replace the record with its id; an unchanged record is a no-op."""
        existing = self._ours.get(record.id)
        if existing is record or existing == record:
            return
        self._index(record)
        self.version += 1
        records = self._edited.get(record.device)
        if records is None:
            existing_file = self._files.get(record.device)
            records = list(existing_file.records) if existing_file is not None else []
            self._edited[record.device] = records
        for position, old in enumerate(records):
            if old.id == record.id:
                records[position] = record
                break
        else:
            records.append(record)

    def changes(self) -> dict[str, tuple[DeploymentRecord, ...]]:
        """device -> its new full record tuple, for robots whose records changed (sorted by device)."""
        out: dict[str, tuple[DeploymentRecord, ...]] = {}
        for device in sorted(self._edited):
            records = self._trim(self._edited[device])
            existing = self._files.get(device)
            if existing is None or existing.records != records:
                out[device] = records
        return out

    def _trim(self, records: list[DeploymentRecord]) -> tuple[DeploymentRecord, ...]:
        excess = len(records) - MAX_RECORDS_PER_DEVICE
        if excess <= 0:
            return tuple(records)

        running = _running(records)

        def keep_first(record: DeploymentRecord) -> tuple[bool, bool, bool, datetime]:
            # Drop order: finished before in-flight, other generations before ours, oldest first;
            # what the robot runs of each app last (several apps: another app's many deployments
            # must not make the controller forget it, nor a requirement on it look unmet).
            ours = record.rollout == self.rollout and record.generation == self.generation
            return (record.id in running, not is_terminal(record), ours, record.updated_at)

        dropped = {r.id for r in sorted(records, key=keep_first)[:excess]}
        return tuple(r for r in records if r.id not in dropped)


def _to_patch(
    memo: LedgerMemo | None,
    kept: _Kept | None,
    changed: Iterable[str] | None,
    key: tuple[str, int],
    robots: int,
) -> set[str] | None:
    """The robots to read again into the kept index; None: build it from every file (nothing kept
    for this rollout and generation, or past ``memo.most_changed`` of the robots changed, as in an
    ingest at a small fleet, where a build costs less than patching each of them)."""
    if memo is None or kept is None or changed is None or kept.key != key:
        return None
    limit = robots * memo.most_changed
    if isinstance(changed, Collection) and len(changed) > limit:  # no copy of a fleet's names
        return None
    patch = set(changed).union(memo.dirty)
    return patch if len(patch) <= limit else None


def _running(records: list[DeploymentRecord]) -> set[str]:
    """Ids of each app's newest successful record: what the robot runs, as far as records say."""
    newest: dict[str, DeploymentRecord] = {}
    for record in records:
        if is_success(record):
            held = newest.get(record.app)
            if held is None or (record.created_at, record.updated_at) > (held.created_at, held.updated_at):
                newest[record.app] = record
    return {record.id for record in newest.values()}


def _newer(record: DeploymentRecord, than: DeploymentRecord) -> bool:
    return (record.generation, record.created_at, record.id) > (than.generation, than.created_at, than.id)
