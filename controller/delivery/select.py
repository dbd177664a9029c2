"""Per-robot desired state, step 6 (write) of a reconcile: which robots' refs move (pure).

A change costs what it changes: a reconcile rewrites a robot's desired-state ref only when

- **changed**: the bundle it should hold differs from the one recorded for it (by
  :func:`controller.delivery.bundles.content_digest`, which ignores serial and timestamps), or
  nothing is recorded;
- **healed**: its ref is not exactly the commit recorded for it (missing, planted, replayed,
  another robot's or a rival controller's: :mod:`controller.delivery.published`);
- **renewed**: its bundle nears expiry.

Every other robot keeps its commit. Renewals are staggered: a fleet-wide fan-out leaves every
bundle with one expiry, and renewing them all at once would move every ref and send every robot
a download in one reconcile. So a robot's renewal is due at

    expires_at - refresh_before - window * slot / RENEWAL_SLOTS,  slot in 1..RENEWAL_SLOTS from a
    hash of its id,

which spreads one shared expiry over ``window`` before ``refresh_before``; of the robots due, a
reconcile renews at most ``per_reconcile``, soonest expiry first. A robot within
``refresh_before`` of its expiry is renewed whatever the bound (the bound smooths load; it must
never let a bundle expire on a controller that reconciles). :attr:`Selection.next_renewal_at`
tells the idle fast path when to wake for the next one (``now`` while some due ones wait).
No I/O, no clock.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.state.model import PublishedDesired

RENEWAL_SLOTS = 16  # one shared expiry is renewed in at most this many groups over the window


@dataclass(frozen=True)
class RenewalPolicy:
    """When bundles are renewed, clamped to the fleet's bundle lifetime (units in the names)."""

    refresh_before: timedelta  # every bundle is renewed at least this long before it expires
    window: timedelta  # renewals are spread over this much time before ``refresh_before``
    per_reconcile: int  # at most this many renewals per reconcile, unless a bundle is that close

    @classmethod
    def of(
        cls, lifetime: timedelta, refresh_before: timedelta, window: timedelta, per_reconcile: int
    ) -> RenewalPolicy:
        """The policy for bundles living ``lifetime``: a robot keeps a bundle at least a quarter of
        it (``refresh_before`` at most half of it, ``window`` at most half of what is left)."""
        if per_reconcile < 1:
            raise ValueError(f"renewals per reconcile must be at least 1, not {per_reconcile}")
        before = min(refresh_before, lifetime / 2)
        return cls(before, min(window, (lifetime - before) / 2), per_reconcile)

    def due_at(self, device: str, expires_at: datetime) -> datetime:
        """When ``device``'s bundle expiring at ``expires_at`` is renewed."""
        return self.due_at_slot(slot(device), expires_at)

    def due_at_slot(self, held: int, expires_at: datetime) -> datetime:
        """When a bundle expiring at ``expires_at`` of a robot in slot ``held`` is renewed (later
        for a lower slot: the window is counted back from ``refresh_before``)."""
        return expires_at - self.refresh_before - self.window * held / RENEWAL_SLOTS

    def urgent(self, expires_at: datetime, now: datetime) -> bool:
        return expires_at - now <= self.refresh_before


@functools.lru_cache(maxsize=1 << 18)  # a pure function of the id: one sha256 per robot per process
def slot(device: str) -> int:
    """1..RENEWAL_SLOTS, from the robot's id: the same robot renews at the same point of the window."""
    return int.from_bytes(hashlib.sha256(device.encode()).digest()[:4], "big") % RENEWAL_SLOTS + 1


@dataclass(frozen=True)
class Selection:
    """The robots whose ref moves this reconcile, and why; sorted device ids."""

    changed: tuple[str, ...] = ()
    healed: tuple[str, ...] = ()
    renewed: tuple[str, ...] = ()
    next_renewal_at: datetime | None = None  # of the robots kept (and of the moved: a lifetime on)

    @property
    def moving(self) -> tuple[str, ...]:
        return tuple(sorted({*self.changed, *self.healed, *self.renewed}))


