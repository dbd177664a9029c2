"""A reconcile's per-robot passes cost the robots it touches (issue 12), and give what the full
computation gives.

A controller that keeps a :class:`~controller.reconcile.cache.ReconcileCache` between reconciles,
as ``controller run`` does, runs a story over a real server (real git and gpg,
:mod:`tests.sim.world`) on a fleet of 44 robots. After every reconcile, what it recorded must be
what a cold computation from the mirror's commits gives (main read and validated afresh, the
state branch read without a cache), and it must have done the per-robot work only for the robots
whose records changed. The work is counted with wrappers around the real functions (which still
run), never timed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.delivery.bundles import DeliverySource, stages_of
from controller.delivery.inputs import BundleInputs
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.delivery_step import _historic_evidence
from controller.reconcile.rollouts import FleetContext
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from fleetcd.git.objects import ref_target
from fleetcd.git.trees import read_tree
from fleetcd.models import Cohort, Device
from fleetcd.planning.selection import device_stages
from fleetcd.validation import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

MORE = [f"prod-{n}" for n in range(5, 41)]  # a fleet of 44: a pass over everyone is easy to tell
FLEET = sorted(STAGING + CANARY + PRODUCTION + MORE)


def bigger(fleet: FleetRepoBuilder) -> None:
    for device in MORE:
        fleet.device(device)
    fleet.cohort("production", PRODUCTION + MORE, stage="production")


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    made = make_world(tmp_path, keys, configure=bigger)
    made.settings = replace(made.settings, cache=ReconcileCache())
    return made


def cache_of(world: ControllerWorld) -> ReconcileCache:
    assert world.settings.cache is not None
    return world.settings.cache


@pytest.fixture
def digested(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every robot whose inputs digest the cached controller computes (the real digest runs)."""
    seen: list[str] = []
    real = BundleInputs._compute

    def counted(self: BundleInputs, device: str, records: object) -> object:
        if self._memo is not None:
            seen.append(device)
        return real(self, device, records)  # type: ignore[arg-type]

    monkeypatch.setattr(BundleInputs, "_compute", counted)
    yield seen


def cold(world: ControllerWorld) -> tuple[StateSnapshot, FleetContext, dict[str, str]]:
    """The state branch, main's fleet context and every robot's inputs digest, computed from the
    mirror's commits without any cache."""
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    snapshot = load_state(repo)
    main = ref_target(repo, "refs/heads/main")
    assert main is not None
    files, problems = read_tree(repo, str(main))
    validation = validate_snapshot(files, problems=problems)
    assert validation.spec.fleet is not None and validation.trust is not None
    fleet = FleetContext.of(validation.spec, validation.spec.fleet.model, validation.trust.model)
    source = DeliverySource(fleet.spec, fleet.release_sha256)
    evidence = _historic_evidence(repo, source, snapshot.rollouts, snapshot.devices)
    inputs = BundleInputs(source, evidence)
    digests = {d: inputs.digest(d, data.records) for d, data in snapshot.devices.items()}
    return snapshot, fleet, digests


def story(world: ControllerWorld) -> list[tuple[str, Callable[[], object], float]]:
    """Reports, heartbeats, waves passing and an unrelated commit to main, with the seconds after each."""

    def heartbeat() -> None:
        world.sim.push_report("prod-7", world.clock.now)

    def edit_main() -> None:
        world.fleet.git("commit", "--allow-empty", "-qm", "an unrelated edit")
        world.fleet.git("push", "-q", str(world.server), "main")

    return [
        ("staging deployed", lambda: world.report_all(STAGING, "deployed"), 10),
        ("staging soaked: canary dispatched", lambda: None, 61),
        ("canary downloading", lambda: world.report_all(CANARY, "downloading"), 10),
        ("a heartbeat", heartbeat, 10),
        ("an unrelated commit to main", edit_main, 10),
        ("canary deployed", lambda: world.report_all(CANARY, "deployed"), 10),
        ("canary soaked: production dispatched", lambda: None, 61),
    ]


def test_inputs_digests_are_computed_for_the_robots_whose_records_changed_and_equal_a_cold_computation(
    world: ControllerWorld, digested: list[str]
) -> None:
    world.reconcile()
    assert sorted(digested) == FLEET  # the first reconcile digests everyone once
    before, _, _ = cold(world)
    for name, act, seconds in story(world):
        digested.clear()
        act()
        world.clock.tick(seconds)
        world.reconcile()
        after, _, digests = cold(world)
        changed = {d for d in FLEET if before.devices[d].records != after.devices[d].records}
        assert sorted(digested) == sorted(changed), name
        held = cache_of(world).robots.inputs.held
        for device in FLEET:
            desired = after.devices[device].desired
            assert desired is not None and desired.inputs_sha256 == digests[device], (name, device)
            assert held[device].digest == digests[device], (name, device)
        before = after
    assert len(changed) == len(PRODUCTION + MORE)  # the last step dispatched production: a real change


def _device(device_id: str, rng: random.Random) -> Device:
    doc: dict[str, Any] = {"apiVersion": "fleetcd.dev/v1", "kind": "Device", "id": device_id}
    doc |= {"family": rng.choice(["amr", "arm"]), "site": rng.choice(["berlin", "munich"])}
    doc["hardware"] = {"model": rng.choice(["mk1", "mk2"]), "revision": rng.randrange(1, 4)}
    return Device.model_validate(doc)


def _cohort(name: str, devices: list[str], rng: random.Random) -> Cohort:
    doc: dict[str, Any] = {"apiVersion": "fleetcd.dev/v1", "kind": "Cohort", "name": name}
    doc["stage"] = rng.choice(["staging", "canary", "production"])
    doc["devices"] = rng.sample(devices, rng.randrange(0, 4)) + ["ghost"] * rng.randrange(0, 2)
    if rng.random() < 0.6 or not doc["devices"]:
        doc["selector"] = {
            "families": [rng.choice(["amr", "arm"])],
            "sites": rng.sample(["berlin", "munich"], 1),
        }
    return Cohort.model_validate(doc)


@pytest.mark.parametrize("seed", range(30))
def test_the_stages_of_targeted_robots_are_what_the_fleet_wide_pass_gives_them(seed: int) -> None:
    """A rollout's evidence reads the stage of the robots it targets directly: computed for those
    alone, it is what device_stages gives them over the whole fleet (cohorts by list and by
    selector, of several stages, robots in none, unknown ids)."""
    rng = random.Random(seed)
    ids = [f"r{n}" for n in range(rng.randrange(1, 30))]
    devices = {d: _device(d, rng) for d in ids}
    cohorts = {f"c{n}": _cohort(f"c{n}", ids, rng) for n in range(rng.randrange(0, 6))}
    wanted = rng.sample([*ids, "ghost", "unknown"], rng.randrange(0, len(ids) + 2))
    everyone = device_stages(cohorts, devices)
    assert stages_of(cohorts, devices, wanted) == {d: everyone[d] for d in wanted if d in everyone}
