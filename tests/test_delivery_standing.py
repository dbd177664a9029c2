"""The robots standing where the last reconcile left them (controller.delivery.standing): selected
by renewal slot group, never held once their ref moved or they are not quiet.

Pure tables and properties over :class:`~controller.delivery.standing.StandingMemo` and
:func:`~controller.delivery.select.select` (the same robots move whether the standing ones are
passed one by one or by group), then a real controller (real git and gpg, :mod:`tests.sim.world`)
whose standing robot gets an older commit of its own replayed on its ref.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import pygit2
import pytest

from controller.delivery.prune import list_desired, stale_refs
from controller.delivery.select import select, slot
from controller.delivery.standing import StandingMemo, changed_refs, moved_devices, plain_copy
from controller.delivery.write import delivery_ref
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import fetch_all, open_mirror
from controller.state.model import PublishedDesired
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import NAMESPACES_PREFIX, desired_ref_device
from fleetcd.git.repo import Oid
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, make_world
from tests.test_delivery_select import LIFETIME, NOW, SAME, random_fleet


def record(expires_at: datetime, serial: int = 4, digest: str = SAME) -> PublishedDesired:
    return PublishedDesired(commit="c" * 40, serial=serial, content_sha256=digest, expires_at=expires_at)


def oid(n: int) -> Oid:
    return Oid(hex=f"{n:040x}")


def ref(device: str) -> str:
    return delivery_ref(device, namespaces=True)


def memo_of(records: dict[str, PublishedDesired], listed: dict[str, Oid]) -> StandingMemo:
    memo = StandingMemo()
    memo.remember(listed, {}, [], records)
    return memo


@pytest.mark.parametrize("seed", range(40))
def test_selecting_standing_robots_by_slot_group_chooses_what_selecting_them_one_by_one_chooses(
    seed: int,
) -> None:
    """Random fleets (shared and scattered expiries, changed, healed, due and urgent robots, a
    random per-reconcile bound): the kept robots with unchanged content moved into slot groups give
    the very Selection (who changes, heals, renews, and the next renewal) of select over everyone."""
    rng = random.Random(seed)
    wanted, recorded, kept, policy = random_fleet(rng, seed, serials=True)
    whole = select(wanted, recorded, frozenset(kept), NOW, policy, lifetime=LIFETIME)

    could = {d: r for d in sorted(kept) if wanted[d] == SAME and (r := recorded[d]) is not None}
    standing = {d: r for d, r in could.items() if r.content_sha256 == SAME and rng.random() < 0.8}
    memo = memo_of(standing, {})
    others = {d: w for d, w in wanted.items() if d not in standing}
    split = select(
        others,
        recorded,
        frozenset(kept - set(standing)),
        NOW,
        policy,
        lifetime=LIFETIME,
        standing=memo.groups,
    )
    assert split == whole
    assert memo.highest_serial() == max((r.serial for r in standing.values()), default=0)


def test_a_ref_planted_or_deleted_on_a_quiet_robot_takes_it_out_of_the_index() -> None:
    """The listing differs from what the last reconcile left for r2 (another commit planted) and
    r3 (deleted): neither stands, so both take the full way (published.judge_published, heal);
    r1 stands. A planted ref of the other layout counts for its robot too."""
    records = {d: record(NOW + LIFETIME) for d in ("r1", "r2", "r3", "r4")}
    before = {ref(d): oid(n) for n, d in enumerate(records, 1)}
    memo = memo_of(records, before)
    now = {**before, ref("r2"): oid(99)}
    del now[ref("r3")]
    now["refs/fleetcd/desired/r4"] = oid(98)  # the flat layout, planted
    assert moved_devices(now, before) == {"r2", "r3", "r4"}
    assert memo.stand(dict.fromkeys(records), [], now) == {"r2", "r3", "r4"}
    assert set(memo.held) == {"r1"}
    assert memo.groups == {NOW + LIFETIME: {slot("r1"): {"r1"}}}


def test_a_robot_no_longer_quiet_leaves_its_slot_group_and_its_serial() -> None:
    """r2's device file changed (not quiet): it leaves the index, its group and its serial; the
    highest serial is then r1's."""
    records = {"r1": record(NOW + LIFETIME, serial=3), "r2": record(NOW + 2 * LIFETIME, serial=7)}
    listed = {ref("r1"): oid(1), ref("r2"): oid(2)}
    memo = memo_of(records, listed)
    assert memo.highest_serial() == 7
    assert memo.stand(dict.fromkeys(records), ["r2"], listed) == {"r2"}
    assert memo.highest_serial() == 3
    assert list(memo.groups) == [NOW + LIFETIME]
    assert memo.stand(dict.fromkeys(records), ["r1", "r2"], listed) == {"r1", "r2"}
    assert (memo.held, memo.groups, dict(memo.serials)) == ({}, {}, {})


