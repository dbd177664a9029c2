"""The commit policy's keys change only through a commit an already trusted key signed.

``trust.commits`` and ``keys/`` are read from the last accepted tree, never from the tip being
judged (controller/policy/commits.py). So a tip signed by a key it adds to ``trusted`` itself is
refused: its signer vouches for itself. The legitimate way, a commit signed by the trusted
committer that adds a second committer, is accepted; from then on the second committer's commits
are, and once a commit signed by a trusted key removes the first committer, that key's commits
are refused. Real reconciles on real git and gpg; the stall names the commit and writes no
desired state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.reconcile.steps import reconcile_once
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory
from tests.sim.world import ControllerWorld, make_world
from tests.test_controller_trust import (
    assert_stalled_and_untouched,
    deployed_on_staging,
    nav_1_1_0,
    signed_commit,
    strict_policy,
)


def trust_committer(fleet: FleetRepoBuilder, key: GpgKey, name: str) -> None:
    fleet.add_key_file(key)
    fleet.fleet["trust"]["commits"]["trusted"].append({"fingerprint": key.fingerprint, "name": name})


def distrust(fleet: FleetRepoBuilder, key: GpgKey) -> None:
    commits = fleet.fleet["trust"]["commits"]
    commits["trusted"] = [k for k in commits["trusted"] if k["fingerprint"] != key.fingerprint]


def push(world: ControllerWorld) -> str:
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(30)
    return world.fleet.git("rev-parse", "HEAD")


def accepted(world: ControllerWorld) -> str | None:
    return world.state().meta.last_processed_commit


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    committer = keys.key("committer")

    def merge(fleet: FleetRepoBuilder, message: str) -> None:
        signed_commit(fleet, keys, committer, message)

    return make_world(tmp_path, keys, configure=strict_policy(keys), merge=merge)


@pytest.mark.parametrize("mode", ["strict", "head"])
def test_a_tip_signed_by_a_key_it_makes_trusted_itself_is_refused(
    world: ControllerWorld, keys: KeyFactory, mode: str
) -> None:
    if mode == "head":
        world.fleet.fleet["trust"]["commits"]["mode"] = "head"
        world.merge("commit policy: the tip only")
    before = deployed_on_staging(world)
    mallory = keys.key("mallory")

    trust_committer(world.fleet, mallory, "mallory")
    nav_1_1_0(world.fleet)
    suspect = signed_commit(world.fleet, keys, mallory, "nav 1.1.0, and trust me")
    push(world)
    result = reconcile_once(world.settings)

    assert_stalled_and_untouched(world, result, before, f"commit {suspect} rejected")


def test_a_second_committer_added_by_the_trusted_one_may_commit_next(
    world: ControllerWorld, keys: KeyFactory
) -> None:
    deployed_on_staging(world)
    second = keys.key("committer-2")
    trust_committer(world.fleet, second, "committer-2")
    world.merge("trust committer-2")  # signed by the trusted committer
    world.clock.tick(30)
    world.reconcile()

    nav_1_1_0(world.fleet)
    tip = signed_commit(world.fleet, keys, second, "nav 1.1.0 by committer-2")
    push(world)
    result = reconcile_once(world.settings)

    assert result.stalled is None, result.stalled
    assert accepted(world) == tip
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.1.0"]


def test_a_committer_removed_from_trusted_can_no_longer_move_main(
    world: ControllerWorld, keys: KeyFactory
) -> None:
    first, second = keys.key("committer"), keys.key("committer-2")
    deployed_on_staging(world)
    trust_committer(world.fleet, second, "committer-2")
    world.merge("trust committer-2")
    world.clock.tick(30)
    world.reconcile()
    distrust(world.fleet, first)
    signed_commit(world.fleet, keys, second, "committer leaves: only committer-2 is trusted")
    removed = push(world)
    assert reconcile_once(world.settings).stalled is None
    assert accepted(world) == removed
    before_attempt = world.fleet.git("rev-parse", "HEAD")

    nav_1_1_0(world.fleet)
    suspect = signed_commit(world.fleet, keys, first, "nav 1.1.0 by the former committer")
    push(world)
    result = reconcile_once(world.settings)

    assert result.stalled is not None and f"commit {suspect} rejected" in result.stalled
    assert accepted(world) == before_attempt
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.0.0"]
