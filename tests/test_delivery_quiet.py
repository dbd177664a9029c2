"""Robots a reconcile leaves alone are skipped by the next one, and still get what they must
(controller.delivery.quiet).

A long-running controller (one :class:`~controller.reconcile.cache.ReconcileCache` for every
reconcile, as ``controller run``) skips the per-robot passes of the delivery step for a robot whose
device file is the very object the last reconcile left alone, under the same scope. Skipping must
never skip what that robot is owed: a ref deleted or planted on the server while it was quiet is
healed, its renewal still comes, a new rollout generation or a change of main's evidence makes
nobody quiet, and its robot (:class:`tests.sim.robots.PinningRobot`, as the agent verifies) accepts
every bundle exactly as before. Real controller, real git and gpg (:mod:`tests.sim.world`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.delivery import inputs as inputs_module
from controller.delivery.quiet import QuietMemo, Scope, scope_of
from controller.delivery.select import RenewalPolicy
from controller.delivery.write import delivery_ref
from controller.reconcile.cache import ReconcileCache
from controller.records.model import DeploymentRecord, DeviceState
from controller.state.model import DeviceFile, PublishedDesired, RolloutState
from fleetcd.compat import UTC
from fleetcd.desired import ROOT_FILE
from fleetcd.git.objects import list_refs, read_blob
from fleetcd.git.refs import NAMESPACES_PREFIX
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

ROBOTS = sorted(STAGING + CANARY + PRODUCTION)


def cached(world: ControllerWorld) -> ControllerWorld:
    world.settings = replace(world.settings, cache=ReconcileCache())
    return world


def quiet_robots(world: ControllerWorld) -> set[str]:
    assert world.settings.cache is not None
    return set(world.settings.cache.robots.quiet.robots)


def targets(world: ControllerWorld) -> dict[str, str]:
    found = list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX)
    return {
        d: str(found[delivery_ref(d, namespaces=True)])
        for d in ROBOTS
        if delivery_ref(d, namespaces=True) in found
    }


def git(world: ControllerWorld, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "--git-dir", str(world.server), *args], check=True, capture_output=True)


def settle(world: ControllerWorld) -> None:
    """The first reconcile (every robot moves), then one that runs in full and moves nobody (a
    heartbeat: an idle reconcile would not run the delivery step): every robot is then quiet."""
    world.reconcile()
    world.clock.tick(5)
    world.sim.push_report("prod-3", world.clock.now)
    world.clock.tick(5)
    assert world.reconcile().desired_refs == 0
    assert quiet_robots(world) == set(ROBOTS)


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every robot whose inputs digest is computed (not taken from a memo); the real one runs."""
    seen: list[str] = []
    real = inputs_module.BundleInputs._compute

    def counted(self: inputs_module.BundleInputs, device: str, records: object) -> object:
        seen.append(device)
        return real(self, device, records)  # type: ignore[arg-type]

    monkeypatch.setattr(inputs_module.BundleInputs, "_compute", counted)
    return seen


