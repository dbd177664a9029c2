"""A robot's ``progress`` on the controller's side: bounded when parsed, kept only when it describes
the robot's own deployment in the phase the same report claims, cleared by the next report without
one, never shown once the deployment moved on, and rendered in words on both status pages and in
``get devices``. Named after what a lying robot tries; the format stays readable by old controllers.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from controller.ingest import ingest
from controller.ingest.reports import ReportRejected, parse_report
from controller.ops.listing import DEVICE_COLUMNS, app_versions
from controller.ops.output import render_table
from controller.pages import render_status_html, render_status_md
from controller.records.model import DeviceState
from controller.records.progress import live_progress, progress_text
from controller.records.transitions import apply_report, time_out
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.models.release import MAX_WATCH_SECONDS
from fleetcd.reasons import Reason
from fleetcd.reports import MAX_PROGRESS_BYTES, Progress, StatusReport
from fleetcd.vocabulary import Activity
from tests.test_ingest import MINE, NOW, OFFLINE_AFTER_S, THEIRS, claim, device_file, report_data
from tests.test_pages import Fleet

MIB = 1024 * 1024
WHERE = "refs/fleetcd/status/amr-001/report:status.json"


def downloading(done: int = 12 * MIB, total: int = 30 * MIB, dep: str = MINE.id) -> dict[str, Any]:
    return {"deployment_id": dep, "phase": "downloading", "done_bytes": done, "total_bytes": total}


def watching(left: int = 85, window: int = 120, dep: str = MINE.id) -> dict[str, Any]:
    return {"deployment_id": dep, "phase": "watching", "seconds_left": left, "window_seconds": window}


def raw(seq: int, progress: dict[str, Any] | None, *claims: dict[str, Any]) -> bytes:
    data = report_data(seq, *(claims or (claim(MINE.id),)))
    if progress is not None:
        data["progress"] = progress
    return json.dumps(data).encode()


def ingested(*reports: bytes) -> Any:
    file = device_file()
    for data in reports:
        file, _, _ = ingest(file, parse_report(data, WHERE), NOW, OFFLINE_AFTER_S)
    return file


# --- bounds: a lying robot's numbers are refused with the report ------------------------------------


@pytest.mark.parametrize(
    ("progress", "reason"),
    [
        (downloading(1, 10**18), Reason.OUT_OF_RANGE),
        (downloading(1, MAX_PROGRESS_BYTES + 1), Reason.OUT_OF_RANGE),
        (downloading(31 * MIB, 30 * MIB), Reason.SCHEMA),
        (downloading(-1, 30 * MIB), Reason.SCHEMA),
        (watching(MAX_WATCH_SECONDS + 1, MAX_WATCH_SECONDS + 1), Reason.OUT_OF_RANGE),
        (watching(90, 60), Reason.SCHEMA),
        ({**downloading(), "seconds_left": 5}, Reason.SCHEMA),
        ({**watching(), "done_bytes": 5}, Reason.SCHEMA),
        ({"deployment_id": MINE.id, "phase": "downloading"}, Reason.SCHEMA),
        ({**downloading(), "phase": "deployed"}, Reason.SCHEMA),
        ({**downloading(), "done_bytes": 1.5}, Reason.SCHEMA),
        ({**downloading(), "deployment_id": "<script>"}, Reason.SCHEMA),
        ({**downloading(), "note": "extra"}, Reason.SCHEMA),
    ],
    ids=[
        "huge-total",
        "total-over-bound",
        "done-above-total",
        "negative-done",
        "window-over-bound",
        "left-above-window",
        "download-with-seconds",
        "watch-with-bytes",
        "download-without-numbers",
        "phase-not-a-long-step",
        "float-bytes",
        "markup-as-id",
        "unknown-key",
    ],
)
def test_progress_a_robot_cannot_send_is_refused_with_its_report(
    progress: dict[str, Any], reason: Reason
) -> None:
    with pytest.raises(ReportRejected) as refused:
        parse_report(raw(1, progress), WHERE)

    assert refused.value.diagnostic.reason is reason
    assert (refused.value.diagnostic.field or "").startswith("progress")


def test_progress_with_huge_total_is_rejected_not_rendered() -> None:
    honest = ingested(raw(1, downloading()))
    with pytest.raises(ReportRejected):
        parse_report(raw(2, downloading(1, 10**18)), WHERE)

    # The refused report changed nothing: the pages still show the last honest numbers.
    fleet = fleet_with(honest.state)
    assert "downloading 40 % (12.0/30.0 MiB)" in render_status_md(fleet.view())
    assert "1000000000000000000" not in render_status_md(fleet.view()) + render_status_html(fleet.view())


# --- what ingest keeps ----------------------------------------------------------------------------


def test_progress_of_the_robots_own_deployment_is_kept_on_its_state() -> None:
    after = ingested(raw(1, downloading()))

    assert after.state.progress == Progress.model_validate(downloading())
    assert after.records[0].activity is Activity.DOWNLOADING


def test_progress_about_another_robots_deployment_is_not_stored() -> None:
    file = device_file()
    data = raw(1, downloading(dep=THEIRS.id), claim(THEIRS.id))

    after, events, rejected = ingest(
        file, parse_report(data, WHERE), NOW, OFFLINE_AFTER_S, owners={THEIRS.id: "amr-002"}
    )

    assert rejected == [THEIRS.id] and after.state.progress is None
    assert [e.reason for e in events if e.reason] == ["foreign_deployment"]


def test_progress_about_a_deployment_the_report_does_not_claim_is_not_stored() -> None:
    other = "dep-" + "cd" * 12
    assert ingested(raw(1, downloading(dep=other))).state.progress is None


def test_progress_for_another_phase_than_the_report_claims_is_not_stored() -> None:
    assert ingested(raw(1, watching(), claim(MINE.id, "downloading"))).state.progress is None
    assert ingested(raw(1, downloading(), claim(MINE.id, "watching"))).state.progress is None


def test_a_later_report_without_progress_clears_it() -> None:
    after = ingested(raw(1, downloading()), raw(2, None, claim(MINE.id, "deployed")))

    assert after.state.progress is None and after.records[0].activity is Activity.DEPLOYED


def test_an_older_progress_report_arriving_late_changes_nothing() -> None:
    final = ingested(raw(1, downloading()), raw(3, None, claim(MINE.id, "deployed")))

    late, events, _ = ingest(final, parse_report(raw(2, downloading()), WHERE), NOW, OFFLINE_AFTER_S)

    assert late is final and events == []


def test_progress_of_a_settled_deployment_is_never_shown() -> None:
    stored = ingested(raw(1, downloading()))
    record = stored.records[0]
    progress = stored.state.progress

    assert live_progress(progress, record) == progress
    overdue = record.model_copy(update={"deadline_at": NOW - timedelta(minutes=1)})
    assert live_progress(progress, time_out(overdue, NOW)) is None  # the controller gave up on it
    assert live_progress(progress, apply_report(record, "verifying", "none", "", NOW)) is None
    assert live_progress(progress, THEIRS) is None


# --- the format stays readable both ways ---------------------------------------------------------


def test_a_report_without_progress_has_no_progress_key_so_old_controllers_accept_it() -> None:
    report = parse_report(raw(1, None), WHERE)

    encoded = json.loads(canonical_bytes(report))

    assert "progress" not in encoded
    assert report.progress is None  # and a report of an agent from before progress parses as before


def test_a_report_with_progress_round_trips() -> None:
    report = parse_report(raw(1, watching()), WHERE)

    assert StatusReport.model_validate_json(canonical_bytes(report)) == report


# --- words on the pages and in get devices ----------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "words"),
    [
        (downloading(int(12.31 * MIB), 30 * MIB), "downloading 41 % (12.3/30.0 MiB)"),
        (downloading(0, 700), "downloading 0 % (0/700 B)"),
        (downloading(3 * 1024, 4 * 1024), "downloading 75 % (3.0/4.0 KiB)"),
        (downloading(2 * 1024**3 - 1, 2 * 1024**3), "downloading 99 % (2.0/2.0 GiB)"),
        (watching(85, 120), "watching health, 85 s left"),
    ],
    ids=["mib", "bytes", "kib", "never-100-before-done", "watching"],
)
def test_progress_words(progress: dict[str, Any], words: str) -> None:
    assert progress_text(Progress.model_validate(progress)) == words


def fleet_with(state: DeviceState, record_kind: str = "downloading") -> Fleet:
    """One rollout whose robot ``canary-00000`` downloads; ``state``'s progress moved onto its record."""
    fleet = Fleet()
    fleet.add_rollout(
        "nav", RolloutPhase.PROGRESSING, [("canary", "canary", WavePhase.RUNNING, [record_kind])]
    )
    (device,) = fleet.files
    file = fleet.files[device]
    progress = state.progress
    if progress is not None and file.records:
        progress = progress.model_copy(update={"deployment_id": file.records[0].id})
    fleet.files[device] = file.model_copy(
        update={"state": file.state.model_copy(update={"progress": progress})}
    )
    return fleet


