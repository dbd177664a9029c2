"""The ingest step's shortcuts (issue 12): it reads the status refs the fetch found, visits only
the refs present, builds the deployment owners only for a claim that needs them and ages a
silent robot's connectivity by comparing datetimes. Each shortcut against the attack or the edge
it must not miss: real git, real gpg, the real ``reconcile_once`` (:mod:`tests.sim.world`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest

from controller.ingest import reports
from controller.ingest.reports import read_moved_reports
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from controller.records.model import Connectivity, connectivity
from controller.state.model import WavePhase
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from fleetcd.git.repo import Oid, Repository
from fleetcd.reports import DeploymentReport
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, STAGING, ControllerWorld, make_world, pass_wave

OFFLINE_AFTER_S = 900  # the scenario fleet's default


def link(world: ControllerWorld, device: str) -> Connectivity:
    return world.state().devices[device].state.connectivity


@pytest.fixture(params=["fresh process", "controller run"])
def kept(request: pytest.FixtureRequest) -> bool:
    """Whether the controller keeps its memos between reconciles (``controller run``) or computes
    everything afresh (``controller reconcile --once``): both must age robots alike."""
    return bool(request.param == "controller run")


def aging_world(tmp_path: Path, keys: KeyFactory, kept: bool) -> ControllerWorld:
    world = make_world(tmp_path, keys)
    if kept:
        world.settings = replace(world.settings, cache=ReconcileCache())
    return world


def test_a_robot_silent_exactly_offline_after_is_online_and_a_microsecond_later_offline(
    tmp_path: Path, keys: KeyFactory, kept: bool
) -> None:
    world = aging_world(tmp_path, keys, kept)
    world.reconcile()
    world.report_all(["stg-1"], "downloading")
    world.clock.tick(10)
    world.reconcile()
    heard = world.state().devices["stg-1"].state.last_seen
    assert heard == world.clock.now and link(world, "stg-1") is Connectivity.ONLINE

    # Nothing else changes: only the clock may age the silent robot, at the very reconcile its
    # age passes the threshold, not one earlier.
    world.clock.tick(OFFLINE_AFTER_S)
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.ONLINE
    world.clock.tick(0.000001)
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.OFFLINE
    # and heard again: online at once
    world.report_all(["stg-1"], "downloading")
    world.clock.tick(1)
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.ONLINE


def test_a_robot_that_goes_silent_while_others_report_is_marked_offline_at_the_right_reconcile(
    tmp_path: Path, keys: KeyFactory, kept: bool
) -> None:
    world = aging_world(tmp_path, keys, kept)
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    world.report_all(CANARY, "downloading")
    world.clock.tick(10)
    world.reconcile()
    quiet, talking = CANARY[0], CANARY[1:]
    for _ in range(3):  # the others keep reporting; the quiet one says nothing
        world.clock.tick(OFFLINE_AFTER_S / 3 - 1)
        world.report_all(talking, "downloading")
        world.reconcile()
        assert link(world, quiet) is Connectivity.ONLINE
    world.clock.tick(4)
    world.reconcile()
    assert link(world, quiet) is Connectivity.OFFLINE
    assert all(link(world, d) is Connectivity.ONLINE for d in talking)


def test_a_robot_aged_offline_is_online_again_when_the_clock_steps_back_and_offline_once_more_after(
    tmp_path: Path, keys: KeyFactory, kept: bool
) -> None:
    """The controller's clock steps back (an NTP correction): a robot it aged offline is, by the
    rule, within ``offline_after`` again, and the kept index must find it as a cold pass does; a
    reconcile that records nothing (idle) leaves it for the next one that runs."""
    world = aging_world(tmp_path, keys, kept)
    world.reconcile()
    world.report_all(["stg-1"], "downloading")
    world.sim.push_report("prod-1", world.clock.now)  # a bare heartbeat
    world.clock.tick(10)
    world.reconcile()
    heard = world.clock.now
    world.clock.tick(OFFLINE_AFTER_S + 1)
    world.sim.push_report("can-1", world.clock.now)  # something new, so that the reconcile runs
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.OFFLINE and link(world, "prod-1") is Connectivity.OFFLINE
    world.clock.now = heard + timedelta(seconds=OFFLINE_AFTER_S)  # back: exactly offline_after silent
    world.sim.push_report("can-2", world.clock.now)
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.ONLINE and link(world, "prod-1") is Connectivity.ONLINE
    assert link(world, "can-1") is Connectivity.ONLINE
    world.clock.tick(0.000001)
    world.sim.push_report("can-2", world.clock.now)
    world.reconcile()
    assert link(world, "stg-1") is Connectivity.OFFLINE and link(world, "prod-1") is Connectivity.OFFLINE
    assert link(world, "can-2") is Connectivity.ONLINE


def commit_to_main(world: ControllerWorld, message: str) -> None:
    world.fleet.git("add", "-A", "devices")
    world.fleet.git("commit", "-qm", message)
    world.fleet.git("push", "-q", str(world.server), "main")


def test_a_robot_removed_from_main_is_not_aged_nor_mapped_and_rejoins_with_the_file_the_branch_holds(
    tmp_path: Path, keys: KeyFactory, kept: bool
) -> None:
    """A robot leaves main's fleet while online: its file stays on the state branch as it was (no
    reconcile maps or ages it, kept memo or not), and when it rejoins, past ``offline_after``, it is
    aged offline from that file at once, not brought back from what a memo saw before it left."""
    world = aging_world(tmp_path, keys, kept)
    world.reconcile()
    spare = (world.fleet.root / "devices" / "prod-1.yaml").read_text().replace("prod-1", "spare-1")
    (world.fleet.root / "devices" / "spare-1.yaml").write_text(spare)
    commit_to_main(world, "a spare robot")
    world.clock.tick(10)
    world.reconcile()
    world.sim.push_report("spare-1", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    assert link(world, "spare-1") is Connectivity.ONLINE
    (world.fleet.root / "devices" / "spare-1.yaml").unlink()
    commit_to_main(world, "the spare robot leaves")
    world.clock.tick(OFFLINE_AFTER_S + 5)
    world.reconcile()
    assert link(world, "spare-1") is Connectivity.ONLINE  # not the fleet's: left as it was
    world.clock.tick(10)
    world.sim.push_report("prod-2", world.clock.now)
    world.reconcile()
    assert link(world, "spare-1") is Connectivity.ONLINE
    if kept:
        cache = world.settings.cache
        assert cache is not None and "spare-1" not in cache.robots.devices.base
    (world.fleet.root / "devices" / "spare-1.yaml").write_text(spare)
    commit_to_main(world, "the spare robot is back")
    world.clock.tick(10)
    world.reconcile()
    assert link(world, "spare-1") is Connectivity.OFFLINE
    assert link(world, "prod-2") is Connectivity.ONLINE


@pytest.mark.parametrize("offset_s", [-1, -0.000001, 0, 0.000001, 1, 86400 * 365])
@pytest.mark.parametrize(
    "zone", [timezone.utc, timezone(timedelta(hours=-11)), timezone(timedelta(hours=13))]
)
def test_the_datetime_comparison_agrees_with_connectivity_at_the_threshold(
    offset_s: float, zone: timezone
) -> None:
    """The ingest step compares ``last_seen >= now - offline_after`` instead of calling
    :func:`connectivity` per robot: the same answer at and around the threshold, whatever zone the
    two datetimes carry."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    seen = (now - timedelta(seconds=OFFLINE_AFTER_S + offset_s)).astimezone(zone)
    since = now - timedelta(seconds=OFFLINE_AFTER_S)
    fast = Connectivity.ONLINE if seen >= since else Connectivity.OFFLINE
    assert fast is connectivity(seen, now, OFFLINE_AFTER_S)
    assert fast is connectivity(seen, now.astimezone(zone), OFFLINE_AFTER_S)


