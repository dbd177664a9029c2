"""Live progress, end to end: a real agent downloads from a real, slow HTTP server and watches a real
app, pushing reports with ``progress`` at a bounded rate while it does; the real controller ingests
them and shows them on STATUS.md, status.html and ``fleetcd get devices`` instead of "queued", and
the report that ends the cycle clears them. The rate bound itself is counted over a scripted
download (agent.report.progress with a scripted clock), not timed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.loop import CycleResult
from agent.report.progress import ProgressReporter, progress_due
from controller.cli import build
from controller.records.progress import progress_text
from fleetcd.cli.main import run
from fleetcd.git.refs import status_ref
from fleetcd.reports import Progress, StatusReport
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.agent import APP, DEVICE, AgentWorld

EVERY_S = 1  # poll.progress_seconds in the end-to-end tests
DOWNLOAD_S = 4  # how long the slow server takes to send the tarball
WATCH_S = 3  # the release's health watch window
DEP = "dep-" + "ab" * 12


# --- the rate bound, counted over a scripted download --------------------------------------------


class ScriptedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A push that records what it was given (and may fail or block)."""

    def __init__(self, *, fail: bool = False, block: threading.Event | None = None) -> None:
        self.reports: list[StatusReport] = []
        self.fail = fail
        self.block = block
        self.lock = threading.Lock()

    def __call__(self, report: StatusReport) -> None:
        with self.lock:
            self.reports.append(report)
        if self.block is not None:
            self.block.wait(30)
        if self.fail:
            raise OSError("the cellular link dropped")


def build_report(progress: Progress, seq: int) -> StatusReport:
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": DEVICE,
            "seq": seq,
            "agent_version": "test",
            "reported_at": "2026-05-04T09:00:00Z",
            "progress": progress.model_dump(mode="json"),
        }
    )


def reporter(push: Recorder, clock: ScriptedClock, every: float = 10) -> ProgressReporter:
    return ProgressReporter(every, build_report, push, first_seq=7, monotonic=clock)


def download(rep: ProgressReporter, clock: ScriptedClock, chunks: int, seconds_per_chunk: float) -> None:
    """A scripted slow download: ``chunks`` chunks of 1 KiB, the clock moving on between them."""
    rep.begin(DEP, Activity.DOWNLOADING, total_bytes=chunks * 1024)
    for i in range(1, chunks + 1):
        clock.now += seconds_per_chunk
        rep.downloaded("app", i * 1024)
        time.sleep(0)  # let a finished push thread end, as the real download's I/O does
    rep.end()


def test_progress_pushes_over_a_scripted_slow_download_keep_the_rate_bound() -> None:
    clock, push = ScriptedClock(), Recorder()
    rep = reporter(push, clock, every=10)

    download(rep, clock, chunks=1000, seconds_per_chunk=0.1)  # 100 s of download
    last_seq = rep.close()

    assert 1 <= len(push.reports) <= 100 // 10
    seqs = [r.seq for r in push.reports]
    assert seqs == list(range(7, 7 + len(seqs))) and last_seq == seqs[-1]
    done = [r.progress.done_bytes for r in push.reports if r.progress is not None]
    assert done == sorted(done) and all(d < 1000 * 1024 for d in done)  # all mid-download
    assert {r.progress.total_bytes for r in push.reports if r.progress} == {1000 * 1024}


@pytest.mark.parametrize(
    ("now", "started", "last", "every", "due"),
    [
        (5.0, 0.0, None, 10, False),  # not that long into the phase yet
        (10.0, 0.0, None, 10, True),
        (15.0, 0.0, 8.0, 10, False),  # the last push was too recent
        (18.0, 0.0, 8.0, 10, True),
        (100.0, 0.0, None, 0, False),  # progress_seconds 0: never
    ],
    ids=["early", "first", "too-soon", "next", "off"],
)
def test_progress_due_decision_table(
    now: float, started: float, last: float | None, every: int, due: bool
) -> None:
    assert progress_due(now, started, last, every) is due


def test_a_short_download_costs_no_progress_push() -> None:
    clock, push = ScriptedClock(), Recorder()
    rep = reporter(push, clock, every=10)

    download(rep, clock, chunks=50, seconds_per_chunk=0.1)  # 5 s: shorter than the interval

    assert rep.close() == 6 and push.reports == []  # nothing used: the cycle's report takes seq 7


