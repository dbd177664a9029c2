"""The daemon loop in-process (:func:`agent.loop.run_forever`), as systemd sees it on NOTIFY_SOCKET.

tests/test_agent_daemon.py runs ``fleetcd-agent run`` as a process; here the same loop runs in the
test's main thread on the agent world (tests/sim/agent.py: the real controller, git server, gpg,
HTTP artifacts and app processes) with a real ``NOTIFY_SOCKET`` listener (tests/systemd.py), so
what each cycle tells systemd can be read line by line, and the loop stopped at a chosen moment:

* READY before the first cycle, STOPPING at the end, whatever ended it (``stop``, SIGTERM);
* the STATUS line after each cycle: the serial, each app's version and state, the next sync, and
  the error last (a failed sync waits the backoff, not the poll interval);
* the SIGTERM handler is the loop's only while it runs, and the one before it is back after.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.loop import Runtime, run_forever
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.systemd import LONG_SECONDS, NotifyListener, quiet_poll

BACKOFF_SECONDS = 2  # the first backoff: far from the poll interval, so the STATUS line tells which


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    agent = quiet_poll(backoff_initial_seconds=BACKOFF_SECONDS, backoff_max_seconds=2 * BACKOFF_SECONDS)
    built = AgentWorld.create(tmp_path, keys, artifacts, agent=agent)
    yield built
    built.close()


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """systemd's notify socket for the agent in this process (no watchdog: WATCHDOG_USEC unset)."""
    listener = NotifyListener.bind(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield listener
    listener.close()


def stop_after_statuses(systemd: NotifyListener, stop: threading.Event, count: int) -> threading.Thread:
    """A thread that sets ``stop`` once ``count`` STATUS lines about cycles have arrived."""

    def watch() -> None:
        while not stop.wait(0.02):
            if len([s for s in systemd.statuses() if s.startswith("serial ")]) >= count:
                stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def run(world: AgentWorld, systemd: NotifyListener, cycles: int = 1) -> list[bytes]:
    """Run the loop in this thread until ``cycles`` cycles reported; every line systemd got."""
    stop = threading.Event()
    watcher = stop_after_statuses(systemd, stop, cycles)
    run_forever(world.config, stop, runtime=Runtime(now=lambda: world.now))
    watcher.join(5)
    systemd.wait_for(b"STOPPING=1", limit_s=5)
    return systemd.lines()


def cycle_statuses(lines: list[bytes]) -> list[str]:
    return [line.decode()[len("STATUS=") :] for line in lines if line.startswith(b"STATUS=serial ")]


def test_ready_comes_before_the_first_cycle_and_stopping_after_the_last(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")

    lines = run(world, systemd)

    assert lines[0] == b"READY=1" and lines[1] == b"STATUS=starting the first cycle"
    assert lines[-2:] == [b"STOPPING=1", b"STATUS=stopping"]
    (status,) = cycle_statuses(lines)
    assert status == f"serial 1: {APP} 1.0.0 healthy; next sync in {LONG_SECONDS} s"
    assert world.answer() == "1.0.0"


def test_a_stop_asked_before_the_loop_starts_runs_no_cycle_and_still_says_stopping(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    stop = threading.Event()
    stop.set()

    run_forever(world.config, stop, runtime=Runtime(now=lambda: world.now))

    systemd.wait_for(b"STOPPING=1", limit_s=5)
    assert systemd.lines() == [
        b"READY=1",
        b"STATUS=starting the first cycle",
        b"STOPPING=1",
        b"STATUS=stopping",
    ]
    assert world.entry() is None  # nothing converged: no cycle ran


def test_with_the_git_server_gone_the_status_names_the_backoff_and_ends_with_the_error(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    with world.controller.server_down():
        lines = run(world, systemd)

    (status,) = cycle_statuses(lines)
    head, _, error = status.partition("; error: ")
    assert head == f"serial None: no apps; next sync in {BACKOFF_SECONDS} s"
    assert str(world.controller.server) in error  # which server did not answer


def test_an_offline_robot_keeps_running_its_version_and_says_so_in_the_status(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None

    with world.controller.server_down():
        lines = run(world, systemd)

    (status,) = cycle_statuses(lines)
    assert status.startswith(f"serial 1: {APP} 1.0.0 healthy; next sync in {BACKOFF_SECONDS} s; error: ")
    assert world.answer() == "1.0.0"


def test_sigterm_while_the_loop_sleeps_stops_it_and_the_previous_handler_is_back(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()

    def terminate_after_the_first_cycle() -> None:
        systemd.wait_for(b"STATUS=serial ", limit_s=120)
        os.kill(os.getpid(), signal.SIGTERM)  # systemctl stop: handled by the loop, not fatal

    sender = threading.Thread(target=terminate_after_the_first_cycle, daemon=True)
    sender.start()
    run_forever(world.config, stop, runtime=Runtime(now=lambda: world.now))
    sender.join(5)

    assert stop.is_set()  # the handler set it: the sleep of an hour ended at once
    assert signal.getsignal(signal.SIGTERM) == before
    systemd.wait_for(b"STOPPING=1", limit_s=5)
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)


def test_the_loop_goes_on_after_a_failed_cycle_and_the_next_status_has_no_error(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    stop = threading.Event()
    moved: list[bool] = []

    def server_back_after_the_first_cycle() -> None:
        systemd.wait_for(b"STATUS=serial ", limit_s=120)
        moved.append(True)
        away.rename(world.controller.server)

    server = world.controller.server
    away = server.with_name("fleet.git.away")
    server.rename(away)
    helper = threading.Thread(target=server_back_after_the_first_cycle, daemon=True)
    helper.start()
    watcher = stop_after_statuses(systemd, stop, 2)
    run_forever(world.config, stop, runtime=Runtime(now=lambda: world.now))
    helper.join(5)
    watcher.join(5)

    first, second = cycle_statuses(systemd.lines())[:2]
    assert moved and "error: " in first and f"next sync in {BACKOFF_SECONDS} s" in first
    assert second == f"serial 1: {APP} 1.0.0 healthy; next sync in {LONG_SECONDS} s"
    assert world.answer() == "1.0.0"
