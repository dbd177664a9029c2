"""The controller's metrics at their edges, each rendered text checked by real ``promtool check metrics``.

A scripted rollout's metrics are in tests/test_metrics_controller.py. Here, without git: a process
that has counted nothing yet, a fleet with no rollouts and no robots, label values a person or a
robot could make hostile (quotes, backslashes, newlines, ``}`` in a wave name or a rejection
reason) that must come back exactly and never break a scrape, robot ids that must never become
labels, the bound on rejection reasons, and a ``/metrics`` server that survives a scrape that
failed.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.errors import StateConflict
from controller.metrics.exposition import MAX_REJECTION_REASONS, RESULTS, ControllerMetrics
from controller.metrics.serve import MetricsServer, TextfileWriter
from controller.reconcile.result import Observed, ReconcileResult, Repack
from controller.records.model import Connectivity, DeviceState
from controller.state.model import (
    DeviceFile,
    RolloutPhase,
    RolloutState,
    WaveCounts,
    WavePhase,
    WaveState,
)
from fleetcd.compat import UTC
from tests.promtext import by_label, check_metrics, samples, value

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAIN = "3f2a9c1d" * 5
HOSTILE = [
    pytest.param('can"ary', id="quote"),
    pytest.param("back\\slash\\", id="backslash"),
    pytest.param("two\nlines", id="newline"),
    pytest.param('x"} fleetcd_rollouts{phase="completed"} 99\n#', id="injection"),
    pytest.param("wave ünïcødé ✓", id="unicode"),
    pytest.param("", id="empty"),
]


def rollout(
    name: str, waves: tuple[WaveState, ...], phase: RolloutPhase = RolloutPhase.PROGRESSING
) -> RolloutState:
    return RolloutState(
        name=name,
        app="nav",
        version="2.4.0",
        release_path="releases/nav/2.4.0.yaml",
        release_sha256="ab" * 32,
        generation=1,
        generation_fingerprint="f" * 64,
        phase=phase,
        waves=waves,
        commit=MAIN,
        created_at=NOW,
        updated_at=NOW,
    )


def robot(device: str, link: Connectivity = Connectivity.ONLINE) -> DeviceFile:
    return DeviceFile(state=DeviceState(device=device, connectivity=link, last_seen=NOW))


def applied(observed: Observed | None = None, rejected: dict[str, int] | None = None) -> ReconcileResult:
    return ReconcileResult(main=MAIN, state_commit=MAIN, observed=observed, reports_rejected=rejected or {})


def scrape(metrics: ControllerMetrics, promtool: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    check_metrics(promtool, text)
    return samples(text)


def test_a_process_that_counted_nothing_yet_exposes_zeroes_and_no_fleet(promtool: str) -> None:
    found = scrape(ControllerMetrics(push_attempts=3), promtool)

    assert by_label(found, "fleetcd_reconciles_total", "result") == dict.fromkeys(RESULTS, 0.0)
    assert value(found, "fleetcd_reconcile_duration_seconds_count", result="applied") == 0
    assert value(found, "fleetcd_last_successful_reconcile_timestamp_seconds") == 0
    assert by_label(found, "fleetcd_signatures_total", "kind") == {"desired_root": 0.0, "audit_head": 0.0}
    # nothing observed: no fleet gauge claims "0 robots" for a fleet the process has not read
    assert not [
        name for name, _ in found if name.startswith(("fleetcd_rollout", "fleetcd_robots", "fleetcd_wave"))
    ]


def test_a_fleet_with_nothing_in_it_shows_every_phase_and_link_at_zero(promtool: str) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(Observed(rollouts={}, devices={})), 0.01, now=NOW)

    found = scrape(metrics, promtool)

    assert by_label(found, "fleetcd_rollouts", "phase") == {phase.value: 0.0 for phase in RolloutPhase}
    assert by_label(found, "fleetcd_robots", "connectivity") == {link.value: 0.0 for link in Connectivity}
    assert by_label(found, "fleetcd_robot_deployments", "status") == {}
    assert by_label(found, "fleetcd_wave_robots", "state") == {}
    assert value(found, "fleetcd_last_successful_reconcile_timestamp_seconds") == NOW.timestamp()


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_wave_name_comes_back_exactly_and_the_text_still_parses(promtool: str, name: str) -> None:
    wave = WaveState(index=0, name=name, phase=WavePhase.RUNNING, counts=WaveCounts(total=3, in_progress=3))
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(Observed(rollouts={"nav": rollout("nav", (wave,))})), 0.01, now=NOW)

    found = scrape(metrics, promtool)

    assert value(found, "fleetcd_wave_robots", rollout="nav", wave=name, state="in_progress") == 3
    assert value(found, "fleetcd_wave_phase", rollout="nav", wave=name, phase="running") == 1
    # the injection attempt added no sample of its own
    assert by_label(found, "fleetcd_rollouts", "phase")["completed"] == 0
    assert by_label(found, "fleetcd_rollouts", "phase")["progressing"] == 1


@pytest.mark.parametrize("reason", HOSTILE)
def test_a_hostile_rejection_reason_is_one_escaped_label_value(promtool: str, reason: str) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(rejected={reason: 2, "wrong_device": 1}), 0.01, now=NOW)

    found = scrape(metrics, promtool)

    assert by_label(found, "fleetcd_reports_rejected_total", "reason") == {reason: 2.0, "wrong_device": 1.0}


def test_robot_ids_are_counted_never_labelled(promtool: str) -> None:
    devices = {
        "amr-zz-quote": robot("amr-zz-quote"),
        "amr-zz-gone": robot("amr-zz-gone", Connectivity.OFFLINE),
        "amr-zz-retired": robot("amr-zz-retired", Connectivity.OFFLINE),
    }
    metrics = ControllerMetrics(push_attempts=3)
    observed = Observed(rollouts={}, devices=devices, retired=frozenset({"amr-zz-retired"}))
    metrics.observe(applied(observed), 0.01, now=NOW)

    text = metrics.render().decode()
    check_metrics(promtool, text)

    assert "amr-zz" not in text
    links = by_label(samples(text), "fleetcd_robots", "connectivity")
    assert links[Connectivity.ONLINE.value] == 1
    assert links[Connectivity.OFFLINE.value] == 1  # the retired robot is left out


def test_rejection_reasons_beyond_the_bound_make_no_new_series(promtool: str) -> None:
    reasons = {f"reason_{i:03d}": 1 for i in range(MAX_REJECTION_REASONS + 36)}
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(rejected=reasons), 0.01, now=NOW)
    metrics.observe(applied(rejected=reasons), 0.01, now=NOW)

    rejected = by_label(scrape(metrics, promtool), "fleetcd_reports_rejected_total", "reason")

    assert len(rejected) == MAX_REJECTION_REASONS
    assert set(rejected.values()) == {2.0}


def test_a_clock_step_backwards_is_never_a_negative_duration(promtool: str) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(), -4.0, now=NOW)

    found = scrape(metrics, promtool)

    assert value(found, "fleetcd_reconcile_duration_seconds_sum", result="applied") == 0.0
    assert value(found, "fleetcd_reconcile_duration_seconds_count", result="applied") == 1


def test_a_stall_or_a_lost_race_never_moves_the_last_success_time(promtool: str) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    metrics.observe(applied(), 0.1, now=NOW)
    later = NOW + timedelta(minutes=5)
    metrics.observe(ReconcileResult(main=MAIN, stalled="cohorts/x.yaml: bad"), 0.1, now=later)
    metrics.observe(None, 0.1, error=StateConflict("refs/heads/fleetcd/state", "a" * 40, "b" * 40), now=later)

    found = scrape(metrics, promtool)

    assert value(found, "fleetcd_last_successful_reconcile_timestamp_seconds") == NOW.timestamp()
    assert by_label(found, "fleetcd_reconciles_total", "result") == {
        "applied": 1.0,
        "stalled": 1.0,
        "failed": 1.0,
        "idle": 0.0,
    }
    assert value(found, "fleetcd_state_push_retries_total") == 3  # every attempt of the lost race


def test_a_scrape_whose_render_failed_does_not_take_the_server_down() -> None:
    calls: list[int] = []

    def render() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("render broke once")
        return b"fleetcd_up 1\n"

    with MetricsServer("127.0.0.1", 0, render) as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, timeout=10)
        with urllib.request.urlopen(f"{url}?name[]=x", timeout=10) as answer:
            assert answer.status == 200 and answer.read() == b"fleetcd_up 1\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_metrics_server_serves_reads_only(method: str) -> None:
    rendered: list[int] = []

    def render() -> bytes:
        rendered.append(1)
        return b""

    with MetricsServer("127.0.0.1", 0, render) as server:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)

    assert refused.value.code == 501 and rendered == []


def test_the_textfile_is_replaced_whole_and_leaves_no_temporary_behind(tmp_path: Path, promtool: str) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    path = tmp_path / "fleetcd.prom"
    writer = TextfileWriter(path, metrics.render)

    assert writer.write()
    metrics.observe(applied(Observed(rollouts={}, devices={})), 0.01, now=NOW)
    assert writer.write()

    assert [p.name for p in tmp_path.iterdir()] == ["fleetcd.prom"]
    assert path.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    check_metrics(promtool, path.read_text())
    assert value(samples(path.read_text()), "fleetcd_reconciles_total", result="applied") == 1


def test_repacks_are_counted_by_repository_and_result_and_an_unknown_repository_is_not_a_label(
    promtool: str,
) -> None:
    metrics = ControllerMetrics(push_attempts=3)
    assert by_label(scrape(metrics, promtool), "fleetcd_repacks_total", "result", repository="mirror") == {
        "done": 0.0,
        "failed": 0.0,
    }
    repacks = [
        Repack("mirror", ok=True, message="repacked 51 packs into 2"),
        Repack("server", ok=False, message="No space left on device"),
        Repack("server", ok=True, message="repacked"),
        Repack('x"} fleetcd_repacks_total{repository="mirror"} 99', ok=True, message="hostile"),
    ]
    metrics.observe(ReconcileResult(main=MAIN, idle=True, repacks=repacks), 0.01, now=NOW)

    found = scrape(metrics, promtool)

    assert value(found, "fleetcd_repacks_total", repository="mirror", result="done") == 1
    assert value(found, "fleetcd_repacks_total", repository="mirror", result="failed") == 0
    assert value(found, "fleetcd_repacks_total", repository="server", result="done") == 1
    assert value(found, "fleetcd_repacks_total", repository="server", result="failed") == 1
    assert {labels for name, labels in found if name == "fleetcd_repacks_total"} == {
        (("repository", r), ("result", o)) for r in ("mirror", "server") for o in ("done", "failed")
    }
