"""Rolling back to a version still on the robot's disk needs no network, and never reuses a copy that
changed since its install (agent/install/tree.py, agent/executors/tarball.py).

End to end with the real controller-written repository, real gpg and git, the real tarball executor
and a real artifact HTTP server that is *stopped* before the rollback: the rollback the controller
orders (the rollout pointed back at the older release, a new deployment of a version on disk) and the
automatic one after a failed health watch both succeed from disk. A copy whose files were changed is
downloaded again (server up), waits for the server (server down), or fails the automatic rollback
with the reason (the failing version keeps running: some version beats none).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.install.tree import TREE_FILE, TreeRecord, read_tree, record_tree, tree_problem, tree_sha256
from fleetcd.errors import TransportError
from fleetcd.vocabulary import Activity
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld, at


def deployed(world: AgentWorld, *versions: str) -> None:
    for version in versions:
        world.publish(version)
        result = world.once()
        assert result.error is None, result.errors
        world.reconcile()


def roll_rollout_back(world: AgentWorld, version: str) -> None:
    """What ``fleetcd rollback`` commits: the rollout pointed at an older release."""
    world.controller.fleet.rollout(
        APP, app=APP, release=version, devices=["robot-1"], strategy=world.strategy
    )
    world.controller.merge(f"roll {APP} back to {version}")
    world.reconcile()


def release_file(world: AgentWorld, version: str, name: str = "VERSION") -> Path:
    return world.paths.apps_dir / APP / "releases" / version / name


def tamper(world: AgentWorld, version: str) -> None:
    release_file(world, version, "app.py").write_bytes(b"print('not what was signed')\n")


# --- end to end, the artifact server down ----------------------------------------------------------


def test_a_rollback_the_controller_orders_installs_from_disk_with_the_artifact_server_down(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed(world, "1.0.0", "1.1.0")
    assert not (world.paths.downloads_dir / APP / "1.0.0").exists()  # the commit removed the download
    artifacts.stop()
    roll_rollout_back(world, "1.0.0")
    dep = world.deployment_id()

    result = world.once()

    assert result.error is None, result.errors
    entry = world.entry()
    assert entry is not None and (entry.deployment_id, entry.state) == (dep, Activity.HEALTHY)
    assert world.answer("1.0.0") == "1.0.0"
    assert world.executor().active(APP) == "1.0.0"
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


def test_an_automatic_rollback_after_a_failed_watch_needs_no_network(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy")

    result = world.once(at("watching", artifacts.stop))  # downloaded and switched; then the link goes

    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.ROLLED_BACK)
    assert world.answer("1.0.0") == "1.0.0"
    assert result.report is not None and [a.current for a in result.report.apps] == ["1.0.0"]


# --- a copy that changed is never reused ---------------------------------------------------------------


def test_a_tampered_copy_on_disk_is_downloaded_again_for_a_rollback(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed(world, "1.0.0", "1.1.0")
    tamper(world, "1.0.0")
    before = len(artifacts.seen(f"/{APP}-1.0.0.tar.gz"))
    roll_rollout_back(world, "1.0.0")

    result = world.once()

    assert result.error is None, result.errors
    assert len(artifacts.seen(f"/{APP}-1.0.0.tar.gz")) == before + 1
    assert b"not what was signed" not in release_file(world, "1.0.0", "app.py").read_bytes()
    assert world.answer("1.0.0") == "1.0.0"


def test_a_tampered_copy_waits_for_the_artifact_server_instead_of_running(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed(world, "1.0.0", "1.1.0")
    tamper(world, "1.0.0")
    artifacts.stop()
    roll_rollout_back(world, "1.0.0")

    result = world.once()

    assert isinstance(result.apps[APP].error, TransportError)
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.DOWNLOADING)
    assert world.executor().active(APP) == "1.1.0"
    assert world.answer() == "1.1.0"


def test_an_automatic_rollback_refuses_a_tampered_previous_version_and_says_why(
    world: AgentWorld, artifacts: ArtifactServer
) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy")

    result = world.once(at("watching", lambda: tamper(world, "1.0.0")))

    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.FAILED)
    assert "rollback failed" in (entry.reason or "")
    assert "not reused for the rollback: its files changed since the install" in (entry.reason or "")
    assert world.executor().active(APP) == "1.1.0"
    assert result.report is not None
    (reported,) = result.report.deployments
    assert (reported.activity, reported.error) == ("failed", "failed") and "files changed" in reported.message


def test_a_version_installed_before_the_record_existed_still_rolls_back(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    (release_file(world, "1.0.0", ".fleetcd") / TREE_FILE).unlink()  # what an older agent left
    world.publish("1.1.0", "unhealthy")

    world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert world.answer("1.0.0") == "1.0.0"


# --- the tree record ----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    folder = tmp_path / "releases" / "1.0.0"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "app").write_bytes(b"#!/bin/sh\necho hi\n")
    (folder / "bin" / "app").chmod(0o755)
    (folder / "VERSION").write_bytes(b"1.0.0")
    (folder / "latest").symlink_to("bin/app")
    (folder / ".fleetcd").mkdir()
    return folder


CHANGES: list[object] = [
    pytest.param(lambda f: (f / "VERSION").write_bytes(b"1.0.1"), id="content"),
    pytest.param(lambda f: (f / "bin" / "app").chmod(0o644), id="mode"),
    pytest.param(
        lambda f: ((f / "latest").unlink(), (f / "latest").symlink_to("VERSION")), id="symlink-retargeted"
    ),
    pytest.param(lambda f: (f / "bin" / "plugin.so").write_bytes(b""), id="file-added"),
    pytest.param(lambda f: (f / "VERSION").unlink(), id="file-removed"),
    pytest.param(lambda f: (f / "bin" / "extra").mkdir(), id="directory-added"),
]


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_an_installed_tree_makes_it_unusable(
    tree: Path, change: Callable[[Path], object]
) -> None:
    record_tree(tree, tree / ".fleetcd", {"app": "a" * 64})
    assert tree_problem(tree, tree / ".fleetcd", {"app": "a" * 64}) is None

    change(tree)

    problem = tree_problem(tree, tree / ".fleetcd", {"app": "a" * 64})
    assert problem is not None and "files changed since the install" in problem


def test_the_agents_own_folder_is_not_part_of_the_tree(tree: Path) -> None:
    before = tree_sha256(tree, skip=".fleetcd")
    (tree / ".fleetcd" / "run.json").write_bytes(b"{}")
    assert tree_sha256(tree, skip=".fleetcd") == before


def test_a_tree_installed_from_other_artifacts_is_not_reused(tree: Path) -> None:
    record_tree(tree, tree / ".fleetcd", {"app": "a" * 64})

    problem = tree_problem(tree, tree / ".fleetcd", {"app": "b" * 64})

    assert problem == "it was installed from other artifacts than the release names"
    assert tree_problem(tree, tree / ".fleetcd", None) is None  # the files alone still match


def test_a_missing_or_corrupt_record_is_no_reuse(tree: Path) -> None:
    assert "missing" in (tree_problem(tree, tree / ".fleetcd", None) or "")
    (tree / ".fleetcd" / TREE_FILE).write_bytes(b'{"format": 1, "artifacts": {}, "tree_sha256": "xyz"}')
    assert "not a tree record" in (tree_problem(tree, tree / ".fleetcd", None) or "")
    record_tree(tree, tree / ".fleetcd", {})
    assert isinstance(read_tree(tree / ".fleetcd"), TreeRecord)
    assert os.stat(tree / ".fleetcd" / TREE_FILE).st_size < 512
