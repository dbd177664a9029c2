"""Faults at the reconcile level, on real git and real gpg: kill -9 between write steps, and two
controllers racing on one repository.

The world is the controller scenario's fleet (:func:`tests.sim.world.make_world`, as in the other
``test_controller_*`` fault and attack modules).
A crash is a real ``SIGKILL`` of a subprocess that runs ``reconcile_once`` with a checkpoint hook;
the world is copied first, so the same reconcile also runs without the crash, at the same injected
clock, and the two servers are compared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.audit.heads import HEADS_DIR
from controller.delivery.write import delivery_ref
from controller.reconcile import source
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source, open_mirror
from controller.reconcile.statebranch import StateSnapshot
from controller.reconcile.steps import reconcile_once
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE
from fleetcd.git.objects import list_refs, read_blob, ref_target
from fleetcd.git.refs import NAMESPACES_PREFIX, STATE_BRANCH, status_ref
from fleetcd.git.trees import read_files
from tests.gitrepos import GitDaemon
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import (
    CANARY,
    PRODUCTION,
    STAGING,
    ControllerWorld,
    assert_no_duplicates,
    audit_lines,
    make_world,
)

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["desired-written", "state-committed", "state-pushed"]
IDENTITY = pygit2.Signature("someone", "someone@example.invalid", 1_700_000_000, 0)


# --- worlds -------------------------------------------------------------------------------------


def copy_world(world: ControllerWorld, root: Path) -> ControllerSettings:
    """Settings of a second controller on a copy of the world's server and cache, same clock."""
    server = root / "fleet.git"
    shutil.copytree(world.server, server, symlinks=True)
    mirror = root / "cache" / world.settings.source.mirror.name
    if world.settings.source.mirror.exists():
        shutil.copytree(world.settings.source.mirror, mirror, symlinks=True)
    return replace(world.settings, source=Source(str(server), mirror))


# --- what the server holds ----------------------------------------------------------------------


def state_tree(server: Path) -> dict[str, str]:
    """Path -> blob id of the state branch's tree, without the signed audit heads' signatures (gpg
    stamps the wall-clock second into them, so two runs at the same injected clock differ there
    alone; the head documents they sign are compared) and without the desired-state commit each
    device file records (it covers the root's signature), which must be the commit its robot's ref
    holds on that server (checked here)."""
    repo = pygit2.Repository(str(server))
    head = ref_target(repo, STATE_BRANCH)
    assert head is not None, "no state branch on the server"
    commit = repo[head]
    assert isinstance(commit, pygit2.Commit)
    files = read_files(repo, head)
    for path, data in files.items():
        if path.startswith("devices/") and path.endswith(".json"):
            files[path] = _without_desired_commit(repo, json.loads(data))
    blobs = {path: str(pygit2.hash(data)) for path, data in files.items()}
    return {p: b for p, b in blobs.items() if not (p.startswith(HEADS_DIR) and p.endswith(".asc"))}


def _without_desired_commit(repo: pygit2.Repository, device: dict[str, Any]) -> bytes:
    desired = device.get("desired")
    if desired is not None:
        ref = delivery_ref(device["state"]["device"], namespaces=True)
        assert desired.pop("commit") == str(ref_target(repo, ref)), f"{ref} is not the commit recorded"
    return json.dumps(device, sort_keys=True).encode()


def desired(server: Path, *, signatures: bool = False) -> dict[str, dict[str, bytes | None]]:
    """Every robot's desired-state files; the root signature only when asked (gpg stamps the
    wall-clock second into it, so two runs at the same injected clock differ in that file alone)."""
    repo = pygit2.Repository(str(server))
    names = [BUNDLE_FILE, ROOT_FILE, PROOF_FILE] + ([ROOT_SIGNATURE_FILE] if signatures else [])
    return {
        ref: {name: read_blob(repo, target, name) for name in names}
        for ref, target in sorted(list_refs(repo, NAMESPACES_PREFIX).items())
    }


def desired_targets(server: Path) -> dict[str, str]:
    return {
        ref: str(oid) for ref, oid in list_refs(pygit2.Repository(str(server)), NAMESPACES_PREFIX).items()
    }


def kinds(state: StateSnapshot) -> list[str]:
    return [line["event"]["kind"] for line in audit_lines(state)]


# --- kill -9 ------------------------------------------------------------------------------------


