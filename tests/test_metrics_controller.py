"""The controller's Prometheus metrics after a scripted rollout (real git, real gpg, real promtool).

A rollout of nav 1.0.0 passes staging; on the canary one robot fails and the rollout halts, while a
third canary robot's ref holds a report that names another robot. The exposition is checked by
``promtool check metrics`` and its numbers against what happened: rollouts per phase after the halt,
each wave's robots (the production wave never dispatched), robots by connectivity and status,
reports ingested and refused (once, not once per reconcile), signatures over roots and audit heads,
a lost state-branch race, a stall. ``controller run`` serves the same text over real HTTP and
writes it to a textfile.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from controller.metrics.exposition import ControllerMetrics
from controller.metrics.serve import MetricsServer, TextfileWriter, parse_address
from controller.reconcile.source import Source
from controller.reconcile.steps import ReconcileResult, reconcile_once
from controller.runner import run_forever
from fleetcd.git.objects import commit, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.reports import STATUS_FILE, StatusReport
from tests.disks import fill, mounted
from tests.gpgkeys import KeyFactory
from tests.promtext import by_label, check_metrics, samples, value
from tests.sim.robots import ROBOT
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

ROOT = Path(__file__).resolve().parent.parent


def observed(world: ControllerWorld, metrics: ControllerMetrics) -> ReconcileResult:
    """One real reconcile, counted the way ``controller run``'s loop counts it."""
    started = time.monotonic()
    result = reconcile_once(world.settings)
    metrics.observe(result, time.monotonic() - started, now=world.clock.now)
    return result


def report_as_another_robot(world: ControllerWorld, device: str, claimed: str) -> None:
    """``device``'s status ref gets a well-formed report that names ``claimed``: refused."""
    report = StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": claimed,
            "seq": 1,
            "agent_version": "forged",
            "reported_at": world.clock.now,
        }
    )
    repo = pygit2.Repository(str(world.server))
    tree = write_tree(repo, {STATUS_FILE: report.model_dump_json().encode()})
    commit(repo, status_ref(device), tree, "a report naming another robot", [], ROBOT, world.clock.now)


def halted_world(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ControllerMetrics]:
    """Staging passes; can-1 fails, can-2 succeeds, can-3's ref names can-2: the canary halts."""
    world = make_world(tmp_path, keys, name="metrics")
    metrics = ControllerMetrics(world.settings.push_attempts)
    observed(world, metrics)
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    observed(world, metrics)
    world.clock.tick(61)
    observed(world, metrics)
    world.sim.report("can-1", "nav", "failed", world.clock.now, error="failed", message="probe failed")
    world.report_all(["can-2"], "deployed")
    report_as_another_robot(world, "can-3", "can-2")
    world.clock.tick(10)
    halted = observed(world, metrics)
    assert halted.reports_rejected == {"wrong_device": 1}
    return world, metrics


def test_metrics_after_a_halted_canary_count_phases_waves_robots_reports_and_signatures(
    tmp_path: Path, keys: KeyFactory, promtool: str
) -> None:
    world, metrics = halted_world(tmp_path, keys)
    world.clock.tick(10)
    again = observed(world, metrics)  # nothing new: the refused report is not counted twice
    text = metrics.render().decode()
    check_metrics(promtool, text)
    found = samples(text)

    assert again.idle
    assert by_label(found, "fleetcd_reconciles_total", "result") == {
        "applied": 4,
        "stalled": 0,
        "failed": 0,
        "idle": 1,
    }
    assert value(found, "fleetcd_reconcile_duration_seconds_count", result="applied") == 4
    assert value(found, "fleetcd_last_successful_reconcile_timestamp_seconds") == world.clock.now.timestamp()
    phases = by_label(found, "fleetcd_rollouts", "phase")
    assert phases["halted"] == 1 and sum(phases.values()) == 1
    assert value(found, "fleetcd_rollout_phase", rollout="nav", app="nav", phase="halted") == 1
    assert value(found, "fleetcd_rollout_phase", rollout="nav", app="nav", phase="progressing") == 0
    assert nonzero(by_label(found, "fleetcd_wave_robots", "state", rollout="nav", wave="staging")) == {
        "succeeded": 1
    }
    # can-3 never reported for itself: its deployment was archived by the halt, in no bucket.
    assert nonzero(by_label(found, "fleetcd_wave_robots", "state", rollout="nav", wave="canary")) == {
        "succeeded": 1,
        "failed": 1,
    }
    # The halt came before production started: its 4 robots will never get 1.0.0, not "pending".
    assert nonzero(by_label(found, "fleetcd_wave_robots", "state", rollout="nav", wave="production")) == {
        "not_dispatched": len(PRODUCTION)
    }
    assert nonzero(by_label(found, "fleetcd_wave_phase", "phase", rollout="nav", wave="canary")) == {
        "failed": 1
    }
    assert by_label(found, "fleetcd_robots", "connectivity") == {
        "online": 3,  # stg-1, can-1, can-2 reported; can-3's ref speaks for someone else
        "offline": 0,
        "unknown": len(STAGING + CANARY + PRODUCTION) - 3,
    }
    assert by_label(found, "fleetcd_robot_deployments", "status", app="nav") == {
        "deployed": 2,
        "failed": 1,
        "archived": 1,
    }
    assert value(found, "fleetcd_reports_ingested_total") == 3
    assert value(found, "fleetcd_reports_rejected_total", reason="wrong_device") == 1
    # Each applied reconcile appended audit lines and signed the new head; three signed a new root.
    assert value(found, "fleetcd_signatures_total", kind="audit_head") == 4
    assert value(found, "fleetcd_signatures_total", kind="desired_root") == 3
    assert value(found, "fleetcd_state_push_retries_total") == 0
    assert not any(label == "device" for _, labels in found for label, _ in labels)  # no robot ids


