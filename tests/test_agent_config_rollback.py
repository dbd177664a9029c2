"""Config files follow the version: a robot runs exactly the old version or the new one, code AND
config, never a mix — through a rollback, a kill -9 in the middle of one, a staged install, a first
install that fails, and a rollback to an older ``rollback.target``. Real controller-written
repository, real gpg and git, the real tarball executor and app processes (tests/sim/agent.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.configfiles.write import sha256_hex
from agent.converge.configs import check_drift, load_ledger
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, DEVICE, AgentWorld
from tests.test_agent_crash import agent_killed_at, assert_exactly_one_version_runs

SCHEMA = {"type": "object", "properties": {"speed": {"type": "number"}}, "additionalProperties": False}
CONFIG = {"path": "web.yaml", "schema": SCHEMA}
A, B = b"speed: 1.5\n", b"speed: 3.0\n"


def config_file(world: AgentWorld) -> Path:
    return world.paths.apps_dir / APP / "config" / "web.yaml"


def publish_with_config(world: AgentWorld, version: str, speed: float, *args: Any, **fields: Any) -> None:
    """``version`` of the app with a config schema, the fleet's config values set to ``speed``."""
    world.controller.fleet.config(APP, "default", {"speed": speed})
    world.publish(version, *args, config=CONFIG, **fields)


def deployed_with_config(world: AgentWorld, version: str, speed: float) -> None:
    publish_with_config(world, version, speed)
    assert world.once().error is None
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, version)
    world.reconcile()


def assert_config_is(world: AgentWorld, data: bytes) -> None:
    """The file holds ``data``, the drift ledger agrees (nothing reported), and so does the report."""
    assert config_file(world).read_bytes() == data
    (written,) = load_ledger(world.paths.config_hashes).files.values()
    assert written.sha256 == sha256_hex(data)
    assert check_drift(world.paths.config_hashes, restore=False) == {}


def test_a_rollback_puts_the_old_versions_config_back_and_reports_no_drift(world: AgentWorld) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    assert config_file(world).read_bytes() == A
    publish_with_config(world, "1.1.0", 3.0, "unhealthy")

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert world.answer("1.0.0") == "1.0.0"
    assert_config_is(world, A)
    assert result.report is not None and result.report.drift == []
    again = world.once()  # the next cycle's drift check agrees
    assert again.report is not None and again.report.drift == []


@pytest.mark.parametrize(
    "step", ["before-watching", "before-rolling_back", "after-rolling_back", "before-rolled_back"]
)
def test_kill_9_during_a_rollback_then_a_restart_still_ends_on_the_old_code_and_config(
    world: AgentWorld, step: str
) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    publish_with_config(world, "1.1.0", 3.0, "unhealthy")

    agent_killed_at(world, step)

    active = assert_exactly_one_version_runs(world, {"1.0.0", "1.1.0"})
    assert config_file(world).read_bytes() == {"1.0.0": A, "1.1.0": B}[active]
    world.once()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert assert_exactly_one_version_runs(world, {"1.0.0"}) == "1.0.0"
    assert_config_is(world, A)


