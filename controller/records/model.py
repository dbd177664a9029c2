"""Deployment records: what the controller knows about one release going to one robot (pure).

One record per device per rollout generation (DESIGN §3, Miru semantics). Three axes, each a str
Enum stored on the state branch (activity, error and the merged status are the shared vocabulary,
:mod:`fleetcd.vocabulary`; the controller's reasons are :class:`fleetcd.reasons.RecordReason`):

* ``target_status`` — what the controller wants: ``staged`` (install into the inactive slot and wait,
  blue/green), ``deployed`` (switch and run it), ``archived`` (retired). One-way, in that order.
* ``activity`` — what the robot last reported doing (a :data:`~fleetcd.vocabulary.ReportedActivity`,
  never one of the robot-only journal states). ``staged`` is our addition to the DESIGN list:
  blue/green needs a name for "installed in the inactive slot, waiting for the switch".
* ``error`` — ``none``, ``retrying`` (a transient failure; the robot will try again) or ``failed``.

The merged :attr:`DeploymentRecord.status` is the error when there is one, else the activity.
Deployments are one-time use: once *terminal* (:func:`is_terminal`) a record never goes back to work.
Models only: the transitions live in :mod:`controller.records.transitions`. No I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    model_validator,
)

from controller.records.ids import DEPLOYMENT_ID_PATTERN
from fleetcd.compat import UTC, StrEnum
from fleetcd.desired.configset import MAX_CONFIG_LAYERS
from fleetcd.models.base import SafeName, SemVer, Sha256
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.reports import Progress
from fleetcd.vocabulary import Activity, ErrorStatus, ReportedActivity, Status, merged_status

MAX_EVENTS = 50  # per record: enough for a retry storm's tail, bounded so records stay small
MESSAGE_MAX_CHARS = 500  # robots' messages are untrusted; longer ones are cut, never rejected

DeploymentId = Annotated[str, StringConstraints(pattern=DEPLOYMENT_ID_PATTERN)]
RepoPathText = Annotated[str, StringConstraints(min_length=1, max_length=512)]
CommitId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40,64}$")]
Message = Annotated[str, StringConstraints(max_length=MESSAGE_MAX_CHARS)]


class TargetStatus(StrEnum):
    STAGED = "staged"
    DEPLOYED = "deployed"
    ARCHIVED = "archived"

    @property
    def rank(self) -> int:
        return list(TargetStatus).index(self)


class Action(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    STAGE = "stage"


# Outcomes the robot cannot undo by reporting again (one-time use). ``archived`` is final as well.
SETTLED_ACTIVITIES = frozenset(
    {Activity.DEPLOYED, Activity.DRIFTED, Activity.FAILED, Activity.ROLLED_BACK, Activity.ARCHIVED}
)


class _Record(BaseModel):
    # Not strict: records round-trip through JSON/YAML on the state branch as plain strings.
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeploymentEvent(_Record):
    at: AwareDatetime
    activity: ReportedActivity
    error: ErrorStatus
    message: Message = ""


class DeploymentRecord(_Record):
    id: DeploymentId
    rollout: SafeName
    generation: int = Field(ge=1)
    device: SafeName
    app: SafeName
    version: SemVer
    release_sha256: Sha256
    # What the deployment delivers besides the release: the config files that apply to the robot,
    # in precedence order, and the sha256 of their merge (fleetcd.desired.configset.merged_sha256).
    # Part of the id: a config change is a new deployment. None: no config file applies (or, with
    # no ``commit``, a record written before records carried config: its bundle merges the layers
    # that apply today, as far as its evidence snapshot holds them).
    config_sha256: Sha256 | None = None
    config_files: tuple[RepoPathText, ...] = Field(default=(), max_length=MAX_CONFIG_LAYERS)
    # The main commit whose signed files (rollout, approvals, release, config set) this deployment
    # delivers: an older generation's robots keep getting exactly those bytes. None: older records.
    commit: CommitId | None = None
    wave: int = Field(ge=0)
    action: Action
    target_status: TargetStatus
    activity: ReportedActivity = Activity.QUEUED
    error: ErrorStatus = ErrorStatus.NONE
    attempts: int = Field(default=0, ge=0)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deadline_at: AwareDatetime | None = None
    reason: str | None = None
    events: tuple[DeploymentEvent, ...] = Field(default=(), max_length=MAX_EVENTS)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived_status(cls, data: Any) -> Any:
        # ``status`` is written out for readers but always recomputed: a stored value is never trusted.
        if isinstance(data, dict) and "status" in data:
            return {k: v for k, v in data.items() if k != "status"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Status:
        return merged_status(self.activity, self.error)


class Outcome(StrEnum):
    """Where a deployment stands, for wave statistics and receipts."""

    PENDING = "pending"  # queued, the robot has not started
    IN_PROGRESS = "in_progress"
    STAGED = "staged"  # installed in the inactive slot, waiting for the switch
    SUCCEEDED = "succeeded"  # deployed (drifted still counts: the release did go live)
    FAILED = "failed"  # failed, rolled back, or timed out
    RETIRED = "retired"  # archived before it finished, or being removed


def outcome(record: DeploymentRecord) -> Outcome:
    activity = record.activity
    if record.error is ErrorStatus.FAILED or activity in (Activity.FAILED, Activity.ROLLED_BACK):
        return Outcome.FAILED
    if activity in (Activity.DEPLOYED, Activity.DRIFTED):
        return Outcome.SUCCEEDED
    if activity in (Activity.ARCHIVED, Activity.REMOVING) or record.target_status is TargetStatus.ARCHIVED:
        return Outcome.RETIRED
    if activity is Activity.STAGED:
        return Outcome.STAGED
    if activity is Activity.QUEUED:
        return Outcome.PENDING
    return Outcome.IN_PROGRESS


def is_terminal(record: DeploymentRecord) -> bool:
    """True once the deployment's outcome is fixed: it will never be worked on again."""
    return (
        record.activity in SETTLED_ACTIVITIES
        or record.error is ErrorStatus.FAILED
        or record.target_status is TargetStatus.ARCHIVED
    )


def is_success(record: DeploymentRecord) -> bool:
    return outcome(record) is Outcome.SUCCEEDED


def is_failure(record: DeploymentRecord) -> bool:
    """Failed, rolled back, or timed out (the controller marks a silent robot failed)."""
    return outcome(record) is Outcome.FAILED


class Connectivity(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # never reported


class DeviceState(_Record):
    """What the controller last heard from a robot, as stored beside its records."""

    device: SafeName
    connectivity: Connectivity = Connectivity.UNKNOWN
    last_seen: AwareDatetime | None = None
    # The trust-root version its last report says it holds; a change is an audit event (the robot
    # moved to a rotated trust root), and ``get devices`` shows who still holds an older one.
    trust_version: int | None = Field(default=None, ge=1, le=MAX_TRUST_VERSION)
    # How far its long step was (a download's bytes, a watch's seconds left) in its report seen at
    # ``last_seen``; None once a later report carries none (controller.records.progress).
    progress: Progress | None = None


def connectivity(last_seen: datetime | None, now: datetime, offline_after_seconds: float) -> Connectivity:
    """Online when the robot reported within ``offline_after_seconds`` of ``now``."""
    if last_seen is None:
        return Connectivity.UNKNOWN
    age = (now.astimezone(UTC) - last_seen.astimezone(UTC)).total_seconds()
    return Connectivity.ONLINE if age <= offline_after_seconds else Connectivity.OFFLINE