def crash_main(argv: list[str]) -> None:
    """Subprocess entry: reconcile once and SIGKILL ourselves at checkpoint ``step``."""
    server, mirror, gnupghome, now, step, notify = argv
    at = datetime.fromisoformat(now)

    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    settings = ControllerSettings(
        source=Source(server, Path(mirror)),
        gnupghome=Path(gnupghome),
        notify=notify == "notify",
        now=lambda: at,
        checkpoint=checkpoint,
    )
    reconcile_once(settings)
    sys.exit(3)  # the step was never reached


def reconcile_killed_at(settings: ControllerSettings, now: datetime, step: str) -> None:
    script = "import sys; from tests.test_controller_faults import crash_main; crash_main(sys.argv[1:])"
    args = [settings.source.url, str(settings.source.mirror), str(settings.gnupghome), now.isoformat(), step]
    args.append("notify" if settings.notify else "quiet")
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])


def to_first_wave(world: ControllerWorld) -> None:
    """Nothing reconciled yet: the crashing reconcile creates the rollout and starts staging."""


def to_canary_wave(world: ControllerWorld) -> None:
    """Staging soaked: the crashing reconcile ingests nothing new, passes staging, starts canary."""
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("setup", [to_first_wave, to_canary_wave], ids=["first-wave", "canary-wave"])
def test_kill_9_between_write_steps_then_a_rerun_matches_a_run_without_the_crash(
    tmp_path: Path, keys: KeyFactory, step: str, setup: Callable[[ControllerWorld], None]
) -> None:
    world = make_world(tmp_path / "reference", keys)
    setup(world)
    crashing = copy_world(world, tmp_path / "crash")
    now = world.clock.now

    world.reconcile()
    reconcile_killed_at(crashing, now, step)
    rerun = reconcile_once(crashing)
    assert rerun.stalled is None

    server = Path(crashing.source.url)
    assert state_tree(server) == state_tree(world.server)
    assert desired(server) == desired(world.server)
    crashed = ControllerWorld(
        world.fleet, server, crashing, replace(world.sim, server=server, robots={}), world.clock
    )
    for device in STAGING + CANARY:
        assert crashed.sim.bundle(device, now) == world.sim.bundle(device, now)  # signatures verify
    state = crashed.state()
    assert_no_duplicates(state)
    assert kinds(state).count("rollout_created") == 1
    again = reconcile_once(crashing)
    assert (again.state_commit, again.desired_refs, again.events) == (None, 0, [])


# --- two controllers ------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["desired-written", "state-committed"])
def test_two_controllers_racing_on_one_repository_end_consistent(
    tmp_path: Path, keys: KeyFactory, step: str
) -> None:
    world = make_world(tmp_path, keys)
    agent = PinningRobot(world, "stg-1")
    other = replace(world.settings, source=Source.for_url(world.settings.source.url, tmp_path / "cache-b"))
    interleaved: list[str] = []
    winners: list[str] = []

    def b_completes_meanwhile(name: str) -> None:
        if name == step and not interleaved:
            interleaved.append(name)
            world.clock.tick(1)
            finished = reconcile_once(other)
            assert finished.state_commit is not None
            winners.append(finished.state_commit)
            agent.poll()
            world.clock.tick(1)

    first = reconcile_once(replace(world.settings, checkpoint=b_completes_meanwhile))
    assert interleaved == [step] and first.stalled is None
    agent.poll()  # a robot that took B's root accepts what A left behind
    server = pygit2.Repository(str(world.server))
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    assert str(head) == winners[0] or server.descendant_of(head, winners[0]), "A forced over B's state"

    state = world.state()
    assert_no_duplicates(state)
    assert kinds(state).count("rollout_created") == 1
    assert kinds(state).count("wave_started") == 1
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.0.0"]
    for settings in (world.settings, other):
        again = reconcile_once(settings)
        assert (again.state_commit, again.events) == (None, [])
    assert world.state().files == state.files


@contextmanager
def served(world: ControllerWorld, transport: str) -> Iterator[str]:
    """The world's server as a local path (git CLI: atomic push) or over ``git://`` (libgit2)."""
    if transport == "local":
        yield str(world.server)
        return
    with GitDaemon(world.server.parent) as daemon:
        yield daemon.url(world.server)


@pytest.mark.parametrize("transport", ["local", "git-daemon"])
def test_a_controller_that_lost_the_race_published_nothing_of_its_attempt(
    tmp_path: Path, keys: KeyFactory, transport: str
) -> None:
    world = make_world(tmp_path, keys)
    with served(world, transport) as url:
        world.settings = replace(world.settings, source=Source.for_url(url, tmp_path / "cache-a"))
        lost_race_publishes_nothing(world, tmp_path)