def test_bundles_built_count_the_robots_whose_bundle_was_built(tmp_path: Path, keys: KeyFactory) -> None:
    """The first reconcile builds every robot's bundle; one that changes nothing a bundle is built
    from (a main commit touching no file, then the staging robot's report) builds none."""
    world = make_world(tmp_path, keys, name="metrics")
    metrics = ControllerMetrics(world.settings.push_attempts)
    assert observed(world, metrics).bundles_built == len(STAGING + CANARY + PRODUCTION)
    world.fleet.git("commit", "--allow-empty", "-qm", "nothing for robots")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(5)
    world.report_all(STAGING, "deployed")
    quiet = observed(world, metrics)
    assert not quiet.idle and quiet.reports_ingested == len(STAGING) and quiet.bundles_built == 0
    found = samples(metrics.render().decode())
    assert value(found, "fleetcd_bundles_built_total") == len(STAGING + CANARY + PRODUCTION)


def nonzero(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if v}


def test_a_stall_shows_every_rollout_stalled_and_keeps_the_robot_counts(
    tmp_path: Path, keys: KeyFactory, promtool: str
) -> None:
    world, metrics = halted_world(tmp_path, keys)
    world.fleet.write()
    (world.fleet.root / "fleet.yaml").write_bytes(b"apiVersion: [unclosed\n")
    world.fleet.git("commit", "-q", "-am", "Break fleet.yaml")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(10)
    stalled = observed(world, metrics)

    text = metrics.render().decode()
    check_metrics(promtool, text)
    found = samples(text)
    assert stalled.stalled is not None
    assert value(found, "fleetcd_reconciles_total", result="stalled") == 1
    assert nonzero(by_label(found, "fleetcd_rollouts", "phase")) == {"stalled": 1}
    assert by_label(found, "fleetcd_robots", "connectivity")["online"] == 3  # a stall reads no robot
    assert value(found, "fleetcd_signatures_total", kind="audit_head") == 5  # the stall's line, signed


def test_a_lost_state_branch_race_counts_one_push_retry(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys, name="metrics")
    metrics = ControllerMetrics(world.settings.push_attempts)
    rival = replace(world.settings, source=Source.for_url(str(world.server), tmp_path / "cache-b"))
    raced: list[bool] = []

    def rival_pushes_first(step: str) -> None:
        if step == "state-committed" and not raced:
            raced.append(True)
            # A second later, so its commit differs from ours (the same instant and the same gpg
            # second would make the very same commit, and no race): it pushes first, ours is refused.
            world.clock.tick(1)
            reconcile_once(rival)

    world.settings = replace(world.settings, checkpoint=rival_pushes_first)
    result = observed(world, metrics)

    assert result.push_retries == 1
    assert value(samples(metrics.render().decode()), "fleetcd_state_push_retries_total") == 1


def test_a_failed_reconcile_counts_as_failed_and_keeps_the_last_success_time(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys, name="metrics")
    metrics = ControllerMetrics(world.settings.push_attempts)
    observed(world, metrics)
    succeeded_at = world.clock.now.timestamp()
    world.clock.tick(30)
    broken = replace(world.settings, source=Source.for_url(str(tmp_path / "gone.git"), tmp_path / "c2"))
    try:
        reconcile_once(broken)
    except Exception as exc:
        metrics.observe(None, 0.2, error=exc, now=world.clock.now)
    else:
        pytest.fail("a reconcile of a missing repository succeeded")

    found = samples(metrics.render().decode())
    assert value(found, "fleetcd_reconciles_total", result="failed") == 1
    assert value(found, "fleetcd_last_successful_reconcile_timestamp_seconds") == succeeded_at


