"""``fleetcd-agent once|run|status`` against the agent test world: fleetcd's exit codes, file:line
errors for a bad agent.yaml, a daemon that tells systemd it is ready and stops on SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import cli
from fleetcd.cli.main import run
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.systemd import AgentDaemon

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    built.publish("1.0.0")
    yield built
    built.close()


def agent(*args: str) -> int:
    return run(cli, list(args))


def test_a_typo_in_agent_yaml_is_a_file_line_field_error_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "apiVersion: fleetcd.dev/v1\nkind: AgentConfig\ndevice: robot-1\n"
        "remote: {url: /srv/fleet.git}\ntrust: {keys_dir: /k, root: {keys: [x]}}\n"
        "max_trials: 99\n"
    )

    code = agent("--config", str(config), "status")

    assert code == 1
    err = capsys.readouterr().err
    assert f"{config}:" in err and "max_trials" in err


def test_a_missing_agent_yaml_is_a_setup_error_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent("--config", str(tmp_path / "nope.yaml"), "once") == 4
    assert "cannot read the agent configuration" in capsys.readouterr().err


def test_once_converges_and_status_shows_what_runs(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent("--config", str(world.config_file), "once") == 0
    assert f"{APP}: 1.0.0 healthy" in capsys.readouterr().out
    assert world.answer() == "1.0.0"

    assert agent("--config", str(world.config_file), "status") == 0
    text = capsys.readouterr().out
    assert f"{APP}: running 1.0.0" in text and "last error: none" in text

    assert agent("--config", str(world.config_file), "status", "-o", "json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["journals"][APP]["state"] == "healthy"
    assert status["report"]["deployments"][0]["activity"] == "deployed"


def test_once_with_the_server_unreachable_exits_5_and_keeps_the_report_queued(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.controller.server.rename(world.controller.server.with_name("gone.git"))

    code = agent("--config", str(world.config_file), "once", "-o", "json")

    assert code == 5
    out = json.loads(capsys.readouterr().out)
    assert out["errors"] and not out["pushed"]
    assert world.paths.outbox.exists()


def test_run_notifies_systemd_ready_converges_and_stops_on_sigterm(world: AgentWorld, tmp_path: Path) -> None:
    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        assert daemon.wait_for(b"READY=1")
        assert world.answer("1.0.0", limit_s=30) == "1.0.0"
        assert b"web 1.0.0 healthy" in daemon.wait_for(b"STATUS=serial")
        assert daemon.terminate(limit_s=30) == 0
        assert daemon.wait_for(b"STOPPING=1", limit_s=5)  # a last cycle's status may come first