def test_a_first_reconcile_finds_no_robot_standing() -> None:
    """Nothing remembered yet (a new controller, or ``reconcile --once``): every robot the full way."""
    assert StandingMemo().stand({"r1": 1}, [], {ref("r1"): oid(1)}) == {"r1"}


def test_a_renewed_robot_moves_to_its_new_expirys_group() -> None:
    records = {"r1": record(NOW + LIFETIME, serial=3)}
    memo = memo_of(records, {ref("r1"): oid(1)})
    memo.remember({ref("r1"): oid(2)}, {}, [], {"r1": record(NOW + 2 * LIFETIME, serial=4)})
    assert memo.groups == {NOW + 2 * LIFETIME: {slot("r1"): {"r1"}}}
    assert dict(memo.serials) == {4: 1}
    assert memo.stand({"r1": 1}, [], {ref("r1"): oid(1)}) == {"r1"}  # the old commit back


def test_a_quiet_robot_the_memo_does_not_hold_does_not_stand() -> None:
    """A reconcile that stopped half way (its robots taken out of the index, never put back) or a
    robot that left the fleet without being named: the memo's count no longer covers the fleet,
    so the robots it lacks are returned (the full way) and the gone one leaves the index."""
    records = {d: record(NOW + LIFETIME) for d in ("r1", "r2", "r3")}
    listed = {ref(d): oid(n) for n, d in enumerate(records, 1)}
    memo = memo_of(records, listed)
    memo.stand(dict.fromkeys(records), ["r2"], listed)  # r2 out, then the reconcile stopped
    assert memo.stand(dict.fromkeys(records), [], listed) == {"r2"}
    assert set(memo.held) == {"r1", "r3"}
    assert memo.stand(dict.fromkeys(["r1", "r2", "x"]), [], listed) == {"r2", "x"}  # r3 gone
    assert set(memo.held) == {"r1"}
    assert memo.groups == {NOW + LIFETIME: {slot("r1"): {"r1"}}}


def random_listing(rng: random.Random, devices: list[str]) -> dict[str, Oid]:
    """Robots' refs in both layouts (some missing), strays of another robot, and refs of the
    desired shape for robots not in the fleet."""
    listed: dict[str, Oid] = {}
    for n, device in enumerate(devices):
        if rng.random() < 0.9:
            listed[ref(device)] = oid(n)
        if rng.random() < 0.1:
            listed[delivery_ref(device, namespaces=False)] = oid(1000 + n)
    for n in range(rng.randrange(0, 4)):
        listed[ref(f"gone-{n}")] = oid(2000 + n)
        listed[delivery_ref(f"old-{n}", namespaces=False)] = oid(3000 + n)
    return listed


def shaken(rng: random.Random, listed: dict[str, Oid], devices: list[str]) -> dict[str, Oid]:
    """The listing after refs were planted (either layout, new names too), deleted and moved."""
    after = dict(listed)
    for _ in range(rng.randrange(0, 6)):
        device = rng.choice([*devices, "stranger", "gone-0"])
        name = delivery_ref(device, namespaces=rng.random() < 0.5)
        kind = rng.random()
        if kind < 0.4:
            after[name] = oid(rng.randrange(5000, 6000))
        elif kind < 0.7:
            after.pop(name, None)
        else:
            after[f"refs/namespaces/{device}/refs/heads/main"] = oid(7000)  # not a desired-state ref
    return after


