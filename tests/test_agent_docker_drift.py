"""Runtime drift with the Docker executor, on the real engine and registry (tests/dockerd.py): the
app's container replaced by hand with one running another image, and a container of the app
started by hand. Each is reported as drifted (``runtime_drift``, the deployment ``drifted``);
under ``drift: restore`` the container is created again from the pinned digest and the stranger is
stopped. And the Docker side of "rollback needs no network": a rollback the controller orders
installs from the image the engine still holds while the registry is down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.executors.docker import LABEL_APP, LABEL_DEVICE, LABEL_VERSION, container_name
from fleetcd.vocabulary import Activity, DriftKind
from tests.dockerd import DockerWorld, docker_world
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, DEVICE, AgentWorld, image_command

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture


def make_world(root: Path, keys: KeyFactory, docker: DockerWorld, policy: str) -> Iterator[AgentWorld]:
    docker.remove_containers(APP)
    with ArtifactServer() as artifacts:  # unused by container releases; the world wants one
        world = AgentWorld.create(
            root, keys, artifacts, docker_base_url=docker.base_url, agent={"drift": policy}
        )
        world.publish("1.0.0", image=docker.push_app("1.0.0"))
        assert world.once().error is None
        world.reconcile()
        yield world
    docker.remove_containers(APP)


@pytest.fixture
def reporting(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    yield from make_world(tmp_path, keys, docker_world, "report")


@pytest.fixture
def restoring(tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld) -> Iterator[AgentWorld]:
    yield from make_world(tmp_path, keys, docker_world, "restore")


def replace_container(world: AgentWorld, docker: DockerWorld) -> str:
    """What a person does by hand: the app's container swapped for one of another image, same name
    and labels. Returns the other image's id."""
    other = docker.push_app("1.1.0")
    name = container_name(APP, "1.0.0", DEVICE)
    ours = docker.client.containers.get(name)
    labels = dict(ours.labels)
    ours.remove(force=True)
    docker.client.containers.run(
        other,
        image_command(world.port, "healthy"),
        name=name,
        labels=labels,
        network_mode="host",
        detach=True,
    )
    return str(docker.client.images.get(other).id)


def start_stranger(world: AgentWorld, docker: DockerWorld) -> Any:
    image = docker.client.containers.get(container_name(APP, "1.0.0", DEVICE)).attrs["Image"]
    labels = {LABEL_APP: APP, LABEL_DEVICE: DEVICE, LABEL_VERSION: "0.9.0"}
    return docker.client.containers.run(
        image,
        ["/bin/sleep", "3600"],
        name=f"by-hand-{DEVICE}",
        labels=labels,
        network_mode="host",
        detach=True,
    )


def test_a_replaced_container_is_reported_drifted(reporting: AgentWorld, docker_world: DockerWorld) -> None:
    replace_container(reporting, docker_world)
    assert reporting.answer("1.1.0") == "1.1.0"

    result = reporting.once()

    assert result.report is not None
    (drift,) = result.report.runtime_drift
    assert (drift.kind, drift.restored) == (DriftKind.IMAGE, False)
    assert "runs image sha256:" in drift.detail and "@sha256:" in drift.detail
    assert result.report.deployments[0].activity is Activity.DRIFTED
    assert reporting.answer() == "1.1.0"  # left as the person made it
    reporting.reconcile()
    assert reporting.record(result.report.deployments[0].deployment_id).activity.value == "drifted"


def test_with_restore_a_replaced_container_is_created_again_from_the_pinned_digest(
    restoring: AgentWorld, docker_world: DockerWorld
) -> None:
    other = replace_container(restoring, docker_world)

    result = restoring.once()

    assert result.report is not None
    assert [(d.kind, d.restored) for d in result.report.runtime_drift] == [(DriftKind.IMAGE, True)]
    container = docker_world.client.containers.get(container_name(APP, "1.0.0", DEVICE))
    assert container.attrs["Image"] != other
    assert restoring.answer("1.0.0") == "1.0.0"
    assert restoring.once().report.runtime_drift == []  # type: ignore[union-attr]


def test_a_container_of_the_app_started_by_hand_is_reported_then_stopped_under_restore(
    tmp_path: Path, keys: KeyFactory, docker_world: DockerWorld
) -> None:
    for policy, still_running in (("report", True), ("restore", False)):
        for world in make_world(tmp_path / policy, keys, docker_world, policy):
            stranger = start_stranger(world, docker_world)
            try:
                result = world.once()

                assert result.report is not None
                (drift,) = result.report.runtime_drift
                assert (drift.kind, drift.restored) == (DriftKind.STARTED_OUTSIDE, not still_running)
                assert f"of {APP} 0.9.0 runs; the agent made 1.0.0 active" in drift.detail
                stranger.reload()
                assert (stranger.status == "running") is still_running
                assert world.answer() == "1.0.0"
            finally:
                stranger.remove(force=True)


# --- a rollback with the registry down (issue 11.6, the Docker side) ---------------------------------


def test_a_rollback_the_controller_orders_uses_the_local_image_with_the_registry_down(
    reporting: AgentWorld, docker_world: DockerWorld
) -> None:
    reporting.publish("1.1.0", image=docker_world.push_app("1.1.0"))
    assert reporting.once().error is None
    reporting.reconcile()
    reporting.controller.fleet.rollout(
        APP, app=APP, release="1.0.0", devices=[DEVICE], strategy=reporting.strategy
    )
    reporting.controller.merge(f"roll {APP} back to 1.0.0")
    reporting.reconcile()

    with docker_world.registry.stopped():
        result = reporting.once()

    assert result.error is None, result.errors
    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert reporting.answer("1.0.0") == "1.0.0"
