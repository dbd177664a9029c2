"""The controller removes the desired-state refs it does not own (controller.delivery.prune).

Real reconciles on the controller scenario's fleet (tests/sim/world.py's make_world), real git and
gpg: refs of robots deleted from main and refs planted under the layout not in use are deleted from
the server by the next reconcile that applies; refs of other shapes are left alone. The pure rule
(:func:`controller.delivery.prune.stale_refs`) is a decision table.
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from controller.delivery.prune import deletion_refspecs, stale_refs
from fleetcd.git.objects import list_refs, ref_target, update_refs
from fleetcd.git.refs import desired_ref, physical_desired_ref
from fleetcd.git.repo import Oid
from fleetcd.layout import device_path
from tests.gpgkeys import KeyFactory
from tests.sim.world import ControllerWorld, make_world

SPARE = "spare-1"  # on main, in no cohort: it gets an empty bundle
OID = Oid(hex="1" * 40)


def listed(server: Path) -> dict[str, str]:
    repo = pygit2.Repository(str(server))
    return {ref: str(oid) for prefix in ("refs/",) for ref, oid in list_refs(repo, prefix).items()}


def point(server: Path, ref: str, target: str) -> None:
    repo = pygit2.Repository(str(server))
    update_refs(repo, {ref: (ref_target(repo, ref), pygit2.Oid(hex=target))})


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    built = make_world(tmp_path, keys, configure=lambda fleet: fleet.device(SPARE))
    built.reconcile()
    return built


def test_the_desired_ref_of_a_robot_deleted_from_main_is_removed(world: ControllerWorld) -> None:
    assert physical_desired_ref(SPARE) in listed(world.server)
    world.fleet.remove(device_path(SPARE))
    world.merge(f"{SPARE} retired")
    world.clock.tick(60)

    world.reconcile()

    refs = listed(world.server)
    assert physical_desired_ref(SPARE) not in refs
    assert physical_desired_ref("stg-1") in refs


def test_a_ref_planted_under_the_layout_not_in_use_is_removed_and_other_shapes_are_left(
    world: ControllerWorld,
) -> None:
    current = listed(world.server)[physical_desired_ref("stg-1")]
    point(world.server, desired_ref("stg-1"), current)  # a flat ref: not the controller's layout
    other = "refs/namespaces/stg-1/refs/heads/notes"  # not a desired-state ref: none of its business
    point(world.server, other, current)
    world.clock.tick(60)

    world.reconcile()

    refs = listed(world.server)
    assert desired_ref("stg-1") not in refs
    assert refs[other] == current
    assert physical_desired_ref("stg-1") in refs


NS, FLAT = physical_desired_ref("r-1"), desired_ref("r-1")


@pytest.mark.parametrize(
    ("refs", "devices", "namespaces", "stale"),
    [
        ({NS: OID, FLAT: OID}, ["r-1"], True, [FLAT]),
        ({NS: OID, FLAT: OID}, ["r-1"], False, [NS]),
        ({NS: OID}, [], True, [NS]),
        ({desired_ref("r-2"): OID, NS: OID}, ["r-1"], True, [desired_ref("r-2")]),
        ({"refs/namespaces/r-1/refs/fleetcd/desired/r-2": OID}, ["r-1"], True, []),
        ({"refs/namespaces/r-1/refs/heads/x": OID}, ["r-1"], True, []),
        ({NS: OID}, ["r-1"], True, []),
    ],
    ids=[
        "namespaced-controller-owns-no-flat-ref",
        "flat-controller-owns-no-namespaced-ref",
        "robot-not-on-main",
        "flat-ref-of-another-robot-not-on-main",
        "malformed-namespaced-ref-left",
        "other-ref-in-a-namespace-left",
        "nothing-stale",
    ],
)
def test_which_desired_refs_the_controller_removes(
    refs: dict[str, Oid], devices: list[str], namespaces: bool, stale: list[str]
) -> None:
    found = stale_refs(refs, devices, namespaces=namespaces)
    assert sorted(found) == stale
    assert deletion_refspecs(found) == [f":{ref}" for ref in stale]
