"""What robots hold now, judged against the state branch: the serial the next root is signed under.

The source of truth for the signing serial is ``state.json`` on the state branch (``serial`` and
``root_sha256``), which only the controller writes, in its own commits. Robots' desired-state refs
live on the git server, and whoever controls the server can rewrite them, so a ``root.json`` found
there says something about the serial only when

- its sha256 is the ``root_sha256`` that ``state.json`` records: the root published last; or
- its signature verifies by the controller key ``fleet.yaml`` names and its bytes parse within
  bounds (:func:`fleetcd.desired.verify_root`: canonical JSON, serial 1..2**53, this fleet), and
  its serial is above the recorded one: a root this controller pushed but could not record (killed,
  or a lost race, between the desired-state push and the state-branch push of a non-atomic
  transport). Robots may hold it, so the next serial goes above it.

Anything else — unsigned, signed by another key, of another fleet, unparsable, a number out of
range, an older root replayed, a rival's root under a serial already recorded — moves no serial
and is replaced: the published state is kept only when every robot with a ref holds one and the
same root, under one and the same signature, that passed. So a planted serial of 10**30 neither
becomes the next serial nor survives, and a replayed old root can neither lower the serial nor
freeze the robot it was planted on.

Distinct roots are verified (one gpg call each) most-held first, at most
:data:`MAX_ROOTS_VERIFIED` of them; the rest count as foreign. Pure over a ``verify`` callable: no
git, no gpg, no clock.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleetcd.desired import BundleRejected, SignedRoot

# A controller leaves at most two roots on robots' refs (the recorded one and one it pushed but
# could not record); more distinct roots are planted, and verifying each would cost a gpg call.
MAX_ROOTS_VERIFIED = 8


@dataclass(frozen=True)
class HeldRoot:
    """``root.json`` and ``root.json.asc`` as one robot's ref holds them (None: missing or oversized)."""

    root: bytes | None
    signature: bytes | None


@dataclass(frozen=True)
class Published:
    """The verdict on robots' roots."""

    floor: int  # the highest serial any robot may hold: the next root is signed as floor + 1
    kept: bytes | None  # the root every robot with a ref holds, when it may stay; None: sign anew
    kept_serial: int  # the serial ``kept`` was signed under (0 when nothing is kept)
    ignored: tuple[str, ...] = ()  # one line per foreign root: why it moved no serial

    @property
    def next_serial(self) -> int:
        return self.floor + 1


def judge_published(
    held: Mapping[str, HeldRoot | None],
    *,
    serial: int,
    root_sha256: str | None,
    verify: Callable[[bytes, bytes], SignedRoot],
) -> Published:
    """Judge every robot's root (``held``: device → its files, None without a ref) against the
    ``serial`` and ``root_sha256`` of ``state.json``; ``verify`` raises BundleRejected on a root that
    is not the controller's (:func:`fleetcd.desired.verify_root` with the trusted keys)."""
    present = [files for files in held.values() if files is not None]
    counts = Counter((f.root, f.signature) for f in present)
    floor, ahead, ignored = serial, set(), []
    verified = 0
    for (root, signature), _ in counts.most_common():
        if root is None or signature is None:
            continue  # a ref without its root: that robot is rewritten
        digest = hashlib.sha256(root).hexdigest()
        if digest == root_sha256:
            continue
        if verified == MAX_ROOTS_VERIFIED:
            ignored.append(f"root sha256 {digest}: not verified, over {MAX_ROOTS_VERIFIED} distinct roots")
            continue
        verified += 1
        try:
            parsed = verify(root, signature)
        except BundleRejected as exc:
            ignored.append(f"root sha256 {digest}: {exc}")
            continue
        if parsed.serial > serial or (parsed.serial == serial and root_sha256 is None):
            floor = max(floor, parsed.serial)
            ahead.add((root, parsed.serial))
        else:
            ignored.append(
                f"root sha256 {digest}: serial {parsed.serial} is not above the recorded serial {serial}"
            )
    return Published(floor, *_kept(counts, root_sha256, serial, ahead, floor), tuple(ignored))


def _kept(
    counts: Counter[tuple[bytes | None, bytes | None]],
    root_sha256: str | None,
    serial: int,
    ahead: set[tuple[bytes, int]],
    floor: int,
) -> tuple[bytes | None, int]:
    """The root and signature all robots with a ref share, when it is the recorded root or the
    verified newest one; anything else (two roots, one root under two signatures) is rewritten."""
    if len(counts) != 1:
        return None, 0
    ((root, signature),) = counts
    if root is None or signature is None:
        return None, 0
    if hashlib.sha256(root).hexdigest() == root_sha256:
        return root, serial
    if (root, floor) in ahead:
        return root, floor
    return None, 0
