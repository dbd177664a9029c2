"""The robot's status report: what an agent pushes to its own status ref, what the controller ingests.

Shared format (``refs/fleetcd/status/<device>/report``, file ``status.json``): the agent writes it
after every step that matters and as a heartbeat; the controller reads it as *untrusted* input
(a robot may only speak for itself, and only about deployments the controller gave it). Its
activity and error values are :mod:`fleetcd.vocabulary`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from fleetcd.compat import Self
from fleetcd.models.base import FrozenModel, SafeName, SemVer
from fleetcd.models.release import MAX_ARTIFACT_BYTES, MAX_ARTIFACTS, MAX_STEPS, MAX_WATCH_SECONDS
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.vocabulary import (
    Activity,
    ErrorStatus,
    ProgressPhase,
    ReportedActivity,
    ReportedDriftKind,
    ReportedError,
    ReportedMigrationState,
)

STATUS_FORMAT = "fleetcd.dev/status/v1"
STATUS_FILE = "status.json"
MAX_REPORT_BYTES = 256 * 1024
MAX_DEPLOYMENTS = 20
MAX_EVENTS = 20
MESSAGE_MAX = 500
MAX_RUNTIME_DRIFT = 64
# Every integer a robot sends is bounded (strict: no floats, strings or bools). A seq grows by one
# per report: at one report a second, 2**53 is 285 million years away, and it is exact in every
# JSON reader. Anything above is a broken or hostile robot: the report is refused, never stored as
# the seq later reports would have to beat (they could not, and the robot's status would freeze).
MAX_SEQ = 2**53
MAX_BUNDLE_SERIAL = 2**53  # fleetcd.desired.bundle.MAX_SERIAL: the controller never signs more
# Longer digit strings are refused before Python converts them (which costs quadratic time and fails
# from 4,300 digits on); 2**63 has 19.
MAX_INT_DIGITS = 20
Seq = Annotated[int, Field(strict=True, ge=0, le=MAX_SEQ)]
# A download is every artifact of one release: at most MAX_ARTIFACTS of MAX_ARTIFACT_BYTES each.
MAX_PROGRESS_BYTES = MAX_ARTIFACTS * MAX_ARTIFACT_BYTES
ProgressBytes = Annotated[int, Field(strict=True, ge=0, le=MAX_PROGRESS_BYTES)]
WatchSeconds = Annotated[int, Field(strict=True, ge=0, le=MAX_WATCH_SECONDS)]
DeploymentIdText = Annotated[str, StringConstraints(pattern=r"^dep-[0-9a-f]{24}$")]

Message = Annotated[str, StringConstraints(max_length=MESSAGE_MAX)]
Timestamp = Annotated[datetime, Field(strict=False)]
DriftedPath = Annotated[str, StringConstraints(max_length=512)]


class ReportEvent(FrozenModel):
    at: Timestamp
    activity: ReportedActivity
    error: ReportedError = ErrorStatus.NONE
    message: Message = ""


class ReportedMigration(FrozenModel):
    """One of the release's migrations as this robot ran it for the deployment (agent.state.migrations)."""

    name: SafeName
    state: ReportedMigrationState


class DeploymentReport(FrozenModel):
    """The robot's view of one deployment it was given (by the controller's deterministic id)."""

    deployment_id: DeploymentIdText
    app: SafeName
    version: SemVer
    activity: ReportedActivity
    error: ReportedError = ErrorStatus.NONE
    message: Message = ""
    updated_at: Timestamp
    events: list[ReportEvent] = Field(default_factory=list, max_length=MAX_EVENTS)
    migrations: list[ReportedMigration] = Field(default_factory=list, max_length=MAX_STEPS)  # in run order


class RuntimeDrift(FrozenModel):
    """What runs differs from what the agent installed (agent.converge.drift); ``restored``: the
    agent put it back (``drift: restore``), else it is left for a person (``drift: report``)."""

    app: SafeName
    kind: ReportedDriftKind
    detail: Message
    restored: bool = False


class InstalledApp(FrozenModel):
    app: SafeName
    current: SemVer | None = None
    previous: SemVer | None = None


class Progress(FrozenModel):
    """How far a long step of one deployment is, in a report pushed while the step runs
    (agent.report.progress); the report that ends the agent's cycle carries none.

    ``downloading``: ``done_bytes`` of ``total_bytes`` (every artifact of the release, resumed bytes
    included). ``watching``: ``seconds_left`` of the health watch's ``window_seconds``. The numbers of
    the other phase are absent; every number is bounded and ``done <= total``, ``left <= window``.
    """

    deployment_id: DeploymentIdText
    phase: ProgressPhase
    done_bytes: ProgressBytes | None = None
    total_bytes: ProgressBytes | None = None
    seconds_left: WatchSeconds | None = None
    window_seconds: WatchSeconds | None = None

    @model_validator(mode="after")
    def _numbers_of_its_phase(self) -> Self:
        if self.phase is Activity.DOWNLOADING:
            mine, others, names = (
                (self.done_bytes, self.total_bytes),
                (self.seconds_left, self.window_seconds),
                "done_bytes of total_bytes",
            )
        else:
            mine, others, names = (
                (self.seconds_left, self.window_seconds),
                (self.done_bytes, self.total_bytes),
                "seconds_left of window_seconds",
            )
        part, whole = mine
        if part is None or whole is None or others != (None, None):
            raise ValueError(f"{self.phase.value} progress carries {names}, and nothing else")
        if part > whole:
            raise ValueError(f"{names}: {part} is more than {whole}")
        return self


class StatusReport(FrozenModel):
    """One robot's latest report; ``seq`` grows with every report so stale ones can be ignored."""

    format: Literal["fleetcd.dev/status/v1"]
    device: SafeName
    seq: Seq
    agent_version: Annotated[str, StringConstraints(max_length=64)]
    reported_at: Timestamp
    bundle_serial: Annotated[int, Field(strict=True, ge=0, le=MAX_BUNDLE_SERIAL)] | None = None
    # The trust-root version the robot holds (verified last): after a rotation, who has not moved on.
    trust_version: Annotated[int, Field(strict=True, ge=1, le=MAX_TRUST_VERSION)] | None = None
    stale: bool = False  # the robot's bundle expired: it keeps running its last good version
    apps: list[InstalledApp] = Field(default_factory=list, max_length=64)
    deployments: list[DeploymentReport] = Field(default_factory=list, max_length=MAX_DEPLOYMENTS)
    last_error: Message | None = None
    drift: list[DriftedPath] = Field(default_factory=list, max_length=64)  # config files edited locally
    runtime_drift: list[RuntimeDrift] = Field(default_factory=list, max_length=MAX_RUNTIME_DRIFT)
    # Only in reports pushed while a long step runs; a controller from before it never sees the key
    # in any other report (it refuses unknown keys), see _omit_absent_progress.
    progress: Progress | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_progress(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``progress`` key when there is none: such a report's bytes are exactly what agents
        from before progress sent, so older controllers (``extra="forbid"``) keep accepting them."""
        data: dict[str, Any] = handler(self)
        if data.get("progress") is None:
            data.pop("progress", None)
        return data
