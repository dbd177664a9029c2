"""kill -9 of the agent in every state of the converge state machine, Mender-style: before and after
each persisted transition. The agent runs one cycle in a subprocess and SIGKILLs itself at the named
checkpoint (as tests/test_controller_faults.py does for the controller); the app processes it
started live on, as they would under systemd. Then:

* right after the kill, exactly one version is active and it is the one answering over HTTP;
* a restarted agent converges: a good upgrade ends deployed, a failing one rolled back, a bad
  artifact failed — and the controller ingests the robot's report;
* a version that keeps taking the agent down with it is given up after ``max_trials`` starts and
  rolled back with the network gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from agent.cli import load_config
from agent.converge.machine import ActionKind
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR
from agent.loop import Runtime, run_once
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld

ROOT = Path(__file__).resolve().parent.parent
NEVER_REACHED = 3


def points(*states: str) -> list[str]:
    return [f"{when}-{state}" for state in states for when in ("before", "after")]


UPGRADE = points("downloading", "verifying", "applying", "switched", "watching", "healthy")
FAILING_UPGRADE = points("switched", "watching", "rolling_back", "rolled_back")
BAD_ARTIFACT = points("downloading", "failed")


def crash_main(argv: list[str]) -> None:
    """Subprocess entry: one agent cycle that SIGKILLs itself at checkpoint ``step``."""
    config_file, now, step = argv

    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    run_once(
        load_config(Path(config_file)), datetime.fromisoformat(now), runtime=Runtime(checkpoint=checkpoint)
    )
    sys.exit(NEVER_REACHED)


def agent_killed_at(world: AgentWorld, step: str) -> None:
    script = "import sys; from tests.test_agent_crash import crash_main; crash_main(sys.argv[1:])"
    args = [str(world.config_file), world.now.isoformat(), step]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])


def assert_exactly_one_version_runs(world: AgentWorld, versions: set[str]) -> str:
    """The active version is one of ``versions``, its process runs, and it is what answers."""
    executor = world.executor()
    active = executor.active(APP)
    assert active in versions
    assert Supervisor(world.paths.apps_dir / RUN_DIR).running_version(APP) == active
    assert world.answer(active) == active
    return active


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    built.publish("1.0.0")
    assert built.once().error is None
    built.reconcile()
    yield built
    built.close()


@pytest.mark.parametrize("step", UPGRADE)
def test_kill_9_during_an_upgrade_then_a_restart_deploys_it(world: AgentWorld, step: str) -> None:
    world.publish("1.1.0")
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert_exactly_one_version_runs(world, {"1.0.0", "1.1.0"})
    result = world.once()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version, entry.committed) == (
        Activity.HEALTHY,
        "1.1.0",
        True,
    )
    assert assert_exactly_one_version_runs(world, {"1.1.0"}) == "1.1.0"
    assert result.pushed
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


@pytest.mark.parametrize("step", FAILING_UPGRADE)
def test_kill_9_during_a_failing_upgrade_then_a_restart_rolls_it_back(world: AgentWorld, step: str) -> None:
    world.publish("1.1.0", "unhealthy")
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert_exactly_one_version_runs(world, {"1.0.0", "1.1.0"})
    world.once()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert assert_exactly_one_version_runs(world, {"1.0.0"}) == "1.0.0"
    world.reconcile()
    assert world.record(dep).activity.value == "rolled_back"


@pytest.mark.parametrize("step", BAD_ARTIFACT)
def test_kill_9_around_a_bad_artifact_then_a_restart_fails_it_and_keeps_the_old_version(
    world: AgentWorld, step: str
) -> None:
    world.publish("1.1.0", artifact={"sha256": "0" * 64})
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert_exactly_one_version_runs(world, {"1.0.0"})
    world.once()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.FAILED
    assert_exactly_one_version_runs(world, {"1.0.0"})
    world.reconcile()
    assert world.record(dep).activity.value == "failed"


@pytest.mark.parametrize("step", points("staged"))
def test_kill_9_while_staging_a_blue_green_release_then_a_restart_stages_it_beside_the_old_one(
    world: AgentWorld, step: str
) -> None:
    world.strategy = {"type": "blue_green", "min_staged_percent": 100}
    world.publish("1.1.0")
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert_exactly_one_version_runs(world, {"1.0.0"})
    world.once()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.STAGED, "1.1.0")
    assert assert_exactly_one_version_runs(world, {"1.0.0"}) == "1.0.0"
    world.reconcile()
    assert world.record(dep).activity.value == "staged"


def test_a_version_that_keeps_killing_the_agent_is_given_up_after_max_trials_without_network(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    world.publish("1.1.0")
    for start in range(1, world.config.max_trials + 1):
        agent_killed_at(world, "after-watching")
        entry = world.entry()
        assert entry is not None and (entry.state, entry.attempts) == (Activity.WATCHING, start)
    artifacts.__exit__(None, None, None)
    world.controller.server.rename(world.controller.server.with_name("gone.git"))

    result = world.once()

    assert result.apps[APP].action is ActionKind.GIVE_UP
    assert result.transient and not result.pushed
    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert "max_trials" in (entry.reason or "")
    assert assert_exactly_one_version_runs(world, {"1.0.0"}) == "1.0.0"
    assert result.report is not None and result.report.deployments[0].activity == "rolled_back"
