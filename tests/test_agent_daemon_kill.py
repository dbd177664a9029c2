"""``fleetcd-agent run`` killed with -9 (the OOM killer, a power cut of the compute board) and started again.

The daemon runs in its own process (:class:`tests.systemd.AgentDaemon`) on the agent test world
(the real controller's signed desired state on a bare server, real tarball apps served over HTTP).
A kill -9 is never announced, so what the robot needs is that nothing depends on it being clean:

* a download cut off by the kill keeps the bytes already fetched, and the restarted agent asks the
  server for the rest only (``Range``), then installs the release;
* the app the agent started outlives it, and a restarted agent recognises the running process as
  its own: the app is neither restarted nor started a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.configfiles.write import sha256_hex
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR
from fleetcd.vocabulary import Activity
from tests.apps import build_app_tarball
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.agent import APP, AgentWorld
from tests.systemd import AgentDaemon, quiet_poll, wait_for


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts, agent=quiet_poll())
    yield built
    built.close()


def supervisor(world: AgentWorld) -> Supervisor:
    return Supervisor(world.paths.apps_dir / RUN_DIR)


def test_agent_killed_mid_download_resumes_the_partial_after_a_restart(
    world: AgentWorld, artifacts: ArtifactServer, tmp_path: Path
) -> None:
    name = f"/{APP}-1.0.0-large.tar.gz"
    data, _sha = build_app_tarball(tmp_path / name.lstrip("/"), "1.0.0", padding_bytes=256 * 1024)
    url = artifacts.add(name, data, Behaviour(trickle_bytes_per_second=len(data) // 8))
    world.publish("1.0.0", artifact={"url": url, "sha256": sha256_hex(data), "size": len(data)})

    def partial_bytes() -> int:
        parts = [p for p in world.paths.downloads_dir.rglob("*.part") if p.is_file()]  # fetch.partial_path
        return max((p.stat().st_size for p in parts), default=0)

    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        wait_for(lambda: partial_bytes() > len(data) // 5, 60, "a fifth of the artifact on disk")
        daemon.kill_9()
    kept = partial_bytes()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.DOWNLOADING
    assert 0 < kept < len(data)

    artifacts.add(name, data)  # served at full speed from now on
    before = len(artifacts.seen(name))
    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        assert world.answer("1.0.0", limit_s=60) == "1.0.0"
        daemon.wait_for(b"STATUS=serial")
        assert daemon.terminate() == 0

    resumed = artifacts.seen(name)[before:]
    assert resumed, "the restarted agent fetched nothing"
    start = int(resumed[0].headers["Range"].removeprefix("bytes=").split("-")[0])
    assert start >= kept  # what the killed agent had fetched was not fetched again


def test_agent_killed_with_9_leaves_the_app_running_and_a_restart_starts_no_second_copy(
    world: AgentWorld, tmp_path: Path
) -> None:
    world.publish("1.0.0")
    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        daemon.wait_for(b"STATUS=serial 1:")
        pid = supervisor(world).running_pid(APP)
        daemon.kill_9()

    assert pid is not None
    assert world.answer() == "1.0.0"
    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        status = daemon.wait_for(b"STATUS=serial")
        assert f"{APP} 1.0.0 healthy".encode() in status
        assert daemon.terminate() == 0
    assert supervisor(world).running_pid(APP) == pid  # the same process, never restarted or doubled
    assert world.answer() == "1.0.0"
