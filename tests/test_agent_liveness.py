"""The systemd watchdog sees a long but healthy step as alive and a stuck one as dead.

Every test listens on a real ``NOTIFY_SOCKET`` datagram socket with ``WATCHDOG_USEC`` set in the
environment, as systemd runs ``fleetcd-agent run``. The property checked is systemd's own: while a
step keeps its budget, no gap between two ``WATCHDOG=1`` pings reaches ``WatchdogSec`` (so the agent
is not killed); once a step overruns its budget the pings stop (so it is). The end-to-end tests run
the real loop (:func:`agent.loop.run_forever`) against the real controller-written repository with
the real tarball executor downloading from a real HTTP server that trickles its bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.executors.base import ExecutorContext
from agent.executors.tarball import TarballExecutor
from agent.fetch import DownloadSettings, Progress
from agent.fetch.http import download
from agent.liveness import Liveness, LivenessSettings
from agent.loop import Runtime, notify, run_forever
from agent.sdnotify import watchdog_interval_seconds
from fleetcd.vocabulary import Activity
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.agent import APP, AgentWorld
from tests.systemd import NotifyListener, wait_for

WATCHDOG_USEC = 1_000_000  # WatchdogSec=1 s: the agent pings every 0.5 s
WATCHDOG_S = WATCHDOG_USEC / 1_000_000


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener.bind(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def watchdog(settings: LivenessSettings) -> Liveness:
    """What ``run_forever`` builds under systemd: pings at WatchdogSec/2 through sd_notify."""
    return Liveness(watchdog_interval_seconds(), lambda: notify(WATCHDOG=1), settings=settings)


def test_pings_keep_coming_through_a_step_longer_than_the_watchdog_that_keeps_its_budget(
    systemd: NotifyListener,
) -> None:
    liveness = watchdog(LivenessSettings(default_step_seconds=WATCHDOG_S / 2, slack_seconds=0.1))

    with liveness, liveness.step("download", budget_seconds=6 * WATCHDOG_S):
        start = time.monotonic()
        time.sleep(4 * WATCHDOG_S)  # far past both the watchdog and the default budget
        end = time.monotonic()

    assert len(systemd.pings(start, end)) >= 4
    assert systemd.longest_silence(start, end) < WATCHDOG_S


def test_pings_stop_once_a_step_overruns_its_budget_and_resume_when_the_loop_moves_again(
    systemd: NotifyListener,
) -> None:
    liveness = watchdog(LivenessSettings(default_step_seconds=60, slack_seconds=0.1))

    with liveness:
        with liveness.step("download", budget_seconds=WATCHDOG_S):
            wait_for(lambda: liveness.overdue is not None)
            overdue_at = time.monotonic()
            assert liveness.overdue == "download"
            time.sleep(4 * WATCHDOG_S)  # stuck: systemd would have killed the agent by now
            stuck_until = time.monotonic()
        liveness.beat()
        wait_for(lambda: systemd.pings(stuck_until))

    grace = watchdog_interval_seconds() or 0.0  # a ping already on its way when the budget ran out
    assert systemd.pings(overdue_at + grace, stuck_until) == []
    assert systemd.longest_silence(overdue_at, stuck_until) > WATCHDOG_S
    assert systemd.pings(end=overdue_at)  # it was pinging before


class Checkpoints:
    """The loop's checkpoints (around every journal write) with the time each was passed."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        self.at.setdefault(name, time.monotonic())


def agent_in_thread(world: AgentWorld, runtime: Runtime, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_forever, args=(world.config, stop), kwargs={"runtime": runtime})
    thread.start()
    return thread


def test_a_slow_download_within_its_deadline_keeps_the_real_agent_alive_under_the_watchdog(
    world: AgentWorld, artifacts: ArtifactServer, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    data = (world.root / "published" / f"{APP}-1.0.0.tar.gz").read_bytes()
    artifacts.add(f"/{APP}-1.0.0.tar.gz", data, Behaviour(trickle_bytes_per_second=len(data) // 3 + 1))
    marks, stop = Checkpoints(), threading.Event()

    def checkpoint(name: str) -> None:
        marks(name)
        if name == "after-healthy":
            stop.set()

    agent = agent_in_thread(world, Runtime(now=lambda: world.now, checkpoint=checkpoint), stop)
    agent.join(120)

    assert not agent.is_alive()
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, "1.0.0")
    start, end = marks.at["after-downloading"], marks.at["before-verifying"]
    assert end - start > 2 * WATCHDOG_S  # the download alone outlasted WatchdogSec
    assert systemd.longest_silence(start, end) < WATCHDOG_S
    assert world.answer() == "1.0.0"


def test_a_download_stuck_past_its_deadline_stops_the_pings_so_systemd_restarts_the_agent(
    world: AgentWorld, systemd: NotifyListener
) -> None:
    world.publish("1.0.0")
    hung, release = threading.Event(), threading.Event()

    def stuck_downloader(
        url: str,
        dest: Path,
        *,
        sha256: str,
        size: int,
        settings: DownloadSettings,
        progress: Progress | None = None,
    ) -> Path:
        done = download(url, dest, sha256=sha256, size=size, settings=settings, progress=progress)
        if not hung.is_set():  # the first time only: e.g. a read blocked in the kernel, past any timeout
            hung.set()
            release.wait(60)
        return done

    paths = world.paths.create()
    executor = TarballExecutor(
        ExecutorContext(paths.apps_dir, paths.downloads_dir),
        world.config,
        download_settings=DownloadSettings(deadline_seconds=WATCHDOG_S),
        downloader=stuck_downloader,
    )
    liveness = watchdog(LivenessSettings(slack_seconds=0.1))
    marks, stop = Checkpoints(), threading.Event()
    runtime = Runtime(now=lambda: world.now, checkpoint=marks, executor=executor, liveness=liveness)
    agent = agent_in_thread(world, runtime, stop)
    try:
        wait_for(hung.is_set)
        wait_for(lambda: liveness.overdue is not None)
        overdue_at = time.monotonic()
        time.sleep(4 * WATCHDOG_S)
        stuck_until = time.monotonic()
        entry = world.entry()
        assert entry is not None and entry.state is Activity.DOWNLOADING
        assert liveness.overdue == f"{APP} downloading"
    finally:
        release.set()
        moving_again = time.monotonic()
        try:
            wait_for(lambda: "after-healthy" in marks.at)
            wait_for(lambda: systemd.pings(start=moving_again))
        finally:
            stop.set()
            agent.join(60)

    grace = watchdog_interval_seconds() or 0.0
    assert systemd.pings(overdue_at + grace, stuck_until) == []
    assert systemd.pings(start=moving_again)  # the step ended, the loop moves: pinged again
    assert not agent.is_alive()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.HEALTHY
