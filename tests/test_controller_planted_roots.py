"""Attacks on the serial through robots' desired-state refs, at reconcile level on real git and gpg.

Whoever controls the git server can rewrite the refs robots fetch their desired state from. The
controller's own state branch (``state.json``'s ``serial`` and each device file's recorded commit)
is the source of truth for the signing serial (:mod:`controller.delivery.published`): a root
planted on a robot's ref — unsigned with a huge serial, of 4,300 digits, signed by another key, or
an old root replayed — must neither become the next serial nor stay where it was planted, and a
deleted ref is written again; the robots whose refs were not touched keep their commits. Every
robot then accepts what it is served as the agent would (:class:`tests.sim.robots.PinningRobot`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from controller.audit.events import AuditKind
from controller.delivery.write import delivery_ref
from fleetcd.desired import (
    BUNDLE_FILE,
    MAX_SERIAL,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    BundleRejected,
)
from fleetcd.git.objects import list_refs, read_blob, ref_target
from fleetcd.git.refs import NAMESPACES_PREFIX
from fleetcd.reasons import Reason
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, assert_no_duplicates, make_world

ROBOTS = sorted(STAGING + CANARY + PRODUCTION)
FIRST = ROBOTS[0]  # the robot whose root the old controller took the serial from
IDENTITY = pygit2.Signature("intruder", "intruder@example.invalid", 1_700_000_000, 0)


def files_of(world: ControllerWorld, device: str) -> dict[str, bytes]:
    repo = pygit2.Repository(str(world.server))
    target = ref_target(repo, delivery_ref(device, namespaces=True))
    assert target is not None, f"{device} has no desired ref"
    found = {
        name: read_blob(repo, target, name)
        for name in (BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE)
    }
    return {name: data for name, data in found.items() if data is not None}


def plant(world: ControllerWorld, device: str, files: dict[str, bytes]) -> None:
    """What an attacker on the git server does: point a robot's desired ref at a commit of its own."""
    repo = pygit2.Repository(str(world.server))
    tree = repo.TreeBuilder()
    for name, data in sorted(files.items()):
        tree.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    commit = repo.create_commit(None, IDENTITY, IDENTITY, "planted", tree.write(), [])
    repo.references.create(delivery_ref(device, namespaces=True), commit, force=True)


def with_serial(root: bytes, serial: str) -> bytes:
    current = json.loads(root)["serial"]
    planted = root.replace(b'"serial":%d' % current, b'"serial":' + serial.encode())
    assert planted != root
    return planted


def served_serials(world: ControllerWorld) -> dict[str, int]:
    """The serial of the root on every robot's ref (all present: none was left deleted)."""
    repo = pygit2.Repository(str(world.server))
    refs = list_refs(repo, NAMESPACES_PREFIX)
    serials = {}
    for device in ROBOTS:
        target = refs.get(delivery_ref(device, namespaces=True))
        assert target is not None, f"{device}'s desired ref was not written again"
        root = read_blob(repo, target, ROOT_FILE)
        assert root is not None
        serials[device] = json.loads(root)["serial"]
    return serials


