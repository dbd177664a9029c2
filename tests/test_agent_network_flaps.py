"""The network comes and goes in the middle of a cycle: the git server gone after the fetch, the
artifact server cutting a download, both back a cycle later. And the robot's own disk refusing the
report file, where the report cannot be kept.

Real agent cycles (tests/sim/agent.py): the real controller's signed desired state on a bare git
server, tarball apps over a real HTTP server, real app processes. A fault is timed with the
agent's own checkpoints (``before-<state>``, around every journal write): the server is taken away
exactly between two steps, never by a mock. What a robot needs:

* what it fetched and verified is enough to finish the deployment (install, switch, watch, commit)
  with the git server gone: only the report waits, in the outbox, and is delivered once it is back;
* a cut download is a transient failure: the deployment waits (``retrying``), keeps the partial
  bytes, and resumes them with a Range request next cycle instead of starting over;
* no report that could not be stored or pushed is ever counted as sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from agent.errors import DownloadFailed
from agent.fetch import partial_path
from agent.loop import Runtime, local_status
from agent.report.outbox import Outbox
from fleetcd.errors import TransportError
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.agent import APP, DEVICE, AgentWorld, at


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    yield built
    built.close()


def server_gone_at(world: AgentWorld, state: str, stack: ExitStack) -> Runtime:
    """The git server taken away just before ``state`` is recorded, until ``stack`` closes."""
    return at(state, lambda: stack.enter_context(world.controller.server_down()))


def tarball_of(world: AgentWorld, version: str) -> tuple[str, bytes]:
    """The artifact server's path and bytes of the app's ``version`` tarball."""
    name = f"{APP}-{version}.tar.gz"
    return f"/{name}", (world.root / "published" / name).read_bytes()


# --- the git server gone after the fetch -----------------------------------------------------------


@pytest.mark.parametrize("state", ["downloading", "switched", "watching"])
def test_the_git_server_gone_mid_deployment_costs_only_the_report_which_waits_in_the_outbox(
    world: AgentWorld, state: str
) -> None:
    world.publish("1.0.0")
    with ExitStack() as stack:
        result = world.once(server_gone_at(world, state, stack))

        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
        assert world.answer() == "1.0.0"
        assert not result.pushed and result.transient
        assert any(isinstance(e, TransportError) for e in result.errors)
        waiting = Outbox(world.paths.outbox).pending()
        assert waiting is not None and result.report is not None and waiting.seq == result.report.seq
        assert local_status(world.config)["unsent_report_seq"] == waiting.seq

    world.controller.clock.tick(10)
    back = world.once()

    assert back.pushed and back.error is None, back.errors
    assert Outbox(world.paths.outbox).pending() is None
    assert back.report is not None and back.report.seq > waiting.seq
    world.reconcile()
    (record,) = world.records()
    assert (record.version, record.activity.value) == ("1.0.0", "deployed")


def test_a_rollback_ordered_before_the_server_went_away_still_runs_and_is_reported_later(
    world: AgentWorld,
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    world.reconcile()
    world.publish("1.1.0", "unhealthy")
    with ExitStack() as stack:
        result = world.once(server_gone_at(world, "watching", stack))

        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.ROLLED_BACK)
        assert world.answer("1.0.0") == "1.0.0"
        assert not result.pushed

    world.controller.clock.tick(10)
    assert world.once().pushed
    world.reconcile()
    states = {r.version: r.activity.value for r in world.records()}
    assert states == {"1.0.0": "deployed", "1.1.0": "rolled_back"}


def test_a_server_gone_for_good_after_the_fetch_never_loses_the_waiting_report(world: AgentWorld) -> None:
    world.publish("1.0.0")
    with ExitStack() as stack:
        first = world.once(server_gone_at(world, "downloading", stack))
        assert first.report is not None
        for _ in range(2):  # more cycles offline: each queues a newer report in place of the last
            world.controller.clock.tick(120)
            later = world.once()
            assert not later.pushed and later.report is not None
        waiting = Outbox(world.paths.outbox).pending()
        assert waiting is not None and later.report is not None
        assert waiting.seq == later.report.seq > first.report.seq
        assert later.serial == first.serial  # the accepted bundle, from the local cache
        assert world.answer() == "1.0.0"


# --- the artifact server cutting a download ---------------------------------------------------------


def test_a_download_cut_off_midway_waits_as_retrying_and_resumes_from_the_partial_next_cycle(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    world.publish("1.0.0")
    path, data = tarball_of(world, "1.0.0")
    artifacts.add(path, data, Behaviour(fail_first_requests=1, fail_after_fraction=0.5))

    first = world.once()

    assert first.transient and any(isinstance(e, DownloadFailed) for e in first.errors)
    entry = world.entry()
    assert entry is not None and entry.state is Activity.DOWNLOADING and entry.reason is not None
    assert first.report is not None and first.pushed  # the git server is fine: the robot says why
    (deployment,) = first.report.deployments
    assert (deployment.activity, deployment.error) == ("downloading", "retrying")
    partial = partial_path(world.paths.downloads_dir / APP / "1.0.0" / "app")  # the artifact's name
    kept = partial.stat().st_size
    assert 0 < kept < len(data)  # what arrived before the cut stays on disk

    world.controller.clock.tick(10)
    second = world.once()

    assert second.error is None, second.errors
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert world.answer() == "1.0.0"
    ranges = [r.headers.get("Range") for r in artifacts.seen(path)]
    assert ranges == [None, f"bytes={kept}-"]  # resumed, not fetched again from byte 0


def test_an_artifact_server_down_for_a_cycle_then_back_installs_without_a_new_commit(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    world.publish("1.0.0")
    path, data = tarball_of(world, "1.0.0")
    artifacts.add(path, data, Behaviour(status=503))

    first = world.once()
    assert first.transient
    entry = world.entry()
    assert entry is not None and entry.state is Activity.DOWNLOADING
    assert entry.reason is not None and "503" in entry.reason

    artifacts.add(path, data)  # the CDN is back
    world.controller.clock.tick(10)
    second = world.once()

    assert second.error is None, second.errors
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert second.serial == first.serial  # the same signed bundle: nothing was re-published


def test_a_download_failing_on_every_cycle_never_switches_and_keeps_the_running_version(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    world.reconcile()
    world.publish("1.1.0")
    path, data = tarball_of(world, "1.1.0")
    artifacts.add(path, data, Behaviour(status=502))

    for _ in range(3):
        world.controller.clock.tick(30)
        result = world.once()
        assert result.transient
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.DOWNLOADING)
        assert entry.previous_version == "1.0.0"
        assert world.answer() == "1.0.0"  # a download that cannot finish never touches what runs
    assert not (world.paths.apps_dir / APP / "releases" / "1.1.0").exists()


# --- a report that cannot be stored -----------------------------------------------------------------


def test_a_directory_where_the_report_file_belongs_still_converges_and_sends_nothing_as_sent(
    world: AgentWorld,
) -> None:
    world.publish("1.0.0")
    world.paths.status_file.mkdir(parents=True)

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert world.answer() == "1.0.0"
    assert result.report is None and not result.pushed
    assert any(isinstance(e, OSError) for e in result.errors)
    assert Outbox(world.paths.outbox).pending() is None  # nothing queued that was never stored

    world.paths.status_file.rmdir()  # the operator clears it: the next report goes out
    world.controller.clock.tick(10)
    after = world.once()
    assert after.pushed and after.report is not None
    world.reconcile()
    assert world.controller.state().devices[DEVICE].records[-1].activity.value == "deployed"
