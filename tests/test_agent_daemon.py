"""``fleetcd-agent run`` as systemd runs it: a real process, stopped with SIGTERM, cut off from its server.

Each test starts the daemon (:class:`tests.systemd.AgentDaemon`) on the agent test world (the real
controller's signed desired state on a bare server, real tarball apps served over HTTP) and reads
what it tells systemd on ``NOTIFY_SOCKET``. What a robot needs of its daemon:

* ``systemctl stop`` is obeyed at once while it sleeps, and never cuts a deployment in half;
* with the git server gone it retries on its backoff, not its (long) poll interval, and converges
  once the server is back, without a restart;

kill -9 and a restart: tests/test_agent_daemon_kill.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.systemd import LONG_SECONDS, AgentDaemon, quiet_poll, wait_for


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(
        tmp_path, keys, artifacts, agent=quiet_poll(backoff_initial_seconds=1, backoff_max_seconds=2)
    )
    yield built
    built.close()


def test_sigterm_while_the_daemon_sleeps_stops_it_at_once_not_after_the_poll_interval(
    world: AgentWorld, tmp_path: Path
) -> None:
    world.publish("1.0.0")
    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        assert daemon.wait_for(b"READY=1")
        status = daemon.wait_for(b"STATUS=serial")
        assert f"{APP} 1.0.0 healthy".encode() in status
        assert f"next sync in {LONG_SECONDS} s".encode() in status  # asleep for an hour now

        asked = time.monotonic()
        assert daemon.terminate(limit_s=30) == 0
        assert time.monotonic() - asked < 10
        assert daemon.wait_for(b"STOPPING=1", limit_s=5)
    assert world.answer() == "1.0.0"  # the app outlives its agent (KillMode=process)


def test_with_the_git_server_gone_the_daemon_backs_off_and_deploys_once_it_is_back_without_a_restart(
    world: AgentWorld, tmp_path: Path
) -> None:
    world.publish("1.0.0")
    server = world.controller.server
    away = server.rename(server.with_name("moved-away.git"))

    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        wait_for(lambda: len(daemon.systemd.statuses()) >= 4, 60, "four failed cycles")
        failed = [s for s in daemon.systemd.statuses() if s.startswith("serial")][:3]
        assert all("error:" in s for s in failed), failed
        # backoff_initial_seconds=1 doubling to the cap of 2: never the hour of the poll interval
        assert [s.split("next sync in ", 1)[1].split(";")[0] for s in failed] == ["1 s", "2 s", "2 s"]
        assert world.answer(limit_s=0.2) is None

        away.rename(server)
        assert world.answer("1.0.0", limit_s=30) == "1.0.0"
        came_back = daemon.wait_for(b"STATUS=serial 1:")
        assert b"healthy" in came_back and b"error" not in came_back
        assert f"next sync in {LONG_SECONDS} s".encode() in came_back  # the backoff was reset
        assert daemon.terminate() == 0

    world.reconcile()  # the report the daemon pushed once back
    (record,) = world.records()
    assert record.activity is Activity.DEPLOYED


def test_sigterm_during_a_health_watch_ends_the_cycle_with_the_version_committed_then_exits(
    world: AgentWorld, tmp_path: Path
) -> None:
    world.publish("1.0.0", health=world.health("/healthz", watch_seconds=4))

    with AgentDaemon.start(world.config_file, tmp_path) as daemon:
        wait_for(lambda: (e := world.entry()) is not None and e.state is Activity.WATCHING, 60, "the watch")
        assert daemon.terminate(limit_s=60) == 0  # `systemctl stop` mid-watch
        assert b"STOPPING=1" in daemon.systemd.lines()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, "1.0.0")
    assert world.answer() == "1.0.0"
    world.reconcile()
    (record,) = world.records()
    assert record.activity is Activity.DEPLOYED  # the cycle's report went out before the exit
