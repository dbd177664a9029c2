"""The git side of ``fleetcd history ROBOT --at T``: the state branch and a robot's reports as of T.

Everything comes from git history alone: the state branch is linear and each of its commits is
one reconcile, dated by the controller's clock (``now``), so the state "at T" is its newest commit
at or before T (:func:`state_at`). From there :class:`StateWalk` reads older commits only as far as
a question needs: the robot's records (newest form of each at or before T) and every rollout
generation's state, each blob parsed once. A robot's status ref is its own history of reports,
newest first (:class:`ReportWalk`); it is untrusted, so reports over the size cap or that do not
parse are counted and skipped, never believed. Every walk is bounded. Read-only; no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from controller.ingest.reports import ReportRejected, parse_report
from controller.records.model import DeploymentRecord
from controller.state.layout import META_FILE, device_files
from controller.state.model import ControllerMeta, DeviceFile, RolloutState
from fleetcd.compat import UTC
from fleetcd.git.log import LogEntry, blob_at, blob_bytes, first_parent_log
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import STATE_BRANCH, status_ref
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.signatures import is_descendant
from fleetcd.git.trees import list_blobs
from fleetcd.reports import MAX_REPORT_BYTES, STATUS_FILE, StatusReport

STATE_COMMITS = 5000  # state commits read back from the instant (records, rollout generations)
SKIP_COMMITS = 200_000  # commits passed over (no file read) to reach the instant from the tip
REPORT_COMMITS = 5000  # robot reports read back from the instant


def aware(value: datetime) -> datetime:
    """Robots' timestamps are aware when an agent wrote them; a naive one is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def state_at(repo: Repository, at: datetime) -> tuple[LogEntry | None, LogEntry | None]:
    """(the newest state commit at or before ``at``, the oldest state commit seen): the second says
    when the controller first wrote anything, for an instant before that."""
    head = ref_target(repo, STATE_BRANCH)
    oldest = None
    if head is None:
        return None, None
    for entry in first_parent_log(repo, head, SKIP_COMMITS):
        if entry.when <= at:
            return entry, None
        oldest = entry
    return None, oldest


def state_processing(repo: Repository, main_commit: str) -> LogEntry | None:
    """The state commit that processed ``main_commit``: the oldest whose last processed main commit,
    or the main commit it stalled on, is it or descends from it (one reconcile may process several
    main commits at once; a commit with invalid content is processed by recording the stall)."""
    head = ref_target(repo, STATE_BRANCH)
    if head is None:
        return None
    found = None
    seen: dict[str | None, bool] = {None: False}
    metas: dict[str, tuple[str | None, str | None]] = {}
    for entry in first_parent_log(repo, head, SKIP_COMMITS):
        meta = blob_at(repo, entry.commit, META_FILE)
        if meta is None:
            break
        if meta.blob not in metas:
            parsed = ControllerMeta.model_validate_json(blob_bytes(repo, meta.blob))
            metas[meta.blob] = (parsed.last_processed_commit, parsed.stalled_commit)
        mains = metas[meta.blob]
        for commit in mains:
            if commit is not None and commit not in seen:
                seen[commit] = is_descendant(repo, commit, main_commit)
        if not any(seen[commit] for commit in mains):
            break
        found = entry
    return found