def test_a_staged_release_leaves_the_running_versions_config_alone_until_the_switch(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = AgentWorld.create(tmp_path / "w", keys, artifacts)
    try:
        deployed_with_config(world, "1.0.0", 1.5)
        world.strategy = {"type": "blue_green", "min_staged_percent": 100}
        publish_with_config(world, "1.1.0", 3.0)

        world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.STAGED
        assert world.answer() == "1.0.0"
        assert_config_is(world, A)
        world.reconcile()
        world.reconcile()

        world.once()

        assert world.answer("1.1.0") == "1.1.0"
        assert_config_is(world, B)
    finally:
        world.close()


def test_a_failed_first_install_takes_its_config_file_away_with_it(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    hooks = {"hooks": {"report_health": {"exec": ["/bin/false"]}}}
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent=hooks)
    try:
        publish_with_config(world, "1.0.0", 1.5)

        world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.ROLLED_BACK
        assert world.executor().active(APP) is None
        assert not config_file(world).exists()
        assert load_ledger(world.paths.config_hashes).files == {}
    finally:
        world.close()


def test_a_rollback_to_an_older_target_brings_that_versions_config_back(world: AgentWorld) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    deployed_with_config(world, "1.1.0", 3.0)
    publish_with_config(world, "1.2.0", 9.5, "unhealthy", rollback={"target": "1.0.0"})

    world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert "back to 1.0.0 (rollback.target)" in (entry.reason or "")
    assert assert_exactly_one_version_runs(world, {"1.0.0"}) == "1.0.0"
    assert_config_is(world, A)


def test_automatic_rollback_off_keeps_the_new_code_with_its_own_config(world: AgentWorld) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    publish_with_config(world, "1.1.0", 3.0, "unhealthy", rollback={"automatic": False})

    world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.FAILED
    assert assert_exactly_one_version_runs(world, {"1.1.0"}) == "1.1.0"
    assert_config_is(world, B)


# --- config-only deployments: same version, new config --------------------------------------------

TOGGLES = {
    "type": "object",
    "properties": {"speed": {"type": "number"}, "unhealthy": {"type": "boolean"}},
    "additionalProperties": False,
}


def config_change(world: AgentWorld, values: dict[str, Any]) -> None:
    """Only ``configs/web/default.yaml`` changes: merged, approved and reconciled by the controller."""
    world.controller.fleet.config(APP, "default", values)
    world.controller.merge(f"{APP}: config {values}")
    world.reconcile()


def test_a_config_only_deployment_writes_the_config_and_restarts_the_running_version(
    world: AgentWorld,
) -> None:
    world.controller.fleet.config(APP, "default", {"speed": 1.5})
    world.publish("1.0.0", config={"path": "web.yaml", "schema": TOGGLES})
    assert world.once().error is None
    first = world.entry()
    assert first is not None and first.state is Activity.HEALTHY
    world.reconcile()

    config_change(world, {"speed": 3.0})
    assert world.once().error is None

    entry = world.entry()
    assert entry is not None and entry.deployment_id != first.deployment_id
    assert (entry.state, entry.version, entry.config_only) == (Activity.HEALTHY, "1.0.0", True)
    assert_config_is(world, B)
    assert world.answer("1.0.0") == "1.0.0"


def test_a_config_only_deployment_that_fails_its_watch_restores_the_previous_config(
    world: AgentWorld,
) -> None:
    world.controller.fleet.config(APP, "default", {"speed": 1.5})
    world.publish("1.0.0", config={"path": "web.yaml", "schema": TOGGLES})
    assert world.once().error is None
    world.reconcile()

    config_change(world, {"speed": 3.0, "unhealthy": True})
    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.0.0")
    assert entry.config_only
    assert_config_is(world, A)
    assert world.answer("1.0.0") == "1.0.0", "the version restarted with its previous config"
    assert result.report is not None and result.report.drift == []
    (reported,) = result.report.deployments
    assert (reported.deployment_id, reported.activity) == (entry.deployment_id, "rolled_back")
    again = world.once()  # one-time use: the failed deployment is not tried again
    assert world.entry() == entry and again.report is not None and again.report.drift == []


def test_a_rollout_edit_that_changes_nothing_the_robot_runs_redeploys_nothing(world: AgentWorld) -> None:
    deployed_with_config(world, "1.0.0", 1.5)
    before = world.entry()
    world.controller.fleet.rollout(
        APP, app=APP, release="1.0.0", devices=[DEVICE], strategy={"type": "all_at_once"}, gates=["docked"]
    )
    world.controller.merge("a new generation: same release, same config")
    world.reconcile()
    assert world.controller.state().rollouts[APP].generation == 2
    assert world.once().error is None
    assert world.entry() == before, "the robot keeps its deployment: nothing to download or restart"
    assert_config_is(world, A)
