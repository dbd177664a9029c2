"""The robot's status report assembled from its journals (agent.report.status), journals on a real disk.

What the controller learns of a robot is this report, so each table below checks a way it could lie
or go silent: a journal state mapped to the wrong activity, a retry hidden, a deployment of an
earlier bundle reported as if current, events of one deployment carried into another, a corrupt
journal or an engine that does not answer stopping the whole report, an offline robot reporting
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from agent.converge.apply import AppOutcome
from agent.converge.context import Assignment
from agent.converge.machine import ActionKind, reported
from agent.errors import CorruptState
from agent.executors.base import Executor
from agent.report.status import deployment_report, load_status, status_report
from agent.state.journal import Journal, JournalEntry
from agent.state.migrations import Ledger, MigrationLedger, MigrationRun
from agent.sync.accept import Desired
from fleetcd.compat import UTC
from fleetcd.reports import MESSAGE_MAX, DeploymentReport, ReportEvent, StatusReport
from fleetcd.vocabulary import (
    JOURNAL_ACTIVITIES,
    REPORTED_ACTIVITIES,
    Activity,
    ErrorStatus,
    MigrationState,
    ReportedActivity,
)

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
DEP = "dep-" + "a" * 24
OTHER_DEP = "dep-" + "b" * 24


def entry(state: Activity = Activity.HEALTHY, **fields: Any) -> JournalEntry:
    values: dict[str, Any] = {
        "deployment_id": DEP,
        "version": "1.1.0",
        "previous_version": "1.0.0",
        "state": state,
        "attempts": 1,
        "updated_at": NOW,
        **fields,
    }
    return JournalEntry.model_validate(values)


# --- journal state → reported (activity, error): the table the controller relies on -------------------

NONE, RETRYING, FAILED = ErrorStatus.NONE, ErrorStatus.RETRYING, ErrorStatus.FAILED


@pytest.mark.parametrize(
    ("state", "reason", "deferred", "expected"),
    [
        (Activity.IDLE, None, False, (Activity.QUEUED, NONE)),
        (Activity.IDLE, "waiting", False, (Activity.QUEUED, NONE)),
        (Activity.DOWNLOADING, None, False, (Activity.DOWNLOADING, NONE)),
        (Activity.DOWNLOADING, "connection reset", False, (Activity.DOWNLOADING, RETRYING)),
        (Activity.VERIFYING, None, False, (Activity.VERIFYING, NONE)),
        (Activity.VERIFYING, "gate closed: not docked", True, (Activity.QUEUED, RETRYING)),
        (Activity.VERIFYING, "sha256 mismatch", False, (Activity.VERIFYING, RETRYING)),
        (Activity.APPLYING, None, False, (Activity.APPLYING, NONE)),
        (Activity.APPLYING, "disk full", False, (Activity.APPLYING, RETRYING)),
        (Activity.STAGED, None, False, (Activity.STAGED, NONE)),
        (Activity.SWITCHED, None, False, (Activity.WATCHING, NONE)),
        (Activity.WATCHING, None, False, (Activity.WATCHING, NONE)),
        (Activity.WATCHING, "probe failed once", False, (Activity.WATCHING, RETRYING)),
        (Activity.HEALTHY, None, False, (Activity.DEPLOYED, NONE)),
        (Activity.ROLLING_BACK, None, False, (Activity.WATCHING, RETRYING)),
        (Activity.ROLLED_BACK, "probe failed", False, (Activity.ROLLED_BACK, FAILED)),
        (Activity.FAILED, "no previous version", False, (Activity.FAILED, FAILED)),
    ],
    ids=lambda v: v.value if isinstance(v, Activity) else None,
)
def test_each_journal_state_is_reported_as_the_controller_reads_it(
    state: Activity, reason: str | None, deferred: bool, expected: tuple[Activity, ErrorStatus]
) -> None:
    first_deferred_at = NOW - timedelta(minutes=5) if deferred else None
    assert reported(entry(state, reason=reason, first_deferred_at=first_deferred_at)) == expected


@pytest.mark.parametrize("state", sorted(JOURNAL_ACTIVITIES), ids=str)
def test_every_journal_state_maps_to_a_reportable_activity(state: Activity) -> None:
    for reason in (None, "why"):
        activity, error = reported(entry(state, reason=reason))
        assert activity in REPORTED_ACTIVITIES
        assert activity not in (Activity.REMOVING, Activity.ARCHIVED), "only the controller retires"
        assert isinstance(error, ErrorStatus)


def test_a_rolling_back_robot_never_reports_deployed_or_success() -> None:
    activity, error = reported(entry(Activity.ROLLING_BACK))
    assert (activity, error) != (Activity.DEPLOYED, NONE)


# --- deployment_report --------------------------------------------------------------------------------


def event(
    activity: ReportedActivity, error: ErrorStatus = NONE, minutes: int = 0, message: str = ""
) -> ReportEvent:
    return ReportEvent(at=NOW + timedelta(minutes=minutes), activity=activity, error=error, message=message)


def test_a_report_carries_on_the_events_of_the_same_deployment() -> None:
    earlier = deployment_report("nav", entry(Activity.DOWNLOADING), None, (event(Activity.DOWNLOADING),))
    later = deployment_report("nav", entry(Activity.HEALTHY), earlier, (event(Activity.DEPLOYED, minutes=3),))
    assert [e.activity for e in later.events] == [Activity.DOWNLOADING, Activity.DEPLOYED]
    assert (later.activity, later.error, later.version) == (Activity.DEPLOYED, NONE, "1.1.0")


def test_events_of_another_deployment_are_not_carried_over() -> None:
    other = deployment_report(
        "nav",
        entry(Activity.FAILED, deployment_id=OTHER_DEP, reason="x"),
        None,
        (event(Activity.FAILED, FAILED),),
    )
    fresh = deployment_report("nav", entry(Activity.DOWNLOADING), other, (event(Activity.DOWNLOADING),))
    assert [e.activity for e in fresh.events] == [Activity.DOWNLOADING]


def test_a_resumed_state_is_not_news() -> None:
    first = deployment_report("nav", entry(Activity.WATCHING), None, (event(Activity.WATCHING),))
    again = deployment_report("nav", entry(Activity.WATCHING), first, (event(Activity.WATCHING, minutes=1),))
    assert len(again.events) == 1
    retry = deployment_report(
        "nav", entry(Activity.WATCHING, reason="probe"), again, (event(Activity.WATCHING, RETRYING, 2),)
    )
    assert [(e.activity, e.error) for e in retry.events] == [
        (Activity.WATCHING, NONE),
        (Activity.WATCHING, RETRYING),
    ]


def test_config_drift_on_a_deployed_app_reports_drifted_once() -> None:
    drifted = deployment_report("nav", entry(Activity.HEALTHY), None, (), drifted=True)
    assert drifted.activity is Activity.DRIFTED
    assert [e.activity for e in drifted.events] == [Activity.DRIFTED]
    again = deployment_report("nav", entry(Activity.HEALTHY), drifted, (), drifted=True)
    assert [e.activity for e in again.events] == [Activity.DRIFTED], "drift is said once, not every cycle"


def test_drift_during_a_deployment_does_not_hide_its_progress() -> None:
    report = deployment_report("nav", entry(Activity.APPLYING), None, (), drifted=True)
    assert report.activity is Activity.APPLYING
    assert report.events == []


def test_drift_repaired_goes_back_to_deployed() -> None:
    drifted = deployment_report("nav", entry(Activity.HEALTHY), None, (), drifted=True)
    repaired = deployment_report("nav", entry(Activity.HEALTHY), drifted, (), drifted=False)
    assert repaired.activity is Activity.DEPLOYED


def test_a_long_reason_is_clipped_to_the_message_bound() -> None:
    report = deployment_report("nav", entry(Activity.FAILED, reason="x" * 1999), None, ())
    assert len(report.message) == MESSAGE_MAX
    assert report.message.endswith("…")


# --- status_report over real journal files ------------------------------------------------------------


@dataclass
class Engine:
    """Only what the report asks of an executor: the active version, or an engine that fails."""

    versions: dict[str, str] = field(default_factory=dict)
    down: bool = False

    def active(self, app: str) -> str | None:
        if self.down:
            raise ConnectionRefusedError("docker.sock: connection refused")
        return self.versions.get(app)


@dataclass
class Robot:
    root: Path
    engine: Engine | None = None
    journals: dict[str, Journal] = field(default_factory=dict)

    def journal(self, app: str, value: JournalEntry | None = None, raw: bytes | None = None) -> Journal:
        folder = self.root / "journal"
        folder.mkdir(parents=True, exist_ok=True)
        journal = Journal(folder / f"{app}.json")
        if value is not None:
            journal.record(value)
        if raw is not None:
            journal.path.write_bytes(raw)
        self.journals[app] = journal
        return journal

    def report(
        self,
        desired: Desired | None = None,
        outcomes: dict[str, AppOutcome] | None = None,
        previous: StatusReport | None = None,
        drift: dict[str, list[str]] | None = None,
        last_error: str | None = None,
    ) -> StatusReport:
        return status_report(
            "amr-1",
            5,
            NOW,
            journals=self.journals,
            executor=cast(Executor, self.engine),
            desired=desired or Desired(),
            outcomes=outcomes or {},
            previous=previous,
            drift=drift or {},
            last_error=last_error,
        )


@dataclass(frozen=True)
class _Given:
    deployment_id: str


@dataclass(frozen=True)
class _Assigned:
    deployment: _Given


def bundle_naming(**apps: str) -> Desired:
    """A verified desired state giving each app the deployment id named (what the report reads of it)."""
    assigned = {app: cast(Assignment, _Assigned(_Given(dep))) for app, dep in apps.items()}
    return Desired(assignments=assigned, known=True, serial=7)


@pytest.fixture
def robot(tmp_path: Path) -> Robot:
    return Robot(tmp_path / "state", Engine({"nav": "1.1.0"}))


def test_an_offline_robot_reports_every_journal(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    robot.journal("perception", entry(Activity.DOWNLOADING, deployment_id=OTHER_DEP, previous_version=None))
    report = robot.report(Desired(known=False))
    assert [(d.app, d.activity) for d in report.deployments] == [
        ("nav", Activity.DEPLOYED),
        ("perception", Activity.DOWNLOADING),
    ]
    assert report.bundle_serial is None


def test_a_deployment_the_bundle_no_longer_names_is_not_reported(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    robot.journal("perception", entry(Activity.FAILED, deployment_id=OTHER_DEP, reason="x"))
    report = robot.report(bundle_naming(nav=DEP, perception="dep-" + "c" * 24))
    assert [d.app for d in report.deployments] == ["nav"]
    assert report.bundle_serial == 7


def test_an_app_the_bundle_dropped_is_still_listed_as_installed(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    report = robot.report(bundle_naming())
    assert report.deployments == []
    assert [(a.app, a.current, a.previous) for a in report.apps] == [("nav", "1.1.0", "1.0.0")]


def test_a_corrupt_journal_does_not_stop_the_report(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    robot.journal("broken", raw=b"\x00\x00 not json")
    robot.journal("empty", raw=b"")
    report = robot.report(Desired(known=False))
    assert [d.app for d in report.deployments] == ["nav"]
    assert {a.app for a in report.apps} == {"nav"}


def test_a_journal_with_a_non_controller_deployment_id_is_not_reported(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY, deployment_id="manual-install"))
    report = robot.report(Desired(known=False))
    assert report.deployments == []
    assert [a.app for a in report.apps] == ["nav"]


@pytest.mark.parametrize(
    ("engine", "state", "current", "previous"),
    [
        (Engine({"nav": "1.1.0"}), Activity.HEALTHY, "1.1.0", "1.0.0"),
        (Engine({"nav": "1.0.0"}), Activity.ROLLED_BACK, "1.0.0", None),  # previous equal to current: once
        (Engine({}), Activity.FAILED, None, "1.0.0"),
        (Engine(down=True), Activity.HEALTHY, "1.1.0", "1.0.0"),  # engine down: the journal says healthy
        (Engine(down=True), Activity.APPLYING, None, "1.0.0"),  # engine down mid-apply: not known
        (None, Activity.HEALTHY, None, "1.0.0"),
    ],
    ids=[
        "running",
        "rolled-back",
        "nothing-running",
        "engine-down-healthy",
        "engine-down-applying",
        "no-engine",
    ],
)
def test_installed_versions_come_from_the_engine_else_the_journal(
    tmp_path: Path, engine: Engine | None, state: Activity, current: str | None, previous: str | None
) -> None:
    robot = Robot(tmp_path, engine)
    robot.journal(
        "nav", entry(state, reason="r" if state in (Activity.ROLLED_BACK, Activity.FAILED) else None)
    )
    report = robot.report(Desired(known=False))
    assert [(a.current, a.previous) for a in report.apps] == [(current, previous)]


def test_an_app_with_nothing_installed_and_no_history_is_not_listed(tmp_path: Path) -> None:
    robot = Robot(tmp_path, Engine({}))
    robot.journal("nav", entry(Activity.DOWNLOADING, previous_version=None))
    report = robot.report(Desired(known=False))
    assert report.apps == []
    assert [d.activity for d in report.deployments] == [Activity.DOWNLOADING]


def test_this_cycles_outcome_wins_over_the_journal_on_disk(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.DOWNLOADING))
    done = entry(Activity.HEALTHY)
    outcome = AppOutcome(
        app="nav", action=ActionKind.NONE, reason="", entry=done, events=(event(Activity.DEPLOYED),)
    )
    report = robot.report(Desired(known=False), outcomes={"nav": outcome})
    assert [(d.activity, [e.activity for e in d.events]) for d in report.deployments] == [
        (Activity.DEPLOYED, [Activity.DEPLOYED])
    ]


def test_drift_paths_and_last_error_reach_the_report(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    report = robot.report(
        Desired(known=False, stale=True),
        drift={"nav": ["/etc/nav/b.yaml", "/etc/nav/a.yaml"]},
        last_error="boom",
    )
    assert report.drift == ["/etc/nav/a.yaml", "/etc/nav/b.yaml"]
    assert report.deployments[0].activity is Activity.DRIFTED
    assert (report.stale, report.last_error) == (True, "boom")


def test_the_previous_reports_events_carry_into_the_next(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.DOWNLOADING))
    downloading = AppOutcome(
        "nav", ActionKind.NONE, "", entry(Activity.DOWNLOADING), (event(Activity.DOWNLOADING),)
    )
    first = robot.report(Desired(known=False), outcomes={"nav": downloading})
    healthy = AppOutcome(
        "nav", ActionKind.NONE, "", entry(Activity.HEALTHY), (event(Activity.DEPLOYED, minutes=2),)
    )
    second = robot.report(Desired(known=False), outcomes={"nav": healthy}, previous=first)
    assert [e.activity for e in second.deployments[0].events] == [Activity.DOWNLOADING, Activity.DEPLOYED]


# --- status.json --------------------------------------------------------------------------------------


def test_load_status_round_trips_a_report(tmp_path: Path, robot: Robot) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    report = robot.report(Desired(known=False))
    path = tmp_path / "status.json"
    path.write_text(report.model_dump_json())
    assert load_status(path) == report
    assert load_status(path, strict=True) == report


def test_a_missing_status_file_is_none_even_when_strict(tmp_path: Path) -> None:
    assert load_status(tmp_path / "status.json") is None
    assert load_status(tmp_path / "status.json", strict=True) is None


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"format": "other"}', b"\xff\xfe"], ids=repr)
def test_an_unreadable_status_file_is_none_or_corrupt_state_when_strict(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "status.json"
    path.write_bytes(raw)
    assert load_status(path) is None
    with pytest.raises(CorruptState) as caught:
        load_status(path, strict=True)
    assert caught.value.path == path


def test_a_deployment_report_survives_the_wire_format(robot: Robot) -> None:
    robot.journal("nav", entry(Activity.WATCHING, reason="probe failed once"))
    report = robot.report(Desired(known=False))
    again = StatusReport.model_validate_json(report.model_dump_json())
    (dep,) = again.deployments
    assert isinstance(dep, DeploymentReport)
    assert (dep.activity, dep.error, dep.message) == (Activity.WATCHING, RETRYING, "probe failed once")


def _run(name: str, deployment_id: str, state: MigrationState) -> MigrationRun:
    return MigrationRun(
        name=name, version="1.1.0", deployment_id=deployment_id, timeout_seconds=60, state=state, at=NOW
    )


def _report_with_ledger(robot: Robot, ledger: Ledger) -> StatusReport:
    return status_report(
        "amr-1",
        5,
        NOW,
        journals=robot.journals,
        ledgers={"nav": ledger},
        executor=cast(Executor, robot.engine),
        desired=Desired(known=False),
        outcomes={},
        previous=None,
        drift={},
        last_error=None,
    )


def test_a_deployment_reports_its_own_migrations_in_run_order(robot: Robot, tmp_path: Path) -> None:
    robot.journal("nav", entry(Activity.HEALTHY))
    ledger = Ledger(tmp_path / "migrations" / "nav.json")
    runs = [
        _run("add-column", DEP, MigrationState.APPLIED),
        _run("old-schema", OTHER_DEP, MigrationState.ROLLED_BACK),  # another deployment's: not this one's
        _run("reindex", DEP, MigrationState.FAILED),
    ]
    ledger.save(MigrationLedger(runs=runs))
    (deployment,) = _report_with_ledger(robot, ledger).deployments
    assert [(m.name, m.state) for m in deployment.migrations] == [
        ("add-column", MigrationState.APPLIED),
        ("reindex", MigrationState.FAILED),
    ]


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\x00garbage", b'{"format": 2, "runs": []}'], ids=["empty", "binary", "v2"]
)
def test_a_corrupt_migrations_ledger_does_not_stop_the_report(
    robot: Robot, tmp_path: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The report is how the fleet learns the robot is in trouble: a broken ledger costs only the
    migrations list, with a warning naming the file."""
    robot.journal("nav", entry(Activity.HEALTHY))
    path = tmp_path / "migrations" / "nav.json"
    path.parent.mkdir()
    path.write_bytes(raw)
    (deployment,) = _report_with_ledger(robot, Ledger(path)).deployments
    assert (deployment.app, deployment.activity, deployment.migrations) == ("nav", Activity.DEPLOYED, [])
    assert raw == b"" or str(path) in caplog.text
