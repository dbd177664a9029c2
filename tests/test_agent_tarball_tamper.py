"""The tarball executor against release files that are not what was signed: a tarball trying to set
its own command through the agent's metadata folder, and release directories edited on the robot.

The agent keeps ``<release>/.fleetcd`` (``run.json``: the argv and environment it starts the app
with, and the recorded tree) for itself; an archive shipping that folder could pick the command
the agent runs, so it is refused. An installed release is reused only while its files match the
tree recorded at install; an edited one is installed again from the verified download, except the
release that runs right now, whose files are never swapped under the running app. Real artifact
server, real unpacking, real app processes (the fixtures of tests/test_agent_tarball.py).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from agent.executors.base import AppTarget, ExecutorContext
from agent.executors.tarball import META_DIR, TarballExecutor
from agent.install.slots import RELEASES_DIR
from fleetcd.errors import ApplyError
from tests.apps import app_source, make_release, tarball_artifact, wait_for_version
from tests.httpserver import ArtifactServer
from tests.test_agent_tarball import (  # the executor's fixtures, shared
    APP,
    Publisher,
    config,
    ctx,
    executor,
    port,
    publish,
    server,
)

__all__ = ["config", "ctx", "executor", "port", "publish", "server"]


def release_dir(ctx: ExecutorContext, version: str) -> Path:
    return ctx.app_dir(APP) / RELEASES_DIR / version


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tarball_shipping_the_agents_metadata_folder_is_refused_so_it_cannot_pick_its_command(
    executor: TarballExecutor, server: ArtifactServer, ctx: ExecutorContext, port: int
) -> None:
    planted = {"app": APP, "version": "1.0.0", "argv": ["/bin/sh", "-c", "touch /tmp/owned"], "env": {}}
    data = tarball({"app.py": app_source("1.0.0"), f"{META_DIR}/run.json": json.dumps(planted).encode()})
    url = server.add("/sneaky.tar.gz", data)
    target = AppTarget("d", APP, "1.0.0", make_release(APP, "1.0.0", [tarball_artifact(url, data)]))
    executor.fetch(target)

    with pytest.raises(ApplyError, match="reserved"):
        executor.install(target)
    with pytest.raises(ApplyError):
        executor.switch(target, None)  # nothing runnable was left behind
    assert executor.run_spec(APP, "1.0.0") is None
    assert executor.active(APP) is None


def test_an_edited_older_release_is_installed_again_from_the_verified_artifact_before_it_runs(
    executor: TarballExecutor, publish: Publisher, ctx: ExecutorContext, port: int
) -> None:
    first = publish.installed(executor, "1.0.0")
    executor.switch(first, None)
    executor.switch(publish.installed(executor, "1.1.0"), "1.0.0")
    assert wait_for_version(port, "1.1.0") == "1.1.0"
    edited = release_dir(ctx, "1.0.0") / "app.py"
    edited.write_text("import os; os.system('touch /tmp/owned')\n")  # someone on the robot

    executor.fetch(first)  # an operator's rollback to 1.0.0 is a normal deployment of it
    executor.install(first)
    executor.switch(first, "1.1.0")

    assert edited.read_bytes() == app_source("1.0.0")  # unpacked again, not reused as found
    assert wait_for_version(port, "1.0.0") == "1.0.0"


def test_the_running_release_edited_on_disk_is_refused_not_replaced_under_the_running_app(
    executor: TarballExecutor, publish: Publisher, ctx: ExecutorContext, port: int
) -> None:
    target = publish.installed(executor, "1.0.0")
    executor.switch(target, None)
    assert wait_for_version(port) == "1.0.0"
    pid = executor.supervisor.running_pid(APP)
    edited = release_dir(ctx, "1.0.0") / "VERSION"
    edited.write_text("edited\n")

    with pytest.raises(ApplyError, match=r"active release 1\.0\.0 cannot be reused"):
        executor.install(target)

    assert edited.read_text() == "edited\n"  # left for drift reporting and a person, not removed
    assert executor.supervisor.running_pid(APP) == pid
    assert wait_for_version(port) == "1.0.0"
