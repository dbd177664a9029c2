"""Which robots' desired-state refs a reconcile moves (:func:`controller.delivery.select.select`), as
decision tables: changed bundles, refs that are not the recorded commit, and staggered renewals.

Pure: robots are ids with a recorded content digest and expiry; ``kept`` is the verdict of
:mod:`controller.delivery.published`. The same rules run at reconcile level on real git and gpg in
``tests/test_delivery_incremental.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest

from controller.delivery.select import RENEWAL_SLOTS, RenewalPolicy, Selection, select, slot
from controller.state.model import PublishedDesired
from fleetcd.compat import UTC

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(days=7)
POLICY = RenewalPolicy.of(LIFETIME, timedelta(days=2), timedelta(days=1), per_reconcile=3)
SAME, OTHER = "a" * 64, "b" * 64


def record(expires_at: datetime, digest: str = SAME, serial: int = 4) -> PublishedDesired:
    return PublishedDesired(commit="c" * 40, serial=serial, content_sha256=digest, expires_at=expires_at)


def random_fleet(
    rng: random.Random, seed: int, *, serials: bool = False
) -> tuple[dict[str, str], dict[str, PublishedDesired | None], set[str], RenewalPolicy]:
    """Up to 300 robots with a few shared expiries (fan-outs) and scattered ones, some due, some
    urgent, some changed (``OTHER``), unrecorded or not kept, and a random per-reconcile bound:
    (wanted, recorded, kept, policy). ``serials``: each record gets a random serial (1-8)."""
    expiries = [NOW + timedelta(minutes=rng.randrange(-60, 7 * 24 * 60)) for _ in range(rng.randrange(1, 6))]
    recorded: dict[str, PublishedDesired | None] = {}
    wanted: dict[str, str] = {}
    kept: set[str] = set()
    for n in range(rng.randrange(0, 300)):
        device = f"robot-{seed}-{n}"
        scattered = NOW + timedelta(seconds=rng.randrange(-3600, 7 * 86400))
        expiry = rng.choice(expiries) if rng.random() < 0.8 else scattered
        if rng.random() < 0.05:
            recorded[device] = None
        else:
            recorded[device] = record(expiry, serial=rng.randrange(1, 9)) if serials else record(expiry)
        wanted[device] = OTHER if rng.random() < 0.05 else SAME
        if rng.random() < 0.95:
            kept.add(device)
    policy = RenewalPolicy.of(
        LIFETIME, timedelta(days=2), timedelta(days=1), per_reconcile=rng.randrange(1, 20)
    )
    return wanted, recorded, kept, policy


def choose(
    recorded: Mapping[str, PublishedDesired | None],
    wanted: dict[str, str] | None = None,
    kept: set[str] | None = None,
) -> Selection:
    wanted = wanted if wanted is not None else dict.fromkeys(recorded, SAME)
    kept = kept if kept is not None else {d for d, r in recorded.items() if r is not None}
    return select(wanted, recorded, frozenset(kept), NOW, POLICY, lifetime=LIFETIME)


FRESH = NOW + timedelta(days=6)  # issued a day ago: no renewal for days
TABLE = {
    "nothing-changed-nothing-moves": ({"r1": record(FRESH), "r2": record(FRESH)}, None, None, (), (), ()),
    "a-changed-bundle-moves-alone": (
        {"r1": record(FRESH), "r2": record(FRESH)},
        {"r1": SAME, "r2": OTHER},
        None,
        ("r2",),
        (),
        (),
    ),
    "no-record-is-a-change": ({"r1": record(FRESH), "r2": None}, None, None, ("r2",), (), ()),
    "a-ref-not-the-recorded-commit-is-healed": (
        {"r1": record(FRESH), "r2": record(FRESH)},
        None,
        {"r1"},
        (),
        ("r2",),
        (),
    ),
    "a-changed-robot-with-a-foreign-ref-counts-as-changed": (
        {"r1": record(FRESH)},
        {"r1": OTHER},
        set(),
        ("r1",),
        (),
        (),
    ),
    "a-bundle-past-every-renewal-point-is-renewed": (
        {"r1": record(NOW + timedelta(days=2, hours=1)), "r2": record(FRESH)},
        None,
        None,
        (),
        (),
        ("r1",),
    ),
}


@pytest.mark.parametrize(
    ("recorded", "wanted", "kept", "changed", "healed", "renewed"), TABLE.values(), ids=TABLE.keys()
)
def test_only_changed_healed_or_due_robots_move(
    recorded: dict[str, PublishedDesired | None],
    wanted: dict[str, str] | None,
    kept: set[str] | None,
    changed: tuple[str, ...],
    healed: tuple[str, ...],
    renewed: tuple[str, ...],
) -> None:
    chosen = choose(recorded, wanted, kept)
    assert (chosen.changed, chosen.healed, chosen.renewed) == (changed, healed, renewed)
    assert chosen.moving == tuple(sorted({*changed, *healed, *renewed}))


def fan_out(robots: int, expires_at: datetime) -> dict[str, PublishedDesired | None]:
    """What a fleet-wide fan-out leaves: every bundle with the same expiry."""
    return {f"amr-{n:04d}": record(expires_at) for n in range(robots)}


def test_one_shared_expiry_is_spread_over_the_window_before_refresh_before() -> None:
    """After a fan-out, each robot is due at its own slot of the window, none after
    ``expires - refresh_before`` and none before ``expires - refresh_before - window``."""
    expires = NOW + LIFETIME
    fleet = fan_out(1600, expires)
    due = {device: POLICY.due_at(device, expires) for device in fleet}
    latest, earliest = expires - POLICY.refresh_before, expires - POLICY.refresh_before - POLICY.window
    assert all(earliest <= at < latest for at in due.values())
    slots = Counter(slot(device) for device in fleet)
    assert set(slots) == set(range(1, RENEWAL_SLOTS + 1))
    assert max(slots.values()) < 2 * 1600 / RENEWAL_SLOTS  # roughly even: no slot takes the fleet


def test_renewals_move_at_most_the_batch_soonest_expiry_first_and_wake_at_once_for_the_rest() -> None:
    soon = {f"s{n}": record(NOW + timedelta(days=2, minutes=60 + n)) for n in range(5)}  # all due
    chosen = choose(soon)
    assert chosen.renewed == ("s0", "s1", "s2")  # the three expiring first
    assert chosen.next_renewal_at == NOW  # two more wait: the idle fast path must not sleep


def test_a_bundle_within_refresh_before_is_renewed_whatever_the_batch() -> None:
    urgent = {f"u{n}": record(NOW + timedelta(days=1, hours=n)) for n in range(5)}
    assert choose(urgent).renewed == tuple(sorted(urgent))


def test_changes_and_heals_are_never_held_back_by_the_renewal_batch() -> None:
    recorded = {f"r{n}": record(FRESH) for n in range(10)}
    chosen = choose(recorded, dict.fromkeys(recorded, OTHER), kept=set())
    assert len(chosen.moving) == 10


def test_the_next_renewal_is_the_earliest_due_of_kept_and_moved_robots() -> None:
    kept_expiry = NOW + timedelta(days=5)
    chosen = choose({"kept": record(kept_expiry), "moved": None})
    assert chosen.changed == ("moved",)
    assert chosen.next_renewal_at == min(
        POLICY.due_at("kept", kept_expiry), POLICY.due_at("moved", NOW + LIFETIME)
    )


def test_a_reconciling_controller_never_lets_a_bundle_expire_and_moves_at_most_the_batch() -> None:
    """A fan-out of 40 robots at one expiry, then a reconcile every hour, as the idle fast path
    wakes them: every reconcile moves at most the batch, every robot is renewed before
    ``refresh_before``, and no bundle is ever expired."""
    policy = RenewalPolicy.of(timedelta(days=7), timedelta(days=2), timedelta(hours=12), per_reconcile=5)
    start = NOW
    recorded: dict[str, PublishedDesired | None] = dict(fan_out(40, start + timedelta(days=7)))
    now, moved_per_reconcile = start, []
    while now < start + timedelta(days=15):
        chosen = select(
            dict.fromkeys(recorded, SAME), recorded, frozenset(recorded), now, policy, lifetime=LIFETIME
        )
        moved_per_reconcile.append(len(chosen.moving))
        for device in chosen.moving:
            recorded[device] = record(now + LIFETIME)
        assert all(r is not None and r.expires_at - now > policy.refresh_before for r in recorded.values())
        assert chosen.next_renewal_at is not None and chosen.next_renewal_at >= now
        now += timedelta(hours=1)
    assert max(moved_per_reconcile) == policy.per_reconcile
    assert sum(moved_per_reconcile) >= 80  # every robot renewed twice in 15 days


@pytest.mark.parametrize(
    ("lifetime", "refresh_before", "window"),
    [
        (timedelta(minutes=5), timedelta(seconds=150), timedelta(seconds=75)),
        (timedelta(days=7), timedelta(days=2), timedelta(days=1)),
        (timedelta(days=1), timedelta(hours=12), timedelta(hours=6)),
    ],
    ids=["five-minutes", "a-week", "a-day"],
)
def test_the_policy_keeps_a_bundle_at_least_a_quarter_of_its_lifetime(
    lifetime: timedelta, refresh_before: timedelta, window: timedelta
) -> None:
    policy = RenewalPolicy.of(lifetime, timedelta(days=2), timedelta(days=1), per_reconcile=1)
    assert (policy.refresh_before, policy.window) == (refresh_before, window)
    assert lifetime - policy.refresh_before - policy.window >= lifetime / 4


def test_a_batch_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RenewalPolicy.of(LIFETIME, timedelta(days=2), timedelta(days=1), per_reconcile=0)


def _select_robot_by_robot(
    wanted: Mapping[str, str],
    recorded: Mapping[str, PublishedDesired | None],
    kept: frozenset[str],
    now: datetime,
    policy: RenewalPolicy,
    lifetime: timedelta,
) -> Selection:
    """The selection as first written: every robot's renewal instant computed on its own."""
    changed, healed, due = [], [], []
    for device in sorted(wanted):
        held = recorded.get(device)
        if held is None or held.content_sha256 != wanted[device]:
            changed.append(device)
        elif device not in kept:
            healed.append(device)
        elif policy.due_at(device, held.expires_at) <= now:
            due.append(device)

    def expiry(device: str) -> datetime:
        held = recorded[device]
        assert held is not None
        return held.expires_at

    urgent = [d for d in due if policy.urgent(expiry(d), now)]
    rest = sorted((d for d in due if d not in urgent), key=lambda d: (expiry(d), d))
    renewed = [*urgent, *rest[: max(policy.per_reconcile - len(urgent), 0)]]
    moving = {*changed, *healed, *renewed}
    upcoming = [policy.due_at(d, now + lifetime if d in moving else expiry(d)) for d in wanted]
    next_at = now if len(due) > len(renewed) else min(upcoming, default=None)
    return Selection(tuple(changed), tuple(healed), tuple(sorted(renewed)), next_at)


@pytest.mark.parametrize("seed", range(40))
def test_the_selection_per_expiry_equals_the_robot_by_robot_one(seed: int) -> None:
    """The renewal instants are computed once per distinct expiry, not per robot: the decisions
    and the next renewal are exactly the robot-by-robot ones, on fleets with a few shared
    expiries (fan-outs) and scattered ones, some due, some urgent, some changed or healed."""
    wanted, recorded, kept, policy = random_fleet(random.Random(seed), seed)
    args = (wanted, recorded, frozenset(kept), NOW, policy)
    assert select(*args, lifetime=LIFETIME) == _select_robot_by_robot(*args, LIFETIME)
