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
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.delivery.bundles import DeliverySource, stages_of
from controller.delivery.inputs import BundleInputs
from controller.delivery.prune import list_desired
from controller.delivery.select import slot
from controller.delivery.write import delivery_ref
from controller.reconcile import delivery_step, due, rollouts, steps
from controller.reconcile import write as write_step
from controller.reconcile.cache import VALIDATION_MAX_AGE, ReconcileCache
from controller.reconcile.delivery_step import Delivered, _historic_evidence
from controller.reconcile.finish import pages_and_receipts
from controller.reconcile.rollouts import FleetContext, plan_rollout
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.records.model import Connectivity, DeviceState
from controller.state.layout import STATUS_HTML, STATUS_MD
from controller.state.model import DeviceFile
from fleetcd.desired import ROOT_FILE
from fleetcd.git.objects import ref_target
from fleetcd.git.packedrefs import read_refs
from fleetcd.git.trees import read_tree
from fleetcd.models import Cohort, Device, Release, Rollout
from fleetcd.planning.selection import device_stages
from fleetcd.validation import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, START, ControllerWorld, make_world

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
def planned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every rollout the controller plans (resolves targets, waves and members' configs for)."""
    seen: list[str] = []
    real = rollouts.plan_rollout

    def counted(ctx: FleetContext, rollout: Rollout, release: Release) -> object:
        seen.append(rollout.name)
        return real(ctx, rollout, release)

    monkeypatch.setattr(rollouts, "plan_rollout", counted)
    yield seen


@pytest.fixture
def horizons(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every robot whose device file the idle horizon (next_due) reads; each horizon computed
    through the memo is checked against the same computation without it."""
    seen: list[str] = []
    real_instants, real_next_due = due._robot_instants, due.next_due

    def counted(data: DeviceFile, offline_after: timedelta) -> tuple[datetime, ...]:
        seen.append(data.state.device)
        return real_instants(data, offline_after)

    def checked(*args: Any, **kwargs: Any) -> datetime:
        found = real_next_due(*args, **kwargs)
        assert kwargs["memo"] is not None
        read = len(seen)
        assert found == real_next_due(*args, **{**kwargs, "memo": None})
        del seen[read:]  # the memo-less check reads everyone: not counted
        return found

    monkeypatch.setattr(due, "_robot_instants", counted)
    monkeypatch.setattr(write_step, "next_due", checked)
    yield seen


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


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every robot whose bundle the delivery step builds, and every robot whose historic evidence
    it reads (controller.delivery.quiet: a robot left alone last time is neither)."""
    seen: list[str] = []
    real_build, real_evidence = delivery_step.bundle_for, delivery_step._historic_evidence

    def counted(device: str, *args: Any, **kwargs: Any) -> object:
        seen.append(device)
        return real_build(device, *args, **kwargs)

    def read(repo: Any, source: Any, rollouts: Any, devices: Any) -> object:
        seen.extend(devices)
        return real_evidence(repo, source, rollouts, devices)

    monkeypatch.setattr(delivery_step, "bundle_for", counted)
    monkeypatch.setattr(delivery_step, "_historic_evidence", read)
    yield seen


def cold(world: ControllerWorld) -> tuple[StateSnapshot, FleetContext, dict[str, str]]:
    """The state branch, main's fleet context and every robot's inputs digest, computed from the
    mirror's commits without any cache."""
    repo = open_mirror(world.settings.source)
    assert fetch_all(repo, world.settings.source).desired == list_desired(repo)  # what deliver was given
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


def cold_pages(world: ControllerWorld, snapshot: StateSnapshot, fleet: FleetContext) -> dict[str, bytes]:
    """Both status pages built from the cold state and main without a memo, at the reconcile's now."""
    main = ref_target(open_mirror(world.settings.source), "refs/heads/main")
    settings = replace(world.settings, cache=None)
    built = pages_and_receipts(
        fleet, snapshot, snapshot.rollouts, snapshot.devices, settings, world.clock.now, str(main), {}
    )
    return {path: data for path, data in built.items() if path in (STATUS_MD, STATUS_HTML) and data}


def pages_of(snapshot: StateSnapshot) -> dict[str, bytes]:
    return {path: snapshot.files[path] for path in (STATUS_MD, STATUS_HTML)}


def ingested_from(world: ControllerWorld, before: StateSnapshot, fleet: FleetContext) -> None:
    """The ingest step's kept map is what a cold start gives from the state the reconcile read:
    every robot of main's fleet, in name order, with its file on the state branch or a fresh one;
    and the robots its index says flip at any instant are those whose stored connectivity a pass
    over every robot would change."""
    memo = cache_of(world).robots.devices
    start = {
        d: before.devices.get(d) or DeviceFile(state=DeviceState(device=d)) for d in sorted(fleet.devices)
    }
    assert list(memo.base) == list(start) and memo.base == start
    offline_after = timedelta(seconds=fleet.fleet.defaults.offline_after_seconds)
    for since in (
        world.clock.now - offline_after,
        world.clock.now,
        START,
        world.clock.now - timedelta(days=1),
    ):
        flips = set()
        for device, data in memo.base.items():
            seen, was = data.state.last_seen, data.state.connectivity
            if (
                seen is not None
                and (Connectivity.ONLINE if seen >= since else Connectivity.OFFLINE) is not was
            ):
                flips.add(device)
        assert sorted(memo.ageing.flipping(since)) == sorted(flips), since


def story(world: ControllerWorld) -> list[tuple[str, Callable[[], object], float]]:
    """Reports, heartbeats, waves passing, a commit to main that keeps its tree and one that does
    not, and a validation grown too old; with the seconds after each."""

    def heartbeat() -> None:
        world.sim.push_report("prod-7", world.clock.now)

    def same_tree() -> None:
        world.fleet.git("commit", "--allow-empty", "-qm", "an empty commit")
        world.fleet.git("push", "-q", str(world.server), "main")

    def new_tree() -> None:
        # A robot in no cohort (targeted by nothing), committed as is: the builder would re-sign
        # every signature, which changes every bundle.
        spare = (world.fleet.root / "devices" / "prod-7.yaml").read_text().replace("prod-7", "spare-1")
        (world.fleet.root / "devices" / "spare-1.yaml").write_text(spare)
        world.fleet.git("add", "devices/spare-1.yaml")
        world.fleet.git("commit", "-qm", "a spare robot")
        world.fleet.git("push", "-q", str(world.server), "main")

    def ref_deleted() -> None:  # behind the controller's back: healed, although nothing changed
        ref = delivery_ref("prod-9", namespaces=True)
        subprocess.run(["git", "--git-dir", str(world.server), "update-ref", "-d", ref], check=True)
        heartbeat()  # so that the reconcile runs in full

    return [
        ("staging deployed", lambda: world.report_all(STAGING, "deployed"), 10),
        ("a quiet robot's ref deleted", ref_deleted, 10),
        ("staging soaked: canary dispatched", lambda: None, 61),
        ("canary downloading", lambda: world.report_all(CANARY, "downloading"), 10),
        ("a heartbeat", heartbeat, 10),
        ("a commit to main keeping its tree", same_tree, 10),
        ("canary deployed", lambda: world.report_all(CANARY, "deployed"), 10),
        ("a heartbeat after the validation expired", heartbeat, VALIDATION_MAX_AGE.total_seconds() + 1),
        ("canary soaked: production dispatched", lambda: None, 61),
        ("main's tree changed", new_tree, 10),
    ]


def test_a_reconcile_digests_and_plans_only_what_changed_and_records_what_a_cold_computation_gives(
    world: ControllerWorld, digested: list[str], planned: list[str], horizons: list[str], built: list[str]
) -> None:
    """Inputs digests: exactly the robots whose records changed. Plans: once per tree of main (an
    empty commit, or a validation made afresh for the same tree, plans nothing). Every robot's
    recorded inputs digest, the memo's, and the kept plans equal a cold computation. The idle
    horizon reads only the device files that changed in this reconcile or the last one that ran
    (the state branch hands over a file it wrote as a new object once), and equals its memo-less self.
    After a reconcile that ran, the inputs memo holds records equal to those the state cache holds
    for every robot whose file did not change (a robot settled by the last write keeps the records
    it was digested from, compared by value if it is ever digested again: not re-keyed fleet-wide)."""
    world.reconcile()
    assert sorted(digested) == FLEET  # the first reconcile digests everyone once
    assert planned == ["nav"]
    before, _, _ = cold(world)
    earlier: set[str] = set(FLEET)
    stood: set[str] = set()  # robots that stood after some reconcile of the story
    for name, act, seconds in story(world):
        digested.clear()
        built.clear()
        planned.clear()
        horizons.clear()
        act()
        world.clock.tick(seconds)
        idle = world.reconcile().idle
        after, fleet, digests = cold(world)
        if not idle:
            ingested_from(world, before, fleet)
        changed = {
            d
            for d, data in after.devices.items()
            if d not in before.devices or before.devices[d].records != data.records
        }
        assert sorted(digested) == sorted(changed), name
        files = {
            d for d, data in after.devices.items() if d not in before.devices or before.devices[d] != data
        }
        assert set(horizons) <= files | earlier, name
        # Bundles built and historic evidence read: robots whose file changed now (records, report,
        # ref moved) or was rewritten by the last reconcile that ran (not left alone then).
        moved = {
            d
            for d, data in after.devices.items()
            if d not in before.devices or before.devices[d].desired != data.desired
        }
        assert set(built) <= files | earlier, name
        if name == "a quiet robot's ref deleted":
            assert "prod-9" in moved and "prod-9" in built, name
        state = cache_of(world).state.snapshot
        assert state is not None
        for device in set() if idle else set(after.devices) - files:  # unchanged: the same records
            kept = cache_of(world).robots.inputs.held[device]
            assert kept.records == state.devices[device].records, (name, device)
        earlier = earlier if idle else files
        # The robots the delivery step left alone, to be skipped next time: their inputs are their
        # recorded ones (as a cold computation gives them), and an unchanged one's file is the very
        # object the state cache will hand over again.
        quiet = cache_of(world).robots.quiet
        for device, data in quiet.robots.items():
            assert data.desired is not None and data.desired.inputs_sha256 == digests[device], (name, device)
            if not idle and device not in files:
                assert state.devices[device] is data, (name, device)
        # Robots given a new record: quiet next time while their file holds it and their records.
        for device, (records, written) in quiet.settled.items():
            now_held = after.devices[device]
            if now_held.desired == written and now_held.records == records:
                assert written.inputs_sha256 == digests[device], (name, device)
        # The standing robots (controller.delivery.standing): each at its recorded expiry and
        # serial, its ref exactly its recorded commit, and the listing remembered is the mirror's.
        standing = cache_of(world).robots.standing
        listing = list_desired(open_mirror(world.settings.source))
        assert standing.listed == listing, name
        for device, (expiry, serial) in standing.held.items():
            desired = after.devices[device].desired
            assert desired is not None and (desired.expires_at, desired.serial) == (expiry, serial), name
            assert str(listing[delivery_ref(device, namespaces=True)]) == desired.commit, (name, device)
            assert device in standing.groups[expiry][slot(device)], (name, device)
        assert sum(len(m) for slots in standing.groups.values() for m in slots.values()) == len(standing.held)
        stood.update(standing.held)
        # The delivery source kept is the one of main's spec this reconcile delivered from.
        source = cache_of(world).robots.source
        fleet_now = cache_of(world).main.fleet
        assert source is not None and fleet_now is not None and source.spec is fleet_now.spec, name
        held = cache_of(world).robots.inputs.held
        for device in after.devices:
            desired = after.devices[device].desired
            assert desired is not None and desired.inputs_sha256 == digests[device], (name, device)
            assert held[device].digest == digests[device], (name, device)
        assert planned == (["nav"] if name == "main's tree changed" else []), name
        kept = cache_of(world).robots.plans["nav"]
        model = fleet.spec.rollouts["nav"].doc.model
        release = fleet.spec.release(model.app, model.release)
        assert release is not None
        selection, waves = plan_rollout(fleet, model, release.doc.model)
        assert (kept.selection, kept.planned) == (selection, waves), name
        members = sorted({d for wave in waves for d in wave.devices})
        assert kept.configs == {d: fleet.device_config(model.app, d) for d in members}, name
        # The fetch's parsed listings (fleetcd.git.reflisting): what a cold read of both sides gives.
        refs = cache_of(world).refs
        assert refs.server is not None and refs.mirror is not None
        assert refs.server.read(world.server) == read_refs(world.server, refs.server.names), name
        mirror = world.settings.source.mirror
        assert refs.mirror.read(mirror) == read_refs(mirror, refs.mirror.names), name
        if not idle:  # the pages patched from the memo are those of a build without one
            assert cold_pages(world, after, fleet) == pages_of(after), name
            patched = [m.patched for m in cache_of(world).pages.rollouts.values()]
            assert name != "canary downloading" or all(patched), name
        before = after
    assert "spare-1" in after.devices
    assert cache_of(world).robots.devices.rebuilt == 2  # the first reconcile, and the new robot
    assert stood == set(FLEET) | {"spare-1"}
    assert cache_of(world).main.validations >= 3  # the first tree twice (it expired), then the new one


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


# --- the delivery step with memos decides what it decides without them ------------------------


@pytest.fixture
def twin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Delivered]:
    """Every delivery step the cached controller runs also runs cold (``reconcile --once``: no
    memo) on a copy of the mirror, with the very same inputs, before the real one; the two must
    decide the same (:func:`same_delivery`). The real step's results, one per delivery step."""
    real = steps.deliver_desired
    seen: list[Delivered] = []

    def both(
        repo: Any, fleet: Any, meta: Any, devices: Any, rollouts: Any, settings: Any, now: Any, **kw: Any
    ) -> Delivered:
        copy = tmp_path / f"twin-{len(seen)}"
        shutil.copytree(repo.path, copy)
        cold_repo = pygit2.Repository(str(copy))
        cold_listed = dict(kw["listed"])
        cold = real(
            cold_repo,
            fleet,
            meta,
            dict(devices),
            rollouts,
            replace(settings, cache=None),
            now,
            listed=cold_listed,
        )
        warm = real(repo, fleet, meta, devices, rollouts, settings, now, **kw)
        same_delivery(cold, warm, cold_repo, repo)
        seen.append(warm)
        return warm

    monkeypatch.setattr(steps, "deliver_desired", both)
    return seen


def same_delivery(
    cold: Delivered, warm: Delivered, cold_repo: pygit2.Repository, repo: pygit2.Repository
) -> None:
    """The same serial and root, the same robots moved (changed, healed, renewed) and the same next
    renewal, the same records written (but for the commit ids, which cover gpg's signature time),
    the same stale refs, roots ignored and refs left; each moved robot's commit holds the same
    files, but for the root's signature."""
    assert (cold.serial, cold.root_sha256) == (warm.serial, warm.root_sha256)
    assert cold.selection == warm.selection
    assert cold.moved == warm.moved and cold.refs.keys() == warm.refs.keys()
    assert cold.published.keys() == warm.published.keys()
    for device, record in cold.published.items():
        mine = warm.published[device]
        assert record.model_dump(exclude={"commit"}) == mine.model_dump(exclude={"commit"}), device
        if device not in warm.selection.moving:
            assert record.commit == mine.commit, device  # relabelled: the commit it holds
    assert cold.stale == warm.stale and cold.ignored_roots == warm.ignored_roots
    assert cold.listed.keys() == warm.listed.keys()
    assert {r: o for r, o in cold.listed.items() if r not in cold.refs} == {
        r: o for r, o in warm.listed.items() if r not in warm.refs
    }
    for ref in warm.refs:
        assert _files(cold_repo, cold.refs[ref]) == _files(repo, warm.refs[ref]), ref


def _files(repo: pygit2.Repository, commit: pygit2.Oid) -> dict[str, bytes]:
    tree = repo[commit].peel(pygit2.Tree)
    return {e.name: repo[e.id].read_raw() for e in tree if e.name != f"{ROOT_FILE}.asc"}


def server_refs(world: ControllerWorld) -> dict[str, str]:
    return {r: str(o) for r, o in list_desired(pygit2.Repository(str(world.server))).items()}


def update_ref(world: ControllerWorld, *args: str) -> None:
    subprocess.run(["git", "--git-dir", str(world.server), "update-ref", *args], check=True)


ACTIONS = [
    "heartbeat",
    "deployed",
    "planted",
    "deleted",
    "replayed",
    "stray",
    "days",
    "soak",
    "spare",
    "quiet",
]


@pytest.mark.parametrize("seed", range(6))
def test_a_random_life_delivers_with_memos_what_it_delivers_without_them(
    world: ControllerWorld, twin: list[Delivered], seed: int
) -> None:
    """Reports, heartbeats, waves soaking, days passing (renewals), a robot joining main, and
    attacks on robots' desired-state refs while they stand (another robot's commit planted, a ref
    deleted, an older commit of its own replayed, a ref of the other layout or of no robot
    planted), in a random order: every delivery step of the cached controller decides exactly
    what the same step without any memo decides from the same inputs (the twin), a ref is healed
    the reconcile after it was touched, and no other robot's ref moves."""
    rng = random.Random(seed)
    world.reconcile()
    seen: dict[str, list[str]] = {}  # robot -> commits its ref held, for replays
    spare = False
    for step in range(9):
        action = rng.choice(ACTIONS)
        before = server_refs(world)
        for ref, target in before.items():
            seen.setdefault(ref, []).append(target)
        victim = rng.choice(FLEET)
        mine = delivery_ref(victim, namespaces=True)
        touched = {mine}
        if action == "heartbeat":
            world.sim.push_report(victim, world.clock.now)
        elif action == "deployed":
            for device in rng.sample(FLEET, 5):
                try:
                    world.sim.report(device, "nav", "deployed", world.clock.now)
                except ValueError:
                    continue  # no nav deployment for it (yet)
        elif action == "planted":
            update_ref(world, mine, before[delivery_ref(rng.choice(FLEET), namespaces=True)])
        elif action == "deleted":
            update_ref(world, "-d", mine)
        elif action == "replayed" and len(set(seen[mine])) > 1:
            update_ref(world, mine, seen[mine][0])
        elif action == "stray":
            stray = delivery_ref(rng.choice([victim, "ghost-1"]), namespaces=False)
            update_ref(world, stray, before[mine])
            touched.add(stray)
        elif action == "days":
            world.clock.tick(rng.randrange(1, 4) * 86400)
        elif action == "soak":
            world.clock.tick(61)
        elif action == "spare" and not spare:
            spare = True
            text = (world.fleet.root / "devices" / "prod-7.yaml").read_text().replace("prod-7", "spare-1")
            (world.fleet.root / "devices" / "spare-1.yaml").write_text(text)
            world.fleet.git("add", "devices/spare-1.yaml")
            world.fleet.git("commit", "-qm", "a spare robot")
            world.fleet.git("push", "-q", str(world.server), "main")
        world.sim.push_report("prod-5", world.clock.now)  # so that the reconcile runs in full
        world.clock.tick(10)
        ran = len(twin)
        world.reconcile()
        assert len(twin) == ran + 1, (step, action)
        delivered = twin[-1]
        after = server_refs(world)
        moved = {r for r in before.keys() | after.keys() if before.get(r) != after.get(r)}
        assert moved <= set(delivered.refs) | set(delivered.stale) | touched, (step, action)
        for ref in delivered.stale:
            assert ref not in after, (step, action)
        state = load_state(open_mirror(world.settings.source))
        for device, data in state.devices.items():  # every robot's ref is its recorded commit again
            assert (
                data.desired is not None
                and after[delivery_ref(device, namespaces=True)] == data.desired.commit
            )
