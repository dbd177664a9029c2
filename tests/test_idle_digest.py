"""The idle mark's ref digests, updated from the refs that changed (controller.reconcile.refdigest).

``controller run`` keeps each digest's chunks between reconciles and hashes again only the
chunks of refs that moved, were added or removed; ``--once`` and a restarted controller hash every
chunk. Whatever the
history of a kept digest, it must equal the digest made from scratch, and two listings must
digest alike exactly when they hold the same refs at the same objects: a robot that moves its
status ref or plants one must wake the controller, and a ref moved and moved back must not.

The pure part is checked against an independent restatement of the scheme and random histories;
the behaviour against real worlds (real git server, real gpg, simulated robots, injected clock).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from zlib import crc32

import pygit2
import pytest

from controller.reconcile.cache import ReconcileCache
from controller.reconcile.idle import DIGESTS, HINT_FILE, LISTING_FILE, _Hint, _KeptListing, idle_main
from controller.reconcile.refdigest import CUT, TAG, IdleDigests, RefDigest, _under, is_cut, refs_digest
from controller.reconcile.source import open_mirror
from controller.reconcile.steps import reconcile_once
from fleetcd.git.packedrefs import read_ref_storage
from fleetcd.git.refs import STATUS_PREFIX, status_ref
from tests.gitrepos import git
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, make_world

STATUS, DESIRED = ("refs/fleetcd/status/",), ("refs/namespaces/", "refs/fleetcd/desired/")


def restated(refs: Mapping[str, object]) -> str:
    """The scheme as documented, written out again: the ``ref oid`` lines in name order cut after
    each ref whose name's crc32 is a multiple of CUT (the last chunk runs to the end, maybe empty),
    sha256 over the tag and every chunk's sha256."""
    chunks, text = [], ""
    for ref in sorted(refs):
        text += f"{ref} {refs[ref]}\n"
        if crc32(ref.encode()) % CUT == 0:
            chunks.append(hashlib.sha256(text.encode()).digest())
            text = ""
    chunks.append(hashlib.sha256(text.encode()).digest())
    return hashlib.sha256(TAG + b"".join(chunks)).hexdigest()


def bucketed_v2(refs: Mapping[str, str]) -> str:
    """The digest marks held before the chunks: 16,384 buckets by crc32 of the name, each the
    sha256 of its sorted lines, under the v2 tag."""
    lines: dict[int, list[str]] = {}
    for ref in sorted(refs):
        lines.setdefault(crc32(ref.encode()) % (1 << 14), []).append(f"{ref} {refs[ref]}\n")
    empty = hashlib.sha256(b"").digest()
    buckets = [
        hashlib.sha256("".join(lines[b]).encode()).digest() if b in lines else empty for b in range(1 << 14)
    ]
    return hashlib.sha256(b"fleetcd refs digest v2\n" + b"".join(buckets)).hexdigest()