def test_a_failed_progress_push_is_dropped_and_not_retried_this_cycle() -> None:
    clock, push = ScriptedClock(), Recorder(fail=True)
    rep = reporter(push, clock, every=10)

    download(rep, clock, chunks=1000, seconds_per_chunk=0.1)
    rep.close()

    assert len(push.reports) == 1
    assert (rep.started, rep.delivered) == (1, 0)


def test_a_hung_progress_push_never_holds_the_download_back() -> None:
    clock, gate = ScriptedClock(), threading.Event()
    push = Recorder(block=gate)
    rep = reporter(push, clock, every=10)

    began = time.monotonic()
    download(rep, clock, chunks=1000, seconds_per_chunk=0.1)  # the first push hangs on the "link"
    took = time.monotonic() - began

    assert took < 5  # every chunk returned at once; the push waited on its own thread
    assert len(push.reports) == 1  # and no second push was started beside the one in flight
    gate.set()
    rep.close()
    assert rep.delivered == 1


def test_watch_progress_says_whole_seconds_left_of_the_window() -> None:
    clock, push = ScriptedClock(), Recorder()
    rep = reporter(push, clock, every=10)
    rep.begin(DEP, Activity.WATCHING, window_seconds=60)

    for left in (59.5, 55.0, 50.2, 49.9):
        clock.now = 1000.0 + 60 - left
        rep.watching(left)
    rep.close()

    (report,) = push.reports
    assert report.progress == Progress(
        deployment_id=DEP, phase=Activity.WATCHING, seconds_left=50, window_seconds=60
    )


def test_calls_outside_their_phase_say_nothing() -> None:
    clock, push = ScriptedClock(), Recorder()
    rep = reporter(push, clock, every=1)
    rep.begin(DEP, Activity.WATCHING, window_seconds=60)
    clock.now += 30
    rep.downloaded("app", 10)  # a download callback during a watch
    rep.end()
    clock.now += 30
    rep.watching(5)  # after the phase ended

    assert rep.close() == 6 and push.reports == []


# --- end to end: real agent, real slow server, real controller -------------------------------------


@pytest.fixture
def slow_world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Any:
    poll = {"interval_seconds": 5, "heartbeat_seconds": 60, "progress_seconds": EVERY_S}
    built = AgentWorld.create(tmp_path, keys, artifacts, agent={"poll": poll})
    yield built
    built.close()