def select(
    wanted: Mapping[str, str],
    recorded: Mapping[str, PublishedDesired | None],
    kept: frozenset[str],
    now: datetime,
    policy: RenewalPolicy,
    *,
    lifetime: timedelta,
    standing: Mapping[datetime, Mapping[int, Collection[str]]] | None = None,
) -> Selection:
    """Which of the robots in ``wanted`` (device -> content digest of its bundle now) move, given
    what is ``recorded`` for each and which refs are ``kept`` (exactly the recorded commit).
    ``lifetime``: how long a bundle written now lives. ``standing``: more robots, not in
    ``wanted``, that are kept with their recorded content (only their renewal is to decide), by
    recorded expiry and slot (:mod:`controller.delivery.standing`); the same robots are chosen
    as when they are passed in ``wanted`` one by one."""
    changed, healed = [], []
    due: list[tuple[str, datetime]] = []  # (robot, its expiry) of the kept robots due for renewal
    # Whether a kept robot is due depends on its expiry and slot only, and ``due_at`` is monotone
    # in the slot: per distinct expiry (a fan-out gives the whole fleet one), the first due slot is
    # computed once (at 100,000 robots, ~2 us of datetime arithmetic per robot less).
    first_due: dict[datetime, int] = {}
    # The earliest renewal to come: per expiry, the robot with the highest slot is due first. Kept
    # robots not due are counted here in the same pass (one pass over the fleet, not two).
    latest_slot: dict[datetime, int] = {}
    for device, digest in wanted.items():
        record = recorded.get(device)
        if record is None or record.content_sha256 != digest:
            changed.append(device)
        elif device not in kept:
            healed.append(device)
        else:
            expiry = record.expires_at
            cut = first_due.get(expiry)
            if cut is None:
                cut = first_due[expiry] = _first_due_slot(policy, expiry, now)
            held = slot(device)
            if held >= cut:
                due.append((device, expiry))
            elif latest_slot.get(expiry, 0) < held:
                latest_slot[expiry] = held
    for expiry, slots in (standing or {}).items():  # per group, not per robot
        cut = first_due.get(expiry)
        if cut is None:
            cut = first_due[expiry] = _first_due_slot(policy, expiry, now)
        for held, members in slots.items():
            if not members:
                continue
            if held >= cut:
                due.extend((device, expiry) for device in members)
            elif latest_slot.get(expiry, 0) < held:
                latest_slot[expiry] = held
    urgent = [(d, e) for d, e in due if policy.urgent(e, now)]
    rest = sorted((entry for entry in due if not policy.urgent(entry[1], now)), key=lambda de: (de[1], de[0]))
    renewed = [*urgent, *rest[: max(policy.per_reconcile - len(urgent), 0)]]
    waiting = len(due) > len(renewed)
    for device, expiry in rest[len(renewed) - len(urgent) :]:  # due, but left for a later reconcile
        held = slot(device)
        if latest_slot.get(expiry, 0) < held:
            latest_slot[expiry] = held
    moving = [*changed, *healed, *(d for d, _ in renewed)]
    if moving:  # every robot that moves now expires a lifetime on
        moved_expiry = now + lifetime
        held = max(slot(device) for device in moving)
        if latest_slot.get(moved_expiry, 0) < held:
            latest_slot[moved_expiry] = held
    upcoming = [policy.due_at_slot(held, expiry) for expiry, held in latest_slot.items()]
    next_at = now if waiting else min(upcoming, default=None)
    return Selection(
        tuple(sorted(changed)), tuple(sorted(healed)), tuple(sorted(d for d, _ in renewed)), next_at
    )


def _first_due_slot(policy: RenewalPolicy, expires_at: datetime, now: datetime) -> int:
    """The lowest slot whose robots' bundles expiring at ``expires_at`` are due at ``now``
    (RENEWAL_SLOTS + 1: none is)."""
    return next(
        (n for n in range(1, RENEWAL_SLOTS + 1) if policy.due_at_slot(n, expires_at) <= now),
        RENEWAL_SLOTS + 1,
    )