def test_a_quiet_robot_whose_ref_is_deleted_on_the_server_gets_its_bundle_back(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A ref deleted behind the controller's back while its robot was quiet: the next reconcile
    heals exactly that ref (the robot stays quiet: its inputs did not change), and the robot's
    agent accepts the new commit above the serial it held."""
    world = cached(make_world(tmp_path, keys))
    settle(world)
    assert quiet_robots(world) == set(ROBOTS)
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    served = {device: agent.poll() for device, agent in agents.items()}
    before = targets(world)

    git(world, "update-ref", "-d", delivery_ref("prod-1", namespaces=True))
    world.clock.tick(5)
    result = world.reconcile()

    after = targets(world)
    assert result.desired_refs == 1 and set(after) == set(ROBOTS)
    assert {d for d in ROBOTS if before[d] != after[d]} == {"prod-1"}
    assert agents["prod-1"].poll() > served["prod-1"]
    assert {d: agents[d].poll() for d in ROBOTS if d != "prod-1"} == {
        d: served[d] for d in ROBOTS if d != "prod-1"
    }


def test_another_robots_commit_planted_on_a_quiet_robots_ref_is_rewritten(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """prod-2's commit (a valid, signed bundle for prod-2) planted on prod-1's ref while both are
    quiet: the next reconcile rewrites prod-1's ref with prod-1's own bundle, and prod-1's agent
    accepts it (it would refuse prod-2's)."""
    world = cached(make_world(tmp_path, keys))
    settle(world)
    assert {"prod-1", "prod-2"} <= quiet_robots(world)
    agent = PinningRobot(world, "prod-1")
    held = agent.poll()

    git(world, "update-ref", delivery_ref("prod-1", namespaces=True), targets(world)["prod-2"])
    world.clock.tick(5)
    result = world.reconcile()

    assert result.desired_refs == 1
    assert targets(world)["prod-1"] != targets(world)["prod-2"]
    assert agent.poll() > held


def served_expiry(world: ControllerWorld) -> dict[str, datetime]:
    repo = pygit2.Repository(str(world.server))
    out = {}
    for device, target in targets(world).items():
        root = read_blob(repo, pygit2.Oid(hex=target), ROOT_FILE)
        assert root is not None
        out[device] = datetime.fromisoformat(json.loads(root)["expires_at"])
    return out


def without_rollouts(fleet: FleetRepoBuilder) -> None:
    fleet.fleet["defaults"] = {"bundle_expiry_seconds": 86400}
    fleet.remove("rollouts/nav.yaml")


def test_quiet_robots_are_still_renewed_and_their_agents_accept_every_renewal(
    tmp_path: Path, keys: KeyFactory, computed: list[str]
) -> None:
    """Renewal is a matter of the clock, not of a robot's inputs: robots skipped as quiet are
    renewed in their staggered batches, no served bundle ever comes within ``root_refresh_before``
    of expiry, every renewal is accepted by the robot's agent, and no inputs digest is computed
    for a renewal (the quiet robot's recorded one is its own)."""
    world = cached(make_world(tmp_path, keys, configure=without_rollouts))
    world.settings = replace(
        world.settings,
        root_refresh_before=timedelta(hours=6),
        renewal_window=timedelta(hours=6),
        renewals_per_reconcile=2,
    )
    policy = RenewalPolicy.of(timedelta(days=1), timedelta(hours=6), timedelta(hours=6), per_reconcile=2)
    world.reconcile()
    agents = {device: PinningRobot(world, device) for device in ROBOTS}
    for agent in agents.values():
        agent.poll()
    first = targets(world)
    (expires,) = set(served_expiry(world).values())
    world.clock.now = min(policy.due_at(device, expires) for device in ROBOTS) - timedelta(minutes=5)
    world.reconcile()
    assert quiet_robots(world) == set(ROBOTS)
    computed.clear()
    for _ in range(20):
        world.clock.tick(3600)
        before = targets(world)
        result = world.reconcile()
        assert result.desired_refs <= 2
        now = world.clock.now
        assert all(at - now > timedelta(hours=6) for at in served_expiry(world).values())
        for device in {d for d in ROBOTS if before[d] != targets(world)[d]}:
            agents[device].poll()  # raises when the robot would refuse it
    assert {d for d in ROBOTS if first[d] != targets(world)[d]} == set(ROBOTS)
    assert computed == []


def test_a_new_rollout_generation_leaves_no_robot_quiet(
    tmp_path: Path, keys: KeyFactory, computed: list[str]
) -> None:
    """Main's rollout edited (new evidence for every robot it targets): the scope changes, so every
    robot's inputs are digested again, and its robot accepts the bundle it gets."""
    world = cached(make_world(tmp_path, keys))
    settle(world)
    assert quiet_robots(world) == set(ROBOTS)
    computed.clear()

    world.fleet.rollout("nav", app="nav", release="1.0.0", devices=ROBOTS)
    world.merge("nav to every robot by name")
    world.clock.tick(5)
    world.reconcile()

    assert sorted(computed) == ROBOTS
    for device in ROBOTS:
        PinningRobot(world, device).poll()


def _file(device: str) -> DeviceFile:
    return DeviceFile(state=DeviceState(device=device))


def test_an_equal_but_different_device_file_is_not_quiet() -> None:
    """Quiet is by identity: a device file parsed again (equal by value) takes the full path, so a
    memo can miss a robot but never hold one whose file was rewritten."""
    memo = QuietMemo()
    files = {"a": _file("a"), "b": _file("b")}
    scope = scope_of("inputs", {}, {}, namespaces=True)
    memo.remember(scope, files)
    again = {"a": files["a"], "b": _file("b")}
    assert again["b"] == files["b"]
    assert memo.quiet(scope, again) == {"a"}


@pytest.mark.parametrize("changed", ["inputs", "release_sha256", "namespaces"])
def test_a_change_of_what_every_robot_depends_on_leaves_no_robot_quiet(changed: str) -> None:
    """The recipe and main's evidence, a release file's sha256 or the ref layout: no robot is
    quiet under another fixed scope."""
    base: dict[str, Any] = {"inputs": "x", "sha": {"nav": "a" * 64}, "namespaces": True}
    key, value = {"inputs": ("inputs", "y"), "release_sha256": ("sha", {"nav": "b" * 64})}.get(
        changed, ("namespaces", False)
    )
    other = {**base, key: value}

    def scope(of: dict[str, Any]) -> Scope:
        return scope_of(of["inputs"], {}, of["sha"], namespaces=of["namespaces"])

    files = {"a": _file("a")}
    memo = QuietMemo()
    memo.remember(scope(base), files)
    assert memo.quiet(scope(base), files) == {"a"}
    assert memo.quiet(scope(other), files) == frozenset()


def _with_record_of(device: str, rollout: str) -> DeviceFile:
    record = DeploymentRecord.model_construct(rollout=rollout, device=device)
    return DeviceFile.model_construct(state=DeviceState(device=device), records=(record,), desired=None)


@pytest.mark.parametrize("changed", ["generation", "release_commits", "appeared", "went"])
def test_a_rollouts_new_generation_or_release_commits_leave_only_its_robots_not_quiet(changed: str) -> None:
    """Where historic evidence is read from (a rollout state's generation and release commits),
    changed, or a rollout state that appeared or went: the robots with a record of that rollout
    take the full path, the others stay quiet."""
    nav = RolloutState.model_construct(name="nav", generation=1, release_commits={"a" * 64: "c" * 40})
    before: dict[str, RolloutState] = {"nav": nav}
    if changed == "generation":
        after = {"nav": nav.model_copy(update={"generation": 2})}
    elif changed == "release_commits":
        after = {"nav": nav.model_copy(update={"release_commits": {"a" * 64: "d" * 40}})}
    elif changed == "appeared":
        before, after = {}, {"nav": nav}
    else:
        after = {}
    files = {
        "mine": _with_record_of("mine", "nav"),
        "other": _with_record_of("other", "tools"),
        "none": _file("none"),
    }
    memo = QuietMemo()
    memo.remember(scope_of("x", before, {}, namespaces=True), files)
    assert memo.quiet(scope_of("x", before, {}, namespaces=True), files) == set(files)
    assert memo.quiet(scope_of("x", after, {}, namespaces=True), files) == {"other", "none"}


def _record(inputs: str) -> PublishedDesired:
    return PublishedDesired(
        commit="c" * 40,
        serial=2,
        content_sha256="a" * 64,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        inputs_sha256=inputs,
    )


def test_a_robot_given_a_new_record_is_quiet_next_time_only_while_its_file_holds_it() -> None:
    """A robot the last reconcile wrote a record for comes back as a new object (parsed from the
    state branch): quiet when its file holds that record and the same records by value; not when
    the state write was lost (its old record) or its records changed since."""
    memo = QuietMemo()
    scope = scope_of("inputs", {}, {}, namespaces=True)
    before = {"a": _file("a"), "b": _file("b"), "c": _file("c")}
    written = _record("1" * 64)
    memo.remember(scope, before, {"a": written, "b": written, "c": written})
    parsed = {
        "a": before["a"].model_copy(update={"desired": written}),
        "b": before["b"].model_copy(update={"desired": _record("2" * 64)}),  # another record
        "c": _file("c").model_copy(update={"desired": written, "last_report_seq": 3}),
    }
    assert memo.quiet(scope, parsed) == {"a", "c"}
    assert memo.quiet(scope_of("other", {}, {}, namespaces=True), parsed) == frozenset()


def test_the_benchmarks_wave_and_ingest_after_a_first_reconcile_digest_only_the_waves_robots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, computed: list[str]
) -> None:
    """The 100,000-robot benchmark's story on 120 robots (bench.controller_world): every robot's
    first desired state, then a rollout falling due that dispatches 12 of them (its rollout state
    appears only then), then their reports. The wave and the ingest digest the 12 robots alone (the
    others were settled by the first reconcile, then left alone), and every robot's recorded inputs
    digest is the one a cold computation from the mirror gives."""
    from bench import controller_world
    from bench.controller_reconcile import REPORT_DELAY_S, _wave_reports
    from controller.reconcile.steps import reconcile_once
    from tests.sim.robots import ROBOT, push_reports
    from tests.test_reconcile_passes import cold

    monkeypatch.setattr(controller_world, "WAVE_ROBOTS", 12)
    world = controller_world.build_world(tmp_path, 120)
    reconcile_once(world.settings)
    computed.clear()
    world.clock.now = controller_world.WAVE_AT
    assert reconcile_once(world.settings).desired_refs == 12
    assert sorted(computed) == sorted(world.wave)
    world.clock.tick(REPORT_DELAY_S)
    push_reports(world.server, _wave_reports(world), world.clock.now, author=ROBOT)
    world.clock.tick(REPORT_DELAY_S)
    computed.clear()
    assert reconcile_once(world.settings).desired_refs == 0
    assert sorted(computed) == sorted(world.wave)
    computed.clear()
    state, _, digests = cold(world)  # type: ignore[arg-type]  # a BenchWorld has the settings it reads
    assert len(digests) == len(state.devices) >= len(world.active)
    for device in world.active:
        desired = state.devices[device].desired
        assert desired is not None and desired.inputs_sha256 == digests[device], device


@pytest.mark.parametrize(
    "field,value",
    [
        ("commit", "d" * 40),
        ("serial", 3),
        ("content_sha256", "b" * 64),
        ("expires_at", datetime(2030, 1, 2, tzinfo=UTC)),
        ("inputs_sha256", None),
    ],
)
def test_a_file_holding_a_record_that_differs_from_the_written_one_in_any_field_is_not_quiet(
    field: str, value: object
) -> None:
    """The settled check compares the record field by field (not by the model's ``==``): a state
    branch holding another commit, serial, content, expiry or inputs digest than the one written
    (a lost write, or an edited file) is not quiet."""
    memo = QuietMemo()
    scope = scope_of("inputs", {}, {}, namespaces=True)
    written = _record("1" * 64)
    memo.remember(scope, {"a": _file("a")}, {"a": written})
    same = _file("a").model_copy(update={"desired": written.model_copy()})
    other = _file("a").model_copy(update={"desired": written.model_copy(update={field: value})})
    assert memo.quiet(scope, {"a": same}) == {"a"}
    assert memo.quiet(scope, {"a": other}) == frozenset()


def test_the_memo_finds_the_robots_rewritten_new_and_gone_and_holds_each_robots_newest_file() -> None:
    """Between two reconciles a robot's file rewritten, a robot new and one gone: the touched
    robots are the rewritten and the new one, the gone one is named apart, and after remember the
    memo holds exactly the robots and files of the reconcile that remembered (a fresh memo's)."""
    scope = scope_of("inputs", {}, {}, namespaces=True)
    files = {d: _file(d) for d in ("a", "b", "c")}
    memo = QuietMemo()
    memo.remember(scope, files)
    later = {"a": files["a"], "b": _file("b"), "d": _file("d")}  # c gone, b rewritten, d new
    found = memo.touched(scope, later)
    assert found is not None
    assert (found.touched, found.settled, found.gone) == ({"b", "d"}, frozenset(), frozenset({"c"}))
    memo.remember(scope, later)
    fresh = QuietMemo()
    fresh.remember(scope, later)
    assert memo.robots.keys() == fresh.robots.keys() == {"a", "b", "d"}
    assert all(memo.robots[d] is later[d] for d in later)
    assert memo.quiet(scope, later) == {"a", "b", "d"}