def oid(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def name(rng: random.Random) -> str:
    prefix = rng.choice(["refs/fleetcd/status/", "refs/namespaces/", "refs/fleetcd/desired/", "refs/heads/"])
    return f"{prefix}r{rng.randrange(300)}/x"


def step(rng: random.Random, refs: dict[str, str]) -> None:
    """A few refs added, removed or moved (sometimes none)."""
    for _ in range(rng.choice([0, 1, 1, 3, 20, 60])):  # 60: more than are put in place one by one
        action = rng.choice(["add", "remove", "move"])
        if action == "add" or not refs:
            refs[name(rng)] = oid(rng)
        elif action == "remove":
            del refs[rng.choice(sorted(refs))]
        else:
            refs[rng.choice(sorted(refs))] = oid(rng)


def under(refs: Mapping[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    return {r: o for r, o in refs.items() if r.startswith(prefixes)}


@pytest.mark.parametrize("seed", range(40))
def test_a_kept_digest_equals_the_digest_made_from_scratch_after_any_history(seed: int) -> None:
    rng = random.Random(seed)
    kept = RefDigest(STATUS, DESIRED)
    refs: dict[str, str] = {}
    for _ in range(25):
        step(rng, refs)
        # Sometimes as a listing of Oids: the same refs at the same objects digest alike.
        listing: Mapping[str, object] = (
            {r: pygit2.Oid(hex=o) for r, o in refs.items()} if rng.random() < 0.2 else dict(refs)
        )
        status, desired = kept.digests(listing)
        assert status == refs_digest(under(refs, STATUS)) == restated(under(refs, STATUS))
        assert desired == refs_digest(under(refs, DESIRED)) == restated(under(refs, DESIRED))


@pytest.mark.parametrize("seed", range(10))
def test_two_listings_digest_alike_exactly_when_they_hold_the_same_refs(seed: int) -> None:
    rng = random.Random(seed)
    base = {name(rng): oid(rng) for _ in range(50)}
    for _ in range(30):
        other = dict(base)
        step(rng, other)
        assert (refs_digest(other) == refs_digest(base)) is (other == base)


def test_only_the_chunks_of_moved_refs_are_hashed_again() -> None:
    refs = {f"refs/fleetcd/status/r{i}/report": f"{i:040x}" for i in range(5000)}
    kept = RefDigest()
    kept.digests(refs)
    cold = kept.hashed
    assert cold == sum(map(is_cut, refs)) + 1
    moved = dict(refs)
    reporting = [f"refs/fleetcd/status/r{i}/report" for i in range(0, 5000, 500)]  # ten robots report
    for ref in reporting:
        moved[ref] = "f" * 40
    assert kept.digests(moved) == (refs_digest(moved),)
    assert kept.hashed - cold <= len(reporting) + sum(map(is_cut, reporting))
    hashed = kept.hashed
    kept.digests(dict(moved))  # the same refs again: nothing hashed
    assert kept.hashed == hashed


def test_a_ref_that_ends_a_chunk_splits_it_when_added_and_joins_it_when_removed() -> None:
    rng = random.Random(11)
    refs = {f"refs/fleetcd/status/r{i}/report": oid(rng) for i in range(400)}
    cut = next(
        f"refs/fleetcd/status/r{i}/new" for i in range(10_000) if is_cut(f"refs/fleetcd/status/r{i}/new")
    )
    plain = next(
        f"refs/fleetcd/status/r{i}/new" for i in range(10_000) if not is_cut(f"refs/fleetcd/status/r{i}/new")
    )
    kept = RefDigest()
    kept.digests(refs)
    for listing in (
        {**refs, cut: "1" * 40},
        refs,
        {**refs, plain: "2" * 40, cut: "3" * 40},
        {**refs, plain: "2" * 40},
    ):
        before = kept.hashed
        assert kept.digests(listing) == (refs_digest(listing),) == (restated(listing),)
        assert kept.hashed - before <= 4  # the chunks around the refs added or removed, no more


@pytest.mark.parametrize("seed", range(20))
def test_many_refs_added_and_removed_at_once_are_merged_in_and_give_the_digest_from_scratch(
    seed: int,
) -> None:
    rng = random.Random(seed)
    refs = {name(rng): oid(rng) for _ in range(rng.randrange(0, 200))}
    kept = RefDigest(STATUS, DESIRED, ("refs/",))
    for _ in range(6):
        for ref in rng.sample(sorted(refs), len(refs) // rng.choice([2, 3, 50])):
            del refs[ref]
        refs.update(
            {f"refs/fleetcd/status/n{rng.randrange(10**6)}/x": oid(rng) for _ in range(rng.randrange(0, 300))}
        )
        expected = tuple(refs_digest(under(refs, prefixes)) for prefixes in (STATUS, DESIRED, ("refs/",)))
        assert kept.digests(dict(refs)) == expected
        assert expected[0] == restated(under(refs, STATUS))


@pytest.mark.parametrize("seed", range(30))
def test_the_refs_under_overlapping_or_unmatched_prefixes_are_found_by_bisection_as_by_a_test_of_each(
    seed: int,
) -> None:
    rng = random.Random(seed)
    names = sorted(
        {name(rng) for _ in range(rng.randrange(0, 80))} | {"refs/fleetcd/status", "refs/fleetcd/status/"}
    )
    pool = [
        "refs/",
        "refs/fleetcd/",
        "refs/fleetcd/status/",
        "refs/fleetcd/status/r1",
        "refs/namespaces/",
        "refs/fleetcd/desired/",
        "refs/heads/",
        "refs/tags/",
        "zzz/",
        "refs/fleetcd/status/r",
    ]
    prefixes = tuple(rng.sample(pool, rng.randrange(1, 5)))
    assert _under(names, prefixes) == [n for n in names if n.startswith(prefixes)]
    assert _under(names, ("",)) == names


def test_a_ref_moved_and_moved_back_digests_as_before() -> None:
    refs = {f"refs/fleetcd/status/r{i}/report": f"{i:040x}" for i in range(100)}
    kept = RefDigest()
    (before,) = kept.digests(refs)
    (moved,) = kept.digests({**refs, "refs/fleetcd/status/r7/report": "e" * 40})
    (back,) = kept.digests(refs)
    assert moved != before and back == before


def same_chunk(ref: str, count: int) -> Iterator[str]:
    """Names ground to fall in ``ref``'s chunk (sorting right after it and ending no chunk), as a
    hostile robot can grind them."""
    found, i = 0, 0
    while found < count:
        candidate = f"{ref}-evil{i}"
        i += 1
        if not is_cut(candidate):
            found += 1
            yield candidate


def test_refs_ground_into_one_chunk_cannot_make_two_listings_digest_alike() -> None:
    victim = next(
        f"refs/fleetcd/status/r{i}/report"
        for i in range(100)
        if not is_cut(f"refs/fleetcd/status/r{i}/report")
    )
    a, b = list(same_chunk(victim, 2))
    refs = {victim: "1" * 40, a: "2" * 40}
    kept = RefDigest()
    (base,) = kept.digests(refs)
    variants = [
        {**refs, b: "3" * 40},  # planted in the same chunk
        {victim: "2" * 40, a: "1" * 40},  # objects swapped between two refs of one chunk
        {victim: "1" * 40, b: "2" * 40},  # renamed within the chunk
        {victim: "1" * 40},  # removed
    ]
    digests = [kept.digests(v)[0] for v in variants]
    assert len({base, *digests}) == 1 + len(variants)
    assert digests == [refs_digest(v) for v in variants]


def test_an_xor_of_ref_hashes_would_be_forged_by_a_planted_pair_but_this_is_not() -> None:
    """Two planted refs at one object cancel out of an XOR of per-ref hashes; they count here."""
    refs = {"refs/fleetcd/status/r1/report": "1" * 40}
    twins = {"refs/fleetcd/status/x/report": "2" * 40, "refs/fleetcd/status/y/report": "2" * 40}
    assert refs_digest({**refs, **twins}) != refs_digest(refs)


class Failing(dict[str, str]):
    """A listing whose tenth lookup fails (an update cut short by an exception)."""

    lookups = 0

    def __getitem__(self, ref: str) -> str:
        self.lookups += 1
        if self.lookups == 10:
            raise MemoryError(ref)
        return super().__getitem__(ref)


def test_a_digest_cut_short_hashes_everything_again_next_time() -> None:
    rng = random.Random(7)
    refs = {f"refs/fleetcd/status/r{i}/report": oid(rng) for i in range(200)}
    kept = RefDigest()
    kept.digests(refs)
    moving = [f"refs/fleetcd/status/r{i}/report" for i in range(0, 200, 7)]
    with pytest.raises(MemoryError):
        kept.digests(Failing({**refs, **{ref: oid(rng) for ref in moving}}))
    # Some of those chunks were hashed before it failed; the next listing is the old one with one
    # other ref moved, then a ref planted in the chunk of each ref that was moving.
    later = {**refs, "refs/fleetcd/status/r1/report": oid(rng)}
    assert kept.digests(later) == (refs_digest(later),)
    planted = {**later, **{next(same_chunk(ref, 1)): "9" * 40 for ref in moving}}
    assert kept.digests(planted) == (refs_digest(planted),)


def test_an_empty_listing_and_a_fresh_memo_agree() -> None:
    kept = RefDigest(STATUS, DESIRED)
    assert kept.digests({}) == (refs_digest({}), refs_digest({})) == (restated({}), restated({}))
    kept.digests({"refs/fleetcd/status/r/report": "1" * 40})
    assert kept.digests({"refs/heads/main": "1" * 40}) == (refs_digest({}), refs_digest({}))


# --- against real worlds ------------------------------------------------------------------------------


def running(world: ControllerWorld) -> ControllerWorld:
    """``controller run``: one cache handed to every reconcile."""
    return replace(world, settings=replace(world.settings, cache=ReconcileCache()))


def settled(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    world = running(make_world(tmp_path, keys))
    assert not world.reconcile().idle
    world.clock.tick(5)
    assert world.reconcile().idle
    return world


def server_status(world: ControllerWorld) -> dict[str, str]:
    storage = read_ref_storage(world.server)
    assert storage is not None
    return storage.refs((STATUS_PREFIX,))


def check_now(world: ControllerWorld) -> bool:
    """The idle check alone (it writes nothing), with the running controller's kept digests."""
    cache = world.settings.cache
    assert cache is not None
    with open_mirror(world.settings.source) as repo:
        return (
            idle_main(repo, world.settings.source, world.clock.now, memo=cache.refs, digests=cache.digests)
            is not None
        )


def test_a_robot_moving_its_status_ref_wakes_the_running_controller(tmp_path: Path, keys: KeyFactory) -> None:
    world = settled(tmp_path, keys)
    world.report_all(STAGING, "deployed")
    world.clock.tick(1)
    woken = world.reconcile()
    assert not woken.idle and woken.state_commit is not None
    mark = world.state().meta.idle
    assert mark is not None and mark.status_sha256 == refs_digest(server_status(world))
    world.clock.tick(1)
    assert world.reconcile().idle
    world.sim.push_report(STAGING[0], world.clock.now)  # one robot, one ref
    world.clock.tick(1)
    assert not world.reconcile().idle


def test_a_planted_status_ref_wakes_the_running_controller(tmp_path: Path, keys: KeyFactory) -> None:
    world = settled(tmp_path, keys)
    main = git("rev-parse", "refs/heads/main", cwd=world.server).strip()
    git("update-ref", status_ref("intruder-1"), main, cwd=world.server)
    world.clock.tick(1)
    assert not world.reconcile().idle
    world.clock.tick(1)
    assert world.reconcile().idle  # once marked with the planted ref, it is not new any more
    git("update-ref", "-d", status_ref("intruder-1"), cwd=world.server)
    world.clock.tick(1)
    assert not world.reconcile().idle


def test_a_status_ref_moved_and_moved_back_is_idle_again(tmp_path: Path, keys: KeyFactory) -> None:
    world = settled(tmp_path, keys)
    ref = status_ref(STAGING[0])
    world.sim.push_report(STAGING[0], world.clock.now)
    world.clock.tick(1)
    assert not world.reconcile().idle
    world.clock.tick(1)
    assert world.reconcile().idle
    before = git("rev-parse", ref, cwd=world.server).strip()
    world.sim.push_report(STAGING[0], world.clock.now)
    world.clock.tick(1)
    assert not check_now(world)  # the kept digests have seen it moved
    git("update-ref", ref, before, cwd=world.server)
    assert check_now(world)
    assert world.reconcile().idle


def test_a_restarted_controller_and_a_once_reconcile_agree_with_the_running_one(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = settled(tmp_path, keys)
    world.report_all(STAGING, "deployed")
    world.clock.tick(1)
    assert not world.reconcile().idle  # marked from the running controller's kept digests
    world.clock.tick(1)
    assert reconcile_once(replace(world.settings, cache=None)).idle  # --once: nothing kept
    assert running(world).reconcile().idle  # killed and restarted: a new cache
    world.sim.push_report(STAGING[0], world.clock.now)
    world.clock.tick(1)
    assert not reconcile_once(replace(world.settings, cache=None)).idle  # marked from scratch
    world.clock.tick(1)
    assert world.reconcile().idle  # the first cache, which last saw the listing before the report


def old_scheme(refs: Mapping[str, str]) -> str:
    """The digest marks held before the buckets: sha256 over every sorted ``ref oid`` line."""
    return hashlib.sha256("".join(f"{r} {refs[r]}\n" for r in sorted(refs)).encode()).hexdigest()


def plant_old_scheme(world: ControllerWorld, scheme: str = "flat") -> None:
    """The hint and the kept listing rewritten as an older controller left them: in the old scheme
    (the flat sha256, or v2's 16,384 buckets), and agreeing with each other (it was idle)."""
    digest = old_scheme if scheme == "flat" else bucketed_v2
    mirror = world.settings.source.mirror
    hint = _Hint.model_validate_json((mirror / HINT_FILE).read_bytes())
    kept = _KeptListing.model_validate_json((mirror / LISTING_FILE).read_bytes())
    assert kept.fingerprint.startswith(f"{DIGESTS}:")
    storage = read_ref_storage(world.server)
    assert storage is not None
    listed = storage.refs(("refs/fleetcd/", "refs/namespaces/"))
    status = digest({r: o for r, o in listed.items() if r.startswith(STATUS)})
    desired = digest({r: o for r, o in listed.items() if r.startswith(DESIRED)})
    mark = hint.mark.model_copy(update={"status_sha256": status, "desired_sha256": desired})
    (mirror / HINT_FILE).write_text(hint.model_copy(update={"mark": mark}).model_dump_json())
    listing = kept.listing.model_copy(update={"status_sha256": status, "desired_sha256": desired})
    rest = kept.fingerprint.removeprefix(f"{DIGESTS}:")
    old = _KeptListing(fingerprint=rest if scheme == "flat" else f"bucketed-v2:{rest}", listing=listing)
    (mirror / LISTING_FILE).write_text(old.model_dump_json())


@pytest.mark.parametrize("scheme", ["flat", "bucketed-v2"])
@pytest.mark.parametrize("once", [True, False], ids=["once", "run"])
def test_a_mark_left_by_the_older_scheme_costs_one_full_reconcile(
    tmp_path: Path, keys: KeyFactory, once: bool, scheme: str
) -> None:
    world = settled(tmp_path, keys)
    plant_old_scheme(world, scheme)
    settings = replace(world.settings, cache=None) if once else world.settings
    world.clock.tick(1)
    assert not reconcile_once(settings).idle
    world.clock.tick(1)
    assert reconcile_once(settings).idle


def test_the_kept_digests_live_in_the_running_controllers_cache() -> None:
    cache = ReconcileCache()
    assert isinstance(cache.digests, IdleDigests)
    assert cache.digests.listing.groups == (STATUS, DESIRED)
    assert ReconcileCache().digests is not cache.digests
