"""Agent step 2 (verify): the fetched desired state against the trust anchors pinned in ``agent.yaml``.

:func:`verify_desired` runs the shared verifier (:func:`fleetcd.desired.verify_bundle`: controller
signature on the root, inclusion proof, device, serial, expiry, release signatures and approvals
against the robot's own thresholds) with real gpg, in a throwaway keyring built only from
``trust.keys_dir/*.asc``. It raises :class:`~fleetcd.desired.BundleRejected` /
:class:`~fleetcd.desired.BundleExpired` unchanged; on success it returns the new
:class:`TrustState`, which the caller saves with :func:`save_trust_state` once it has accepted the
bundle, never before.

The trust state is what survives a reboot so that attacks stay refused across one:

* ``last_serial`` / ``last_bundle_sha256`` — an older validly signed bundle (rollback attack) or the
  same serial with other bytes is refused.
* ``time_floor`` — the newest instant the controller has signed that this robot verified: the
  accepted roots' ``issued_at``, and nothing else. Expiry is judged at ``max(now, time_floor)``. It
  never rises to a clock reading or to a bundle's expiry: a clock one year ahead for one cycle finds
  the bundle expired, and once the clock is corrected the same bundle is fresh again (a floor raised
  to the expiry would keep the robot stale, rollbacks included, until the controller's next root).
* ``expired_seen`` — the signed expiry of the last bundle this robot's clock found past. It counts
  only while the clock reads *earlier than* ``time_floor``, i.e. before a time the controller signed
  (:func:`judging_floor`): such a clock is known wrong (an RTC reset to 1970), so it cannot revive a
  bundle it found expired before. A clock reading at or after ``time_floor`` is believed, which is
  what a corrected clock looks like; only a reading that contradicts a signature is overruled.
* ``last_commit`` / ``expires_at`` — let :func:`check_unchanged` skip the gpg work when a poll
  brought the very commit already verified, while still noticing that it expired.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime

from agent.state.atomic import read_model, write_atomic
from fleetcd.desired import BundleExpired, TrustAnchors, VerifiedBundle, verify_bundle
from fleetcd.desired.bundle import ROOT_FILE
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import FrozenModel, Stage
from fleetcd.trust.gpg import Keyring
from fleetcd.wire import DesiredFiles

TRUST_FORMAT: Literal[1] = 1
TRUST_FILE_MODE = 0o600
KEY_SUFFIX = ".asc"


class TrustState(FrozenModel):
    """What the robot remembers between verifications (see the module docstring)."""

    format: Literal[1] = TRUST_FORMAT
    last_serial: int | None = None
    last_bundle_sha256: str | None = None
    time_floor: AwareDatetime | None = None
    expired_seen: AwareDatetime | None = None
    last_commit: str | None = None
    expires_at: AwareDatetime | None = None


def anchors_of(config: AgentConfig) -> TrustAnchors:
    """The pinned anchors of ``agent.yaml``; the desired state never contributes a key or a threshold."""
    trust = config.trust
    return TrustAnchors(
        controller=frozenset(trust.controller),
        release_signers=frozenset(trust.release_signers),
        release_threshold=trust.release_threshold,
        approvers=frozenset(trust.approvers),
        approvals_required={Stage(stage): count for stage, count in trust.approvals_required.items()},
        fleet=trust.fleet,
    )


def load_keyring(config: AgentConfig) -> Keyring:
    """A throwaway keyring of ``trust.keys_dir/*.asc``; every pinned fingerprint must be in it."""
    keys_dir = Path(config.trust.keys_dir)
    files = sorted(keys_dir.glob(f"*{KEY_SUFFIX}")) if keys_dir.is_dir() else []
    if not files:
        raise SetupError(f"trust.keys_dir: no *{KEY_SUFFIX} public keys in {keys_dir} (agent.yaml)")
    try:
        keyring = Keyring.from_armored({str(path): path.read_bytes() for path in files})
    except InvalidContent as exc:
        raise SetupError(f"trust.keys_dir: unusable key file: {exc}") from exc
    try:
        present = keyring.fingerprints()
        trust = config.trust
        pinned = {*trust.controller, *trust.release_signers, *trust.approvers}
        missing = sorted(pinned - present)
        if missing:
            raise SetupError(
                f"trust: pinned fingerprints with no public key in {keys_dir}: {', '.join(missing)}"
            )
    except BaseException:
        keyring.close()
        raise
    return keyring


def verify_desired(
    config: AgentConfig, files: DesiredFiles, state: TrustState, now: datetime
) -> tuple[VerifiedBundle, TrustState]:
    """Verify ``files`` for this robot; the returned state is to be saved once the bundle is accepted."""
    with load_keyring(config) as keyring:
        verified = verify_bundle(
            config.device,
            files.bundle,
            files.root,
            files.root_signature,
            files.proof,
            anchors_of(config),
            state.last_serial,
            now,
            keyring,
            last_bundle_sha256=state.last_bundle_sha256,
            time_floor=judging_floor(state, now),
        )
    # Signed instants only: the clock reading, however plausible, never lifts the floor.
    issued = verified.root.issued_at
    new_state = TrustState(
        last_serial=verified.root.serial,
        last_bundle_sha256=verified.bundle_sha256,
        time_floor=issued if state.time_floor is None else max(state.time_floor, issued),
        last_commit=files.commit,
        expires_at=min(verified.root.expires_at, verified.bundle.expires_at),
    )
    return verified, new_state


def judging_floor(state: TrustState, now: datetime) -> datetime | None:
    """The instant expiry is judged no earlier than, for a clock reading ``now``.

    ``time_floor`` while the clock reads at or after it; when it reads earlier, the clock contradicts
    a signature and is wrong, so a bundle found expired before stays expired (``expired_seen``).
    """
    floor = state.time_floor
    if floor is None or now >= floor or state.expired_seen is None:
        return floor
    return max(floor, state.expired_seen)


def record_expiry(state: TrustState, error: BundleExpired) -> TrustState:
    """The state after a bundle was found expired: remember its (signed) expiry, leave the floor."""
    seen = error.expires_at if state.expired_seen is None else max(state.expired_seen, error.expires_at)
    return state.model_copy(update={"expired_seen": seen})


def record_fresh(state: TrustState) -> TrustState:
    """The state after the clock found the accepted bundle fresh: an earlier expired verdict is void."""
    return state.model_copy(update={"expired_seen": None})


def check_unchanged(state: TrustState, files: DesiredFiles, now: datetime) -> bool:
    """True when ``files`` is the commit last accepted and still valid (no gpg needed to act on it).

    Raises :class:`BundleExpired` when it is that commit but its life is over (judged at
    ``max(now, judging_floor(state, now))``); False when it is another commit, which must go through
    :func:`verify_desired`.
    """
    if state.last_commit != files.commit or state.expires_at is None:
        return False
    floor = judging_floor(state, now)
    judged_at = now if floor is None else max(now, floor)
    if judged_at >= state.expires_at:
        message = (
            f"serial {state.last_serial} expired at {state.expires_at.isoformat()} "
            f"(judged at {judged_at.isoformat()})"
        )
        raise BundleExpired(message, expires_at=state.expires_at, judged_at=judged_at, file=ROOT_FILE)
    return True


def load_trust_state(path: Path) -> TrustState:
    """The saved state; a fresh one on first boot; :class:`CorruptState` when it does not parse."""
    return read_model(path, TrustState, "a trust state") or TrustState()


def save_trust_state(path: Path, state: TrustState) -> None:
    """Write the state atomically: a power cut leaves the old state or the new one."""
    write_atomic(path, state.model_dump_json().encode("utf-8"), mode=TRUST_FILE_MODE)
