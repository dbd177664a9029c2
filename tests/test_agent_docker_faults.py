"""The Docker executor where a robot's engine holds something the agent did not leave there, or its
own ``active`` record is missing, stale or corrupt: real engine and registry (tests/dockerd.py).

What a robot meets after a person worked on it by hand, a crash between two engine calls, or a
power cut: a container with the robot's name it never created, several versions running at once,
a container replaced or removed, an ``active`` file naming something gone, an engine restarting.
In each the executor must either repair the situation from what is on the robot or refuse with an
error that names the container or file, never stop or remove what is not its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ContainerFailed, CorruptState, EngineUnavailable
from agent.executors.base import ExecutorContext, RunState
from agent.executors.docker import (
    LABEL_APP,
    LABEL_DEVICE,
    LABEL_IMAGE,
    LABEL_VERSION,
    DockerExecutor,
    container_name,
    normalize_reference,
)
from fleetcd.errors import ApplyError, TransportError
from fleetcd.vocabulary import DriftKind
from tests.dockerd import DockerWorld, docker_world
from tests.test_agent_docker import DEVICE, agent_config, container, target

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture

SLEEP = ["/bin/sleep", "3600"]
_apps = itertools.count()


@pytest.fixture
def app(docker_world: DockerWorld) -> Iterator[str]:
    name = f"faulty{next(_apps)}"
    yield name
    docker_world.remove_containers(name)
    for leftover in docker_world.client.containers.list(all=True, filters={"name": f"-{name}-"}):
        leftover.remove(force=True)  # the containers made by hand below carry no fleetcd label


@pytest.fixture
def executor(docker_world: DockerWorld, tmp_path: Path) -> DockerExecutor:
    ctx = ExecutorContext(apps_dir=tmp_path / "apps", downloads_dir=tmp_path / "downloads")
    return DockerExecutor(ctx, agent_config(docker_world.base_url))


def running(executor: DockerExecutor, app: str, *versions: str) -> dict[str, RunState]:
    return {v: executor.state(app, v) for v in versions}


def installed_and_running(executor: DockerExecutor, app: str, version: str, image: str) -> None:
    """``version`` installed and started as a switch leaves it (other versions stopped)."""
    first = target(app, version, image, command=SLEEP, deployment=f"d-{version}")
    executor.install(first)
    executor.switch(first, None)


def start_by_hand(docker: DockerWorld, name: str, image: str, labels: dict[str, str]) -> Any:
    """A container a person started with ``docker run`` (host networking, like the agent's)."""
    return docker.client.containers.run(
        image, SLEEP, name=name, labels=labels, network_mode="host", detach=True
    )


# --- containers the agent did not create -----------------------------------------------------------


def test_a_running_container_with_the_robots_name_but_not_its_labels_is_never_replaced(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    image = docker_world.push_app("1.0.0")
    name = container_name(app, "1.0.0", DEVICE)
    squatter = start_by_hand(docker_world, name, image, {"owner": "a person"})

    with pytest.raises(ContainerFailed, match="a running container already has this name") as caught:
        executor.install(target(app, "1.0.0", image))

    assert isinstance(caught.value, ApplyError) and name in str(caught.value)
    squatter.reload()
    assert squatter.status == "running" and squatter.labels == {"owner": "a person"}
    assert executor.state(app, "1.0.0") is RunState.MISSING  # not ours: no fleetcd labels


def test_a_stopped_container_with_the_robots_name_is_replaced_by_the_agents_own(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    image = docker_world.push_app("1.0.0")
    name = container_name(app, "1.0.0", DEVICE)
    leftover = start_by_hand(docker_world, name, image, {"owner": "a person"})
    leftover.stop(timeout=1)

    executor.install(target(app, "1.0.0", image))

    created = container(docker_world, app, "1.0.0")
    assert created.id != leftover.id
    assert created.labels[LABEL_APP] == app and created.labels[LABEL_DEVICE] == DEVICE
    assert created.labels[LABEL_IMAGE] == image
    assert executor.state(app, "1.0.0") is RunState.EXITED  # installed, not started


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        pytest.param(
            {LABEL_APP: "another-app", LABEL_DEVICE: DEVICE, LABEL_VERSION: "1.0.0"}, "app", id="app"
        ),
        pytest.param({LABEL_DEVICE: "robot-2", LABEL_VERSION: "1.0.0"}, "device", id="device"),
        pytest.param({LABEL_DEVICE: DEVICE, LABEL_VERSION: "0.9.0"}, "version", id="version"),
    ],
)
def test_a_container_with_the_robots_name_and_foreign_labels_is_not_taken_for_the_version(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, labels: dict[str, str], why: str
) -> None:
    image = docker_world.push_app("1.0.0")
    labels = {LABEL_APP: app, **labels}
    start_by_hand(docker_world, container_name(app, "1.0.0", DEVICE), image, labels)

    assert executor.state(app, "1.0.0") is RunState.MISSING, f"a container of another {why} counted"


def test_restart_of_a_version_that_was_never_installed_names_the_container(
    executor: DockerExecutor, app: str
) -> None:
    with pytest.raises(ContainerFailed, match="no such container") as caught:
        executor.restart(app, "1.0.0")

    assert container_name(app, "1.0.0", DEVICE) in str(caught.value)
    assert executor.active(app) is None  # nothing recorded for a restart that did not happen


# --- crash leftovers: several versions at once -------------------------------------------------------


def start_every_version(docker: DockerWorld, executor: DockerExecutor, app: str, *versions: str) -> None:
    """What a crash in the middle of a switch and then a rollback can leave: every version running."""
    for version in versions:
        executor.install(target(app, version, docker.push_app(version), command=SLEEP, deployment=version))
        container(docker, app, version).start()


def test_a_switch_after_a_crash_leaves_exactly_one_version_of_the_app_running(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    start_every_version(docker_world, executor, app, "1.0.0", "1.1.0")
    newest = target(app, "1.2.0", docker_world.push_app("1.2.0"), command=SLEEP, deployment="d3")
    executor.install(newest)

    executor.switch(newest, "1.1.0")  # previous names one of them; the other must stop as well

    assert running(executor, app, "1.0.0", "1.1.0", "1.2.0") == {
        "1.0.0": RunState.EXITED,
        "1.1.0": RunState.EXITED,
        "1.2.0": RunState.RUNNING,
    }
    assert executor.active(app) == "1.2.0"


def test_commit_removes_every_leftover_version_and_keeps_the_committed_one(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    start_every_version(docker_world, executor, app, "1.0.0", "1.1.0")
    newest = target(app, "1.2.0", docker_world.push_app("1.2.0"), command=SLEEP, deployment="d3")
    executor.install(newest)
    executor.switch(newest, "1.1.0")

    executor.commit(app, "1.2.0", "1.1.0")

    assert running(executor, app, "1.0.0", "1.1.0", "1.2.0") == {
        "1.0.0": RunState.MISSING,
        "1.1.0": RunState.MISSING,
        "1.2.0": RunState.RUNNING,
    }


def test_a_rollback_stops_every_other_running_version_and_starts_the_previous_one(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    start_every_version(docker_world, executor, app, "1.0.0", "1.1.0", "1.2.0")

    executor.rollback(app, "1.2.0", "1.0.0")

    assert running(executor, app, "1.0.0", "1.1.0", "1.2.0") == {
        "1.0.0": RunState.RUNNING,
        "1.1.0": RunState.EXITED,  # kept, stopped: only the failed version is removed
        "1.2.0": RunState.MISSING,
    }
    assert executor.active(app) == "1.0.0"


def test_rolling_back_a_config_change_keeps_the_container_it_returns_to(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    installed_and_running(executor, app, "1.0.0", docker_world.push_app("1.0.0"))
    first = container(docker_world, app, "1.0.0").id

    executor.rollback(app, "1.0.0", "1.0.0")  # a config-only change failed: same version before and after

    assert container(docker_world, app, "1.0.0").id == first
    assert executor.state(app, "1.0.0") is RunState.RUNNING and executor.active(app) == "1.0.0"


# --- the active record -------------------------------------------------------------------------------


def active_file(tmp_path: Path, app: str) -> Path:
    return tmp_path / "apps" / app / "active"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty-after-a-lost-write"),
        pytest.param(b"not a version\n", id="garbage"),
        pytest.param(b"\xff\xfe\x00\x01", id="binary"),
        pytest.param(b"../../etc/passwd\n", id="path"),
    ],
)
def test_a_corrupt_active_file_is_corrupt_state_naming_the_file(
    executor: DockerExecutor, app: str, tmp_path: Path, content: bytes
) -> None:
    path = active_file(tmp_path, app)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    with pytest.raises(CorruptState) as caught:
        executor.active(app)

    assert str(path) in str(caught.value) and "not a version" in str(caught.value)


def test_an_active_file_naming_a_removed_container_gives_way_to_the_one_version_running(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, tmp_path: Path
) -> None:
    installed_and_running(executor, app, "1.0.0", docker_world.push_app("1.0.0"))
    active_file(tmp_path, app).write_text("0.9.0\n")  # a version whose container is gone

    assert executor.active(app) == "1.0.0"


def test_with_two_versions_running_and_a_stale_record_the_record_is_kept(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, tmp_path: Path
) -> None:
    start_every_version(docker_world, executor, app, "1.0.0", "1.1.0")
    active_file(tmp_path, app).parent.mkdir(parents=True, exist_ok=True)
    active_file(tmp_path, app).write_text("0.9.0\n")

    assert executor.active(app) == "0.9.0"  # ambiguous: no guess between the two; the record stands


def test_with_the_engine_restarting_the_recorded_version_is_still_active(tmp_path: Path) -> None:
    ctx = ExecutorContext(apps_dir=tmp_path / "apps", downloads_dir=tmp_path / "downloads")
    executor = DockerExecutor(ctx, agent_config(f"unix://{tmp_path / 'restarting.sock'}"))
    active_file(tmp_path, "nav").parent.mkdir(parents=True)
    active_file(tmp_path, "nav").write_text("2.1.0\n")

    assert executor.active("nav") == "2.1.0"
    with pytest.raises(EngineUnavailable) as caught:
        executor.ensure_running("nav")
    assert isinstance(caught.value, TransportError) and "restarting.sock" in str(caught.value)


def test_ensure_running_with_nothing_active_starts_nothing(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    executor.install(target(app, "1.0.0", docker_world.push_app("1.0.0"), command=SLEEP))

    assert executor.ensure_running(app) is False  # installed, never switched: not ours to start
    assert executor.state(app, "1.0.0") is RunState.EXITED


def test_a_rollback_to_nothing_after_a_power_cut_before_the_record_clears_nothing_else(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, tmp_path: Path
) -> None:
    first = target(app, "1.0.0", docker_world.push_app("1.0.0"), command=SLEEP)
    executor.install(first)
    container(docker_world, app, "1.0.0").start()  # started, but the active file never written
    assert not active_file(tmp_path, app).exists()

    executor.rollback(app, "1.0.0", None)
    executor.rollback(app, "1.0.0", None)  # redone after another crash: still nothing to do

    assert executor.state(app, "1.0.0") is RunState.MISSING
    assert executor.active(app) is None and not active_file(tmp_path, app).exists()


# --- a replaced or removed container ---------------------------------------------------------------


def replace_with_other_image(docker: DockerWorld, app: str, version: str, other: str) -> str:
    """The app's container swapped by hand for one of ``other`` image, same name and labels."""
    ours = container(docker, app, version)
    labels = dict(ours.labels)
    ours.remove(force=True)
    start_by_hand(docker, container_name(app, version, DEVICE), other, labels)
    return str(docker.client.images.get(other).id)


def test_a_replaced_container_is_image_drift_even_without_the_release_at_hand(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    pinned = docker_world.push_app("1.0.0")
    installed_and_running(executor, app, "1.0.0", pinned)
    other_id = replace_with_other_image(docker_world, app, "1.0.0", docker_world.push_app("1.1.0"))

    found = executor.drift(app, "1.0.0", None)  # the pin comes from the container's own label

    assert [kind for kind, _ in found] == [DriftKind.IMAGE]
    assert other_id[:19] in found[0][1] and pinned in found[0][1]


def test_restoring_a_replaced_container_without_its_release_is_refused_and_touches_nothing(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    installed_and_running(executor, app, "1.0.0", docker_world.push_app("1.0.0"))
    other_id = replace_with_other_image(docker_world, app, "1.0.0", docker_world.push_app("1.1.0"))

    with pytest.raises(ApplyError, match="its release is not at hand") as caught:
        executor.restore(app, "1.0.0", None)

    assert container_name(app, "1.0.0", DEVICE) in str(caught.value)
    kept = container(docker_world, app, "1.0.0")
    assert kept.attrs["Image"] == other_id and kept.status == "running"  # better than nothing running


def test_restoring_a_replaced_container_creates_it_again_from_the_pinned_digest(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    pinned = docker_world.push_app("1.0.0")
    installed_and_running(executor, app, "1.0.0", pinned)
    replace_with_other_image(docker_world, app, "1.0.0", docker_world.push_app("1.1.0"))

    executor.restore(app, "1.0.0", target(app, "1.0.0", pinned, command=SLEEP, deployment="d-1.0.0"))

    again = container(docker_world, app, "1.0.0")
    assert again.attrs["Image"] == docker_world.client.images.get(pinned).id
    assert again.status == "running" and executor.active(app) == "1.0.0"
    assert executor.drift(app, "1.0.0", None) == []


def test_restoring_after_the_pinned_image_was_pruned_pulls_it_again(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    pinned = docker_world.push_app("1.0.0")
    installed_and_running(executor, app, "1.0.0", pinned)
    replace_with_other_image(docker_world, app, "1.0.0", docker_world.push_app("1.1.0"))
    docker_world.forget_image(pinned)  # `docker image prune -a` by hand: the pin is not local any more

    wanted = target(app, "1.0.0", pinned, command=SLEEP, deployment="d-1.0.0")
    assert [kind for kind, _ in executor.drift(app, "1.0.0", wanted)] == [DriftKind.IMAGE]
    executor.restore(app, "1.0.0", wanted)

    assert pinned in docker_world.client.images.get(pinned).attrs["RepoDigests"]
    assert executor.state(app, "1.0.0") is RunState.RUNNING


def test_a_container_removed_by_hand_is_drift_and_restore_creates_it_again(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    pinned = docker_world.push_app("1.0.0")
    installed_and_running(executor, app, "1.0.0", pinned)
    container(docker_world, app, "1.0.0").remove(force=True)  # `docker rm -f` by hand

    (found,) = executor.drift(app, "1.0.0", None)
    assert found[0] is DriftKind.IMAGE and "is gone" in found[1]
    assert container_name(app, "1.0.0", DEVICE) in found[1]
    assert executor.state(app, "1.0.0") is RunState.MISSING
    with pytest.raises(ContainerFailed, match="never installed, or removed"):
        executor.restart(app, "1.0.0")
    with pytest.raises(ApplyError, match="not at hand"):
        executor.restore(app, "1.0.0", None)

    executor.restore(app, "1.0.0", target(app, "1.0.0", pinned, command=SLEEP, deployment="d-1.0.0"))

    assert executor.state(app, "1.0.0") is RunState.RUNNING and executor.active(app) == "1.0.0"
    assert executor.drift(app, "1.0.0", None) == []


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "version", "device", "name"),
    [
        pytest.param("nav", "1.0.0", "robot-1", "fleetcd-robot-1-nav-1.0.0", id="plain"),
        pytest.param(
            "nav", "1.0.0+build.7", "robot-1", "fleetcd-robot-1-nav-1.0.0_build.7", id="build-metadata"
        ),
        pytest.param("nav", "2.0.0-rc.1", None, "fleetcd-nav-2.0.0-rc.1", id="no-device"),
        pytest.param("nav", "1.0.0", "bay 3/robot", "fleetcd-bay_3_robot-nav-1.0.0", id="unsafe-device"),
    ],
)
def test_container_names_keep_to_the_characters_docker_allows(
    app: str, version: str, device: str | None, name: str
) -> None:
    assert container_name(app, version, device) == name


@pytest.mark.parametrize(
    ("reference", "short"),
    [
        pytest.param("docker.io/library/busybox@sha256:ab", "busybox@sha256:ab", id="hub-library"),
        pytest.param("index.docker.io/acme/nav@sha256:ab", "acme/nav@sha256:ab", id="hub-index-org"),
        pytest.param("registry-1.docker.io/library/x@sha256:ab", "x@sha256:ab", id="hub-registry-1"),
        pytest.param(
            "reg.example:5000/library/x@sha256:ab", "reg.example:5000/library/x@sha256:ab", id="own"
        ),
    ],
)
def test_references_are_compared_in_the_engines_short_form(reference: str, short: str) -> None:
    assert normalize_reference(reference) == short


def test_a_version_with_build_metadata_runs_and_is_found_again_by_its_label(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    installed_and_running(executor, app, "1.0.0+build.7", docker_world.push_app("1.0.0"))

    assert executor.state(app, "1.0.0+build.7") is RunState.RUNNING
    assert executor.state(app, "1.0.0") is RunState.MISSING
    assert executor.active(app) == "1.0.0+build.7"
    assert container(docker_world, app, "1.0.0+build.7").labels[LABEL_VERSION] == "1.0.0+build.7"
