"""Deployment records: deterministic ids, the record model and its one-way transitions (pure).

The reconcile's *ingest* and *plan* steps use these; none of it does I/O or reads a clock.
"""

from __future__ import annotations

from controller.records.ids import Generation, deployment_id, generation_fingerprint, rollout_generation
from controller.records.model import (
    Action,
    Activity,
    Connectivity,
    DeploymentEvent,
    DeploymentRecord,
    DeviceState,
    ErrorStatus,
    Outcome,
    RecordReason,
    Status,
    TargetStatus,
    connectivity,
    is_failure,
    is_success,
    is_terminal,
    merged_status,
    outcome,
)
from controller.records.transitions import (
    IgnoredReport,
    apply_report,
    archive,
    judge_report,
    new_deployment,
    set_target,
    time_out,
)

__all__ = [
    "Action",
    "Activity",
    "Connectivity",
    "DeploymentEvent",
    "DeploymentRecord",
    "DeviceState",
    "ErrorStatus",
    "Generation",
    "IgnoredReport",
    "Outcome",
    "RecordReason",
    "Status",
    "TargetStatus",
    "apply_report",
    "archive",
    "connectivity",
    "deployment_id",
    "generation_fingerprint",
    "is_failure",
    "is_success",
    "is_terminal",
    "judge_report",
    "merged_status",
    "new_deployment",
    "outcome",
    "rollout_generation",
    "set_target",
    "time_out",
]
