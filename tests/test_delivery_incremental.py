"""A change costs what it changes: a reconcile moves only the desired-state refs of robots whose
bundle changed, whose renewal is due, or whose ref is not the commit recorded for them.

Real controller, real git and gpg (the controller scenario's world, :mod:`tests.sim.world`); robots
verify as the agent does: :class:`tests.sim.robots.PinningRobot` (serial and bundle digest pinned),
the real agent's sync (:func:`agent.sync.accept.load_desired`: fetch over git, verify, accept)
and the simulator's robot (:class:`controller.sim.robot.VirtualRobot`). A robot that keeps its
commit holds a serial at or below every later root, so the agent's rule — serials only grow — is
the same as when every robot moved on every change.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pygit2

from agent.paths import AgentPaths
from agent.sync.accept import load_desired
from controller.delivery.select import RenewalPolicy
from controller.delivery.write import delivery_ref
from controller.reconcile.idle import HINT_FILE
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.reconcile.steps import reconcile_once
from controller.sim.clock import Scheduler, SimClock
from controller.sim.model import Behaviour
from controller.sim.robot import Shared, VirtualRobot
from controller.sim.wire import RobotLink
from controller.state.layout import device_file
from fleetcd.desired import ROOT_FILE, BundleRejected
from fleetcd.git.objects import list_refs, read_blob, ref_target
from fleetcd.git.refs import NAMESPACES_PREFIX, STATE_BRANCH
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.provision import provisioned_fleet
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world, pass_wave

ROBOTS = sorted(STAGING + CANARY + PRODUCTION)
ROOT = Path(__file__).resolve().parent.parent


def targets(world: ControllerWorld) -> dict[str, str]:
    """Each robot's desired-state commit on the server."""
    repo = pygit2.Repository(str(world.server))
    found = list_refs(repo, NAMESPACES_PREFIX)
    return {d: str(found[delivery_ref(d, namespaces=True)]) for d in ROBOTS}


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {device for device in ROBOTS if before[device] != after[device]}


def state_files_changed(world: ControllerWorld, before: str) -> set[str]:
    """The device files the state branch's commits since ``before`` changed."""
    repo = pygit2.Repository(str(world.server))
    head = ref_target(repo, STATE_BRANCH)
    assert head is not None
    diff = repo.diff(before, str(head))
    paths = {delta.new_file.path for delta in diff.deltas}
    return {path for path in paths if path.startswith("devices/")}


def state_head(world: ControllerWorld) -> str:
    head = ref_target(pygit2.Repository(str(world.server)), STATE_BRANCH)
    assert head is not None
    return str(head)


def polls(agents: dict[str, PinningRobot]) -> dict[str, int]:
    return {device: agent.poll() for device, agent in agents.items()}


def with_tools(fleet: FleetRepoBuilder) -> None:
    fleet.release("tools", "1.0.0")


def keeping_signatures(fleet: FleetRepoBuilder, message: str) -> None:
    """Commit like :meth:`FleetRepoBuilder.commit`, but put back the signature files that existed:
    the builder signs everything again on every write, and gpg stamps the second into each
    signature, so every release and approval on main would change bytes (and with them the bundle
    of every robot that carries them) although no signed file changed."""
    before = {path: path.read_bytes() for path in fleet.root.rglob("*.asc") if ".git" not in path.parts}
    fleet.write()
    for path, data in before.items():
        path.write_bytes(data)
    fleet.git("add", "-A")
    fleet.git("commit", "-q", "--allow-empty", "-m", message)


