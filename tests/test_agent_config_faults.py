"""Config files a release cannot or must not write, and a rollback that fails half way: the robot keeps
running one whole version, code and config, and says why.

A signed release is trusted for its contents, not for where it may write: the controller does not
look at ``config.path``, so a release whose path climbs out of the app's folder reaches the robot
and is refused there before a byte is fetched. A config location taken by something else (a folder
where the file goes) fails at the switch and rolls back. A ``rollback`` hook that fails leaves the
new version running, so its own config is put back with it. Real controller-written repository,
real gpg and git, the real tarball executor and app processes (tests/sim/agent.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.test_agent_config_rollback import (
    SCHEMA,
    A,
    B,
    assert_config_is,
    config_file,
    deployed_with_config,
    publish_with_config,
)


def test_a_signed_release_whose_config_path_climbs_out_of_the_app_dir_is_refused_before_the_download(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    escape = "../../../../escaped.yaml"
    world.controller.fleet.config(APP, "default", {"speed": 3.0})
    world.publish("1.1.0", config={"path": escape, "schema": SCHEMA})
    fetched_before = len(artifacts.seen(f"/{APP}-1.1.0.tar.gz"))

    world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.FAILED, "1.1.0")
    assert entry.reason is not None and repr(escape) in entry.reason
    assert len(artifacts.seen(f"/{APP}-1.1.0.tar.gz")) == fetched_before  # refused before fetching
    assert not list(world.root.rglob("escaped.yaml"))
    assert world.answer() == "1.0.0"
    assert_config_is(world, A)

    world.once()  # a refused deployment stays refused: not retried every poll
    entry = world.entry()
    assert entry is not None and entry.state is Activity.FAILED
    world.reconcile()
    assert [(r.version, r.activity) for r in world.records()] == [
        ("1.0.0", Activity.DEPLOYED),
        ("1.1.0", Activity.FAILED),
    ]


def test_a_folder_where_the_config_file_goes_fails_the_switch_and_rolls_back_to_the_old_code_and_config(
    world: AgentWorld,
) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    taken = world.paths.apps_dir / APP / "config" / "other.yaml"
    taken.mkdir(parents=True)  # an app or a person put a folder there
    world.controller.fleet.config(APP, "default", {"speed": 3.0})
    world.publish("1.1.0", config={"path": "other.yaml", "schema": SCHEMA})

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert entry.reason is not None and str(taken) in entry.reason
    assert taken.is_dir() and not any(taken.iterdir())  # nothing written into it or over it
    assert world.answer() == "1.0.0"
    assert_config_is(world, A)
    assert result.report is not None and result.report.drift == []


@pytest.fixture
def failing_rollback_hook(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> Iterator[AgentWorld]:
    hook = tmp_path / "rollback-hook"
    hook.write_text("#!/bin/sh\necho 'A/B slot switch refused: slot A is being flashed' >&2\nexit 1\n")
    hook.chmod(0o755)
    built = AgentWorld.create(tmp_path, keys, artifacts, agent={"hooks": {"rollback": {"exec": [str(hook)]}}})
    yield built
    built.close()


def test_a_rollback_hook_that_fails_leaves_the_new_version_running_with_its_own_config_not_a_mix(
    failing_rollback_hook: AgentWorld,
) -> None:
    world = failing_rollback_hook
    deployed_with_config(world, "1.0.0", 1.5)
    publish_with_config(world, "1.1.0", 3.0, "unhealthy")

    world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.FAILED, "1.1.0")
    assert entry.reason is not None and "rollback failed" in entry.reason and "slot A" in entry.reason
    assert world.executor().active(APP) == "1.1.0"
    assert world.answer() == "1.1.0"
    assert_config_is(world, B)  # the config the rollback had put back was taken back with it

    world.reconcile()
    assert world.records()[-1].activity is Activity.FAILED


@pytest.fixture
def restoring(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts, agent={"config_drift": "restore"})
    yield built
    built.close()


def test_a_config_file_the_restore_policy_cannot_put_back_is_still_reported_as_drift(
    restoring: AgentWorld,
) -> None:
    world = restoring
    deployed_with_config(world, "1.0.0", 1.5)
    written = config_file(world)
    written.unlink()
    (written / "notes").mkdir(parents=True)  # a folder where the file was: write_atomic cannot replace it

    result = world.once()

    assert result.report is not None and result.report.drift == [str(written)]
    assert result.pushed
    assert world.answer() == "1.0.0"
    world.reconcile()
    assert world.records()[-1].activity is Activity.DRIFTED
