"""A robot running the Docker executor whose engine was worked on by hand, end to end: the real
controller's signed desired state, a real dockerd and registry (tests/dockerd.py), the real agent
(tests/sim/agent.py with ``docker_base_url``), the app served by busybox httpd in its container.

* the app's container removed (``docker rm -f``): containers have no restart policy, so nothing
  would start it again; it is runtime drift, reported (``drifted``, never a silent ``deployed``
  with nothing running) and, under ``drift: restore``, created again from the pinned digest;
* the ``active`` record corrupt (a lost write, a bad sector): the running container is left alone,
  and the next release installs and writes the record again;
* every container of the robot gone at once (``docker system prune``, a wiped engine) with the
  registry up: restore brings the deployed version back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.executors.docker import container_name
from fleetcd.vocabulary import Activity, DriftKind
from tests.dockerd import DockerWorld, docker_world
from tests.gpgkeys import KeyFactory
from tests.sim.agent import APP, DEVICE, AgentWorld
from tests.test_agent_docker_drift import make_world  # the same robot: 1.0.0 deployed in a container

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture


@pytest.fixture
def reporting(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    yield from make_world(tmp_path, keys, docker_world, "report")


@pytest.fixture
def restoring(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    yield from make_world(tmp_path, keys, docker_world, "restore")


def remove_by_hand(docker: DockerWorld) -> None:
    docker.client.containers.get(container_name(APP, "1.0.0", DEVICE)).remove(force=True)


def test_a_container_removed_by_hand_is_reported_drifted_not_deployed(
    reporting: AgentWorld, docker_world: DockerWorld
) -> None:
    remove_by_hand(docker_world)
    reporting.controller.clock.tick(10)

    result = reporting.once()

    assert result.report is not None and result.pushed
    (drift,) = result.report.runtime_drift
    assert (drift.app, drift.kind, drift.restored) == (APP, DriftKind.IMAGE, False)
    assert "is gone" in drift.detail
    (deployment,) = result.report.deployments
    assert deployment.activity is Activity.DRIFTED
    reporting.reconcile()
    assert reporting.record(deployment.deployment_id).activity.value == "drifted"
    assert reporting.answer(limit_s=1) is None  # left as the person left it: reported, not fought


def test_under_restore_a_container_removed_by_hand_is_created_again_and_serves(
    restoring: AgentWorld, docker_world: DockerWorld
) -> None:
    remove_by_hand(docker_world)
    restoring.controller.clock.tick(10)

    result = restoring.once()

    assert result.report is not None
    (drift,) = result.report.runtime_drift
    assert (drift.kind, drift.restored) == (DriftKind.IMAGE, True)
    assert restoring.answer("1.0.0") == "1.0.0"
    created = docker_world.client.containers.get(container_name(APP, "1.0.0", DEVICE))
    assert created.image.id == docker_world.client.images.get(docker_world.push_app("1.0.0")).id
    restoring.controller.clock.tick(10)
    again = restoring.once()
    assert again.report is not None and again.report.runtime_drift == []


def test_a_removed_container_then_a_new_release_installs_it_and_nothing_is_drifted(
    reporting: AgentWorld, docker_world: DockerWorld
) -> None:
    remove_by_hand(docker_world)
    reporting.publish("1.1.0", image=docker_world.push_app("1.1.0"))

    result = reporting.once()

    assert result.error is None, result.errors
    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
    assert reporting.answer("1.1.0") == "1.1.0"
    reporting.controller.clock.tick(10)
    after = reporting.once()
    assert after.report is not None and after.report.runtime_drift == []


def test_a_corrupt_active_record_leaves_the_container_running_and_the_next_release_rewrites_it(
    reporting: AgentWorld, docker_world: DockerWorld
) -> None:
    record = reporting.paths.apps_dir / APP / "active"
    record.write_bytes(b"\x00\x00garbage")
    reporting.controller.clock.tick(10)

    idle = reporting.once()

    assert idle.report is not None and idle.error is None, idle.errors
    assert reporting.answer() == "1.0.0"
    reporting.publish("1.1.0", image=docker_world.push_app("1.1.0"))
    upgraded = reporting.once()
    assert upgraded.error is None, upgraded.errors
    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.previous_version) == ("1.1.0", "1.0.0")
    assert record.read_text() == "1.1.0\n"
    assert reporting.answer("1.1.0") == "1.1.0"


def test_a_wiped_engine_under_restore_gets_the_deployed_version_back_from_the_registry(
    restoring: AgentWorld, docker_world: DockerWorld
) -> None:
    image = docker_world.push_app("1.0.0")
    remove_by_hand(docker_world)
    docker_world.forget_image(image)  # `docker system prune -a`: containers and images gone

    result = restoring.once()

    assert result.report is not None
    (drift,) = result.report.runtime_drift
    assert drift.restored, drift.detail
    assert restoring.answer("1.0.0") == "1.0.0"
    assert image in docker_world.client.images.get(image).attrs["RepoDigests"]
