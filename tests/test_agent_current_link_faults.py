"""The tarball executor's ``current`` link damaged on a robot: a regular file, a directory, a link out
of ``releases/``, as a restored backup, a person or a bad sector leave it.

Real agent cycles (tests/sim/agent.py: the real controller's signed desired state, real tarball apps
served over HTTP). A damaged link is runtime drift: reported every cycle (``runtime_drift``), put
back under ``drift: restore``, and under the default ``drift: report`` left as it is while the
version the journal made active keeps running. It must never stop the robot for good: the next
deployment installs beside it and its switch writes the link again, exactly as it does over a link
retargeted by hand (tests/test_agent_drift.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.errors import CorruptState
from agent.install.slots import current_version
from agent.loop import local_status
from fleetcd.vocabulary import Activity, DriftKind
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


def as_file(link: Path) -> None:
    link.unlink()
    link.write_text("releases/1.0.0\n")  # what a copy that does not keep symlinks leaves


def as_directory(link: Path) -> None:
    link.unlink()
    link.mkdir()
    (link / "app.py").write_text("print('copied by hand')\n")


def outside(link: Path) -> None:
    link.unlink()
    link.symlink_to("/etc")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "file": as_file,
    "directory": as_directory,
    "outside-releases": outside,
}


def make_world(root: Path, keys: KeyFactory, artifacts: ArtifactServer, policy: str) -> AgentWorld:
    world = AgentWorld.create(root, keys, artifacts, agent={"drift": policy})
    world.publish("1.0.0")
    first = world.once()
    assert first.error is None, first.errors
    world.reconcile()
    return world


@pytest.fixture
def reporting(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    world = make_world(tmp_path, keys, artifacts, "report")
    yield world
    world.close()


def link_of(world: AgentWorld) -> Path:
    return world.paths.apps_dir / APP / "current"


@pytest.mark.parametrize("damage", ["directory", "outside-releases"])
def test_a_damaged_current_link_is_reported_as_drift_and_the_app_keeps_running(
    reporting: AgentWorld, damage: str
) -> None:
    DAMAGE[damage](link_of(reporting))
    with pytest.raises(CorruptState):
        current_version(link_of(reporting).parent)
    reporting.controller.clock.tick(10)

    result = reporting.once()

    assert result.report is not None and result.pushed
    (drift,) = result.report.runtime_drift
    assert (drift.app, drift.kind, drift.restored) == (APP, DriftKind.CURRENT_LINK, False)
    assert "corrupt agent state file" in drift.detail and "1.0.0 active" in drift.detail
    assert result.error is None, result.errors  # drift is news, not a failed cycle
    assert reporting.answer() == "1.0.0"
    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)


@pytest.mark.parametrize("damage", ["file", "directory"])
def test_a_new_release_still_installs_over_a_damaged_current_link_and_writes_it_again(
    reporting: AgentWorld, damage: str
) -> None:
    DAMAGE[damage](link_of(reporting))
    reporting.publish("1.1.0")

    result = reporting.once()

    assert result.error is None, result.errors
    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
    assert entry.previous_version == "1.0.0"  # the journal's active version, not "nothing"
    assert os.readlink(link_of(reporting)) == "releases/1.1.0"
    assert reporting.answer("1.1.0") == "1.1.0"
    reporting.controller.clock.tick(10)
    again = reporting.once()
    assert again.report is not None and again.report.runtime_drift == []
    if damage == "directory":  # what a person put there is kept beside, never deleted
        (aside,) = link_of(reporting).parent.glob("current.corrupt-*")
        assert (aside / "app.py").read_text() == "print('copied by hand')\n"


def test_a_failing_release_over_a_damaged_link_rolls_back_to_the_journals_version(
    reporting: AgentWorld,
) -> None:
    as_file(link_of(reporting))
    reporting.publish("1.1.0", "crash")

    result = reporting.once()

    entry = reporting.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.ROLLED_BACK)
    assert result.report is not None
    assert os.readlink(link_of(reporting)) == "releases/1.0.0"
    assert reporting.answer("1.0.0") == "1.0.0"


def test_under_restore_a_directory_in_place_of_the_link_is_replaced_by_the_link(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = make_world(tmp_path, keys, artifacts, "restore")
    try:
        as_directory(link_of(world))
        world.controller.clock.tick(10)

        result = world.once()

        assert result.report is not None
        (drift,) = result.report.runtime_drift
        assert (drift.kind, drift.restored) == (DriftKind.CURRENT_LINK, True)
        assert os.readlink(link_of(world)) == "releases/1.0.0"
        assert world.answer() == "1.0.0"
    finally:
        world.close()


def test_status_shows_the_journal_of_a_robot_whose_current_link_is_damaged(reporting: AgentWorld) -> None:
    as_file(link_of(reporting))

    shown = local_status(reporting.config)

    journal = shown["journals"][APP]  # type: ignore[index]
    assert journal["version"] == "1.0.0" and journal["state"] == "healthy"
    assert shown["problems"] == []  # the link is the executor's, judged by the next cycle as drift
