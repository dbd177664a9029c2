"""A config change is a rollout, through the real controller (real git, real gpg, robots verifying
their bundles): an approved edit of ``configs/nav/default.yaml`` gives robots new deployments wave by
wave, a deployment id never carries other config bytes, and an unapproved edit reaches nobody."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.reconcile.steps import reconcile_once
from fleetcd.desired.configset import merged_sha256
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import (
    CANARY,
    PRODUCTION,
    STAGING,
    ControllerWorld,
    make_world,
    pass_all_waves,
    pass_wave,
)

SCHEMA = {
    "type": "object",
    "properties": {"max_speed_mps": {"type": "number", "maximum": 2}},
    "additionalProperties": False,
}
ROBOTS = STAGING + CANARY + PRODUCTION


def _with_config(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.0.0", config_schema=SCHEMA)
    fleet.config("nav", "default", {"max_speed_mps": 1.2})


class Observed:
    """Every (deployment id -> config) a robot was ever handed, checked as it grows."""

    def __init__(self, world: ControllerWorld) -> None:
        self.world = world
        self.configs: dict[str, Any] = {}

    def look(self) -> dict[str, tuple[str, Any]]:
        """device -> (deployment id, config) of its nav deployment now; asserts one-time use."""
        now: dict[str, tuple[str, Any]] = {}
        for device in ROBOTS:
            (deployment,) = self.world.sim.bundle(device, self.world.clock.now).deployments
            config = deployment.config
            seen = self.configs.setdefault(deployment.deployment_id, config)
            assert seen == config, f"{deployment.deployment_id} came with {seen}, now with {config}"
            now[device] = (deployment.deployment_id, config)
        return now


def _rolled_out(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, Observed]:
    world = make_world(tmp_path, keys, configure=_with_config)
    world.reconcile()
    pass_all_waves(world)
    return world, Observed(world)


def test_config_edit_rolls_out_in_waves_as_new_deployments(tmp_path: Path, keys: KeyFactory) -> None:
    world, observed = _rolled_out(tmp_path, keys)
    before = observed.look()
    assert {config["max_speed_mps"] for _, config in before.values()} == {1.2}

    world.fleet.config("nav", "default", {"max_speed_mps": 0.9})
    world.fleet.write()  # re-approved: the approvals now cover the new config set
    world.merge("nav: max_speed_mps 1.2 -> 0.9")
    world.clock.tick(10)
    world.reconcile()
    state = world.state()
    assert state.rollouts["nav"].generation == 2
    (record,) = [r for r in state.devices["stg-1"].records if r.generation == 2]
    assert record.config_sha256 == merged_sha256({"max_speed_mps": 0.9})
    assert record.config_files == ("configs/nav/default.yaml",)

    now = observed.look()
    assert now["stg-1"][0] != before["stg-1"][0] and now["stg-1"][1] == {"max_speed_mps": 0.9}
    for device in CANARY + PRODUCTION:
        assert now[device] == before[device], f"{device} is in a later wave: it keeps its deployment"

    pass_wave(world, STAGING, "staging")
    now = observed.look()
    assert {now[d][1]["max_speed_mps"] for d in CANARY} == {0.9}
    assert {now[d][1]["max_speed_mps"] for d in PRODUCTION} == {1.2}
    pass_wave(world, CANARY, "canary")
    pass_wave(world, PRODUCTION, "production")
    final = observed.look()
    assert {config["max_speed_mps"] for _, config in final.values()} == {0.9}
    assert not set(i for i, _ in final.values()) & set(i for i, _ in before.values())


def test_unapproved_config_edit_reaches_no_robot(tmp_path: Path, keys: KeyFactory) -> None:
    world, observed = _rolled_out(tmp_path, keys)
    before = observed.look()
    world.fleet.approvers_of["rollouts/nav.yaml"] = []  # the approvals on disk stay as they were
    world.fleet.config("nav", "default", {"max_speed_mps": 1.9})
    world.merge("nav: faster, without review")
    world.clock.tick(10)
    result = reconcile_once(world.settings)
    assert result.stalled is not None and "approvals verified" in str(result.stalled)
    assert observed.look() == before


def test_robot_with_its_own_override_keeps_its_deployment(tmp_path: Path, keys: KeyFactory) -> None:
    def overridden(fleet: FleetRepoBuilder) -> None:
        _with_config(fleet)
        fleet.config("nav", "device-stg-1", {"max_speed_mps": 0.5})

    world = make_world(tmp_path, keys, configure=overridden)
    world.reconcile()
    pass_all_waves(world)
    observed = Observed(world)
    before = observed.look()
    world.fleet.config("nav", "default", {"max_speed_mps": 0.9})
    world.fleet.write()
    world.merge("nav: default 0.9")
    world.clock.tick(10)
    world.reconcile()
    now = observed.look()
    assert now["stg-1"] == before["stg-1"], "its merged config did not change: no redeploy"
    assert world.wave("staging") is not None
    assert [r.generation for r in world.state().devices["stg-1"].records] == [1]