def test_one_robot_of_many_gets_a_new_release_and_exactly_its_ref_moves(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A rollout to one robot: one ref moves under one signature, one device file changes, and
    every other robot's agent finds the commit it already accepted."""
    world = make_world(tmp_path, keys, configure=with_tools, merge=keeping_signatures)
    assert world.reconcile().desired_refs == len(ROBOTS)  # the first fan-out gives everyone a ref
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert polls(agents) == dict.fromkeys(ROBOTS, 1)
    before, state_before = targets(world), state_head(world)

    world.fleet.rollout("tools", app="tools", release="1.0.0", devices=["prod-2"])
    world.merge("tools 1.0.0 to prod-2")
    world.clock.tick(5)
    result = world.reconcile()

    assert (result.desired_refs, result.root_signatures) == (1, 1)
    assert moved(before, targets(world)) == {"prod-2"}
    assert polls(agents) == {device: 2 if device == "prod-2" else 1 for device in ROBOTS}
    assert [d.app for d in world.sim.bundle("prod-2", world.clock.now).deployments] == ["tools"]
    assert state_files_changed(world, state_before) == {device_file("prod-2")}
    recorded = world.state().devices["prod-2"].desired
    assert recorded is not None and (recorded.commit, recorded.serial) == (targets(world)["prod-2"], 2)


def test_each_wave_moves_its_own_robots_while_others_hold_older_serials(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Staging at serial 1, canary at 2, then production's wave signs 3 for production alone:
    a changing reconcile while robots hold serials S and S+1 keeps both, and every robot accepts."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert polls(agents) == dict.fromkeys(ROBOTS, 1)
    first = targets(world)

    pass_wave(world, STAGING, "staging")  # its last reconcile dispatches canary
    canary = targets(world)
    assert moved(first, canary) == set(CANARY)
    assert polls(agents) == {device: 2 if device in CANARY else 1 for device in ROBOTS}

    pass_wave(world, CANARY, "canary")
    production = targets(world)
    assert moved(canary, production) == set(PRODUCTION)
    served = {device: 3 if device in PRODUCTION else 2 if device in CANARY else 1 for device in ROBOTS}
    assert polls(agents) == served
    assert world.state().meta.serial == 3
    assert {d: f.desired.serial for d, f in world.state().devices.items() if f.desired} == served
    for device in PRODUCTION:
        assert [d.version for d in world.sim.bundle(device, world.clock.now).deployments] == ["1.0.0"]


def virtual_robot(world: ControllerWorld, device: str, root: Path) -> tuple[VirtualRobot, Keyring]:
    """The simulator's robot for ``device``: real fetches into its own repository, the real verifier."""
    clock = SimClock(world.clock.now, virtual=True)
    keyring = Keyring.from_armored(world.sim.keys)
    behaviour = Behaviour(
        poll_seconds=30, jitter=0, apply_seconds=1, failure_rate=0, latency_seconds=0, heartbeat_seconds=10**6
    )
    shared = Shared(Scheduler(clock), world.sim.anchors, keyring, behaviour)
    link = RobotLink(device, str(world.server), root / f"{device}.git", namespaces=True)
    return VirtualRobot(link, shared, random.Random(0), offline=False), keyring


def test_a_robot_refuses_its_own_previous_commit_replayed_after_it_moved_on(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """can-1 moves from serial 1 to 2 with the canary wave; its serial-1 commit (validly signed)
    put back on its ref is refused by the real agent and the simulator's robot, both keep serial 2,
    and the next reconcile rewrites that ref alone above every serial."""
    device = CANARY[0]
    aw = provisioned_fleet(tmp_path, keys)
    world = aw.world
    config = aw.config(device)
    paths = AgentPaths(Path(config.state_dir or "")).create()
    sim, keyring = virtual_robot(world, device, tmp_path / "sim")
    try:
        assert load_desired(config, paths, world.clock.now).serial == 1
        sim.poll()
        assert sim.last_serial == 1
        old = targets(world)[device]

        pass_wave(world, STAGING, "staging")
        accepted = load_desired(config, paths, world.clock.now)
        assert (accepted.serial, [a.deployment.version for a in accepted.assignments.values()]) == (
            2,
            ["1.0.0"],
        )
        sim.poll()
        assert sim.last_serial == 2

        server = pygit2.Repository(str(world.server))
        server.references.create(delivery_ref(device, namespaces=True), old, force=True)  # the replay
        replayed = load_desired(config, paths, world.clock.now)
        assert replayed.known and replayed.serial == 2  # keeps what it accepted
        rejections = [e for e in replayed.errors if isinstance(e, BundleRejected)]
        assert [e.reason for e in rejections] == [Reason.SERIAL_ROLLBACK]
        sim.poll()
        assert (sim.last_serial, sim.counters.rejected) == (2, 1)
        assert sim.last_error is not None and sim.last_error.startswith(Reason.SERIAL_ROLLBACK.value)

        before = targets(world)
        world.clock.tick(1)
        healed = world.reconcile()
        assert healed.desired_refs == 1 and moved(before, targets(world)) == {device}
        assert load_desired(config, paths, world.clock.now).serial == 3
        sim.poll()
        assert sim.last_serial == 3
    finally:
        keyring.close()


def served_expiry(world: ControllerWorld) -> dict[str, datetime]:
    repo = pygit2.Repository(str(world.server))
    out = {}
    for device, target in targets(world).items():
        root = read_blob(repo, pygit2.Oid(hex=target), ROOT_FILE)
        assert root is not None
        out[device] = datetime.fromisoformat(json.loads(root)["expires_at"])
    return out


def without_rollouts(fleet: FleetRepoBuilder) -> None:
    """Bundles live one day and nothing is rolled out: every ref that moves is a renewal."""
    fleet.fleet["defaults"] = {"bundle_expiry_seconds": 86400}
    fleet.remove("rollouts/nav.yaml")


def test_staggered_renewal_moves_at_most_the_batch_and_never_lets_a_bundle_expire(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """After a fan-out every bundle expires at the same instant. The idle fast path sleeps until
    the first renewal is due and wakes for it; reconciling every hour after that, renewals come in
    batches of at most 2, spread over the window before ``root_refresh_before``; no served bundle
    is ever left within ``root_refresh_before`` of expiry, and every robot is renewed."""
    world = make_world(tmp_path, keys, configure=without_rollouts)
    world.settings = replace(
        world.settings,
        root_refresh_before=timedelta(hours=6),
        renewal_window=timedelta(hours=6),
        renewals_per_reconcile=2,
    )
    policy = RenewalPolicy.of(timedelta(days=1), timedelta(hours=6), timedelta(hours=6), per_reconcile=2)
    assert world.reconcile().desired_refs == len(ROBOTS)
    first = targets(world)
    (expires,) = set(served_expiry(world).values())  # one shared expiry
    due = min(policy.due_at(device, expires) for device in ROBOTS)

    world.clock.now = due - timedelta(minutes=5)
    assert world.reconcile().desired_refs == 0  # a full reconcile: nothing due yet
    hint = json.loads((world.settings.source.mirror / HINT_FILE).read_bytes())  # nothing was committed
    assert datetime.fromisoformat(hint["mark"]["next_due_at"]) == due  # it wakes for the renewal
    world.clock.tick(120)
    assert world.reconcile().idle
    world.clock.now = due
    woke = world.reconcile()
    assert not woke.idle and 1 <= woke.desired_refs <= 2

    renewed = moved(first, targets(world))
    for _ in range(16):
        world.clock.tick(3600)
        before = targets(world)
        result = world.reconcile()
        assert result.desired_refs <= 2 and result.root_signatures == min(result.desired_refs, 1)
        renewed |= moved(before, targets(world))
        now = world.clock.now
        assert all(at - now > timedelta(hours=6) for at in served_expiry(world).values())
    assert renewed == set(ROBOTS) and moved(first, targets(world)) == set(ROBOTS)
    assert len(set(served_expiry(world).values())) > 1  # the shared expiry is spread out


# --- a non-atomic push: desired refs published, the state branch not ------------------------------------


def push_desired_then_die(argv: list[str]) -> None:
    """Subprocess entry: reconcile once; once the state commit is made, push only the mirror's
    desired-state refs to the server (what a non-atomic transport can leave) and SIGKILL ourselves."""
    server, mirror, gnupghome, now = argv
    at = datetime.fromisoformat(now)

    def checkpoint(name: str) -> None:
        if name == "state-committed":
            spec = f"+{NAMESPACES_PREFIX}*:{NAMESPACES_PREFIX}*"
            subprocess.run(["git", "--git-dir", mirror, "push", "-q", server, spec], check=True)
            os.kill(os.getpid(), signal.SIGKILL)

    settings = ControllerSettings(
        source=Source(server, Path(mirror)),
        gnupghome=Path(gnupghome),
        notify=False,
        now=lambda: at,
        checkpoint=checkpoint,
    )
    reconcile_once(settings)
    sys.exit(3)  # the checkpoint was never reached


def test_desired_refs_pushed_without_the_state_branch_are_rewritten_above_them(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The canary wave's reconcile publishes the canary robots' serial-2 commits, then dies before
    the state branch records them; robots accept serial 2 meanwhile. The re-run finds refs that are
    not the recorded commits, verifies their root (serial 2, the controller's key), and rewrites
    those robots under serial 3: no serial goes down, no robot is stuck, nobody else moves."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    assert polls(agents) == dict.fromkeys(ROBOTS, 1)
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)  # the next reconcile passes staging and dispatches canary
    before = targets(world)
    source = world.settings.source
    script = (
        "import sys; from tests.test_delivery_incremental import push_desired_then_die as m; m(sys.argv[1:])"
    )
    args = [source.url, str(source.mirror), str(world.settings.gnupghome), world.clock.now.isoformat()]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])
    assert moved(before, targets(world)) == set(CANARY) and world.state().meta.serial == 1  # not recorded
    assert polls(agents) == {device: 2 if device in CANARY else 1 for device in ROBOTS}

    rerun = world.reconcile()
    assert rerun.desired_refs == len(CANARY) and rerun.root_signatures == 1
    assert world.state().meta.serial == 3
    assert polls(agents) == {device: 3 if device in CANARY else 1 for device in ROBOTS}
    assert moved(before, targets(world)) == set(CANARY)
    again = world.reconcile()
    assert (again.desired_refs, again.root_signatures) == (0, 0)
