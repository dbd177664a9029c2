"""The tarball executor end to end: a real artifact server, real unpacking, real app processes.

Each test publishes tiny HTTP apps (tests/apps.py) on an :class:`ArtifactServer`, drives the executor
the way the converge loop does, and asks the running app over HTTP which version answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.executors.base import AppTarget, ExecutorContext, RunState
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import TarballExecutor
from agent.install.slots import installed_versions
from fleetcd.errors import ApplyError, TransportError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import Release
from tests.apps import (
    AppBehaviour,
    build_app_tarball,
    free_port,
    healthz,
    make_release,
    payload_artifact,
    stop_all,
    tarball_artifact,
    wait_for_version,
    wait_until,
)
from tests.httpserver import ArtifactServer, Behaviour

APP = "web"
MODEL = b"weights " * 100


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as running:
        yield running


@pytest.fixture
def config() -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "robot-1",
            "remote": {"url": "/nonexistent/fleet.git"},
            "trust": {
                "keys_dir": "/nonexistent/keys",
                "root": {"keys": ["A" * 40]},
            },
        }
    )


@pytest.fixture
def ctx(tmp_path: Path) -> ExecutorContext:
    return ExecutorContext(
        apps_dir=tmp_path / "state" / "apps", downloads_dir=tmp_path / "state" / "downloads"
    )


@pytest.fixture
def executor(ctx: ExecutorContext, config: AgentConfig) -> Iterator[TarballExecutor]:
    built = TarballExecutor(ctx, config)
    yield built
    stop_all(Supervisor(built.supervisor.run_dir))


@pytest.fixture
def port() -> int:
    return free_port()


class Publisher:
    """Builds app releases and serves their artifacts; ``target`` makes what the converge loop passes."""

    def __init__(self, server: ArtifactServer, folder: Path, port: int) -> None:
        self.server, self.folder, self.port = server, folder, port

    def release(
        self, version: str, behaviour: AppBehaviour = "healthy", *, extra: list[dict[str, Any]] | None = None
    ) -> Release:
        data, _sha = build_app_tarball(self.folder / f"{APP}-{version}.tar.gz", version, behaviour=behaviour)
        url = self.server.add(f"/{APP}-{version}.tar.gz", data)
        return make_release(APP, version, [tarball_artifact(url, data), *(extra or [])])

    def target(self, release: Release) -> AppTarget:
        return AppTarget(
            f"dep-{release.version}", APP, release.version, release, env={"PORT": str(self.port)}
        )

    def installed(
        self, executor: TarballExecutor, version: str, behaviour: AppBehaviour = "healthy"
    ) -> AppTarget:
        target = self.target(self.release(version, behaviour))
        executor.fetch(target)
        executor.install(target)
        return target


@pytest.fixture
def publish(server: ArtifactServer, tmp_path: Path, port: int) -> Publisher:
    folder = tmp_path / "published"
    folder.mkdir()
    return Publisher(server, folder, port)


def test_upgrade_then_rollback_with_the_network_down_serves_the_right_version(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, port: int
) -> None:
    first = publish.installed(executor, "1.0.0")
    executor.switch(first, None)
    assert wait_for_version(port) == "1.0.0"
    assert executor.active(APP) == "1.0.0"
    assert executor.state(APP, "1.0.0") is RunState.RUNNING

    second = publish.installed(executor, "1.1.0")
    assert executor.state(APP, "1.1.0") is RunState.EXITED  # installed beside, not started
    executor.switch(second, "1.0.0")
    assert wait_for_version(port, "1.1.0") == "1.1.0"
    assert executor.active(APP) == "1.1.0"
    assert executor.state(APP, "1.0.0") is RunState.EXITED

    server.__exit__(None, None, None)  # the link is down from here on
    executor.rollback(APP, "1.1.0", "1.0.0")

    assert wait_for_version(port, "1.0.0") == "1.0.0"
    assert executor.active(APP) == "1.0.0"
    assert executor.state(APP, "1.0.0") is RunState.RUNNING
    assert executor.state(APP, "1.1.0") is RunState.EXITED


def test_crash_looping_version_reads_exited_and_rolls_back_to_the_working_one(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    executor.switch(publish.installed(executor, "1.0.0"), None)
    assert wait_for_version(port) == "1.0.0"

    executor.switch(publish.installed(executor, "2.0.0", "crash"), "1.0.0")

    assert wait_until(lambda: executor.state(APP, "2.0.0") is RunState.EXITED)
    assert "crashing on purpose" in executor.supervisor.log_tail(APP)
    executor.rollback(APP, "2.0.0", "1.0.0")
    assert wait_for_version(port) == "1.0.0"


def test_unhealthy_version_keeps_running_for_the_probes_to_judge(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    executor.switch(publish.installed(executor, "1.0.0", "unhealthy"), None)
    assert wait_until(lambda: healthz(port) is not None)
    answer = healthz(port)
    assert answer is not None and answer[0] == 500
    assert executor.state(APP, "1.0.0") is RunState.RUNNING


def test_rollback_of_a_first_install_stops_it_and_leaves_nothing_active(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    executor.switch(publish.installed(executor, "1.0.0", "unhealthy"), None)
    assert wait_until(lambda: healthz(port) is not None)

    executor.rollback(APP, "1.0.0", None)

    assert executor.active(APP) is None
    assert executor.state(APP, "1.0.0") is RunState.EXITED
    assert healthz(port) is None


def test_rollback_to_a_release_no_longer_on_disk_fails_and_keeps_the_current_one(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    executor.switch(publish.installed(executor, "1.0.0"), None)
    assert wait_for_version(port) == "1.0.0"
    with pytest.raises(ApplyError, match=r"0\.9\.0"):
        executor.rollback(APP, "1.0.0", "0.9.0")
    assert executor.active(APP) == "1.0.0"
    assert executor.state(APP, "1.0.0") is RunState.RUNNING


def test_replayed_switch_after_a_crash_does_not_restart_the_app(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    target = publish.installed(executor, "1.0.0")
    executor.switch(target, None)
    assert wait_for_version(port) == "1.0.0"
    pid = json.loads(executor.supervisor.pidfile(APP).read_text())["pid"]

    executor.install(target)
    executor.switch(target, None)

    assert json.loads(executor.supervisor.pidfile(APP).read_text())["pid"] == pid
    assert executor.state(APP, "1.0.0") is RunState.RUNNING


def test_restart_starts_the_active_version_again_for_a_config_only_change(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    target = publish.installed(executor, "1.0.0")
    executor.switch(target, None)
    assert wait_for_version(port) == "1.0.0"
    pid = json.loads(executor.supervisor.pidfile(APP).read_text())["pid"]

    executor.restart(APP, "1.0.0")

    assert json.loads(executor.supervisor.pidfile(APP).read_text())["pid"] != pid
    assert wait_for_version(port) == "1.0.0"
    assert (executor.active(APP), executor.state(APP, "1.0.0")) == ("1.0.0", RunState.RUNNING)


def test_install_writes_run_json_and_places_payloads_inside_the_release(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, ctx: ExecutorContext, port: int
) -> None:
    url = server.add("/model.bin", MODEL)
    release = publish.release(
        "1.0.0", extra=[payload_artifact(url, MODEL, name="weights", path="models/nav.bin")]
    )
    target = publish.target(release)

    executor.fetch(target)
    executor.install(target)

    folder = ctx.app_dir(APP) / "releases" / "1.0.0"
    assert (folder / "models" / "nav.bin").read_bytes() == MODEL
    run = json.loads((folder / ".fleetcd" / "run.json").read_text())
    assert run == {
        "app": APP,
        "version": "1.0.0",
        "argv": [sys.executable, "app.py"],
        "env": {"PORT": str(port)},
    }
    assert executor.run_spec(APP, "1.0.0") is not None


def test_install_resumes_after_a_crash_between_unpack_and_run_json(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, ctx: ExecutorContext
) -> None:
    url = server.add("/model.bin", MODEL)
    release = publish.release("1.0.0", extra=[payload_artifact(url, MODEL, name="weights", path="nav.bin")])
    target = publish.target(release)
    executor.fetch(target)
    executor.install(target)
    folder = ctx.app_dir(APP) / "releases" / "1.0.0"
    (folder / ".fleetcd" / "run.json").unlink()  # as if the power went right after the unpack
    (folder / "nav.bin").unlink()
    with pytest.raises(ApplyError, match=r"not .*installed"):
        executor.switch(target, None)

    executor.install(target)

    assert (folder / "nav.bin").read_bytes() == MODEL
    assert executor.run_spec(APP, "1.0.0") is not None


def test_fetch_resumes_a_cut_download_with_a_range_request(
    executor: TarballExecutor, server: ArtifactServer, tmp_path: Path, port: int
) -> None:
    data, _sha = build_app_tarball(tmp_path / "app.tar.gz", "1.0.0")
    url = server.add("/cut.tar.gz", data, Behaviour(fail_first_requests=1, fail_after_fraction=0.5))
    target = AppTarget("d", APP, "1.0.0", make_release(APP, "1.0.0", [tarball_artifact(url, data)]))

    with pytest.raises(TransportError):
        executor.fetch(target)
    executor.fetch(target)

    second = server.seen("/cut.tar.gz")[1]
    assert second.headers["Range"].startswith("bytes=")
    assert second.headers["Range"] != "bytes=0-"


@pytest.mark.parametrize(
    ("declared", "what"),
    [
        pytest.param({"sha256": "0" * 64}, "sha256", id="digest-mismatch"),
        pytest.param({"size_delta": -10}, "larger than", id="too-large"),
    ],
)
def test_a_tampered_artifact_is_an_apply_error_and_leaves_no_file(
    executor: TarballExecutor,
    server: ArtifactServer,
    ctx: ExecutorContext,
    declared: dict[str, Any],
    what: str,
) -> None:
    data = b"not what was signed" * 10
    artifact = tarball_artifact(server.add("/bad.tar.gz", data), data)
    artifact["size"] += declared.pop("size_delta", 0)
    artifact.update(declared)
    target = AppTarget("d", APP, "1.0.0", make_release(APP, "1.0.0", [artifact]))

    with pytest.raises(ApplyError, match=what):
        executor.fetch(target)
    assert [p for p in ctx.downloads_dir.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../escape.bin", id="dotdot"),
        pytest.param("/etc/escape.bin", id="absolute"),
        pytest.param("models/../../escape.bin", id="dotdot-inside"),
        pytest.param(".fleetcd/run.json", id="agent-metadata"),
    ],
)
def test_a_payload_path_leaving_the_release_is_refused_before_downloading(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, path: str
) -> None:
    url = server.add("/model.bin", MODEL)
    release = publish.release("1.0.0", extra=[payload_artifact(url, MODEL, name="weights", path=path)])

    with pytest.raises(ApplyError, match="path"):
        executor.fetch(publish.target(release))
    assert server.seen("/model.bin") == []


def test_a_release_without_an_app_tarball_is_refused(
    executor: TarballExecutor, server: ArtifactServer
) -> None:
    url = server.add("/model.bin", MODEL)
    release = make_release(APP, "1.0.0", [payload_artifact(url, MODEL, name="weights", path="w.bin")])
    with pytest.raises(ApplyError, match="exactly one app_tarball"):
        executor.fetch(AppTarget("d", APP, "1.0.0", release))


def test_commit_keeps_the_new_and_previous_release_and_drops_downloads(
    executor: TarballExecutor, publish: Publisher, ctx: ExecutorContext, port: int
) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        executor.switch(publish.installed(executor, version), None)
    assert wait_for_version(port, "1.2.0") == "1.2.0"

    executor.commit(APP, "1.2.0", "1.1.0")

    assert installed_versions(ctx.app_dir(APP)) == ["1.1.0", "1.2.0"]
    assert executor.state(APP, "1.0.0") is RunState.MISSING
    assert not (ctx.downloads_dir / APP / "1.2.0").exists()
    assert executor.state(APP, "1.2.0") is RunState.RUNNING


def test_reinstalling_a_committed_release_needs_no_network(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, port: int
) -> None:
    target = publish.installed(executor, "1.0.0")
    executor.switch(target, None)
    executor.commit(APP, "1.0.0", None)
    server.__exit__(None, None, None)

    executor.install(target)  # a replayed "applying" step after the downloads are gone

    assert executor.run_spec(APP, "1.0.0") is not None


def test_ensure_running_restarts_the_active_version_after_a_reboot(
    executor: TarballExecutor, publish: Publisher, port: int
) -> None:
    executor.switch(publish.installed(executor, "1.0.0"), None)
    assert wait_for_version(port) == "1.0.0"
    executor.supervisor.stop(APP)  # what a reboot does to every process

    assert executor.ensure_running(APP) is True
    assert wait_for_version(port) == "1.0.0"
    assert executor.ensure_running(APP) is False


def test_a_tarball_without_command_is_switched_but_not_run(
    executor: TarballExecutor, publish: Publisher, server: ArtifactServer, tmp_path: Path
) -> None:
    data, _sha = build_app_tarball(tmp_path / "static.tar.gz", "1.0.0")
    artifact = tarball_artifact(server.add("/static.tar.gz", data), data)
    del artifact["command"]
    target = publish.target(make_release(APP, "1.0.0", [artifact]))
    executor.fetch(target)
    executor.install(target)

    executor.switch(target, None)

    assert executor.active(APP) == "1.0.0"
    assert executor.state(APP, "1.0.0") is RunState.RUNNING  # "running" = active, for a hook-run app
    assert executor.supervisor.known_apps() == []
