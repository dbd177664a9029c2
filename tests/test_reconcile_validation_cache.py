"""``controller run`` validates main once per tree, and never trusts a verdict the clock has voided.

Counted through the cache object (``MainCache.validations``), never timed, over the real
``reconcile_once`` with real git and gpg (:mod:`tests.sim.world`). What must hold:

* a second reconcile over the same main does not validate it again; ``reconcile --once`` (no
  cache) validates every time, as before;
* a new main commit is validated afresh, even when it changes one byte of a release signature,
  and a now-invalid main stalls exactly as a controller without the cache stalls;
* the trust root's expiry is judged against ``now`` on the cached tree too;
* gpg judges key expiry on the wall clock: a key that expires while main stays put voids the
  cached verdict, and main stalls as a cold read would; any verdict is re-made after
  ``VALIDATION_MAX_AGE``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.reconcile import steps
from controller.reconcile.cache import VALIDATION_MAX_AGE, ReconcileCache
from controller.reconcile.steps import reconcile_once
from fleetcd.compat import UTC
from fleetcd.layout import cohort_path, release_signature_path
from fleetcd.trust.gpg import Keyring
from fleetcd.validation import ValidationResult
from fleetcd.validation.incremental import Reuse
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory
from tests.sim.world import STAGING, START, ControllerWorld, make_world


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """One entry per validation the reconcile makes (the real validation still runs): a
    validate_snapshot call without the cache, a judge of the (re)checked content with it."""
    seen: list[int] = []

    def counting(name: str) -> None:
        real = getattr(steps, name)

        def counted(*args: object, **kwargs: object) -> ValidationResult:
            seen.append(1)
            return real(*args, **kwargs)  # type: ignore[no-any-return]

        monkeypatch.setattr(steps, name, counted)

    counting("validate_snapshot")
    counting("judge")
    yield seen


def cached(world: ControllerWorld) -> ReconcileCache:
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    return cache


def heartbeat(world: ControllerWorld, seconds: float = 10) -> None:
    """A robot reports: the idle fast path cannot skip the next reconcile."""
    world.sim.push_report(STAGING[0], world.clock.now)
    world.clock.tick(seconds)


def push_main(world: ControllerWorld, message: str) -> None:
    world.fleet.git("add", "-A")
    world.fleet.git("commit", "-qm", message)
    world.fleet.git("push", "-q", str(world.server), "main")


def test_a_second_reconcile_over_the_same_main_does_not_validate_it_again(
    tmp_path: Path, keys: KeyFactory, validations: list[int]
) -> None:
    """... until the verdict's maximum age; ``reconcile --once`` (no cache) validates every time."""
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    for _ in range(2):
        heartbeat(world)
        world.reconcile()
    assert cache.main.validations == len(validations) == 1
    assert world.state().devices[STAGING[0]].last_report_seq == world.sim.robots[STAGING[0]].seq

    heartbeat(world, seconds=VALIDATION_MAX_AGE.total_seconds())
    world.reconcile()
    assert cache.main.validations == len(validations) == 2

    once = replace(world.settings, cache=None)
    for _ in range(2):
        heartbeat(world)
        assert reconcile_once(once).stalled is None
    assert len(validations) == 4 and cache.main.validations == 2