def test_the_metrics_server_answers_a_real_get_and_refuses_other_paths() -> None:
    body = b'fleetcd_rollouts{phase="halted"} 1\n'
    with MetricsServer("127.0.0.1", 0, lambda: body) as server:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            assert answer.status == 200 and answer.read() == body
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/", timeout=10)
        assert refused.value.code == 404


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (":0", ("", 0)),
        ("localhost", None),
        ("127.0.0.1:99999", None),
        ("127.0.0.1:-1", None),
    ],
    ids=["ipv4", "ipv6", "any-address-any-port", "no-port", "port-too-big", "negative-port"],
)
def test_metrics_address_is_host_and_bounded_port(text: str, expected: tuple[str, int] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(text)
    else:
        assert parse_address(text) == expected


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_textfile_on_a_read_only_or_full_disk_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=256k", "tmpfs"):
        writer = TextfileWriter(disk / "fleetcd.prom", lambda: b"fleetcd_up 1\n" * 100)
        assert writer.write()
        before = (disk / "fleetcd.prom").read_bytes()
        if fault == "full":
            fill(disk)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        writer = TextfileWriter(disk / "fleetcd.prom", lambda: b"fleetcd_up 2\n" * 1000)
        assert not writer.write()
        assert (disk / "fleetcd.prom").read_bytes() == before  # the old file, whole
        assert not [p for p in disk.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
    assert "not written" in caplog.text


def test_controller_run_serves_metrics_over_http_and_writes_the_textfile(
    tmp_path: Path, keys: KeyFactory, promtool: str
) -> None:
    world = make_world(tmp_path, keys, name="metrics")
    textfile = tmp_path / "fleetcd.prom"
    script = "from controller.cli import main; main()"
    argv = ["controller", "run", "--repo", str(world.server), "--cache", str(tmp_path / "run-cache")]
    argv += ["--gnupghome", str(keys.home), "--interval", "1"]
    argv += ["--metrics-address", "127.0.0.1:0", "--metrics-file", str(textfile)]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"metrics: (http://127\.0\.0\.1:\d+/metrics)", line)
        assert match, line
        text = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with urllib.request.urlopen(match[1], timeout=10) as answer:
                text = answer.read().decode()
            if value(samples(text), "fleetcd_reconciles_total", result="applied") >= 1:
                break
            time.sleep(0.2)
        check_metrics(promtool, text)
        found = samples(text)
        assert value(found, "fleetcd_reconciles_total", result="applied") >= 1
        assert by_label(found, "fleetcd_wave_robots", "state", rollout="nav", wave="staging")["pending"] == 1
        assert value(found, "fleetcd_robots", connectivity="unknown") == len(STAGING + CANARY + PRODUCTION)
        on_disk = samples(textfile.read_text())
        assert value(on_disk, "fleetcd_signatures_total", kind="desired_root") == 1
        check_metrics(promtool, textfile.read_text())
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_metrics_port_already_taken_is_a_setup_error_exit_4(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["controller", "run", "--repo", str(tmp_path / "fleet.git"), "--cache", str(tmp_path / "c")]
        argv += ["--gnupghome", str(tmp_path), "--metrics-address", f"127.0.0.1:{port}"]
        done = subprocess.run(
            [sys.executable, "-c", "from controller.cli import main; main()", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 4, done.stderr
    assert f"--metrics-address 127.0.0.1:{port}: cannot listen" in done.stderr


def test_a_restarted_controller_on_an_idle_fleet_has_fleet_gauges_from_its_first_pass(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The idle fast path would skip loading anything for up to 10 minutes; with metrics the first
    pass runs in full (and writes nothing new), so a halted rollout's alert does not flap."""
    world = make_world(tmp_path, keys, name="metrics")
    world.reconcile()
    world.clock.tick(5)
    assert reconcile_once(world.settings).idle
    before = world.state().commit
    seen: list[ReconcileResult] = []
    run_forever(world.settings, 1, iterations=1, report=seen.append, wait=lambda _: None)
    assert seen[-1].idle  # without metrics: the fast path, as always

    metrics = ControllerMetrics(world.settings.push_attempts)

    def observe(result: ReconcileResult | None, seconds: float, error: Exception | None) -> None:
        metrics.observe(result, seconds, error=error, now=world.clock.now)

    run_forever(world.settings, 1, iterations=2, report=seen.append, wait=lambda _: None, observe=observe)

    assert [r.idle for r in seen[-2:]] == [False, True]
    found = samples(metrics.render().decode())
    assert by_label(found, "fleetcd_reconciles_total", "result") == {
        "applied": 1,
        "stalled": 0,
        "failed": 0,
        "idle": 1,
    }
    assert value(found, "fleetcd_robots", connectivity="unknown") == len(STAGING + CANARY + PRODUCTION)
    assert value(found, "fleetcd_rollouts", phase="progressing") == 1
    assert world.state().commit == before  # the full pass found nothing to write
