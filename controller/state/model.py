"""What the controller records on the state branch: rollout progress, waves, per-device files.

Observed state only, with machine-readable reasons (Flux-style): every field can be recomputed from
git history, so a controller killed at any instant resumes from these files. Pure models.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from controller.records.model import CommitId, DeploymentRecord, DeviceState
from fleetcd.compat import StrEnum
from fleetcd.desired.bundle import MAX_SERIAL
from fleetcd.models.base import SafeName, SemVer, Sha256
from fleetcd.models.rollout import HaltPolicy

STATE_FORMAT = "fleetcd.dev/state/v1"
MAX_RECORDS_PER_DEVICE = 20  # older generations' records are in git history


class _State(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WavePhase(StrEnum):
    PENDING = "pending"  # an earlier wave is not done yet
    WAITING = "waiting"  # due, but held by schedule, maintenance windows or the rate limit
    RUNNING = "running"  # deployments dispatched, results coming in
    SOAKING = "soaking"  # gate numbers met; waiting out the soak time
    AWAITING_PROMOTION = "awaiting_promotion"  # manual gate: a commit bumping `promote:`
    PASSED = "passed"
    FAILED = "failed"  # failure threshold crossed


class RolloutPhase(StrEnum):
    SCHEDULED = "scheduled"  # schedule.not_before in the future
    PROGRESSING = "progressing"
    PAUSED = "paused"
    HALTED = "halted"  # a wave crossed its failure threshold
    ROLLING_BACK = "rolling_back"
    COMPLETED = "completed"
    ABORTED = "aborted"
    STALLED = "stalled"  # invalid content: waits for a new commit
    REMOVED = "removed"  # the rollout file was deleted: robots keep what they run


class WaveCounts(_State):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0
    timed_out: int = 0
    in_progress: int = 0
    queued: int = 0
    offline: int = 0

    @property
    def reported(self) -> int:
        return self.succeeded + self.failed + self.rolled_back + self.timed_out


class GateNumbers(_State):
    """The wave's gate as planned at the reconcile that wrote the state: what its verdicts are
    measured against. Kept in the state so ``history --at`` quotes the numbers in force at an
    instant, even after the rollout, its strategy or ``fleet.yaml``'s defaults changed."""

    failure_threshold_count: int | None = Field(default=None, ge=0)
    failure_threshold_percent: float | None = Field(default=None, ge=0, le=100)
    min_reported_percent: float = Field(ge=0, le=100)
    soak_seconds: int = Field(ge=0)
    manual_promotion: bool = False


class WaveState(_State):
    index: int = Field(ge=0)
    name: str
    action: str = "deploy"
    devices: tuple[SafeName, ...] = ()
    phase: WavePhase = WavePhase.PENDING
    started_at: AwareDatetime | None = None
    gates_met_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    counts: WaveCounts = Field(default_factory=WaveCounts)
    reason: str | None = None
    # Robots of the wave held on the last tick that could dispatch, by hold reason (a HoldReason
    # value -> their ids, sorted): the one reason each robot waits for (controller.state.holds).
    held: dict[str, tuple[SafeName, ...]] = Field(default_factory=dict)
    # None in states written before gates were recorded (``history --at`` says so).
    gate: GateNumbers | None = None
    # ``counts`` when the wave passed or failed: the numbers the gate decided on (``counts`` goes on
    # following late reports). None: not decided yet, or decided before this was recorded.
    decided_counts: WaveCounts | None = None


class Approver(_State):
    fingerprint: str
    name: str


