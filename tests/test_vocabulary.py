"""The shared vocabulary's wire strings are a public format: journal, status.json, records, audit.

A robot upgraded mid-deployment reads its old journal and a controller reads old records, so these
strings never change; a new member is added here on purpose, never by accident.
"""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from agent.state.journal import JournalFile
from controller.records.model import DeploymentEvent
from fleetcd import reasons
from fleetcd.compat import StrEnum
from fleetcd.reports import DeploymentReport
from fleetcd.vocabulary import (
    JOURNAL_ACTIVITIES,
    REPORTED_ACTIVITIES,
    Activity,
    ErrorStatus,
    ReportedError,
    Status,
    merged_status,
)

JOURNAL = [
    "idle",
    "downloading",
    "verifying",
    "applying",
    "staged",
    "switched",
    "watching",
    "healthy",
    "rolling_back",
    "rolled_back",
    "failed",
]
REPORTED = [
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

WIRE: dict[type[StrEnum], list[str]] = {
    Activity: sorted(set(JOURNAL) | set(REPORTED)),
    ErrorStatus: ["none", "retrying", "failed"],
    Status: [*REPORTED, "retrying"],
    reasons.RecordReason: [
        "timed_out",
        "superseded",
        "untargeted",
        "decommissioned",
        "aborted",
        "aborted_after_delivery",
    ],
    reasons.IgnoredReport: [
        "unchanged",
        "unknown_value",
        "not_reportable",
        "not_requested",
        "finished",
        "retired",
    ],
    reasons.RefusedClaim: [
        "foreign_deployment",
        "unknown_deployment",
        "mismatched_deployment",
        "duplicate_deployment",
    ],
    reasons.HoldReason: [
        "not_before",
        "maintenance_window",
        "rate_limit",
        "paused",
        "requirement_unmet",
        "required_by_running_app",
        "earlier_wave",
        "earlier_wave_soaking",
        "awaiting_promotion",
        "approval_missing",
        "halted",
        "aborted",
        "stalled",
        "release_withdrawn",
        "due",
    ],
    reasons.EngineReason: [
        "not_before",
        "paused",
        "aborted",
        "failure_threshold_crossed",
        "auto_rollback_disabled",
        "no_previous_release",
        "awaiting_promotion",
        "draining",
        "rollback_started",
        "rollback_finished",
        "on_halt_pause",
        "previous_release_withdrawn",
        "release_withdrawn",
    ],
    reasons.SkipReason: [
        "incompatible_family",
        "incompatible_hardware",
        "decommissioned",
        "unknown",
        "paused",
        "aborted",
        "release_withdrawn",
    ],
}


@pytest.mark.parametrize("enum", list(WIRE), ids=lambda e: e.__name__)
def test_wire_strings_never_change(enum: type[StrEnum]) -> None:
    assert sorted(m.value for m in enum) == sorted(WIRE[enum])


def test_journal_and_report_accept_their_documented_subsets() -> None:
    assert sorted(JOURNAL_ACTIVITIES) == sorted(Activity(v) for v in JOURNAL)
    assert [a.value for a in sorted(REPORTED_ACTIVITIES, key=REPORTED.index)] == REPORTED
    assert [e.value for e in get_args(ReportedError)] == ["none", "retrying", "failed"]


def test_the_report_schema_still_lists_plain_strings() -> None:
    schema = DeploymentReport.model_json_schema()["properties"]
    assert schema["activity"]["enum"] == REPORTED
    assert schema["error"]["enum"] == ["none", "retrying", "failed"]


@pytest.mark.parametrize("state", JOURNAL)
def test_an_old_journal_file_still_loads_and_writes_the_same_bytes(state: str) -> None:
    raw = (
        '{"format":1,"seq":7,"entry":{"deployment_id":"dep-1","version":"1.2.0","previous_version":"1.1.0",'
        f'"state":"{state}","attempts":1,"updated_at":"2024-05-01T12:00:00Z","reason":null}}}}'
    )
    loaded = JournalFile.model_validate_json(raw)
    assert loaded.entry is not None and loaded.entry.state is Activity(state)
    assert f'"state":"{state}"' in loaded.model_dump_json()


@pytest.mark.parametrize("activity", sorted(set(JOURNAL) - set(REPORTED)))
def test_a_robot_only_journal_state_is_not_a_reported_activity(activity: str) -> None:
    claim = {
        "deployment_id": "dep-" + "0" * 24,
        "app": "nav",
        "version": "1.0.0",
        "activity": activity,
        "updated_at": "2024-05-01T12:00:00Z",
    }
    with pytest.raises(ValidationError):
        DeploymentReport.model_validate_json(__import__("json").dumps(claim))
    with pytest.raises(ValidationError):
        DeploymentEvent.model_validate({"at": "2024-05-01T12:00:00Z", "activity": activity, "error": "none"})


@pytest.mark.parametrize("activity", REPORTED)
def test_an_old_record_event_round_trips(activity: str) -> None:
    event = DeploymentEvent.model_validate(
        {"at": "2024-05-01T12:00:00Z", "activity": activity, "error": "none"}
    )
    assert event.model_dump(mode="json")["activity"] == activity
    assert merged_status(event.activity, ErrorStatus.NONE).value == activity
    assert merged_status(event.activity, ErrorStatus.RETRYING) is Status.RETRYING
