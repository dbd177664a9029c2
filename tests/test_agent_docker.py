"""The Docker executor against a real Docker Engine and registry (tests/dockerd.py).

Each test uses its own app name (so its own containers) and removes them afterwards; the apps that
serve HTTP use busybox httpd on a free host port (host networking), so which version answers is
observable from outside the engine.
"""

from __future__ import annotations

import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import (
    ContainerFailed,
    DigestMismatch,
    DownloadFailed,
    EngineUnavailable,
    ImageNotInRegistry,
)
from agent.executors.base import AppTarget, ExecutorContext, RunState
from agent.executors.docker import (
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_VERSION,
    DockerExecutor,
    check_repo_digests,
    container_name,
)
from fleetcd.errors import ApplyError, TransportError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import Release
from tests.dockerd import DockerWorld, docker_world, free_port

pytestmark = pytest.mark.docker
__all__ = ["docker_world"]  # the session fixture, shared with other Docker tests

READY_WAIT_SECONDS = 30  # how long a started httpd may take to accept connections (not asserted)
_apps = itertools.count()
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
DEVICE = "robot-1"


def agent_config(base_url: str, device: str = DEVICE) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": device,
            "remote": {"url": "/srv/fleet.git"},
            "trust": {
                "keys_dir": "/etc/fleetcd/keys",
                "root": {"keys": ["A" * 40]},
            },
            "executor": "docker",
            "docker": {"base_url": base_url},
        }
    )


def target(
    app: str,
    version: str,
    image: str,
    command: list[str] | None = None,
    deployment: str = "d1",
    ports: dict[str, int] | None = None,
    config_path: str | None = None,
) -> AppTarget:
    artifact: dict[str, Any] = {
        "kind": "container_image",
        "name": "app",
        "image": image,
        "env": {"GREETING": "hi"},
        "ports": ports or {},
    }
    if command is not None:
        artifact["command"] = command
    release = Release.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "Release",
            "app": app,
            "version": version,
            "artifacts": [artifact],
            **({"config": {"path": config_path, "format": "json", "schema": {}}} if config_path else {}),
        }
    )
    return AppTarget(
        deployment_id=deployment, app=app, version=version, release=release, env={"FLEETCD_APP": app}
    )