def plant(repo: pygit2.Repository, ref: str, data: bytes) -> Oid:
    blob = repo.create_blob(data)
    tree = repo.TreeBuilder()
    tree.insert("status.json", blob, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("robot", "robot@example.invalid", 0, 0)
    commit = repo.create_commit(None, sig, sig, "report", tree.write(), [])
    repo.references.create(ref, commit, force=True)
    return commit


def test_status_refs_that_name_no_robot_of_the_fleet_are_never_read(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile server-side writer plants refs beside the robots' own: a robot not in the fleet,
    a second leaf under a robot's subtree, a name nested one level deeper, a bare leaf. The pass over the refs
    present reads none of them, and reads a real robot's moved report once."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.report_all(["stg-1"], "downloading")
    server = pygit2.Repository(str(world.server))
    for ref in (
        f"{STATUS_PREFIX}ghost/report",
        f"{STATUS_PREFIX}stg-1/other",
        f"{STATUS_PREFIX}can-1/x/report",
        f"{STATUS_PREFIX}report",
    ):
        plant(server, ref, b"{}")
    seen: list[str] = []
    real = reports._read_one

    def counted(repo: Repository, device: str, ref: str, target: Oid) -> reports.ReadResult:
        seen.append(ref)
        return real(repo, device, ref, target)

    monkeypatch.setattr(reports, "_read_one", counted)
    with open_mirror(world.settings.source) as repo:
        fetched = fetch_all(repo, world.settings.source)
        assert f"{STATUS_PREFIX}ghost/report" in fetched.status  # fetched, yet never read
        moved = read_moved_reports(repo, {"stg-1": None, "can-1": None}, present=fetched.status)
    assert seen == [status_ref("stg-1")]
    assert list(moved) == ["stg-1"] and moved["stg-1"].report is not None


def test_moved_reports_come_in_device_name_order_whatever_the_refs_order(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    devices = [*CANARY, *STAGING]
    for device in devices:  # nothing dispatched to the canaries yet: a bare heartbeat each
        world.sim.push_report(device, world.clock.now)
    with open_mirror(world.settings.source) as repo:
        fetched = fetch_all(repo, world.settings.source)
        backwards = dict(sorted(fetched.status.items(), reverse=True))
        moved = read_moved_reports(repo, {d: None for d in devices}, present=backwards)
        assert list(moved) == sorted(devices)
        at = {d: str(ref_target(repo, status_ref(d))) for d in devices}
        assert read_moved_reports(repo, at, present=backwards) == {}


def test_a_report_claiming_another_robots_deployment_still_names_the_owner(
    tmp_path: Path, keys: KeyFactory, kept: bool
) -> None:
    """The owners of deployment ids are built only once a claim needs them: a robot claiming the
    deployment of another is refused as foreign, naming that robot, and its own claim is taken.
    ``controller run`` answers from the owners it kept since the wave wrote can-2's record."""
    world = aging_world(tmp_path, keys, kept)
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    canary = world.state().devices
    own = canary["can-1"].records[0]
    theirs = canary["can-2"].records[0]
    claims = [
        DeploymentReport(
            deployment_id=record.id,
            app=record.app,
            version=record.version,
            activity="downloading",
            updated_at=world.clock.now,
        )
        for record in (own, theirs)
    ]
    world.sim.push_report("can-1", world.clock.now, deployments=claims)
    world.clock.tick(10)
    world.reconcile()
    state = world.state()
    assert state.devices["can-1"].records[0].activity.value == "downloading"
    assert state.devices["can-2"].records[0].activity.value != "downloading"
    lines = [line for day in state.audit.values() for line in day.decode().splitlines()]
    foreign = [line for line in lines if "foreign_deployment" in line and "can-1" in line]
    assert len(foreign) == 1 and '"owner":"can-2"' in foreign[0].replace(" ", "")
    assert world.wave("canary") is not WavePhase.FAILED
    # The other way round, after can-1's file changed: the kept owners were patched, not rebuilt.
    mine = state.devices["can-1"].records[0]
    claim = DeploymentReport(
        deployment_id=mine.id, app=mine.app, version=mine.version, activity="failed",
        error="failed", updated_at=world.clock.now,
    )  # fmt: skip
    world.sim.push_report("can-2", world.clock.now, deployments=[claim])
    world.clock.tick(10)
    world.reconcile()
    state = world.state()
    assert state.devices["can-1"].records[0].activity.value == "downloading"
    lines = [line for day in state.audit.values() for line in day.decode().splitlines()]
    foreign = [line for line in lines if "foreign_deployment" in line and '"device":"can-2"' in line]
    assert len(foreign) == 1 and '"owner":"can-1"' in foreign[0].replace(" ", "")
    if kept:
        assert world.settings.cache is not None and world.settings.cache.robots.owners.rebuilt == 1
