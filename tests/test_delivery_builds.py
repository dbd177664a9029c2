"""A change costs what it changes, down to the bundles built: a reconcile builds a robot's bundle
only when what it is built from changed (its inputs digest, :mod:`controller.delivery.inputs`) or
its ref must be written (renewed, healed).

Counted through ``ReconcileResult.bundles_built``, never timed. Real controller, real git and gpg
(:mod:`tests.sim.world`); robots verify as the agent does (:class:`tests.sim.robots.PinningRobot`:
serial and bundle digest pinned), so a robot that was not rebuilt must still accept what it holds
and a rebuilt one must accept its new commit above the serial it held.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pygit2

from controller.delivery.write import delivery_ref
from controller.reconcile.statebranch import load_state, write_state
from controller.state.layout import device_file
from fleetcd.git.objects import list_refs, read_blob
from fleetcd.git.refs import NAMESPACES_PREFIX
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

ROBOTS = sorted(STAGING + CANARY + PRODUCTION)


def targets(world: ControllerWorld) -> dict[str, str]:
    found = list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX)
    return {d: str(found[delivery_ref(d, namespaces=True)]) for d in ROBOTS}


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {device for device in ROBOTS if before[device] != after[device]}


def new_main_commit(world: ControllerWorld, message: str) -> None:
    """A main commit that changes no file: the idle fast path cannot skip the next reconcile."""
    world.fleet.git("commit", "--allow-empty", "-qm", message)
    world.fleet.git("push", "-q", str(world.server), "main")


def with_tools(fleet: FleetRepoBuilder) -> None:
    fleet.release("tools", "1.0.0")


def keeping_signatures(fleet: FleetRepoBuilder, message: str) -> None:
    """Commit, putting back the signature files that existed (the builder re-signs everything on
    every write, and gpg stamps the second into each signature)."""
    before = {path: path.read_bytes() for path in fleet.root.rglob("*.asc") if ".git" not in path.parts}
    fleet.write()
    for path, data in before.items():
        path.write_bytes(data)
    fleet.git("add", "-A")
    fleet.git("commit", "-q", "--allow-empty", "-m", message)


def into_the_next_second() -> None:
    """Sleep until the wall clock's second changes: gpg stamps the second into a signature, so a
    re-signing within the second it was signed in gives the same bytes (RSA signatures are
    deterministic) and would change nothing."""
    started = int(time.time())
    while int(time.time()) == started:
        time.sleep(0.05)


def test_a_rollout_to_one_robot_builds_its_bundle_alone(tmp_path: Path, keys: KeyFactory) -> None:
    """The first reconcile builds every robot's bundle; a rollout to prod-2 builds one; a reconcile
    where nothing changed builds none; every other robot still accepts the commit it holds."""
    world = make_world(tmp_path, keys, configure=with_tools, merge=keeping_signatures)
    first = world.reconcile()
    assert (first.bundles_built, first.desired_refs) == (len(ROBOTS), len(ROBOTS))
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert {d: a.poll() for d, a in agents.items()} == dict.fromkeys(ROBOTS, 1)

    world.fleet.rollout("tools", app="tools", release="1.0.0", devices=["prod-2"])
    world.merge("tools 1.0.0 to prod-2")
    world.clock.tick(5)
    wave = world.reconcile()
    assert (wave.bundles_built, wave.desired_refs) == (1, 1)
    assert {d: a.poll() for d, a in agents.items()} == {d: 2 if d == "prod-2" else 1 for d in ROBOTS}

    new_main_commit(world, "nothing for robots")
    world.clock.tick(5)
    quiet = world.reconcile()
    assert not quiet.idle and (quiet.bundles_built, quiet.desired_refs) == (0, 0)
    recorded = world.state().devices["prod-2"].desired
    assert recorded is not None and recorded.inputs_sha256 is not None


def test_the_staging_wave_builds_the_canary_robots_bundles_when_it_passes(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Waves of one rollout: the reconcile that dispatches canary builds exactly canary's bundles."""
    world = make_world(tmp_path, keys, merge=keeping_signatures)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    soaking = world.reconcile()
    assert soaking.bundles_built == 0  # reports change records, not what the bundles carry
    before = targets(world)
    world.clock.tick(61)
    dispatched = world.reconcile()
    assert (dispatched.bundles_built, dispatched.desired_refs) == (len(CANARY), len(CANARY))
    assert moved(before, targets(world)) == set(CANARY)


