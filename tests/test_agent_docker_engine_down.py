"""The Docker Engine not answering on its socket: at boot before dockerd is up, or while it restarts.

An engine that does not answer is the environment, not the release: the deployment must wait (and
say so), never fail or roll back, and the container already running must be left alone; once the
engine answers, the same deployment goes ahead. The robot's agent here talks to a socket nobody
listens on (what a client sees while dockerd is down), then to the real engine of tests/dockerd.py.
Real controller-written repository, real gpg and git, real registry, whole agent cycles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import EngineUnavailable
from fleetcd.vocabulary import Activity
from tests.dockerd import DockerWorld, docker_world
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld, served_version
from tests.test_agent_docker_converge import deployment, install, running_versions

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    docker_world.remove_containers(APP)
    with ArtifactServer() as artifacts:  # unused by container releases; the world wants one
        built = AgentWorld.create(tmp_path, keys, artifacts, docker_base_url=docker_world.base_url)
        yield built
    docker_world.remove_containers(APP)


def engine_at(world: AgentWorld, base_url: str) -> None:
    """agent.yaml's ``docker.base_url`` from now on."""
    world.config = world.config.model_copy(
        update={"docker": world.config.docker.model_copy(update={"base_url": base_url})}
    )


def dead_socket(tmp_path: Path) -> str:
    return f"unix://{tmp_path / 'dockerd-not-up.sock'}"


def test_dockerd_not_up_yet_at_boot_keeps_the_deployment_waiting_then_installs_it_once_it_answers(
    world: AgentWorld, docker_world: DockerWorld, tmp_path: Path
) -> None:
    real_engine = docker_world.base_url
    engine_at(world, dead_socket(tmp_path))
    world.publish("1.0.0", image=docker_world.push_app("1.0.0"))
    dep = world.deployment_id()

    pushed = []
    for _ in range(2):  # however often it comes round, the engine being down is never the release's fault
        result = world.once()
        pushed.append(result.pushed)
        assert result.transient
        assert any(isinstance(e, EngineUnavailable) for e in result.errors), result.errors
        activity, error, _message = deployment(result.report, dep)
        assert (activity, error) != ("failed", "failed") and activity not in ("rolled_back", "deployed")
        entry = world.entry()
        assert entry is not None and entry.state not in (Activity.FAILED, Activity.ROLLED_BACK)
    assert pushed == [True, False]  # the fleet hears about it once, not every retry

    engine_at(world, real_engine)
    result = world.once()

    assert result.error is None, result.errors
    assert deployment(result.report, dep)[:2] == ("deployed", "none")
    assert running_versions(docker_world) == ["1.0.0"]
    assert served_version(world.port, "1.0.0") == "1.0.0"


def test_dockerd_restarting_leaves_the_running_container_alone_and_the_next_release_waits_for_it(
    world: AgentWorld, docker_world: DockerWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real_engine = docker_world.base_url
    install(world, docker_world, "1.0.0")
    world.publish("1.1.0", image=docker_world.push_app("1.1.0"))
    new = world.deployment_id()
    engine_at(world, dead_socket(tmp_path))

    result = world.once()

    assert result.transient
    assert any(isinstance(e, EngineUnavailable) for e in result.errors), result.errors
    assert result.report is not None and result.report.runtime_drift == []  # not judged while blind
    reported = {d.deployment_id: d.activity for d in result.report.deployments}
    assert [(a.app, a.current) for a in result.report.apps] == [(APP, "1.0.0")]
    assert reported.get(new) not in ("failed", "rolled_back", "deployed")  # not started: it waits
    assert running_versions(docker_world) == ["1.0.0"]
    assert served_version(world.port, "1.0.0") == "1.0.0"
    # Expected while dockerd restarts: journald gets a warning per poll, not an error with a traceback.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []

    engine_at(world, real_engine)
    result = world.once()

    assert result.error is None, result.errors
    assert deployment(result.report, new)[:2] == ("deployed", "none")
    assert running_versions(docker_world) == ["1.1.0"]
    assert served_version(world.port, "1.1.0") == "1.1.0"
