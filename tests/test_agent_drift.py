"""Drift beyond config files (agent/converge/drift.py): a retargeted ``current`` link and a version
started by hand, with the real tarball executor and real app processes; the replaced container and
the container started by hand are in tests/test_agent_docker_drift.py. Each is reported as drifted
(the status report's ``runtime_drift``, the deployment ``drifted``, ``get devices``' DRIFT column),
and put back under ``drift: restore``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.install.slots import switch_current
from controller.ops.listing import DEVICE_COLUMNS, drift_state
from fleetcd.models.agent import AgentConfig
from fleetcd.vocabulary import Activity, DriftKind
from tests.apps import free_port, wait_for_version
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


def make_world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer, policy: str) -> AgentWorld:
    world = AgentWorld.create(tmp_path, keys, artifacts, agent={"drift": policy})
    for version in ("1.0.0", "1.1.0"):
        world.publish(version)
        assert world.once().error is None
        world.reconcile()
    return world


@pytest.fixture
def reporting(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    world = make_world(tmp_path, keys, artifacts, "report")
    yield world
    world.close()


@pytest.fixture
def restoring(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    world = make_world(tmp_path, keys, artifacts, "restore")
    yield world
    world.close()


def retarget(world: AgentWorld, version: str) -> None:
    """What a person does by hand: point ``current`` at another release still on disk."""
    switch_current(world.paths.apps_dir / APP, version)


def start_by_hand(world: AgentWorld, version: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder = world.paths.apps_dir / APP / "releases" / version
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=folder, start_new_session=True
    )
    assert wait_for_version(port, version) == version
    return process, port


def test_a_retargeted_current_link_is_reported_drifted_and_left_alone(reporting: AgentWorld) -> None:
    retarget(reporting, "1.0.0")

    result = reporting.once()

    assert result.report is not None
    (drift,) = result.report.runtime_drift
    assert (drift.app, drift.kind, drift.restored) == (APP, DriftKind.CURRENT_LINK, False)
    assert "points at 1.0.0; the agent made 1.1.0 active" in drift.detail
    (deployment,) = result.report.deployments
    assert deployment.activity is Activity.DRIFTED and "points at 1.0.0" in deployment.events[-1].message
    assert os.readlink(reporting.paths.apps_dir / APP / "current") == "releases/1.0.0"
    assert reporting.answer() == "1.1.0"  # the idle path did not start the version the link names
    reporting.reconcile()
    assert reporting.record(deployment.deployment_id).activity.value == "drifted"
    (row,) = drift_state(result.report)
    assert (row["kind"], row["restored"]) == ("current_link", False)
    (column,) = [c for c in DEVICE_COLUMNS if c.header == "DRIFT"]
    assert column.cell({"drift": [row]}) == "1 (current_link)"
    assert column.cell({"drift": [{**row, "restored": True}, row]}) == "1 left, 1 restored (current_link)"


def test_with_restore_a_retargeted_current_link_is_put_back(restoring: AgentWorld) -> None:
    retarget(restoring, "1.0.0")

    result = restoring.once()

    assert os.readlink(restoring.paths.apps_dir / APP / "current") == "releases/1.1.0"
    assert restoring.answer() == "1.1.0"
    assert result.report is not None
    (drift,) = result.report.runtime_drift
    assert (drift.kind, drift.restored) == (DriftKind.CURRENT_LINK, True)
    assert result.report.deployments[0].activity is Activity.DEPLOYED
    again = restoring.once()
    assert again.report is not None and again.report.runtime_drift == []


def test_a_version_started_by_hand_is_reported(reporting: AgentWorld) -> None:
    process, port = start_by_hand(reporting, "1.0.0")
    try:
        result = reporting.once()

        assert result.report is not None
        (drift,) = result.report.runtime_drift
        assert (drift.kind, drift.restored) == (DriftKind.STARTED_OUTSIDE, False)
        assert f"process {process.pid} runs {APP} from releases/1.0.0" in drift.detail
        assert process.poll() is None and wait_for_version(port) == "1.0.0"
    finally:
        process.kill()
        process.wait()


def test_with_restore_a_version_started_by_hand_is_stopped(restoring: AgentWorld) -> None:
    process, _port = start_by_hand(restoring, "1.0.0")
    try:
        result = restoring.once()

        assert process.wait(timeout=10) is not None
        assert result.report is not None
        assert [(d.kind, d.restored) for d in result.report.runtime_drift] == [
            (DriftKind.STARTED_OUTSIDE, True)
        ]
        assert restoring.answer() == "1.1.0"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_app_the_agent_started_is_not_drift(reporting: AgentWorld) -> None:
    executor = reporting.executor()

    assert executor.drift(APP, "1.1.0", None) == []
    assert [kind for kind, _ in executor.drift(APP, "1.0.0", None)] == [DriftKind.CURRENT_LINK]


def test_a_restore_the_executor_cannot_do_is_reported_with_the_drift(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = make_world(tmp_path, keys, artifacts, "restore")
    try:
        retarget(world, "1.0.0")
        (world.paths.apps_dir / APP / "releases" / "1.1.0" / ".fleetcd" / "run.json").unlink()

        result = world.once()

        assert result.report is not None
        (drift,) = [d for d in result.report.runtime_drift if d.kind is DriftKind.CURRENT_LINK]
        assert not drift.restored and "restore failed" in drift.detail
    finally:
        world.close()


# --- the policy ---------------------------------------------------------------------------------------


def agent_yaml(**fields: object) -> dict[str, object]:
    return {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "AgentConfig",
        "device": "robot-1",
        "remote": {"url": "file:///srv/fleet.git"},
        "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": ["A" * 40]}},
        **fields,
    }


def test_an_agent_yaml_with_the_old_config_drift_name_still_loads() -> None:
    assert AgentConfig.model_validate(agent_yaml(config_drift="restore")).drift == "restore"
    assert AgentConfig.model_validate(agent_yaml()).drift == "report"


def test_config_drift_and_drift_that_disagree_are_refused() -> None:
    with pytest.raises(ValidationError, match="config_drift is the old name of drift"):
        AgentConfig.model_validate(agent_yaml(config_drift="restore", drift="report"))


def test_processes_of_an_app_something_else_runs_are_not_judged(reporting: AgentWorld) -> None:
    """A tarball without ``command`` is run by a hook or a systemd unit on ``current``, not the agent."""
    reporting.publish("1.2.0", artifact={"command": None}, health={"watch_seconds": 1, "probes": []})
    assert reporting.once().error is None
    process, _port = start_by_hand(reporting, "1.2.0")  # as that systemd unit would
    try:
        result = reporting.once()

        assert result.report is not None and result.report.runtime_drift == []
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