def published_world(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, dict[str, PinningRobot]]:
    """Serial 1 published, and every robot's agent has accepted it."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert {device: agent.poll() for device, agent in agents.items()} == dict.fromkeys(ROBOTS, 1)
    return world, agents


def serials(healed: list[str], serial: int) -> dict[str, int]:
    """``serial`` for the ``healed`` robots, 1 (the first root, which every robot got) for the rest."""
    return {device: serial if device in healed else 1 for device in ROBOTS}


def assert_healed(
    world: ControllerWorld, agents: dict[str, PinningRobot], serial: int, expected: dict[str, int]
) -> None:
    """``serial`` recorded as the highest; each robot's ref serves its ``expected`` serial (the
    healed ones under the new root, the others the commit they held), the state branch records
    exactly those commits, and every agent accepts what it is served."""
    assert world.state().meta.serial == serial
    assert served_serials(world) == expected
    assert {device: agent.poll() for device, agent in agents.items()} == expected
    state = world.state()
    server = pygit2.Repository(str(world.server))
    for device in ROBOTS:
        desired = state.devices[device].desired
        target = ref_target(server, delivery_ref(device, namespaces=True))
        assert desired is not None and desired.commit == str(target) and desired.serial == expected[device]
    assert_no_duplicates(state)


@pytest.mark.parametrize(
    "serial", [str(10**30), str(MAX_SERIAL + 1)], ids=["ten-to-the-30", "just-over-2-to-the-53"]
)
def test_planted_root_serial_on_a_robot_ref_is_ignored(tmp_path: Path, keys: KeyFactory, serial: str) -> None:
    """The old controller signed serial 10**30 + 1 for every robot from an unsigned planted root."""
    world, agents = published_world(tmp_path, keys)
    files = files_of(world, FIRST)
    plant(world, FIRST, {**files, ROOT_FILE: with_serial(files[ROOT_FILE], serial)})

    world.clock.tick(1)
    healed = world.reconcile()
    assert healed.root_signatures == 1  # the planted root is replaced, under the next recorded serial
    assert healed.desired_refs == 1  # and no other robot's ref moves
    assert_healed(world, agents, 2, serials([FIRST], 2))
    ignored = [event for event in healed.events if event.kind == AuditKind.DESIRED_ROOT_IGNORED]
    assert len(ignored) == 1 and ignored[0].reason  # the audit log says a root was planted, and why


def test_root_with_a_4300_digit_serial_does_not_crash_the_reconcile(tmp_path: Path, keys: KeyFactory) -> None:
    """The old controller took this serial, added one and crashed writing 4,301 digits
    (``Exceeds the limit (4300 digits)``) on every reconcile that signed a root: here at once,
    since the planted commit holds no bundle.json, so that robot needs one."""
    world, agents = published_world(tmp_path, keys)
    files = files_of(world, FIRST)
    planted = {
        ROOT_FILE: with_serial(files[ROOT_FILE], "9" * 4300),
        ROOT_SIGNATURE_FILE: files[ROOT_SIGNATURE_FILE],
    }
    plant(world, FIRST, planted)

    world.clock.tick(1)
    assert world.reconcile().root_signatures == 1
    assert_healed(world, agents, 2, serials([FIRST], 2))
    world.clock.tick(1)
    again = world.reconcile()
    assert (again.root_signatures, again.desired_refs) == (0, 0)


def test_a_root_signed_by_a_key_fleet_yaml_does_not_name_moves_no_serial(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A well-formed root with a plausible serial, validly signed, but not by the controller key."""
    world, agents = published_world(tmp_path, keys)
    files = files_of(world, FIRST)
    root = with_serial(files[ROOT_FILE], "1000")
    forged = keys.sign(root, keys.key("intruder"))
    for device in ROBOTS:  # on every robot, so no robot shows the controller's root
        plant(world, device, {**files_of(world, device), ROOT_FILE: root, ROOT_SIGNATURE_FILE: forged})

    world.clock.tick(1)
    assert world.reconcile().root_signatures == 1
    assert_healed(world, agents, 2, serials(ROBOTS, 2))


def test_a_replayed_old_root_on_one_robot_neither_lowers_the_serial_nor_freezes_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The robot's own older commit, validly signed, put back on its ref after it moved on.

    Its agent refuses it as a rollback; the controller sees a ref that is not the commit it
    recorded and rewrites it above every serial, so the robot is not frozen; nobody else moves.
    """
    world, agents = published_world(tmp_path, keys)
    victim = CANARY[-1]
    old = files_of(world, victim)
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)
    moved = world.reconcile()  # staging passed, the canary wave starts: a new root for canary only
    assert (moved.desired_refs, world.state().meta.serial) == (len(CANARY), 2)
    expected = {device: 2 if device in CANARY else 1 for device in ROBOTS}
    assert {device: agent.poll() for device, agent in agents.items()} == expected
    plant(world, victim, old)
    with pytest.raises(BundleRejected) as refused:
        agents[victim].poll()
    assert refused.value.reason is Reason.SERIAL_ROLLBACK

    world.clock.tick(1)
    healed = world.reconcile()
    assert healed.desired_refs == 1
    assert_healed(world, agents, 3, {**expected, victim: 3})


def test_a_deleted_desired_ref_is_written_again(tmp_path: Path, keys: KeyFactory) -> None:
    world, agents = published_world(tmp_path, keys)
    repo = pygit2.Repository(str(world.server))
    for device in (FIRST, STAGING[0]):
        repo.references.delete(delivery_ref(device, namespaces=True))

    world.clock.tick(1)
    assert world.reconcile().desired_refs == 2
    assert_healed(world, agents, 2, serials([FIRST, STAGING[0]], 2))
