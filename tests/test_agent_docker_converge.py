"""The agent end to end with the Docker executor: a fleet repository written by the real controller
(tests/sim/agent.py), a real Docker Engine and registry (tests/dockerd.py), whole agent cycles
through :func:`agent.loop.run_once`.

Each release's artifact is a busybox image pushed to the registry and pinned by digest; its
container serves the image's page with busybox httpd on a free host port (host networking), which
is what the release's http probe and the test look at. The robot installs a signed and approved
release, rolls a failing one back inside its watch window, and after a kill -9 of the agent while
a version is being watched, a restarted agent leaves exactly one version running. The controller
ingests every report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.converge.machine import ActionKind
from agent.executors.base import RunState
from agent.executors.docker import LABEL_APP, LABEL_VERSION, RUNNING_STATUSES
from agent.health.clock import SystemClock
from agent.loop import Runtime
from fleetcd.reasons import Reason
from fleetcd.reports import StatusReport
from fleetcd.vocabulary import Activity
from tests.dockerd import DockerWorld, docker_world
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.test_agent_crash import agent_killed_at, points

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture

FAILING_WATCH_SECONDS = 30  # long, so a rollback that waited for the window's end would show


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    docker_world.remove_containers(APP)  # every test starts from an engine without the app
    with ArtifactServer() as artifacts:  # unused by container releases; the world wants one
        built = AgentWorld.create(tmp_path, keys, artifacts, docker_base_url=docker_world.base_url)
        yield built
    docker_world.remove_containers(APP)


class WatchClock(SystemClock):
    """The real clock, remembering what the health watch read: when its window started and ended."""

    def __init__(self) -> None:
        self.readings: list[float] = []

    def now(self) -> float:
        reading = super().now()
        self.readings.append(reading)
        return reading

    def watched_s(self) -> float:
        return self.readings[-1] - self.readings[0] if self.readings else 0.0


def running_versions(docker: DockerWorld) -> list[str]:
    """The versions of the app whose containers run on the engine right now."""
    containers = docker.client.containers.list(all=True, filters={"label": f"{LABEL_APP}={APP}"})
    return sorted(c.labels[LABEL_VERSION] for c in containers if c.status in RUNNING_STATUSES)


def deployment(report: StatusReport | None, deployment_id: str) -> tuple[str, str, str]:
    assert report is not None
    (dep,) = [d for d in report.deployments if d.deployment_id == deployment_id]
    return dep.activity, dep.error, dep.message


def install(world: AgentWorld, docker: DockerWorld, version: str) -> str:
    """Publish ``version`` as an image, converge it, let the controller ingest it; the deployment id."""
    world.publish(version, image=docker.push_app(version))
    dep = world.deployment_id()
    result = world.once()
    assert result.error is None, result.errors
    assert deployment(result.report, dep)[:2] == ("deployed", "none")
    world.reconcile()
    return dep


def test_robot_installs_a_signed_and_approved_container_release_the_controller_wrote(
    world: AgentWorld, docker_world: DockerWorld
) -> None:
    image = docker_world.push_app("1.0.0")
    docker_world.forget_image(image)  # the agent pulls it from the registry by digest
    world.publish("1.0.0", image=image)
    dep = world.deployment_id()

    result = world.once()

    assert result.error is None, result.errors
    assert result.apps[APP].action is ActionKind.START
    assert world.answer() == "1.0.0"
    assert running_versions(docker_world) == ["1.0.0"]
    executor = world.agent_executor()
    assert executor.active(APP) == "1.0.0" and executor.state(APP, "1.0.0") is RunState.RUNNING
    assert image in docker_world.client.images.get(image).attrs["RepoDigests"]
    assert result.pushed and deployment(result.report, dep)[:2] == ("deployed", "none")
    assert result.report is not None and [(a.app, a.current) for a in result.report.apps] == [(APP, "1.0.0")]
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


def test_a_container_failing_its_probe_is_rolled_back_inside_the_watch_window_and_reported(
    world: AgentWorld, docker_world: DockerWorld
) -> None:
    install(world, docker_world, "1.0.0")
    health = world.health("/", watch_seconds=FAILING_WATCH_SECONDS)
    world.publish("1.1.0", "unhealthy", image=docker_world.push_app("1.1.0"), health=health)
    dep = world.deployment_id()

    clock = WatchClock()

    result = world.once(Runtime(clock=clock))

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert clock.watched_s() < FAILING_WATCH_SECONDS  # the verdict came inside the window
    assert world.answer("1.0.0") == "1.0.0"
    assert running_versions(docker_world) == ["1.0.0"]
    assert world.agent_executor().active(APP) == "1.0.0"
    activity, error, message = deployment(result.report, dep)
    assert (activity, error) == ("rolled_back", "failed")
    assert "probe_failed" in message and "healthz" in message
    assert result.pushed
    world.reconcile()
    record = world.record(dep)
    assert record.activity.value == "rolled_back"


def test_a_container_that_exits_in_its_watch_window_is_rolled_back_with_the_reason(
    world: AgentWorld, docker_world: DockerWorld
) -> None:
    install(world, docker_world, "1.0.0")
    world.publish("1.1.0", "crash", image=docker_world.push_app("1.1.0"))
    dep = world.deployment_id()

    result = world.once()

    activity, error, message = deployment(result.report, dep)
    assert (activity, error) == ("rolled_back", "failed")
    assert f"({Reason.APP_EXITED.value})" in message and "1.1.0" in message
    assert world.answer("1.0.0") == "1.0.0"
    assert running_versions(docker_world) == ["1.0.0"]
    world.reconcile()
    assert world.record(dep).activity.value == "rolled_back"


@pytest.mark.parametrize("step", points("watching"))
def test_kill_9_while_watching_a_container_then_a_restart_deploys_it_and_one_version_runs(
    world: AgentWorld, docker_world: DockerWorld, step: str
) -> None:
    install(world, docker_world, "1.0.0")
    world.publish("1.1.0", image=docker_world.push_app("1.1.0"))
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert len(running_versions(docker_world)) == 1
    result = world.once()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version, entry.committed) == (
        Activity.HEALTHY,
        "1.1.0",
        True,
    )
    assert running_versions(docker_world) == ["1.1.0"]
    assert world.answer("1.1.0") == "1.1.0"
    assert result.pushed
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


@pytest.mark.parametrize("step", points("watching"))
def test_kill_9_while_watching_a_failing_container_then_a_restart_rolls_it_back(
    world: AgentWorld, docker_world: DockerWorld, step: str
) -> None:
    install(world, docker_world, "1.0.0")
    world.publish("1.1.0", "unhealthy", image=docker_world.push_app("1.1.0"))
    dep = world.deployment_id()

    agent_killed_at(world, step)

    assert len(running_versions(docker_world)) == 1
    world.once()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert running_versions(docker_world) == ["1.0.0"]
    assert world.answer("1.0.0") == "1.0.0"
    world.reconcile()
    assert world.record(dep).activity.value == "rolled_back"
