"""The robot's disk fills up under the agent, beyond the download folder (tests/test_agent_state_faults.py
fills that one): the apps folder while a release is unpacked, and the whole state directory, where
the journal, the report, the outbox and the git repository of the desired state live.

Real disks: a small tmpfs mounted over the folder (tests/disks.py; skipped where mounting is not
allowed) and filled until the kernel answers ENOSPC, under real agent cycles (tests/sim/agent.py).
What a robot needs from a full disk:

* the running version is never touched, and no state file is left torn: each one still reads;
* a release that cannot be unpacked waits (``applying``, retrying, ``DiskFull`` naming the folder
  and the bytes it needs) instead of failing, and installs once space is back, without a new commit;
* nothing is counted as sent that was not written; once space is back the next cycle fetches,
  installs and reports as if nothing happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import DiskFull
from agent.report.cadence import load_push_state
from agent.report.outbox import Outbox
from agent.report.status import load_status
from agent.state.journal import Journal
from agent.trustcheck import load_trust_state
from fleetcd.vocabulary import Activity
from tests.disks import fill, mounted
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    yield built
    built.close()


def disk_full(result_errors: list[Exception]) -> DiskFull:
    (found,) = [e for e in result_errors if isinstance(e, DiskFull)]
    return found


def test_an_apps_folder_full_while_unpacking_waits_as_applying_then_installs_once_space_is_back(
    world: AgentWorld,
) -> None:
    apps = world.paths.create().apps_dir
    with mounted(apps, "-t", "tmpfs", "-o", "size=2m", "tmpfs"):
        world.publish("1.0.0")
        assert world.once().error is None
        world.reconcile()
        filler = fill(apps)
        world.publish("1.1.0")

        full = world.once()

        found = disk_full(full.errors)
        assert str(apps / APP / "releases" / "1.1.0") in str(found) and "needs" in str(found)
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.APPLYING)
        assert entry.previous_version == "1.0.0" and entry.reason is not None
        assert world.answer() == "1.0.0"  # the running version is not touched
        assert full.report is not None
        (deployment,) = [d for d in full.report.deployments if d.version == "1.1.0"]
        assert (deployment.activity, deployment.error) == ("applying", "retrying")
        assert not (apps / APP / "releases" / "1.1.0").exists()  # no half-unpacked release kept

        again = world.once()  # still full: the same wait, not a failure
        entry = world.entry()
        assert entry is not None and entry.state is Activity.APPLYING
        assert disk_full(again.errors)

        filler.unlink()  # logs rotated: the space is back
        world.controller.clock.tick(10)
        back = world.once()

        assert back.error is None, back.errors
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
        assert world.answer("1.1.0") == "1.1.0"
        world.close()  # the app's process has its files on the tmpfs: stop it before the unmount


def state_files_read(world: AgentWorld) -> None:
    """Every state file the agent keeps still reads whole (none torn by a failed write)."""
    paths = world.paths
    Journal(paths.journal(APP)).load()
    load_status(paths.status_file, strict=True)
    Outbox(paths.outbox).pending()
    load_trust_state(paths.trust_file)
    load_push_state(paths.push_file)


def test_a_full_state_disk_keeps_the_app_running_tears_no_file_and_recovers_when_space_is_back(
    world: AgentWorld,
) -> None:
    state = world.paths.create().state_dir
    with mounted(state, "-t", "tmpfs", "-o", "size=3m", "tmpfs"):
        world.publish("1.0.0")
        first = world.once()
        assert first.error is None and first.pushed, first.errors
        world.reconcile()
        reported_before = load_status(world.paths.status_file)
        assert reported_before is not None
        filler = fill(state)
        world.publish("1.1.0")

        for _ in range(2):  # full for more than one cycle
            world.controller.clock.tick(30)
            full = world.once()

            assert full.errors and not full.pushed
            assert any(isinstance(e, DiskFull) for e in full.errors)
            assert any("No space left on device" in str(e) for e in full.errors)  # the fetch, named
            entry = world.entry()
            assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
            assert world.answer() == "1.0.0"
            state_files_read(world)
            assert load_status(world.paths.status_file) == reported_before  # the old report, whole
            assert not list(state.rglob(".*.tmp"))  # no temporary file left taking space

        filler.unlink()
        world.controller.clock.tick(30)
        back = world.once()

        assert back.error is None and back.pushed, back.errors
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
        assert world.answer("1.1.0") == "1.1.0"
        assert back.report is not None and back.report.seq > reported_before.seq
        world.reconcile()
        assert {r.version: r.activity.value for r in world.records()}["1.1.0"] == "deployed"
        world.close()  # the app's files are on the tmpfs: stop it before the unmount