def lost_race_publishes_nothing(world: ControllerWorld, tmp_path: Path) -> None:
    agent = PinningRobot(world, "stg-1")
    other = replace(world.settings, source=Source.for_url(world.settings.source.url, tmp_path / "cache-b"))
    seen: dict[str, dict[str, str]] = {}

    def b_wins_then_a_retries(name: str) -> None:
        if name == "state-committed" and "b" not in seen:
            world.clock.tick(1)
            reconcile_once(other)
            seen["b"] = desired_targets(world.server)
            assert agent.poll() == 1
        elif name == "desired-written" and "b" in seen and "retry" not in seen:
            seen["retry"] = desired_targets(world.server)  # A's first push was refused as a whole

    first = reconcile_once(replace(world.settings, checkpoint=b_wins_then_a_retries))
    assert seen["retry"] == seen["b"], "a rejected push moved some robots' desired state"
    assert first.events == [] and first.signatures == 0  # the retry found B's decisions on the tip
    assert agent.poll() == 1
    assert_no_duplicates(world.state())


def test_a_rivals_root_pushed_over_the_published_one_is_replaced_under_a_new_serial(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Where pushes are not atomic (libgit2's transports), a controller that lost the state-branch
    race may still have moved robots' refs: another root under a serial the state branch vouches
    for. The next reconcile signs a fresh serial, so no robot keeps either."""
    world = make_world(tmp_path, keys)
    rival = copy_world(world, tmp_path / "rival")
    agent = PinningRobot(world, "stg-1")
    world.reconcile()
    assert agent.poll() == 1
    world.clock.tick(1)
    reconcile_once(rival)  # its own serial-1 root, signed a second later
    spec = f"+{NAMESPACES_PREFIX}*:{NAMESPACES_PREFIX}*"
    subprocess.run(["git", "--git-dir", rival.source.url, "push", "-q", str(world.server), spec], check=True)
    assert desired_targets(world.server) == desired_targets(Path(rival.source.url))

    world.clock.tick(30)
    healed = reconcile_once(world.settings)
    assert healed.root_signatures == 1
    assert agent.poll() == 2
    assert world.state().meta.serial == 2
    assert_no_duplicates(world.state())


def test_the_fan_out_push_leaves_robots_status_refs_and_foreign_refs_alone(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The desired-state wildcard covers only what the controller writes: a robot reporting while
    the controller pushes keeps its report, and a ref someone else put under a robot's namespace
    is neither pushed back nor overwritten."""
    world = make_world(tmp_path, keys)
    to_canary_wave(world)  # the next reconcile moves the canary robots' desired state
    server = pygit2.Repository(str(world.server))
    main = ref_target(server, "refs/heads/main")
    assert main is not None
    foreign = f"{NAMESPACES_PREFIX}stg-1/refs/heads/notes"
    server.references.create(foreign, main)
    moved: dict[str, str] = {}

    def robot_reports_meanwhile(name: str) -> None:
        if name == "state-committed" and not moved:
            world.report_all(STAGING, "deployed")  # a newer report of the same
            report = ref_target(server, status_ref("stg-1"))
            assert report is not None
            moved["report"] = str(report)
            empty = server.create_commit(None, IDENTITY, IDENTITY, "notes", server.TreeBuilder().write(), [])
            server.references.create(foreign, empty, force=True)
            moved["foreign"] = str(empty)

    assert reconcile_once(replace(world.settings, checkpoint=robot_reports_meanwhile)).desired_refs > 0
    assert str(ref_target(server, status_ref("stg-1"))) == moved["report"]
    assert str(ref_target(server, foreign)) == moved["foreign"]
    assert foreign not in list_refs(open_mirror(world.settings.source), NAMESPACES_PREFIX)


def test_the_servers_refs_are_packed_after_a_fan_out(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fan-out to this many robots leaves this many loose refs at least (tests/test_reconcile_proportional.py
    # has the push that leaves fewer than that loose)
    monkeypatch.setattr(source, "PACK_FROM_LOOSE_REFS", len(STAGING + CANARY + PRODUCTION))
    world = make_world(tmp_path, keys)
    assert world.reconcile().desired_refs == len(STAGING + CANARY + PRODUCTION)

    loose = [p for p in (world.server / "refs").rglob("*") if p.is_file()]
    packed = (world.server / "packed-refs").read_text()
    assert loose == []
    assert f"{delivery_ref('stg-1', namespaces=True)}\n" in packed and f"{STATE_BRANCH}\n" in packed