def publish_slowly(world: AgentWorld, version: str = "1.0.0", seconds: int = DOWNLOAD_S) -> int:
    """Publish ``version`` with a health watch of WATCH_S and serve its tarball over ``seconds``."""
    world.publish(version, health=world.health("/healthz", watch_seconds=WATCH_S))
    path = f"/{APP}-{version}.tar.gz"
    body = (world.root / "published" / f"{APP}-{version}.tar.gz").read_bytes()
    world.artifacts.add(path, body, Behaviour(trickle_bytes_per_second=max(1, len(body) // seconds)))
    return len(body)


def server_reports(world: AgentWorld) -> list[StatusReport]:
    """Every report the server accepted on the robot's status ref, oldest first."""
    server, ref = str(world.controller.server), status_ref(DEVICE)
    log = subprocess.run(
        ["git", "-C", server, "rev-list", "--reverse", ref], capture_output=True, text=True, check=False
    )
    reports = []
    for commit in log.stdout.split():
        raw = subprocess.run(
            ["git", "-C", server, "show", f"{commit}:status.json"], capture_output=True, check=True
        ).stdout
        reports.append(StatusReport.model_validate(json.loads(raw)))
    return reports


def in_background(world: AgentWorld) -> tuple[threading.Thread, list[CycleResult]]:
    results: list[CycleResult] = []
    thread = threading.Thread(target=lambda: results.append(world.once()), daemon=True)
    thread.start()
    return thread, results


def wait_for(check: Any, limit_s: float = 30.0) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_robot_pushes_progress_mid_download_and_seconds_left_mid_watch(slow_world: AgentWorld) -> None:
    size = publish_slowly(slow_world)
    dep = slow_world.deployment_id()

    began = time.monotonic()
    result = slow_world.once()
    took = time.monotonic() - began

    assert result.error is None, result.errors
    reports = server_reports(slow_world)
    progress = [r.progress for r in reports if r.progress is not None]
    downloads = [p for p in progress if p.phase is Activity.DOWNLOADING]
    watches = [p for p in progress if p.phase is Activity.WATCHING]
    assert downloads and all(p.deployment_id == dep for p in progress)
    assert any(0 < p.done_bytes < size for p in downloads if p.done_bytes is not None)  # mid-download
    assert {p.total_bytes for p in downloads} == {size}
    assert watches and all(p.window_seconds == WATCH_S for p in watches)
    assert all(p.seconds_left is not None and p.seconds_left < WATCH_S for p in watches)
    # The rate bound: none before EVERY_S into a phase, none within EVERY_S of the last one.
    assert len(progress) <= took / EVERY_S
    # Each progress report claims the phase it measures; the cycle's own report comes last, above
    # every progress report's seq, and carries none.
    for report in reports:
        if report.progress is not None:
            (claim,) = [d for d in report.deployments if d.deployment_id == dep]
            assert claim.activity is report.progress.phase
    assert reports[-1].progress is None and reports[-1].seq == max(r.seq for r in reports)
    assert result.report is not None and result.report.seq == reports[-1].seq


def fleetcd_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = run(build(), list(args))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_the_controller_shows_a_robots_download_on_all_three_surfaces_then_its_outcome(
    slow_world: AgentWorld, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    publish_slowly(slow_world, seconds=3 * DOWNLOAD_S)  # the controller reconciles mid-download
    dep = slow_world.deployment_id()
    remote = ["--repo", str(slow_world.controller.server), "--cache", str(tmp_path / "ops-cache")]

    thread, results = in_background(slow_world)
    wait_for(lambda: any(r.progress is not None for r in server_reports(slow_world)))
    slow_world.reconcile()
    state = slow_world.controller.state()
    thread.join(60)

    stored = state.devices[DEVICE].state.progress
    assert stored is not None and stored.deployment_id == dep
    assert stored.phase is Activity.DOWNLOADING and stored.done_bytes < stored.total_bytes  # type: ignore[operator]
    words = progress_text(stored)  # e.g. "downloading 41 % (303/739 B)"
    assert words.startswith("downloading ") and "queued" not in words
    row = next(line for line in state.files["STATUS.md"].decode().splitlines() if f"`{DEVICE}`" in line)
    assert words in row and "queued" not in row
    html = state.files["status.html"].decode()
    assert "in progress</th>" in html and words in html
    # get devices reads the same state branch: the same words, and the numbers in JSON.
    table = fleetcd_cli(capsys, "get", "devices", *remote)
    assert words in table
    (row_json,) = json.loads(fleetcd_cli(capsys, "get", "devices", *remote, "-o", "json"))
    assert row_json["apps"][APP]["latest"]["progress"]["text"] == words

    # The cycle's own report (deployed, no progress) replaces it everywhere.
    assert results and results[0].error is None, results and results[0].errors
    slow_world.reconcile()
    state = slow_world.controller.state()
    assert state.devices[DEVICE].state.progress is None
    assert slow_world.record(dep).activity is Activity.DEPLOYED
    for page in (state.files["STATUS.md"].decode(), state.files["status.html"].decode()):
        assert "downloading " not in page and "watching health" not in page
    (row_json,) = json.loads(fleetcd_cli(capsys, "get", "devices", *remote, "-o", "json"))
    assert row_json["apps"][APP]["latest"]["progress"] is None
    assert words not in fleetcd_cli(capsys, "get", "devices", *remote)


def test_progress_seconds_zero_turns_progress_reports_off(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    poll = {"interval_seconds": 5, "heartbeat_seconds": 60, "progress_seconds": 0}
    world = AgentWorld.create(tmp_path, keys, artifacts, agent={"poll": poll})
    try:
        publish_slowly(world)
        assert world.once().error is None
        reports = server_reports(world)
        assert reports and all(r.progress is None for r in reports)
        assert len(reports) == 1  # the cycle's own report only
    finally:
        world.close()