def httpd(port: int) -> list[str]:
    return ["/bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]


def served(port: int) -> str:
    """The body busybox httpd serves on ``port``, once it accepts connections."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def app(docker_world: DockerWorld) -> Iterator[str]:
    name = f"app{next(_apps)}"
    yield name
    docker_world.remove_containers(name)


@pytest.fixture
def executor(docker_world: DockerWorld, tmp_path: Path) -> DockerExecutor:
    ctx = ExecutorContext(apps_dir=tmp_path / "apps", downloads_dir=tmp_path / "downloads")
    return DockerExecutor(ctx, agent_config(docker_world.base_url))


def container(world: DockerWorld, app: str, version: str) -> Any:
    return world.client.containers.get(container_name(app, version, DEVICE))


# --- fetch ----------------------------------------------------------------------------------------


def test_fetch_pulls_the_pinned_digest_from_the_registry(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    image = docker_world.push_app("1.0.0")
    docker_world.forget_image(image)

    executor.fetch(target(app, "1.0.0", image))

    assert image in docker_world.client.images.get(image).attrs["RepoDigests"]


def test_fetch_of_a_digest_the_registry_never_had_names_the_image(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    missing = docker_world.unknown_image()

    with pytest.raises(ImageNotInRegistry) as caught:
        executor.fetch(target(app, "1.0.0", missing))

    assert isinstance(caught.value, ApplyError)
    assert missing in str(caught.value) and "manifest unknown" in str(caught.value)


def test_fetch_with_the_registry_down_is_a_transport_error(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    image = docker_world.push_app("1.0.0")
    docker_world.forget_image(image)

    with docker_world.registry.stopped(), pytest.raises(DownloadFailed) as caught:
        executor.fetch(target(app, "1.0.0", image))

    assert isinstance(caught.value, TransportError)
    assert image in str(caught.value) and "connection refused" in str(caught.value)


@pytest.mark.parametrize(
    ("image", "repo_digests", "ok"),
    [
        pytest.param(f"reg:5000/a/app@{DIGEST}", [f"reg:5000/a/app@{DIGEST}"], True, id="exact-match"),
        pytest.param(
            f"reg:5000/a/app@{DIGEST}",
            ["x@" + OTHER_DIGEST, f"reg:5000/a/app@{DIGEST}"],
            True,
            id="among-others",
        ),
        pytest.param(
            f"docker.io/library/nginx@{DIGEST}", [f"nginx@{DIGEST}"], True, id="docker-hub-short-form"
        ),
        pytest.param(
            f"reg:5000/a/app@{DIGEST}", [f"reg:5000/a/app@{OTHER_DIGEST}"], False, id="other-digest"
        ),
        pytest.param(
            f"reg:5000/a/app@{DIGEST}", [f"reg:5000/b/app@{DIGEST}"], False, id="same-digest-other-repo"
        ),
        pytest.param(f"reg:5000/a/app@{DIGEST}", [], False, id="never-pulled-by-digest"),
    ],
)
def test_repo_digests_must_list_the_exact_pin(image: str, repo_digests: list[str], ok: bool) -> None:
    if ok:
        check_repo_digests(image, repo_digests)
    else:
        with pytest.raises(DigestMismatch, match="reg:5000/a/app"):
            check_repo_digests(image, repo_digests)


# --- install, switch, state, active ----------------------------------------------------------------


def test_install_creates_the_new_container_beside_the_running_one_without_starting_it(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    old = target(app, "1.0.0", docker_world.push_app("1.0.0"))
    new = target(app, "1.1.0", docker_world.push_app("1.1.0"), command=["/bin/sleep", "600"], deployment="d2")
    executor.install(old)
    executor.switch(old, None)

    executor.install(new)

    created = container(docker_world, app, "1.1.0")
    assert created.status == "created"
    assert executor.state(app, "1.1.0") is RunState.EXITED  # installed, not running
    assert executor.state(app, "1.0.0") is RunState.RUNNING
    assert created.labels[LABEL_APP] == app and created.labels[LABEL_VERSION] == "1.1.0"
    assert created.labels[LABEL_DEPLOYMENT] == "d2"
    host = created.attrs["HostConfig"]
    assert host["NetworkMode"] == "host" and host["RestartPolicy"]["Name"] == "no"
    assert created.attrs["Config"]["Cmd"] == ["/bin/sleep", "600"]
    assert {"GREETING=hi", f"FLEETCD_APP={app}"} <= set(created.attrs["Config"]["Env"])


def test_install_twice_keeps_the_container_and_replaces_a_stale_one(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    image = docker_world.push_app("1.0.0")
    executor.install(target(app, "1.0.0", image, deployment="d1"))
    first = container(docker_world, app, "1.0.0").id

    executor.install(target(app, "1.0.0", image, deployment="d1"))
    assert container(docker_world, app, "1.0.0").id == first

    executor.install(target(app, "1.0.0", image, deployment="d9"))
    replaced = container(docker_world, app, "1.0.0")
    assert replaced.id != first and replaced.labels[LABEL_DEPLOYMENT] == "d9"


def test_a_container_that_exits_at_once_reports_exited(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    crashing = target(app, "1.0.0", docker_world.push_app("1.0.0"), command=["/bin/sh", "-c", "exit 3"])
    executor.install(crashing)
    executor.switch(crashing, None)

    assert container(docker_world, app, "1.0.0").wait(timeout=60)["StatusCode"] == 3
    assert executor.state(app, "1.0.0") is RunState.EXITED


def test_after_a_reboot_the_active_container_is_started_again(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    first = target(app, "1.0.0", docker_world.push_app("1.0.0"))
    executor.install(first)
    executor.switch(first, None)
    assert executor.ensure_running(app) is False  # running already: nothing to repair

    container(docker_world, app, "1.0.0").stop(timeout=1)  # what a power cut leaves (no restart policy)
    assert executor.state(app, "1.0.0") is RunState.EXITED
    assert executor.ensure_running(app) is True
    assert executor.state(app, "1.0.0") is RunState.RUNNING


def test_restart_starts_the_active_container_again_for_a_config_only_change(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    first = target(app, "1.0.0", docker_world.push_app("1.0.0"))
    executor.install(first)
    executor.switch(first, None)
    started = container(docker_world, app, "1.0.0").attrs["State"]["StartedAt"]

    executor.restart(app, "1.0.0")

    again = container(docker_world, app, "1.0.0")
    assert again.attrs["State"]["StartedAt"] != started
    assert (executor.active(app), executor.state(app, "1.0.0")) == ("1.0.0", RunState.RUNNING)


def test_unknown_version_is_missing_and_no_version_is_active(executor: DockerExecutor, app: str) -> None:
    assert executor.state(app, "9.9.9") is RunState.MISSING
    assert executor.active(app) is None


def test_switch_is_idempotent_and_active_comes_back_from_the_engine_without_the_file(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, tmp_path: Path
) -> None:
    first = target(app, "1.0.0", docker_world.push_app("1.0.0"))
    executor.install(first)
    executor.switch(first, None)
    executor.switch(first, None)  # the agent crashed after the start; the journal redoes the switch
    assert executor.active(app) == "1.0.0"
    assert (tmp_path / "apps" / app / "active").read_text() == "1.0.0\n"

    (tmp_path / "apps" / app / "active").unlink()  # e.g. a power cut before the first record
    assert executor.active(app) == "1.0.0"


def test_switch_without_install_is_an_apply_error(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    with pytest.raises(ContainerFailed, match=container_name(app, "1.0.0", DEVICE)):
        executor.switch(target(app, "1.0.0", docker_world.push_app("1.0.0")), None)


# --- the whole path --------------------------------------------------------------------------------


def test_update_switch_and_offline_rollback_end_to_end(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    port = free_port()
    http = {"http": port}
    old = target(app, "1.0.0", docker_world.push_app("1.0.0"), command=httpd(port), ports=http)
    new = target(app, "1.1.0", docker_world.push_app("1.1.0"), httpd(port), "d2", ports=http)
    for step in (executor.fetch, executor.install):
        step(old)
    assert f"{port}/tcp" in container(docker_world, app, "1.0.0").attrs["Config"]["ExposedPorts"]
    executor.switch(old, None)
    assert served(port) == "app 1.0.0\n"

    executor.fetch(new)
    executor.install(new)
    assert served(port) == "app 1.0.0\n"  # installed beside, the old one still serves
    executor.switch(new, "1.0.0")
    assert served(port) == "app 1.1.0\n"
    assert executor.state(app, "1.1.0") is RunState.RUNNING
    assert executor.state(app, "1.0.0") is RunState.EXITED  # stopped but kept for a rollback
    assert executor.active(app) == "1.1.0"

    with docker_world.registry.stopped():  # a rollback needs nothing from the network
        executor.rollback(app, "1.1.0", "1.0.0")
        assert served(port) == "app 1.0.0\n"
    assert executor.state(app, "1.0.0") is RunState.RUNNING
    assert executor.state(app, "1.1.0") is RunState.MISSING
    assert executor.active(app) == "1.0.0"
    executor.rollback(app, "1.1.0", "1.0.0")  # idempotent: redone after a crash
    assert executor.state(app, "1.0.0") is RunState.RUNNING


def test_commit_removes_the_previous_container_and_keeps_its_image(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    old_image, new_image = docker_world.push_app("1.0.0"), docker_world.push_app("1.1.0")
    old, new = target(app, "1.0.0", old_image), target(app, "1.1.0", new_image, deployment="d2")
    executor.install(old)
    executor.switch(old, None)
    executor.install(new)
    executor.switch(new, "1.0.0")

    executor.commit(app, "1.1.0", "1.0.0")
    executor.commit(app, "1.1.0", "1.0.0")

    assert executor.state(app, "1.0.0") is RunState.MISSING
    assert executor.state(app, "1.1.0") is RunState.RUNNING
    assert old_image in docker_world.client.images.get(old_image).attrs["RepoDigests"]


def test_rollback_to_nothing_stops_the_failed_version_and_clears_active(
    docker_world: DockerWorld, executor: DockerExecutor, app: str
) -> None:
    first = target(app, "1.0.0", docker_world.push_app("1.0.0"))
    executor.install(first)
    executor.switch(first, None)

    executor.rollback(app, "1.0.0", None)

    assert executor.state(app, "1.0.0") is RunState.MISSING
    assert executor.active(app) is None


# --- without an engine -----------------------------------------------------------------------------


def test_an_engine_that_does_not_answer_is_a_transport_error(tmp_path: Path) -> None:
    ctx = ExecutorContext(apps_dir=tmp_path / "apps", downloads_dir=tmp_path / "downloads")
    executor = DockerExecutor(ctx, agent_config(f"unix://{tmp_path / 'no-such.sock'}"))

    with pytest.raises(EngineUnavailable) as caught:
        executor.state("app", "1.0.0")

    assert isinstance(caught.value, TransportError) and "no-such.sock" in str(caught.value)
    assert executor.active("app") is None  # no file, and the engine cannot say: nothing is active


def test_a_release_without_a_container_image_is_refused(tmp_path: Path) -> None:
    ctx = ExecutorContext(apps_dir=tmp_path / "apps", downloads_dir=tmp_path / "downloads")
    executor = DockerExecutor(ctx, agent_config(f"unix://{tmp_path / 'no-such.sock'}"))
    release = Release.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "Release",
            "app": "app",
            "version": "1.0.0",
            "artifacts": [
                {
                    "kind": "app_tarball",
                    "name": "app",
                    "url": "https://x/app.tar",
                    "sha256": "a" * 64,
                    "size": 1,
                }
            ],
        }
    )

    with pytest.raises(ApplyError, match="exactly one container_image artifact, found 0"):
        executor.fetch(AppTarget(deployment_id="d1", app="app", version="1.0.0", release=release))


# --- several robots on one engine ------------------------------------------------------------------


def test_two_devices_on_one_engine_do_not_touch_each_others_containers(
    docker_world: DockerWorld, tmp_path: Path, app: str
) -> None:
    def robot(device: str) -> DockerExecutor:
        ctx = ExecutorContext(apps_dir=tmp_path / device / "apps", downloads_dir=tmp_path / device / "dl")
        return DockerExecutor(ctx, agent_config(docker_world.base_url, device))

    one, two = robot("robot-1"), robot("robot-2")
    old = target(app, "1.0.0", docker_world.push_app("1.0.0"), command=["/bin/sleep", "3600"])
    new = target(app, "1.1.0", docker_world.push_app("1.1.0"), ["/bin/sleep", "3600"], "d2")
    for executor in (one, two):
        executor.install(old)
        executor.switch(old, None)
    two.install(new)
    two.switch(new, "1.0.0")  # stops robot-2's 1.0.0 only
    assert one.state(app, "1.0.0") is RunState.RUNNING and one.active(app) == "1.0.0"
    assert one.state(app, "1.1.0") is RunState.MISSING  # robot-2's container is not robot-1's
    assert two.state(app, "1.0.0") is RunState.EXITED

    two.commit(app, "1.1.0", "1.0.0")  # removes robot-2's 1.0.0, not robot-1's
    assert one.state(app, "1.0.0") is RunState.RUNNING
    assert container(docker_world, app, "1.0.0").labels["dev.fleetcd.device"] == "robot-1"
    one.rollback(app, "1.0.0", None)
    assert two.state(app, "1.1.0") is RunState.RUNNING and two.active(app) == "1.1.0"


def test_the_targets_environment_and_its_config_file_reach_the_container(
    docker_world: DockerWorld, executor: DockerExecutor, app: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "apps" / app / "config" / "app.json"
    script = (
        f'(cat "$FLEETCD_CONFIG"; echo "$FLEETCD_APP $GREETING") > /www/index.html && {" ".join(httpd(port))}'
    )
    new = target(
        app, "1.0.0", docker_world.push_app("1.0.0"), ["/bin/sh", "-c", script], config_path="app.json"
    )
    new = AppTarget(
        new.deployment_id, app, "1.0.0", new.release, env={**new.env, "FLEETCD_CONFIG": str(config)}
    )
    executor.install(new)
    config.write_text('{"port": 8080}\n')  # the agent writes it between install and switch
    executor.switch(new, None)
    assert served(port) == f'{{"port": 8080}}\n{app} hi\n'
    mounts = container(docker_world, app, "1.0.0").attrs["Mounts"]
    assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
        (str(config.parent), str(config.parent), False)
    ]
