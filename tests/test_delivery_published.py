"""The verdict on robots' roots (:func:`controller.delivery.published.judge_published`) as a table.

``state.json`` records serial 5 and the sha256 of the root published under it. Each row lists what
robots' refs hold and the verdict: the floor (the next root is signed as floor + 1) and the root
that may stay (None: every robot is rewritten). ``verify`` stands in for gpg and
:func:`fleetcd.desired.verify_root`: only roots in :data:`SIGNED` pass. Real gpg and git run the
same attacks in ``tests/test_controller_planted_roots.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from controller.delivery.published import MAX_ROOTS_VERIFIED, HeldRoot, judge_published
from fleetcd.compat import UTC
from fleetcd.desired import BundleRejected, SignedRoot, canonical_bytes
from fleetcd.reasons import Reason

ISSUED = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
RECORDED = 5


def root(serial: int, fleet: str = "acme") -> bytes:
    return canonical_bytes(
        SignedRoot(
            format="fleetcd.dev/root/v1",
            serial=serial,
            issued_at=ISSUED,
            expires_at=ISSUED + timedelta(days=7),
            merkle_root="0" * 64,
            leaves=3,
            fleet=fleet,
        )
    )


CURRENT = root(RECORDED)
CURRENT_SHA = hashlib.sha256(CURRENT).hexdigest()
AHEAD, OLD, RIVAL = root(RECORDED + 1), root(RECORDED - 2), root(RECORDED, fleet="acme2")
GOOD, BAD = b"good signature", b"signature by another key"
PLANTED = CURRENT.replace(b'"serial":5', b'"serial":1000000000000000000000000000000')
SIGNED = {
    (AHEAD, GOOD): RECORDED + 1,
    (OLD, GOOD): RECORDED - 2,
    (RIVAL, GOOD): RECORDED,
    (CURRENT, GOOD): RECORDED,
}


def verify(data: bytes, signature: bytes) -> SignedRoot:
    if (data, signature) not in SIGNED:
        raise BundleRejected(Reason.ROOT_SIGNATURE_INVALID, "root signature: not the controller's")
    return SignedRoot.model_validate_json(data)


def held(*roots: tuple[bytes | None, bytes | None] | None) -> dict[str, HeldRoot | None]:
    return {f"r{i}": None if r is None else HeldRoot(*r) for i, r in enumerate(roots)}


TABLE = {
    "all-hold-the-recorded-root": (held((CURRENT, GOOD), (CURRENT, GOOD)), RECORDED, CURRENT),
    "a-missing-ref-is-left-to-change-detection": (held((CURRENT, GOOD), None), RECORDED, CURRENT),
    "planted-unsigned-huge-serial": (held((PLANTED, GOOD), (CURRENT, GOOD)), RECORDED, None),
    "planted-on-every-robot": (held((PLANTED, BAD), (PLANTED, BAD)), RECORDED, None),
    "signed-by-another-key": (held((AHEAD, BAD), (AHEAD, BAD)), RECORDED, None),
    "replayed-old-root-on-one-robot": (held((CURRENT, GOOD), (OLD, GOOD)), RECORDED, None),
    "replayed-old-root-on-every-robot": (held((OLD, GOOD), (OLD, GOOD)), RECORDED, None),
    "rivals-root-under-the-recorded-serial": (held((RIVAL, GOOD), (RIVAL, GOOD)), RECORDED, None),
    "recorded-root-under-a-swapped-signature": (held((CURRENT, GOOD), (CURRENT, BAD)), RECORDED, None),
    "recorded-root-without-its-signature": (held((CURRENT, None), (CURRENT, None)), RECORDED, None),
    "a-ref-without-root-json": (held((CURRENT, GOOD), (None, None)), RECORDED, None),
    "own-root-pushed-but-not-recorded": (held((AHEAD, GOOD), (AHEAD, GOOD)), RECORDED + 1, AHEAD),
    "own-root-pushed-to-some-robots-only": (held((AHEAD, GOOD), (CURRENT, GOOD)), RECORDED + 1, None),
    "no-robot-has-a-ref": (held(None, None), RECORDED, None),
}


@pytest.mark.parametrize(("robots", "floor", "kept"), TABLE.values(), ids=TABLE.keys())
def test_only_the_state_branch_or_a_root_the_controller_signed_sets_the_serial(
    robots: dict[str, HeldRoot | None], floor: int, kept: bytes | None
) -> None:
    verdict = judge_published(robots, serial=RECORDED, root_sha256=CURRENT_SHA, verify=verify)
    assert (verdict.floor, verdict.kept) == (floor, kept)
    assert verdict.next_serial == floor + 1
    if kept is not None:
        assert verdict.kept_serial == floor


def test_the_first_reconcile_adopts_a_root_it_signed_before_losing_its_state() -> None:
    verdict = judge_published(held((AHEAD, GOOD)), serial=0, root_sha256=None, verify=verify)
    assert (verdict.floor, verdict.kept, verdict.kept_serial) == (RECORDED + 1, AHEAD, RECORDED + 1)


def test_ignored_roots_say_why() -> None:
    verdict = judge_published(
        held((PLANTED, GOOD), (OLD, GOOD)), serial=RECORDED, root_sha256=CURRENT_SHA, verify=verify
    )
    assert len(verdict.ignored) == 2
    assert any("not the controller's" in line for line in verdict.ignored)
    assert any(
        f"serial {RECORDED - 2} is not above the recorded serial {RECORDED}" in line
        for line in verdict.ignored
    )


def test_a_flood_of_distinct_planted_roots_costs_a_bounded_number_of_verifications() -> None:
    calls: list[bytes] = []

    def counting(data: bytes, signature: bytes) -> SignedRoot:
        calls.append(data)
        return verify(data, signature)

    robots = {f"r{i}": HeldRoot(root(1000 + i), BAD) for i in range(100)}
    robots["most-held-1"] = robots["most-held-2"] = HeldRoot(AHEAD, GOOD)
    verdict = judge_published(robots, serial=RECORDED, root_sha256=CURRENT_SHA, verify=counting)
    assert len(calls) == MAX_ROOTS_VERIFIED
    assert calls[0] == AHEAD  # the root most robots hold is verified first
    assert (verdict.floor, verdict.kept) == (RECORDED + 1, None)