@pytest.mark.parametrize("seed", range(60))
def test_the_stale_refs_patched_by_the_refs_that_moved_are_the_stale_refs_judged_over_every_ref(
    seed: int,
) -> None:
    """Reconcile after reconcile (the layout switched now and then, robots joining and leaving,
    refs planted, deleted and moved on either layout): the stale refs the memo gives (its own,
    patched by the refs that moved since) are exactly prune.stale_refs over the whole listing."""
    rng = random.Random(seed)
    fleet = [f"r{n}" for n in range(rng.randrange(1, 40))]
    listed = random_listing(rng, fleet)
    memo = StandingMemo()
    namespaces, patched = True, 0
    for _ in range(6):
        if rng.random() < 0.15:
            namespaces = not namespaces
        if rng.random() < 0.2:
            fleet = sorted(set(rng.sample(fleet, max(1, len(fleet) - 2))) | {f"new{rng.randrange(9)}"})
        devices = dict.fromkeys(fleet)
        memo.stand(devices, [], listed)
        patched += memo.moved is not None and memo.stale_for == (list(devices), namespaces)
        stale = memo.stale_refs(listed, devices, list(devices), namespaces=namespaces)
        assert stale == stale_refs(listed, devices, namespaces=namespaces)
        assert list(stale) == sorted(stale)
        memo.remember(listed, {}, [], {}, stale=(stale, list(devices), namespaces))
        listed = shaken(rng, listed, fleet)
    assert patched  # the patched path ran (not only the judgement over every ref)


@pytest.mark.parametrize("seed", range(30))
def test_the_refs_that_moved_are_those_a_ref_by_ref_comparison_finds(seed: int) -> None:
    """changed_refs of two dict listings (a symmetric difference of their items) and of two other
    mappings (a ref by ref comparison) name the same refs as comparing every ref of both."""
    rng = random.Random(seed)
    fleet = [f"r{n}" for n in range(rng.randrange(0, 30))]
    before = random_listing(rng, fleet)
    now = shaken(rng, before, fleet)
    expected = {r for r in before.keys() | now.keys() if before.get(r) != now.get(r)}
    assert changed_refs(now, before) == expected
    assert changed_refs(MappingProxyType(now), MappingProxyType(before)) == expected
    assert moved_devices(now, before) == {
        found[0] for r in expected if (found := desired_ref_device(r)) is not None
    }


def test_an_older_commit_of_its_own_replayed_on_a_standing_robots_ref_is_rewritten(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """prod-1's own earlier commit (validly signed, a lower serial) put back on its ref while it
    stands: the next reconcile finds the ref moved, takes prod-1 the full way and writes it a new
    commit above the serial its agent holds, which the agent accepts; no other ref moves."""
    world = make_world(tmp_path, keys)
    world.settings = replace(world.settings, cache=ReconcileCache())
    robots = sorted(STAGING + CANARY + PRODUCTION)
    world.reconcile()
    first = str(list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX)[ref("prod-1")])
    world.clock.tick(5)
    world.sim.push_report("prod-3", world.clock.now)
    world.clock.tick(5)
    world.reconcile()
    # prod-1's ref deleted and healed: it now holds a newer commit, and stands after a quiet reconcile.
    server = str(world.server)
    subprocess.run(["git", "--git-dir", server, "update-ref", "-d", ref("prod-1")], check=True)
    world.clock.tick(5)
    world.sim.push_report("prod-3", world.clock.now)
    world.reconcile()
    world.clock.tick(5)
    world.sim.push_report("prod-3", world.clock.now)
    assert world.reconcile().desired_refs == 0
    assert world.settings.cache is not None
    assert "prod-1" in world.settings.cache.robots.standing.held
    agent = PinningRobot(world, "prod-1")
    held = agent.poll()
    listed = list_refs(pygit2.Repository(server), NAMESPACES_PREFIX)
    assert str(listed[ref("prod-1")]) != first

    subprocess.run(["git", "--git-dir", server, "update-ref", ref("prod-1"), first], check=True)
    world.clock.tick(5)
    world.sim.push_report("prod-3", world.clock.now)
    result = world.reconcile()

    after = list_refs(pygit2.Repository(server), NAMESPACES_PREFIX)
    assert result.desired_refs == 1
    assert {d for d in robots if after[ref(d)] != listed[ref(d)]} == {"prod-1"}
    assert str(after[ref("prod-1")]) != first
    assert agent.poll() > held