class RolloutState(_State):
    format: str = STATE_FORMAT
    name: SafeName
    app: SafeName
    version: SemVer
    release_path: str
    release_sha256: Sha256
    generation: int = Field(ge=1)
    generation_fingerprint: str
    previous_version: SemVer | None = None
    phase: RolloutPhase
    reason: str | None = None
    waves: tuple[WaveState, ...] = ()
    skipped: tuple[tuple[SafeName, str], ...] = ()
    approvers: tuple[Approver, ...] = ()
    commit: str  # main commit this generation was created from
    promote_seen: int = 0
    # The release robots ran before this generation (auto-rollback target), captured at creation.
    previous_release_sha256: Sha256 | None = None
    # Robots that got a rollback deployment in this generation: never re-applied until a new one.
    rolled_back_devices: tuple[SafeName, ...] = ()
    # The rollout's ``on_halt`` when a wave failed: what the halt did (receipts and pages say it).
    halt_policy: HaltPolicy | None = None
    # release sha256 -> main commit whose rollout file and approvals put that release out under
    # this rollout: the signed evidence robots get for rollbacks and older generations' records.
    release_commits: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime
    updated_at: AwareDatetime


class PublishedDesired(_State):
    """What the controller last wrote on one robot's desired-state ref (``DeviceFile.desired``).

    It changes only when that ref is rewritten (the robot's bundle changed, its renewal came, or
    its ref had to be healed), so an unchanged robot's device file does not change for it. The ref
    is kept while it points exactly at ``commit`` (:mod:`controller.delivery.published`).
    """

    commit: str = Field(pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # the ref is kept only here
    serial: int = Field(ge=1, le=MAX_SERIAL)  # the next root is signed above every recorded one
    content_sha256: Sha256  # content_digest of the bundle (no serial, no timestamps): what changed
    expires_at: AwareDatetime  # the bundle's (and its root's) expiry: when it is renewed
    # What the bundle was built from (controller.delivery.inputs): while a robot's inputs digest is
    # this one, its bundle is not built again (its content is ``content_sha256``). None: not
    # recorded (an older controller), the bundle is built and compared by content.
    inputs_sha256: Sha256 | None = None


class DeviceFile(_State):
    """``devices/<id>.json``: one robot's connectivity, last report seq and its recent records."""

    format: str = STATE_FORMAT
    state: DeviceState
    last_report_seq: int = -1
    # What the robot's status ref named when this controller last read it (ingested, stale or
    # refused): a ref still naming it is not read again, so ingest costs the reports that moved.
    last_report_oid: CommitId | None = None
    records: tuple[DeploymentRecord, ...] = Field(default=(), max_length=MAX_RECORDS_PER_DEVICE)
    desired: PublishedDesired | None = None  # None: nothing recorded, the ref is written anew


class IdleMark(_State):
    """What a reconcile saw and when the clock alone next changes anything (the idle fast path).

    A later reconcile that lists the same main commit and the same status and desired-state refs
    before ``next_due_at`` would decide nothing new, so it skips fetching, loading and planning.
    """

    main: str
    status_sha256: Sha256  # over the sorted (ref, oid) pairs of robots' status refs
    # Over the sorted (ref, oid) pairs of desired-state refs; only in the mirror's hint file, since a
    # re-signed root after a crash gives other commit ids for the same state.
    desired_sha256: Sha256 | None = None
    next_due_at: AwareDatetime  # earliest soak end, deadline, window, not_before, root refresh…
    # Main stalls (invalid content, refused commits, a rewritten history): only a new main commit
    # changes the outcome, not robots' reports, which a stalled reconcile does not ingest.
    stalled: bool = False


class ControllerMeta(_State):
    """``state.json``: where the controller is in main's history and in the signing serial."""

    format: str = STATE_FORMAT
    last_processed_commit: str | None = None
    serial: int = 0  # the highest serial ever signed: the next root is signed above it
    # The newest trust-root version an applied reconcile used: main offering an older one (its newer
    # versions deleted to bring back revoked keys) stalls instead of being believed.
    trust_version: int = Field(default=0, ge=0)
    # sha256 of the root.json signed under ``serial`` (it covers only the robots that reconcile
    # moved): a robot's ref holding it without being recorded needs no gpg call to be judged.
    root_sha256: Sha256 | None = None
    audit_seq: int = 0
    audit_head: str = "0" * 64
    audit_file: str | None = None  # the day file holding line ``audit_seq`` (the log's head)
    updated_at: AwareDatetime | None = None
    idle: IdleMark | None = None
    # The stall last recorded: the same one again (another day, another controller) logs nothing.
    stalled_commit: str | None = None
    stalled_reason: str | None = None