def test_one_changed_byte_of_a_release_signature_is_validated_afresh_and_stalls_as_without_cache(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    signer = world.fleet.release_signers[0]
    path = world.fleet.root / release_signature_path("nav", "1.0.0", signer.fingerprint)
    armored = path.read_bytes()
    body = armored.index(b"\n\n") + 10  # a byte inside the base64 signature packet
    flipped = b"A" if armored[body : body + 1] != b"A" else b"B"
    path.write_bytes(armored[:body] + flipped + armored[body + 1 :])
    push_main(world, "one byte of the release signature changed")
    heartbeat(world)

    with_cache = reconcile_once(world.settings)
    assert cache.main.validations == 2
    assert with_cache.stalled is not None and "nav" in with_cache.stalled
    heartbeat(world)
    without_cache = reconcile_once(replace(world.settings, cache=None))
    assert without_cache.stalled == with_cache.stalled
    heartbeat(world)
    assert reconcile_once(world.settings).stalled == with_cache.stalled


def test_an_expired_trust_root_stalls_on_the_cached_tree(tmp_path: Path, keys: KeyFactory) -> None:
    expires = START + timedelta(minutes=5)

    def short_trust(fleet: FleetRepoBuilder) -> None:
        fleet.trust["expires"] = expires.isoformat().replace("+00:00", "Z")

    world = make_world(tmp_path, keys, configure=short_trust)
    cache = cached(world)
    world.reconcile()
    heartbeat(world, seconds=(expires - world.clock.now).total_seconds())
    result = reconcile_once(world.settings)
    assert cache.main.validations == 1  # the same tree's verdict, judged at a later now
    assert result.stalled is not None and "expired" in result.stalled
    assert "trust root version 1" in result.stalled


def short_lived_key(keys: KeyFactory, name: str, seconds: int) -> GpgKey:
    fingerprint = keys.signer.generate_key(name.title(), f"{name}@fleet.test", expire=f"seconds={seconds}")
    return GpgKey(name, fingerprint, keys.signer.export_public(fingerprint))


def test_a_signing_key_that_expires_while_main_stays_put_voids_the_cached_verdict(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """gpg judges key expiry on the wall clock, so this world's clock is the wall clock."""
    short = short_lived_key(keys, "short-lived", 25)

    def signed_by_short(fleet: FleetRepoBuilder) -> None:
        fleet.add_signer(short)
        fleet.release("nav", "1.0.1", signers=[short])

    start = datetime.now(UTC).replace(microsecond=0)
    world = make_world(tmp_path, keys, start=start, configure=signed_by_short)
    cache = cached(world)
    world.reconcile()
    assert cache.main.validations == 1 and cache.main.good_until is not None
    expiry = cache.main.good_until
    assert expiry <= start + timedelta(seconds=26)
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.5)
    heartbeat(world, seconds=(datetime.now(UTC) - world.clock.now).total_seconds())

    result = reconcile_once(world.settings)
    assert cache.main.validations == 2
    assert result.stalled is not None and "releases/nav/1.0.1.yaml" in result.stalled
    heartbeat(world)
    assert reconcile_once(replace(world.settings, cache=None)).stalled == result.stalled


def test_a_keyrings_earliest_expiry_counts_subkeys_and_expired_keys(keys: KeyFactory) -> None:
    with keys.keyring([keys.key("ordinary")]) as keyring:
        ordinary = keyring.earliest_expiry()
    assert ordinary is not None and ordinary > datetime.now(UTC) + timedelta(days=365)
    with keys.keyring([keys.key("ordinary"), keys.expired_key("long-gone")]) as keyring:
        gone = keyring.earliest_expiry()
    assert gone is not None and gone < datetime(2022, 1, 1, tzinfo=UTC)
    with keys.keyring([keys.subkey_key("subkeyed")]) as keyring:
        subkeyed = keyring.earliest_expiry()
    assert subkeyed is not None and subkeyed > datetime.now(UTC)
    with Keyring.from_armored({}) as empty:
        assert empty.earliest_expiry() is None


def test_an_aged_revalidation_with_the_same_verdict_keeps_the_validation_and_fleet_context(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The same tree past VALIDATION_MAX_AGE: gpg is asked again, the content checks are kept, and
    since nothing gpg or the clock says changed, neither does what the reconcile acts on."""
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    held, fleet = cache.main.validation, cache.main.fleet
    assert held is not None and fleet is not None
    heartbeat(world, seconds=VALIDATION_MAX_AGE.total_seconds())
    assert reconcile_once(world.settings).stalled is None
    assert cache.main.validations == 2 and cache.main.reuses == {Reuse.NONE: 1, Reuse.SAME: 1}
    assert cache.main.validation is held and cache.main.fleet is fleet
    assert cache.main.good_until is not None and cache.main.good_until > world.clock.now


def test_a_deleted_cohort_stalls_the_cached_controller_as_a_cold_one(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Only the cohort file left main; the rollout naming it is what becomes invalid."""
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    world.fleet.remove(cohort_path("canary"))
    world.merge("the canary cohort is deleted, the rollout still names it")
    heartbeat(world)
    stalled = reconcile_once(world.settings).stalled
    assert cache.main.reuses == {Reuse.NONE: 1, Reuse.DOCUMENTS: 1}  # the cohort: from the kept index
    assert stalled is not None and "unknown cohort 'canary'" in stalled
    heartbeat(world)
    assert reconcile_once(replace(world.settings, cache=None)).stalled == stalled
    heartbeat(world, seconds=VALIDATION_MAX_AGE.total_seconds())
    assert reconcile_once(world.settings).stalled == stalled  # the kept content, judged again: still
    assert cache.main.reuses == {Reuse.NONE: 1, Reuse.DOCUMENTS: 1, Reuse.SAME: 1}


def test_a_removed_approval_stalls_the_cached_controller_though_no_document_changed(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    rollout = next(path for path in world.fleet.docs if path.startswith("rollouts/"))
    name = rollout.removeprefix("rollouts/").removesuffix(".yaml")
    approvals = sorted((world.fleet.root / "approvals" / name).glob("*.asc"))
    assert approvals
    world.fleet.approvers_of[rollout] = []
    for path in approvals:
        world.fleet.remove(path.relative_to(world.fleet.root).as_posix())
    world.merge("the rollout's approvals are removed")
    heartbeat(world)
    stalled = reconcile_once(world.settings).stalled
    assert cache.main.reuses == {Reuse.NONE: 1, Reuse.TRUST_FILES: 1}
    assert stalled is not None and rollout in stalled
    heartbeat(world)
    assert reconcile_once(replace(world.settings, cache=None)).stalled == stalled
