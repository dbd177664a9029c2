"""The robot's status report: what an agent pushes to its own status ref, what the controller ingests.

Shared format (``refs/fleetcd/status/<device>/report``, file ``status.json``): the agent writes it
after every step that matters and as a heartbeat; the controller reads it as *untrusted* input
(a robot may only speak for itself, and only about deployments the controller gave it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from fleetcd.models.base import FrozenModel, SafeName, SemVer

STATUS_FORMAT = "fleetcd.dev/status/v1"
STATUS_FILE = "status.json"
MAX_REPORT_BYTES = 256 * 1024
MAX_DEPLOYMENTS = 20
MAX_EVENTS = 20
MESSAGE_MAX = 500

Message = Annotated[str, StringConstraints(max_length=MESSAGE_MAX)]
ReportedActivity = Literal[
    "queued",
    "downloading",
    "verifying",
    "applying",
    "watching",
    "staged",
    "deployed",
    "rolled_back",
    "failed",
    "drifted",
    "removing",
    "archived",
]
ReportedError = Literal["none", "retrying", "failed"]
Timestamp = Annotated[datetime, Field(strict=False)]
DriftedPath = Annotated[str, StringConstraints(max_length=512)]


class ReportEvent(FrozenModel):
    at: Timestamp
    activity: ReportedActivity
    error: ReportedError = "none"
    message: Message = ""


class DeploymentReport(FrozenModel):
    """The robot's view of one deployment it was given (by the controller's deterministic id)."""

    deployment_id: Annotated[str, StringConstraints(pattern=r"^dep-[0-9a-f]{24}$")]
    app: SafeName
    version: SemVer
    activity: ReportedActivity
    error: ReportedError = "none"
    message: Message = ""
    updated_at: Timestamp
    events: list[ReportEvent] = Field(default_factory=list, max_length=MAX_EVENTS)


class InstalledApp(FrozenModel):
    app: SafeName
    current: SemVer | None = None
    previous: SemVer | None = None


class StatusReport(FrozenModel):
    """One robot's latest report; ``seq`` grows with every report so stale ones can be ignored."""

    format: Literal["fleetcd.dev/status/v1"]
    device: SafeName
    seq: int = Field(ge=0)
    agent_version: Annotated[str, StringConstraints(max_length=64)]
    reported_at: Timestamp
    bundle_serial: int | None = Field(default=None, ge=0)
    stale: bool = False  # the robot's bundle expired: it keeps running its last good version
    apps: list[InstalledApp] = Field(default_factory=list, max_length=64)
    deployments: list[DeploymentReport] = Field(default_factory=list, max_length=MAX_DEPLOYMENTS)
    last_error: Message | None = None
    drift: list[DriftedPath] = Field(default_factory=list, max_length=64)  # config files edited locally
