"""The agent's node_exporter textfile after real cycles (real git, gpg, HTTP, app processes, promtool).

A robot installs web 1.0.0, then gets 1.1.0 whose probe fails and rolls itself back. The file
``<state dir>/metrics/agent.prom`` passes ``promtool check metrics`` after every cycle and says
what happened: which version runs, the deployment's status, when the robot last polled and
applied, how long the download and the apply (a 1 s health watch) took, one rollback (counted once,
not once per cycle), the bundle's serial and expiry, the waiting report while the server is away.
A metrics folder on a read-only or full disk is logged, and the cycle goes on.
"""

from __future__ import annotations

import logging
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.converge.apply import AppOutcome
from agent.converge.machine import ActionKind
from agent.report.metrics import CycleFacts, render, write_metrics
from agent.trustcheck import load_trust_state
from fleetcd.compat import UTC
from fleetcd.reports import ReportEvent
from fleetcd.vocabulary import Activity
from tests.disks import fill, mounted
from tests.promtext import Key, by_label, check_metrics, samples, value
from tests.sim.agent import APP, WATCH_SECONDS, AgentWorld


def textfile(world: AgentWorld, promtool: str) -> dict[Key, float]:
    text = world.paths.metrics_file.read_text()
    check_metrics(promtool, text)
    return samples(text)


def test_the_textfile_follows_an_install_and_a_failed_upgrade_that_rolled_back(
    world: AgentWorld, promtool: str
) -> None:
    world.publish("1.0.0")
    first = world.once()
    assert first.error is None, first.errors
    installed = textfile(world, promtool)

    assert value(installed, "fleetcd_agent_app_info", app=APP, version="1.0.0") == 1
    assert nonzero(by_label(installed, "fleetcd_agent_deployment_status", "status", app=APP)) == {
        "deployed": 1
    }
    assert value(installed, "fleetcd_agent_last_successful_poll_timestamp_seconds") == world.now.timestamp()
    applied_at = value(installed, "fleetcd_agent_last_successful_apply_timestamp_seconds", app=APP)
    assert applied_at == world.now.timestamp()  # the cycle's clock: it reached deployed in this cycle
    assert value(installed, "fleetcd_agent_download_duration_seconds", app=APP) > 0
    # The apply holds the health watch (WATCH_SECONDS of real time), not the download.
    assert value(installed, "fleetcd_agent_apply_duration_seconds", app=APP) >= WATCH_SECONDS
    assert value(installed, "fleetcd_agent_rollbacks_total", app=APP) == 0
    trust = load_trust_state(world.paths.trust_file)
    assert value(installed, "fleetcd_agent_bundle_serial") == first.serial == trust.last_serial
    assert trust.expires_at is not None
    assert value(installed, "fleetcd_agent_bundle_expiry_timestamp_seconds") == trust.expires_at.timestamp()
    assert value(installed, "fleetcd_agent_outbox_reports") == 0  # pushed
    assert value(installed, "fleetcd_agent_poll_interval_seconds") == world.config.poll.interval_seconds

    world.reconcile()
    world.publish("1.1.0", "unhealthy")
    rolled = world.once()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    after = textfile(world, promtool)

    assert value(after, "fleetcd_agent_app_info", app=APP, version="1.0.0") == 1  # what runs
    assert by_label(after, "fleetcd_agent_app_info", "version", app=APP) == {"1.0.0": 1}
    assert nonzero(by_label(after, "fleetcd_agent_deployment_status", "status", app=APP)) == {"failed": 1}
    assert value(after, "fleetcd_agent_rollbacks_total", app=APP) == 1
    assert value(after, "fleetcd_agent_last_successful_apply_timestamp_seconds", app=APP) == applied_at
    assert value(after, "fleetcd_agent_bundle_serial") == rolled.serial > first.serial

    world.controller.clock.tick(30)
    world.once()
    later = textfile(world, promtool)
    assert value(later, "fleetcd_agent_rollbacks_total", app=APP) == 1  # carried, not counted again
    assert value(later, "fleetcd_agent_last_successful_poll_timestamp_seconds") == world.now.timestamp()


def nonzero(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if v}