@dataclass
class StateWalk:
    """The state branch from ``start`` back, read lazily: each question reads only as far as needed."""

    repo: Repository
    start: LogEntry | None
    device: str
    limit: int = STATE_COMMITS
    records: dict[str, DeploymentRecord] = field(default_factory=dict)  # newest form at or before T
    rollouts: dict[tuple[str, int], RolloutState] = field(default_factory=dict)  # newest per generation
    at_start: list[DeploymentRecord] = field(default_factory=list)  # the device file at ``start``
    meta: ControllerMeta | None = None  # state.json at ``start``
    commits_read: int = 0
    exhausted: bool = False
    _log: Iterator[LogEntry] | None = None
    _blobs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.start is None:
            self.exhausted = True
        else:
            self._log = first_parent_log(self.repo, self.start.commit, self.limit)
            self._step()

    def record(self, deployment: str) -> DeploymentRecord | None:
        while deployment not in self.records and self._step():
            pass
        return self.records.get(deployment)

    def rollout(self, name: str, generation: int) -> RolloutState | None:
        while (name, generation) not in self.rollouts and self._step():
            pass
        return self.rollouts.get((name, generation))

    def _read(self, blob: str) -> bytes | None:
        if blob in self._blobs:
            return None
        self._blobs.add(blob)
        return blob_bytes(self.repo, blob)

    def _step(self) -> bool:
        entry = next(self._log, None) if self._log is not None else None
        if entry is None:
            self.exhausted = True
            return False
        first = self.commits_read == 0
        self.commits_read += 1
        new, flat = device_files(self.device)
        found = blob_at(self.repo, entry.commit, new) or blob_at(self.repo, entry.commit, flat)
        data = self._read(found.blob) if found is not None else None
        if data is not None:
            records = DeviceFile.model_validate_json(data).records
            for record in records:
                self.records.setdefault(record.id, record)  # newest commits first: first seen is latest
            if first:
                self.at_start = list(records)
        for blob in list_blobs(self.repo, entry.commit, "rollouts/").values():
            data = self._read(blob)
            if data is not None:
                state = RolloutState.model_validate_json(data)
                self.rollouts.setdefault((state.name, state.generation), state)
        if first:
            meta = blob_at(self.repo, entry.commit, META_FILE)
            if meta is not None:
                self.meta = ControllerMeta.model_validate_json(blob_bytes(self.repo, meta.blob))
        return True


@dataclass(frozen=True)
class Report:
    commit: str
    report: StatusReport


@dataclass
class ReportWalk:
    """The robot's own reports at or before ``at``, newest first (its status ref's history)."""

    repo: Repository
    device: str
    at: datetime
    tip: Oid | None  # the robot's newest report: its status ref, or its shard's copy in the mirror
    limit: int = REPORT_COMMITS
    unreadable: int = 0  # reports skipped: over the size cap, not JSON, or not a status report
    read: int = 0
    exhausted: bool = False

    def __iter__(self) -> Iterator[Report]:
        if self.tip is None:
            self.exhausted = True
            return
        for entry in first_parent_log(self.repo, self.tip, SKIP_COMMITS):
            if entry.when > self.at:
                continue  # a report committed after the instant (the robot dates its commits)
            if self.read >= self.limit:
                return
            self.read += 1
            report = self._parse(entry.commit)
            if report is None:
                self.unreadable += 1
            elif report.device == self.device and aware(report.reported_at) <= self.at:
                yield Report(entry.commit, report)
        self.exhausted = True

    def _parse(self, commit: str) -> StatusReport | None:
        found = blob_at(self.repo, commit, STATUS_FILE)
        if found is None or found.size > MAX_REPORT_BYTES:
            return None
        try:  # the controller's own strict parse: what ingest refused is never what history believes
            return parse_report(blob_bytes(self.repo, found.blob), f"{commit}:{STATUS_FILE}")
        except ReportRejected:
            return None


def oldest_report(
    repo: Repository, device: str, at: datetime, matches: Callable[[StatusReport], bool]
) -> StatusReport | None:
    """The oldest of the robot's reports up to ``at`` (newest :data:`REPORT_COMMITS`) that ``matches``:
    when something first happened on the robot, by its own account (the demo picks its instant so)."""
    found = None
    for report in ReportWalk(repo, device, at, ref_target(repo, status_ref(device))):
        if matches(report.report):
            found = report.report
    return found


def brought_to_main(repo: Repository, start: str, path: str, limit: int = STATE_COMMITS) -> str | None:
    """The commit, walking main's first parents back from ``start``, since which ``path`` has held
    the bytes it holds at ``start``: for an approval, the commit that brought that signature to
    main (a pull request's merge). None when ``start`` has no such file; after ``limit`` commits
    the oldest one read."""
    here = blob_at(repo, start, path)
    if here is None:
        return None
    found = start
    for entry in first_parent_log(repo, start, limit):
        seen = blob_at(repo, entry.commit, path)
        if seen is None or seen.blob != here.blob:
            break
        found = entry.commit
    return found
