"""The robot's clock against the controller's signed times (agent.trustcheck, pure parts), as a clock
simulation: issue 10, point 7.

A robot's clock may be reset to 1970 (a dead RTC battery), jump a year ahead for one cycle (a bad NTP
answer), or drift. The bundle it holds was signed with ``issued_at`` and expires at ``expires_at``.
Two attacks must stay refused whatever the clock does: reviving a bundle found expired by setting the
clock back before a signed time (freeze), and the one the issue found: a clock that was wrong once
must not leave the robot stale after it is corrected. These tables walk a robot's
:class:`TrustState` through sequences of clock readings using the real :func:`judging_floor`,
:func:`check_unchanged`, :func:`record_expiry` and :func:`record_fresh`, the way agent.loop does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import CorruptState
from agent.trustcheck import (
    TRUST_FILE_MODE,
    TrustState,
    check_unchanged,
    judging_floor,
    load_trust_state,
    record_expiry,
    record_fresh,
    save_trust_state,
)
from fleetcd.compat import UTC
from fleetcd.desired import BundleExpired
from fleetcd.wire import DesiredFiles

ISSUED = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COMMIT = "c" * 40
FILES = DesiredFiles(commit=COMMIT, bundle=b"{}", root=b"{}", root_signature=b"sig", proof=b"[]", trust=b"{}")
ACCEPTED = TrustState(
    last_serial=4,
    last_bundle_sha256="a" * 64,
    time_floor=ISSUED,
    last_commit=COMMIT,
    expires_at=EXPIRES,
)


def cycle(state: TrustState, now: datetime) -> tuple[TrustState, bool]:
    """One poll that brought the same commit, as agent.loop handles it: (new state, fresh?)."""
    try:
        check_unchanged(state, FILES, now)
    except BundleExpired as expired:
        return record_expiry(state, expired), False
    return record_fresh(state), True


def walk(clock: list[datetime], state: TrustState = ACCEPTED) -> list[bool]:
    verdicts = []
    for now in clock:
        state, fresh = cycle(state, now)
        verdicts.append(fresh)
    return verdicts


# --- judging_floor (decision table) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "seen", "now", "judged"),
    [
        (None, None, ISSUED, None),
        (None, EXPIRES, EPOCH, None),
        (ISSUED, None, EPOCH, ISSUED),
        (ISSUED, None, ISSUED + timedelta(days=1), ISSUED),
        (ISSUED, EXPIRES, EPOCH, EXPIRES),  # a clock before a signed time cannot revive
        (ISSUED, EXPIRES, ISSUED - timedelta(seconds=1), EXPIRES),
        (ISSUED, EXPIRES, ISSUED, ISSUED),  # at or after the floor the clock is believed
        (ISSUED, EXPIRES, ISSUED + timedelta(hours=2), ISSUED),
        (ISSUED, ISSUED - timedelta(days=1), EPOCH, ISSUED),  # an older expiry never lowers the floor
    ],
    ids=[
        "no-floor",
        "no-floor-seen",
        "1970",
        "normal",
        "1970-after-expiry",
        "just-before",
        "at-floor",
        "corrected",
        "old-seen",
    ],
)
def test_judging_floor(
    floor: datetime | None, seen: datetime | None, now: datetime, judged: datetime | None
) -> None:
    state = TrustState(time_floor=floor, expired_seen=seen)
    assert judging_floor(state, now) == judged


# --- check_unchanged ----------------------------------------------------------------------------------


def test_another_commit_always_goes_to_full_verification() -> None:
    other = DesiredFiles(commit="d" * 40, bundle=b"", root=b"", root_signature=b"", proof=b"", trust=b"")
    assert check_unchanged(ACCEPTED, other, ISSUED) is False
    assert check_unchanged(TrustState(), FILES, ISSUED) is False
    assert check_unchanged(ACCEPTED.model_copy(update={"expires_at": None}), FILES, ISSUED) is False


@pytest.mark.parametrize(
    ("now", "fresh"),
    [
        (ISSUED, True),
        (EXPIRES - timedelta(seconds=1), True),
        (EXPIRES, False),  # the expiry instant itself is expired
        (EXPIRES + timedelta(days=365), False),
        (EPOCH, True),  # judged at the floor (ISSUED): inside the life
    ],
    ids=["issued", "last-second", "expiry-instant", "year-ahead", "1970-judged-at-floor"],
)
def test_the_same_commit_is_fresh_exactly_inside_its_signed_life(now: datetime, fresh: bool) -> None:
    if fresh:
        assert check_unchanged(ACCEPTED, FILES, now) is True
    else:
        with pytest.raises(BundleExpired) as caught:
            check_unchanged(ACCEPTED, FILES, now)
        assert caught.value.expires_at == EXPIRES
        assert caught.value.judged_at == max(now, ISSUED)
        assert "serial 4" in str(caught.value)


# --- clock stories ------------------------------------------------------------------------------------


def test_a_clock_one_year_ahead_for_one_cycle_is_stale_once_then_fresh_again() -> None:
    clock = [
        ISSUED + timedelta(hours=1),
        ISSUED + timedelta(days=365),
        ISSUED + timedelta(hours=2),
        ISSUED + timedelta(hours=3),
    ]
    assert walk(clock) == [True, False, True, True]


def test_a_clock_reset_to_1970_after_an_expiry_cannot_revive_the_bundle() -> None:
    clock = [EXPIRES + timedelta(hours=1), EPOCH, EPOCH + timedelta(hours=1), ISSUED - timedelta(days=30)]
    assert walk(clock) == [False, False, False, False]


def test_a_clock_reset_to_1970_without_an_earlier_expiry_keeps_the_robot_working() -> None:
    assert walk([EPOCH, EPOCH + timedelta(minutes=5), ISSUED + timedelta(hours=1)]) == [True, True, True]


def test_once_the_clock_is_past_the_floor_again_it_is_believed() -> None:
    # Expired at a real late time, then the clock was set back below the floor (refused), then it was
    # corrected to a time inside the life: believed, since it contradicts no signature.
    clock = [EXPIRES + timedelta(days=1), EPOCH, ISSUED + timedelta(days=1)]
    assert walk(clock) == [False, False, True]


@pytest.mark.parametrize("jump_days", [8, 30, 365, 3650])
def test_any_forward_jump_followed_by_a_correction_recovers_on_the_next_cycle(jump_days: int) -> None:
    clock = [
        ISSUED + timedelta(days=1),
        ISSUED + timedelta(days=jump_days),
        ISSUED + timedelta(days=1, minutes=1),
    ]
    verdicts = walk(clock)
    assert verdicts[1] is False and verdicts[2] is True


def test_the_floor_never_moves_with_the_clock() -> None:
    state = ACCEPTED
    for now in (EPOCH, ISSUED + timedelta(days=365), EXPIRES + timedelta(days=1), ISSUED):
        state, _ = cycle(state, now)
        assert state.time_floor == ISSUED, "only a signed issued_at may lift the floor"
        assert state.last_serial == 4 and state.last_commit == COMMIT


def test_record_expiry_keeps_the_latest_signed_expiry_seen() -> None:
    later = EXPIRES + timedelta(days=7)
    first = record_expiry(ACCEPTED, BundleExpired("x", expires_at=later, judged_at=later))
    second = record_expiry(first, BundleExpired("y", expires_at=EXPIRES, judged_at=EXPIRES))
    assert second.expired_seen == later
    assert record_fresh(second).expired_seen is None
    assert record_fresh(second).time_floor == ISSUED


# --- trust.json on disk -------------------------------------------------------------------------------


def test_the_trust_state_round_trips_privately(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    assert load_trust_state(path) == TrustState()
    state = record_expiry(ACCEPTED, BundleExpired("x", expires_at=EXPIRES, judged_at=EXPIRES))
    save_trust_state(path, state)
    assert load_trust_state(path) == state
    assert path.stat().st_mode & 0o777 == TRUST_FILE_MODE


@pytest.mark.parametrize(
    "raw",
    [b"", b"{}x", b'{"format": 2}', b'{"time_floor": "2026-05-04T09:00:00"}', b'{"last_serial": "4"}'],
    ids=["empty", "trailing", "future-format", "naive-time", "string-serial"],
)
def test_a_trust_state_that_does_not_parse_is_refused_not_reset(tmp_path: Path, raw: bytes) -> None:
    # Resetting it would forget the serial and the floor: an older signed bundle would be accepted.
    path = tmp_path / "trust.json"
    path.write_bytes(raw)
    with pytest.raises(CorruptState):
        load_trust_state(path)
