"""``fleetcd-agent status`` on a robot in trouble: what an engineer on site reads with no network.

The robot was upgrading when the agent was killed mid-download (kill -9 at the journal write that
starts the download, in a real subprocess: tests/test_agent_crash.py), and then lost both its git
server and its artifact server. Its next cycle can neither finish the download nor push its report.
``status`` reads only local files and must still say where the upgrade stopped, what runs, that a
report is waiting to go out, and why; ``once`` exits 5 (the network) without losing anything. When
the network is back the same deployment finishes and the waiting report is sent.
"""

from __future__ import annotations

import json

import pytest

from agent.cli import cli
from fleetcd.cli.main import run
from fleetcd.vocabulary import Activity
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.agent import APP, AgentWorld
from tests.test_agent_crash import agent_killed_at


def agent(world: AgentWorld, *args: str) -> int:
    return run(cli, ["--config", str(world.config_file), *args])


def test_status_offline_after_a_kill_mid_download_names_the_interrupted_step_and_the_waiting_report(
    world: AgentWorld, artifacts: ArtifactServer, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    world.reconcile()
    world.publish("1.1.0")
    agent_killed_at(world, "after-downloading")
    tarball = (world.root / "published" / f"{APP}-1.1.0.tar.gz").read_bytes()
    artifacts.add(f"/{APP}-1.1.0.tar.gz", tarball, Behaviour(status=503))  # the artifact store is down

    with world.controller.server_down():
        assert agent(world, "once") == 5
        capsys.readouterr()

        assert agent(world, "status") == 0
        text = capsys.readouterr().out
        assert f"{APP}: running 1.0.0" in text
        assert f"{APP}: in progress: 1.1.0 downloading" in text
        assert "waits to be pushed" in text
        assert "last error: " in text and "last error: none" not in text
        assert world.answer() == "1.0.0"

        assert agent(world, "status", "-o", "json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["journals"][APP]["state"] == "downloading"
        assert status["unsent_report_seq"] == status["report"]["seq"]
        assert status["problems"] == []

    artifacts.add(f"/{APP}-1.1.0.tar.gz", tarball)
    assert agent(world, "once") == 0
    capsys.readouterr()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, "1.1.0")
    assert world.answer("1.1.0") == "1.1.0"
    assert agent(world, "status", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["unsent_report_seq"] is None