def test_both_pages_show_the_download_instead_of_queued() -> None:
    fleet = fleet_with(DeviceState(device="x", progress=Progress.model_validate(downloading())))

    md, html = render_status_md(fleet.view()), render_status_html(fleet.view())

    (row,) = [line for line in md.splitlines() if line.startswith("| `canary-00000`")]
    assert "downloading 40 % (12.0/30.0 MiB)" in row and "queued" not in row
    assert "in progress</th>" in html and "downloading 40 % (12.0/30.0 MiB)" in html


def test_pages_show_no_progress_for_a_robot_whose_deployment_finished() -> None:
    fleet = fleet_with(DeviceState(device="x", progress=Progress.model_validate(downloading())), "deployed")

    md, html = render_status_md(fleet.view()), render_status_html(fleet.view())

    assert "downloading 40 %" not in md + html and "in progress</th>" not in html


def test_get_devices_shows_the_watch_with_its_seconds_left() -> None:
    after = ingested(raw(1, watching(), claim(MINE.id, "watching")))

    apps = app_versions(after.records, after.state)
    table = render_table([{**ROW, "apps": apps}], DEVICE_COLUMNS)

    assert apps["nav"]["latest"]["progress"] == {
        "phase": "watching",
        "done_bytes": None,
        "total_bytes": None,
        "seconds_left": 85,
        "window_seconds": 120,
        "text": "watching health, 85 s left",
    }
    assert "nav - (1.1.0 watching health, 85 s left)" in table
    assert app_versions(after.records)["nav"]["latest"]["progress"] is None  # no state: no words


ROW = {
    "id": "amr-001",
    "site": "berlin",
    "declared": True,
    "decommissioned": False,
    "connectivity": "online",
    "last_seen": None,
    "desired": {"serial": 3, "state": None, "reason": None},
    "trust": {"version": None, "behind": False},
    "drift": [],
}