def test_a_deleted_ref_is_rebuilt_from_unchanged_inputs_and_accepted_above_its_serial(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Nothing the robot runs changed, so its inputs digest is the recorded one: the bundle is
    built anyway because its ref must be written, and the robot accepts it at a higher serial."""
    world = make_world(tmp_path, keys, merge=keeping_signatures)
    world.reconcile()
    device = STAGING[0]
    agent = PinningRobot(world, device)
    assert agent.poll() == 1
    before = read_blob(
        pygit2.Repository(str(world.server)), delivery_ref(device, namespaces=True), "bundle.json"
    )
    pygit2.Repository(str(world.server)).references.delete(delivery_ref(device, namespaces=True))

    new_main_commit(world, "nothing for robots")
    world.clock.tick(5)
    healed = world.reconcile()
    assert (healed.bundles_built, healed.desired_refs) == (1, 1)
    assert agent.poll() == 2
    after = read_blob(
        pygit2.Repository(str(world.server)), delivery_ref(device, namespaces=True), "bundle.json"
    )
    assert before is not None and after is not None
    old, new = json.loads(before), json.loads(after)
    assert old["deployments"] == new["deployments"] and (old["serial"], new["serial"]) == (1, 2)


def test_re_signed_release_and_approvals_rebuild_and_move_every_robot_that_carries_them(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The builder signs every release and approval again on each commit (gpg stamps the second):
    their bytes change, so the staging robot (the only one holding nav yet) is built and moved
    with the new bytes, and nobody else is built."""
    world = make_world(tmp_path, keys, configure=with_tools)  # the default merge re-signs
    world.reconcile()
    into_the_next_second()  # every signature so far was made in an earlier second
    world.fleet.config("tools", "default", {})
    world.clock.tick(2)
    world.merge("a tools config nothing uses")
    world.clock.tick(5)
    result = world.reconcile()
    assert (result.bundles_built, result.desired_refs) == (len(STAGING), len(STAGING))
    (deployment,) = world.sim.bundle(STAGING[0], world.clock.now).deployments
    signed = {
        p.relative_to(world.fleet.root).as_posix(): p.read_text()
        for p in world.fleet.root.rglob("*.asc")
        if ".git" not in p.parts
    }
    shipped = {**deployment.approvals, **deployment.release_signatures}
    assert shipped and shipped == {path: signed[path] for path in shipped}


def strip_inputs_digests(world: ControllerWorld) -> None:
    """Rewrite the server's state branch as a controller from before inputs digests wrote it."""
    server = pygit2.Repository(str(world.server))
    snapshot = load_state(server)
    changes: dict[str, bytes | None] = {}
    for device, data in snapshot.devices.items():
        raw = data.model_dump(mode="json")
        if raw["desired"] is not None:
            del raw["desired"]["inputs_sha256"]
        changes[device_file(device)] = json.dumps(raw, indent=1, sort_keys=True).encode() + b"\n"
    assert write_state(server, snapshot, changes, "an older controller", world.clock.now) is not None


def test_state_from_an_older_controller_builds_every_bundle_once_and_moves_no_ref(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """No inputs digest recorded: every bundle is built and compared by content; none changed, so
    no ref moves and no root is signed, and the digests are recorded for the next reconcile."""
    world = make_world(tmp_path, keys, merge=keeping_signatures)
    world.reconcile()
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert {d: a.poll() for d, a in agents.items()} == dict.fromkeys(ROBOTS, 1)
    strip_inputs_digests(world)
    assert all(
        f.desired is not None and f.desired.inputs_sha256 is None for f in world.state().devices.values()
    )
    before = targets(world)

    new_main_commit(world, "after the upgrade")
    world.clock.tick(5)
    upgraded = world.reconcile()
    assert (upgraded.bundles_built, upgraded.desired_refs, upgraded.root_signatures) == (len(ROBOTS), 0, 0)
    assert moved(before, targets(world)) == set()
    assert all(f.desired is not None and f.desired.inputs_sha256 for f in world.state().devices.values())
    assert {d: a.poll() for d, a in agents.items()} == dict.fromkeys(ROBOTS, 1)

    new_main_commit(world, "and after that")
    world.clock.tick(5)
    assert world.reconcile().bundles_built == 0