def test_the_fetchs_listing_of_desired_refs_is_the_mirrors_after_a_ref_planted_deleted_or_stray(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The deliver step takes the desired-state refs from the fetch (Fetched.desired), not from a
    second pass over the mirror: after a ref planted, one deleted, and refs under the desired
    prefixes that are no robot's desired-state ref (removed from the mirror as strays), it is
    exactly what the mirror holds."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    server = str(world.server)
    listed = list_refs(pygit2.Repository(server), NAMESPACES_PREFIX)
    for args in (
        ["update-ref", ref("prod-1"), str(listed[ref("prod-2")])],
        ["update-ref", "-d", ref("prod-3")],
        ["update-ref", "refs/namespaces/prod-4/refs/heads/main", str(listed[ref("prod-4")])],
        ["update-ref", "refs/fleetcd/desired/can-1/extra", str(listed[ref("can-1")])],
    ):
        subprocess.run(["git", "--git-dir", server, *args], check=True)
    repo = open_mirror(world.settings.source)
    fetched = fetch_all(repo, world.settings.source)
    assert fetched.desired == list_desired(repo)
    assert fetched.desired is not None
    assert fetched.desired[ref("prod-1")] == listed[ref("prod-2")]
    assert ref("prod-3") not in fetched.desired
    assert "refs/namespaces/prod-4/refs/heads/main" not in fetched.desired


def test_a_ref_the_fetch_patches_into_its_kept_listing_after_a_reconcile_still_takes_its_robot_out() -> None:
    """The fetch hands out a read-only view of a listing it patches in place at the next fetch:
    the memo keeps a copy of what the view showed, so a ref planted, moved or deleted on a quiet
    robot through that very dict afterwards is still seen as moved (an alias would see nothing)."""
    records = {d: record(NOW + LIFETIME) for d in ("r1", "r2", "r3", "r4")}
    kept = {ref(d): oid(n) for n, d in enumerate(records, 1)}
    view = MappingProxyType(kept)
    memo = StandingMemo()
    memo.remember(view, {}, [], records)
    assert memo.listed == kept and memo.listed is not kept
    kept[ref("r2")] = oid(99)  # the next fetch patches its kept listing
    del kept[ref("r3")]
    kept["refs/fleetcd/desired/r4"] = oid(98)
    assert memo.stand(dict.fromkeys(records), [], view) == {"r2", "r3", "r4"}
    assert set(memo.held) == {"r1"}


class _Listing(dict):  # type: ignore[type-arg]
    """A dict subclass: its view's copy is not a plain dict."""


@pytest.mark.parametrize("seed", range(20))
def test_plain_copy_is_dict_of_any_listing_and_shares_nothing_with_it(seed: int) -> None:
    rng = random.Random(seed)
    listed = {
        ref(f"r{n}"): oid(rng.randrange(1, 1 << 60)) for n in rng.sample(range(500), k=rng.randint(0, 60))
    }
    for given in (listed, MappingProxyType(listed), MappingProxyType(_Listing(listed)), _Listing(listed)):
        copied = plain_copy(given)
        assert type(copied) is dict and copied == dict(given) and list(copied) == list(given)
        copied["refs/fleetcd/desired/planted"] = oid(7)
        assert "refs/fleetcd/desired/planted" not in given
