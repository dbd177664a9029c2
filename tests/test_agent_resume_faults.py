"""A robot restarting after a crash, into a disk that changed meanwhile: the journal says the agent
was in the middle of a deployment, and the files it would resume from are not what it left.

The journal is the agent's own state, written with :class:`agent.state.journal.Journal` as a crash
would leave it (tests/test_agent_crash.py kills real processes at every checkpoint; here the point
is what the disk holds afterwards). Real agent cycles on the agent world (tests/sim/agent.py): the
real controller's signed desired state, tarball apps over HTTP, real app processes. What a robot
needs from each restart:

* a rollback whose target was deleted ends ``failed`` with the reason, the failing version left
  running (something running beats nothing), never a loop of retries;
* a switch cut off before ``current`` moved is finished; a watch resumed with a journal time from
  the future (the clock stepped back over the restart) still ends, and commits;
* a deployment the bundle no longer names is superseded by the one it does name;
* an in-flight state whose release was deleted is installed again from the artifact server, or
  rolled back, never left half-done.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.install.slots import current_version, switch_current
from agent.state.journal import Journal, JournalEntry
from fleetcd.vocabulary import Activity, JournalActivity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    """1.0.0 then 1.1.0 deployed (both on disk, 1.1.0 running), the controller told."""
    built = AgentWorld.create(tmp_path, keys, artifacts)
    for version in ("1.0.0", "1.1.0"):
        built.publish(version)
        result = built.once()
        assert result.error is None, result.errors
        built.reconcile()
    yield built
    built.close()


def crashed_in(
    world: AgentWorld, state: JournalActivity, version: str, previous: str | None, **extra: Any
) -> None:
    """The journal as a crash in ``state`` of the bundle's deployment of ``version`` leaves it."""
    entry = JournalEntry(
        deployment_id=world.deployment_id(),
        version=version,
        previous_version=previous,
        state=state,
        attempts=1,
        updated_at=world.now,
        **extra,
    )
    Journal(world.paths.journal(APP)).record(entry)


def release_dir(world: AgentWorld, version: str) -> Path:
    return world.paths.apps_dir / APP / "releases" / version


def restart(world: AgentWorld) -> tuple[JournalEntry, Any]:
    world.controller.clock.tick(5)
    result = world.once()
    entry = world.entry()
    assert entry is not None
    return entry, result


# --- rollbacks with nothing to go back to ------------------------------------------------------------


def test_a_rollback_whose_target_release_was_deleted_fails_once_and_keeps_the_version_running(
    world: AgentWorld,
) -> None:
    shutil.rmtree(release_dir(world, "1.0.0"))
    crashed_in(world, Activity.ROLLING_BACK, "1.1.0", "1.0.0")

    entry, result = restart(world)

    assert (entry.version, entry.state) == ("1.1.0", Activity.FAILED)
    assert entry.reason is not None and entry.reason.startswith("rollback failed: ")
    assert str(release_dir(world, "1.0.0")) in entry.reason
    assert world.answer() == "1.1.0"  # a failing version running beats no version at all
    assert result.report is not None
    (deployment,) = result.report.deployments
    assert (deployment.activity, deployment.error) == ("failed", "failed")

    again, _ = restart(world)  # settled: the next cycle does not try the rollback again
    assert again.state is Activity.FAILED and again.updated_at == entry.updated_at


def test_a_rollback_whose_target_was_tampered_with_is_refused_naming_what_changed(world: AgentWorld) -> None:
    (release_dir(world, "1.0.0") / "app.py").write_text("print('not what was signed')\n")
    crashed_in(world, Activity.ROLLING_BACK, "1.1.0", "1.0.0")

    entry, _ = restart(world)

    assert (entry.version, entry.state) == ("1.1.0", Activity.FAILED)
    assert entry.reason is not None and "is not reused for the rollback" in entry.reason
    assert world.answer() == "1.1.0"


def test_a_rollback_to_nothing_after_a_crash_stops_the_failed_first_version(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    fresh = AgentWorld.create(tmp_path / "fresh", keys, artifacts)
    try:
        fresh.publish("1.0.0")
        assert fresh.once().error is None
        crashed_in(fresh, Activity.ROLLING_BACK, "1.0.0", None)

        entry, _ = restart(fresh)

        assert (entry.version, entry.state) == ("1.0.0", Activity.ROLLED_BACK)
        assert current_version(fresh.paths.apps_dir / APP) is None
        assert fresh.answer(limit_s=1) is None
    finally:
        fresh.close()


# --- a switch or a watch resumed ----------------------------------------------------------------------


def test_a_switch_cut_off_before_the_link_moved_is_finished_on_restart(world: AgentWorld) -> None:
    switch_current(world.paths.apps_dir / APP, "1.0.0")  # the link as it was before the switch
    crashed_in(world, Activity.SWITCHED, "1.1.0", "1.0.0")

    entry, result = restart(world)

    assert result.error is None, result.errors
    assert (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
    assert current_version(world.paths.apps_dir / APP) == "1.1.0"
    assert world.answer("1.1.0") == "1.1.0"


def test_a_watch_resumed_with_a_journal_time_from_the_future_still_ends_and_commits(
    world: AgentWorld,
) -> None:
    crashed_in(world, Activity.WATCHING, "1.1.0", "1.0.0")
    journal = Journal(world.paths.journal(APP))
    entry = journal.load()
    assert entry is not None
    journal.record(entry.model_copy(update={"updated_at": world.now + timedelta(days=365)}))

    after, result = restart(world)

    assert result.error is None, result.errors
    assert (after.version, after.state, after.committed) == ("1.1.0", Activity.HEALTHY, True)
    assert after.updated_at <= world.now + timedelta(minutes=5)  # the step's time, not the journal's


# --- in flight, the bundle moved on -------------------------------------------------------------------


def test_a_download_of_a_release_the_bundle_dropped_is_superseded_by_the_one_it_names(
    world: AgentWorld,
) -> None:
    old_deployment = world.deployment_id()
    world.publish("1.2.0")
    entry = JournalEntry(
        deployment_id=old_deployment,
        version="1.1.5",
        previous_version="1.1.0",
        state=Activity.DOWNLOADING,
        attempts=2,
        updated_at=world.now,
        reason="connection reset",
    )
    Journal(world.paths.journal(APP)).record(entry)

    after, result = restart(world)

    assert result.error is None, result.errors
    assert (after.version, after.state) == ("1.2.0", Activity.HEALTHY)
    assert after.previous_version == "1.1.0" and after.deployment_id != old_deployment
    assert world.answer("1.2.0") == "1.2.0"


def test_an_apply_whose_half_installed_release_was_deleted_installs_it_again(world: AgentWorld) -> None:
    world.publish("1.2.0")
    crashed_in(world, Activity.APPLYING, "1.2.0", "1.1.0")
    shutil.rmtree(release_dir(world, "1.2.0"), ignore_errors=True)

    entry, result = restart(world)

    assert result.error is None, result.errors
    assert (entry.version, entry.state) == ("1.2.0", Activity.HEALTHY)
    assert (release_dir(world, "1.2.0") / "app.py").is_file()
    assert world.answer("1.2.0") == "1.2.0"