def test_offline_the_last_successful_poll_stays_and_the_waiting_report_is_counted(
    world: AgentWorld, promtool: str
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    polled_at = world.now.timestamp()
    with world.controller.server_down():
        world.controller.clock.tick(120)
        offline = world.once()
    assert offline.transient and not offline.pushed
    away = textfile(world, promtool)

    assert value(away, "fleetcd_agent_last_successful_poll_timestamp_seconds") == polled_at
    assert value(away, "fleetcd_agent_outbox_reports") == 1
    assert value(away, "fleetcd_agent_app_info", app=APP, version="1.0.0") == 1  # it keeps running

    world.controller.clock.tick(10)
    assert world.once().pushed
    back = textfile(world, promtool)
    assert value(back, "fleetcd_agent_outbox_reports") == 0
    assert value(back, "fleetcd_agent_last_successful_poll_timestamp_seconds") == world.now.timestamp()


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_metrics_folder_on_a_read_only_or_full_disk_is_logged_and_the_cycle_goes_on(
    world: AgentWorld, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    world.publish("1.0.0")
    folder = world.paths.metrics_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    with mounted(folder, "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        if fault == "full":
            fill(folder)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        with caplog.at_level(logging.WARNING, logger="agent.report.metrics"):
            result = world.once()
        assert not world.paths.metrics_file.exists()
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]

    assert result.error is None, result.errors  # the cycle installed and reported as always
    assert result.pushed and world.answer() == "1.0.0"
    assert "metrics textfile" in caplog.text and "not written" in caplog.text


def test_carried_values_add_up_and_only_for_apps_the_robot_knows(promtool: str) -> None:
    """The rollback counter goes on from the previous file; an app the robot forgot leaves no series."""
    now = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    rolled = AppOutcome(
        APP,
        ActionKind.START,
        "test",
        None,
        events=(ReportEvent(at=now, activity=Activity.ROLLED_BACK, error="failed"),),
    )
    facts = CycleFacts(
        now=now,
        poll_interval_seconds=60,
        polled=False,
        serial=None,
        expires_at=now + timedelta(days=7),
        outbox=0,
        report=None,
        outcomes={APP: rolled},
        apps=[APP],
    )
    previous = {
        "fleetcd_agent_rollbacks": {APP: 2.0, "gone": 5.0},
        "fleetcd_agent_last_successful_poll_timestamp_seconds": {"": 1000.0},
    }
    text = render(facts, previous).decode()
    check_metrics(promtool, text)
    found = samples(text)
    assert value(found, "fleetcd_agent_rollbacks_total", app=APP) == 3
    assert "gone" not in by_label(found, "fleetcd_agent_rollbacks_total", "app")
    assert value(found, "fleetcd_agent_last_successful_poll_timestamp_seconds") == 1000.0
    assert ("fleetcd_agent_bundle_serial", ()) not in found  # no bundle accepted yet: no series


@pytest.mark.parametrize(
    "garbage",
    [b'fleetcd_agent_rollbacks_total{app="web"} not-a-number\n', b"\xff\xfe" * 10, b"#" * (300 * 1024)],
    ids=["bad-sample", "not-utf8", "too-big"],
)
def test_an_unreadable_previous_textfile_is_rewritten_and_its_values_start_afresh(
    tmp_path: Path, promtool: str, garbage: bytes
) -> None:
    path = tmp_path / "metrics" / "agent.prom"
    path.parent.mkdir()
    path.write_bytes(garbage)
    now = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    rolled = AppOutcome(
        APP, ActionKind.START, "test", None, events=(ReportEvent(at=now, activity=Activity.ROLLED_BACK),)
    )
    facts = CycleFacts(now, 60, False, 4, None, 0, None, outcomes={APP: rolled}, apps=[APP])

    assert write_metrics(path, facts)

    text = path.read_text()
    check_metrics(promtool, text)
    found = samples(text)
    assert value(found, "fleetcd_agent_rollbacks_total", app=APP) == 1  # this cycle's, nothing carried
    assert value(found, "fleetcd_agent_bundle_serial") == 4
    assert ("fleetcd_agent_last_successful_poll_timestamp_seconds", ()) not in found
