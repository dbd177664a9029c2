"""A robot whose own setup broke under it (an OS image update dropped its updater plugin, its pinned
keys were deleted): it must install nothing it cannot handle or verify, keep the app it runs, and
still tell the fleet why, with ``once`` exiting 4 (a local setup problem).

The real ``fleetcd-agent once`` (``agent.cli``) against the agent test world: the real controller's
signed desired state, real gpg and git, the real tarball executor and app processes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from agent.cli import cli
from agent.install.slots import installed_versions
from fleetcd.cli.main import run
from fleetcd.vocabulary import Activity
from tests.sim.agent import APP, DEVICE, AgentWorld


def deployed(world: AgentWorld, version: str) -> None:
    world.publish(version)
    assert world.once().error is None
    assert world.answer() == version
    world.reconcile()


def edit_agent_yaml(world: AgentWorld, **fields: object) -> None:
    document = yaml.safe_load(world.config_file.read_text())
    world.config_file.write_text(yaml.safe_dump({**document, **fields}, sort_keys=False))


def once(world: AgentWorld) -> int:
    return run(cli, ["--config", str(world.config_file), "once", "-o", "json"])


def assert_kept_and_reported(world: AgentWorld, kept: str, refused: str, reported_seq: int) -> None:
    """``kept`` still runs and is what the journal says; ``refused`` was never installed; the
    controller got a newer report from the robot and the new deployment is still waiting."""
    assert world.answer() == kept
    assert world.executor().active(APP) == kept
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == (kept, Activity.HEALTHY)
    assert installed_versions(world.paths.apps_dir / APP) == [kept]  # not even unpacked beside it
    world.reconcile()
    device = world.controller.state().devices[DEVICE]
    assert device.last_report_seq is not None and device.last_report_seq > reported_seq
    assert [(r.version, r.activity) for r in world.records()] == [
        (kept, Activity.DEPLOYED),
        (refused, Activity.QUEUED),
    ]


def reported_seq(world: AgentWorld) -> int:
    seq = world.controller.state().devices[DEVICE].last_report_seq
    assert seq is not None
    return seq


def test_a_hook_plugin_gone_after_an_os_update_installs_nothing_and_keeps_the_running_version(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(world, "1.0.0")
    before = reported_seq(world)
    edit_agent_yaml(world, hooks={"plugin": "rauc"})  # the A/B updater's package is not installed
    world.publish("1.1.0")

    assert once(world) == 4
    out = capsys.readouterr()
    assert "hook plugin 'rauc'" in out.err
    assert out.out and '"pushed": true' in out.out

    assert_kept_and_reported(world, "1.0.0", "1.1.0", before)
    assert "hook plugin 'rauc'" in (world.paths.status_file.read_text())  # the report's last_error


def test_deleted_trust_keys_keep_the_running_app_instead_of_removing_it_and_verify_nothing_new(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(world, "1.0.0")
    before = reported_seq(world)
    keys_dir = Path(world.config.trust.keys_dir)
    shutil.rmtree(keys_dir)
    world.publish("1.1.0")

    assert once(world) == 4
    assert str(keys_dir) in capsys.readouterr().err

    # Nothing could be verified, so nothing is known to be unassigned: the app stays, untouched.
    assert_kept_and_reported(world, "1.0.0", "1.1.0", before)
    assert once(world) == 4  # every cycle says so until the keys are back
    assert world.answer() == "1.0.0"
