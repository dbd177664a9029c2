"""What robots hold now, judged against the state branch: which refs stay, and the next serial.

The source of truth is the state branch, which only the controller writes, in its own commits:
``state.json``'s ``serial`` (the highest ever signed) and ``root_sha256`` (the root signed last),
and per robot :class:`~controller.state.model.PublishedDesired` in its device file: the commit the
controller last wrote on that robot's desired-state ref. Robots' refs live on the git server, and
whoever controls the server can rewrite them, so

- a robot's ref is **kept** only when it points exactly at the commit recorded for that robot (a
  commit id covers the bundle, the root, its signature and the proof: nothing of it is read);
- every other ref — deleted, planted, an older commit of the robot's replayed, another robot's
  commit, a rival controller's — is rewritten under the next serial;
- the roots on those other refs say something about the serial only when their signature verifies
  by the controller key the trust root names and their bytes parse within bounds
  (:func:`fleetcd.desired.verify_root`: canonical JSON, serial 1..2**53, this fleet), and their
  serial is above the recorded one: a root this controller pushed but could not record (killed, or
  a lost race, between the desired-state push and the state-branch push of a non-atomic transport).
  Robots may hold it, so the next serial goes above it.

Anything else — unsigned, signed by another key, of another fleet, unparsable, a number out of
range, an older root replayed, a rival's root under a serial already recorded — moves no serial,
and the ref it sits on is rewritten. So a planted serial of 10**30 neither becomes the next serial
nor survives, and a replayed old root can neither lower the serial nor freeze the robot it was
planted on; a robot that keeps its commit holds a serial at or below every later root, so its
agent's rule (serials only grow, :func:`fleetcd.desired.verify_bundle`) is unchanged.

Distinct roots are verified (one gpg call each) most-held first, at most
:data:`MAX_ROOTS_VERIFIED` of them; the rest count as foreign. A root whose sha256 is the recorded
``root_sha256`` is the controller's own at the recorded serial and needs no gpg call. Pure over a
``verify`` callable: no git, no gpg, no clock.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleetcd.desired import BundleRejected, SignedRoot

# A controller leaves at most two roots on robots' refs that it has not recorded (one it pushed but
# could not record, and the one before); more distinct roots are planted, and each costs a gpg call.
MAX_ROOTS_VERIFIED = 8


@dataclass(frozen=True)
class HeldRoot:
    """``root.json`` and ``root.json.asc`` as one robot's ref holds them (None: missing or oversized)."""

    root: bytes | None
    signature: bytes | None


@dataclass(frozen=True)
class RobotRef:
    """One robot's desired-state ref as found, beside what the state branch recorded for it."""

    target: str | None  # the commit the ref points at now (None: no ref)
    recorded: str | None  # the commit the controller recorded writing there (None: none recorded)
    held: HeldRoot | None = None  # the root files at ``target``, read only when it is not ``recorded``

    @property
    def kept(self) -> bool:
        return self.target is not None and self.target == self.recorded


@dataclass(frozen=True)
class Published:
    """The verdict on robots' refs."""

    floor: int  # the highest serial any robot may hold: the next root is signed as floor + 1
    kept: frozenset[str]  # robots whose ref is exactly the recorded commit: left alone
    ignored: tuple[str, ...] = ()  # one line per foreign root: why it moved no serial

    @property
    def next_serial(self) -> int:
        return self.floor + 1


def judge_published(
    refs: Mapping[str, RobotRef],
    *,
    serial: int,
    root_sha256: str | None,
    verify: Callable[[bytes, bytes], SignedRoot],
    kept: frozenset[str] = frozenset(),
) -> Published:
    """Judge every robot's ref (``refs``: device → :class:`RobotRef`) against the ``serial`` and
    ``root_sha256`` the state branch records; ``verify`` raises BundleRejected on a root that is not
    the controller's (:func:`fleetcd.desired.verify_root` with the trusted keys). ``kept``: robots
    whose ref the caller already found to be exactly the recorded commit (no RobotRef needed:
    at 100,000 robots nearly all of them)."""
    kept = kept | frozenset(device for device, ref in refs.items() if ref.kept)
    others = [ref.held for device, ref in refs.items() if device not in kept and ref.held is not None]
    counts = Counter((files.root, files.signature) for files in others)
    floor, ignored = serial, []
    verified = 0
    for (root, signature), _ in counts.most_common():
        if root is None or signature is None:
            continue  # a ref without its root: rewritten, nothing to judge
        digest = hashlib.sha256(root).hexdigest()
        if digest == root_sha256:
            continue  # the root signed last, under the recorded serial: ours, and not above it
        if verified == MAX_ROOTS_VERIFIED:
            ignored.append(f"root sha256 {digest}: not verified, over {MAX_ROOTS_VERIFIED} distinct roots")
            continue
        verified += 1
        try:
            parsed = verify(root, signature)
        except BundleRejected as exc:
            ignored.append(f"root sha256 {digest}: {exc}")
            continue
        if parsed.serial > serial:
            floor = max(floor, parsed.serial)
        else:
            ignored.append(
                f"root sha256 {digest}: serial {parsed.serial} is not above the recorded serial {serial}"
            )
    return Published(floor, kept, tuple(ignored))
