"""The verdict on robots' roots (:func:`controller.delivery.published.judge_published`) as a table.

``state.json`` records serial 5 and the sha256 of the root signed under it; each robot's device file
records the commit last written on its ref. Each row lists what robots' refs hold and the verdict:
the floor (the next root is signed as floor + 1) and the robots whose ref stays (every other one is
rewritten). ``verify`` stands in for gpg and
:func:`fleetcd.desired.verify_root`: only roots in :data:`SIGNED` pass. Real gpg and git run the
same attacks in ``tests/test_controller_planted_roots.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from controller.delivery.published import MAX_ROOTS_VERIFIED, HeldRoot, RobotRef, judge_published
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


def ref(index: int, files: tuple[bytes | None, bytes | None] | None, *, kept: bool = False) -> RobotRef:
    """Robot ``r<index>``'s ref: the commit recorded for it (``kept``), or another one holding
    ``files`` (None: no ref at all)."""
    recorded = f"{index:040x}"
    if kept:
        return RobotRef(recorded, recorded, HeldRoot(PLANTED, BAD))  # never read: the commit matches
    if files is None:
        return RobotRef(None, recorded)
    return RobotRef(f"{index + 100:040x}", recorded, HeldRoot(*files))


def robots(*refs: RobotRef) -> dict[str, RobotRef]:
    return {f"r{i}": r for i, r in enumerate(refs)}


KEPT0, KEPT1 = ref(0, None, kept=True), ref(1, None, kept=True)
TABLE = {
    "every-ref-is-the-recorded-commit": (robots(KEPT0, KEPT1), RECORDED, {"r0", "r1"}),
    "a-missing-ref-is-rewritten": (robots(KEPT0, ref(1, None)), RECORDED, {"r0"}),
    "planted-unsigned-huge-serial": (robots(ref(0, (PLANTED, GOOD)), KEPT1), RECORDED, {"r1"}),
    "planted-on-every-robot": (robots(ref(0, (PLANTED, BAD)), ref(1, (PLANTED, BAD))), RECORDED, set()),
    "signed-by-another-key": (robots(ref(0, (AHEAD, BAD)), ref(1, (AHEAD, BAD))), RECORDED, set()),
    "replayed-old-root-on-one-robot": (robots(KEPT0, ref(1, (OLD, GOOD))), RECORDED, {"r0"}),
    "replayed-old-root-on-every-robot": (robots(ref(0, (OLD, GOOD)), ref(1, (OLD, GOOD))), RECORDED, set()),
    "rivals-root-under-the-recorded-serial": (robots(ref(0, (RIVAL, GOOD)), KEPT1), RECORDED, {"r1"}),
    "recorded-root-under-a-swapped-signature": (robots(KEPT0, ref(1, (CURRENT, BAD))), RECORDED, {"r0"}),
    "recorded-root-on-a-commit-not-recorded": (robots(KEPT0, ref(1, (CURRENT, GOOD))), RECORDED, {"r0"}),
    "recorded-root-without-its-signature": (robots(ref(0, (CURRENT, None)), KEPT1), RECORDED, {"r1"}),
    "a-ref-without-root-json": (robots(KEPT0, ref(1, (None, None))), RECORDED, {"r0"}),
    "own-root-pushed-but-not-recorded": (
        robots(ref(0, (AHEAD, GOOD)), ref(1, (AHEAD, GOOD))),
        RECORDED + 1,
        set(),
    ),
    "own-root-pushed-to-some-robots-only": (robots(ref(0, (AHEAD, GOOD)), KEPT1), RECORDED + 1, {"r1"}),
    "no-robot-has-a-ref": (robots(ref(0, None), ref(1, None)), RECORDED, set()),
}


@pytest.mark.parametrize(("refs", "floor", "kept"), TABLE.values(), ids=TABLE.keys())
def test_only_the_state_branch_or_a_root_the_controller_signed_sets_the_serial(
    refs: dict[str, RobotRef], floor: int, kept: set[str]
) -> None:
    """A ref stays only when it is the commit recorded for that robot; every other one is
    rewritten, and only a verified root above the recorded serial raises the next serial."""
    verdict = judge_published(refs, serial=RECORDED, root_sha256=CURRENT_SHA, verify=verify)
    assert (verdict.floor, verdict.kept) == (floor, frozenset(kept))
    assert verdict.next_serial == floor + 1


def test_a_kept_ref_is_neither_read_nor_verified() -> None:
    """A ref that is exactly the recorded commit costs no gpg call, whatever its files would say."""
    calls: list[bytes] = []

    def counting(data: bytes, signature: bytes) -> SignedRoot:
        calls.append(data)
        return verify(data, signature)

    verdict = judge_published(robots(KEPT0, KEPT1), serial=RECORDED, root_sha256=CURRENT_SHA, verify=counting)
    assert (calls, verdict.floor, verdict.ignored) == ([], RECORDED, ())


def test_a_controller_that_lost_its_state_signs_above_a_root_it_signed_before() -> None:
    verdict = judge_published(robots(ref(0, (AHEAD, GOOD))), serial=0, root_sha256=None, verify=verify)
    assert (verdict.floor, verdict.kept) == (RECORDED + 1, frozenset())


def test_ignored_roots_say_why() -> None:
    verdict = judge_published(
        robots(ref(0, (PLANTED, GOOD)), ref(1, (OLD, GOOD))),
        serial=RECORDED,
        root_sha256=CURRENT_SHA,
        verify=verify,
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

    refs = {f"r{i}": ref(i, (root(1000 + i), BAD)) for i in range(100)}
    refs["most-held-1"], refs["most-held-2"] = ref(200, (AHEAD, GOOD)), ref(201, (AHEAD, GOOD))
    verdict = judge_published(refs, serial=RECORDED, root_sha256=CURRENT_SHA, verify=counting)
    assert len(calls) == MAX_ROOTS_VERIFIED
    assert calls[0] == AHEAD  # the root most robots hold is verified first
    assert (verdict.floor, verdict.kept) == (RECORDED + 1, frozenset())
