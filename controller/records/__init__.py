"""Deployment records: deterministic ids, the record model and its one-way transitions (pure).

The reconcile's *ingest* and *plan* steps use these; none of it does I/O or reads a clock.
"""

from __future__ import annotations

from controller.records.ids import Generation, deployment_id, generation_fingerprint, rollout_generation
from controller.records.model import (
    Action,
    Connectivity,
    DeploymentEvent,
    DeploymentRecord,
    DeviceState,
    Outcome,
    TargetStatus,
    connectivity,
    is_failure,
    is_success,
    is_terminal,
    outcome,
)
from controller.records.transitions import (
    apply_report,
    archive,
    judge_report,
    new_deployment,
    set_target,
    time_out,
)
from fleetcd.reasons import IgnoredReport, RecordReason
from fleetcd.vocabulary import Activity, ErrorStatus, Status, merged_status

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
