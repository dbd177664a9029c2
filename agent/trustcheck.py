"""Agent step 2 (verify): the fetched desired state against the root of trust pinned in ``agent.yaml``.

:func:`verify_desired` first walks the trust-root chain the commit carries (``trust.json``,
:func:`fleetcd.desired.verify_trust`) from the version this robot holds — on first boot from the
root keys ``agent.yaml`` pins — and takes the controller, release-signer and approver keys and
thresholds from the newest version that verified; then it runs the shared verifier
(:func:`fleetcd.desired.verify_bundle`: controller signature on the root, inclusion proof, device,
serial, the bundle naming that trust version, expiry, release signatures and approvals) with real
gpg, in a throwaway keyring of ``trust.keys_dir/*.asc`` and the commit's public keys (a key counts
only for a fingerprint a verified version lists). An expired trust root is judged like an expired
bundle: stale, keep running, install nothing new. It raises :class:`~fleetcd.desired.BundleRejected` /
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
* ``trust_version`` / ``trust_root`` — the newest trust-root version verified and its exact bytes:
  the chain is walked from here next time, and an older version (a replay bringing back revoked
  keys) is refused. Saved in the same atomic write as the serial, so a power cut leaves both old or
  both new. A ``trust_version`` without ``trust_root`` (rebuilt from the last report after a disk
  fault, :mod:`agent.converge.repair`) is a floor: the chain is walked from the pin and must reach it.
* ``last_commit`` / ``expires_at`` — let :func:`check_unchanged` skip the gpg work when a poll
  brought the very commit already verified, while still noticing that it expired.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime

from agent.state.atomic import read_model, write_atomic
from fleetcd.desired import BundleExpired, BundleRejected, TrustAnchors, VerifiedBundle, verify_bundle
from fleetcd.desired.bundle import ROOT_FILE
from fleetcd.desired.chain import TRUST_FILE, parse_trust_file
from fleetcd.desired.verify import verify_trust
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import FrozenModel
from fleetcd.models.fleet import KeyRef
from fleetcd.models.trustroot import RootKeys
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.rootchain import Pin, TrustedRoot, parse_trusted
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
    trust_version: int | None = None
    trust_root: str | None = None  # base64 of the exact bytes of trust/root/<trust_version>.yaml


def pin_of(config: AgentConfig) -> Pin:
    """The root of trust ``agent.yaml`` pins (its keys and threshold of one trust-root version)."""
    root = config.trust.root
    keys = RootKeys(threshold=root.threshold, keys=[KeyRef(fingerprint=f, name=f) for f in root.keys])
    return Pin(root.version, keys, fleet=config.trust.fleet)


def held_root(state: TrustState) -> TrustedRoot | None:
    """The trust-root version this robot verified last, parsed again (no gpg: it verified then)."""
    if state.trust_root is None:
        return None
    try:
        return parse_trusted(base64.b64decode(state.trust_root))
    except (InvalidContent, ValueError) as exc:
        raise SetupError(f"trust state: the held trust root does not parse ({exc}); re-provision") from exc


def load_keyring(config: AgentConfig, extra: Mapping[str, bytes] | None = None) -> Keyring:
    """A throwaway keyring of ``trust.keys_dir/*.asc`` (every pinned root key must be there) plus the
    public keys a desired-state commit carries (``extra``)."""
    keys_dir = Path(config.trust.keys_dir)
    files = sorted(keys_dir.glob(f"*{KEY_SUFFIX}")) if keys_dir.is_dir() else []
    if not files:
        raise SetupError(f"trust.keys_dir: no *{KEY_SUFFIX} public keys in {keys_dir} (agent.yaml)")
    pinned = {str(path): path.read_bytes() for path in files}
    carried = {f"desired:{path}": data for path, data in (extra or {}).items()}
    try:
        keyring = Keyring.from_armored({**pinned, **carried})
    except InvalidContent:
        # A broken key file in the commit must not block the pinned keys: keep those that import.
        try:
            keyring = Keyring.from_armored({**pinned, **_usable(carried)})
        except InvalidContent as exc:
            raise SetupError(f"trust.keys_dir: unusable key file: {exc}") from exc
    try:
        missing = sorted(set(config.trust.root.keys) - keyring.fingerprints())
        if missing:
            raise SetupError(
                f"trust.root.keys: pinned fingerprints with no public key in {keys_dir}: {', '.join(missing)}"
            )
    except BaseException:
        keyring.close()
        raise
    return keyring


def _usable(keys: Mapping[str, bytes]) -> dict[str, bytes]:
    """The commit's key files that import on their own: a broken one never blocks the pinned keys."""
    good = {}
    for path, data in keys.items():
        try:
            Keyring.from_armored({path: data}).close()
        except InvalidContent:
            continue
        good[path] = data
    return good


def verify_desired(
    config: AgentConfig, files: DesiredFiles, state: TrustState, now: datetime
) -> tuple[VerifiedBundle, TrustState]:
    """Verify ``files`` for this robot; the returned state is to be saved once the bundle is accepted."""
    chain = parse_trust_file(files.trust)
    with load_keyring(config, chain.keys) as keyring:
        trusted = verify_trust(chain, pin_of(config), held_root(state), keyring)
        if state.trust_version is not None and trusted.version < state.trust_version:
            # A floor without the bytes (a trust state rebuilt from the last report): walked from
            # the pin, the chain must still reach the version this robot last said it held.
            message = (
                f"reaches version {trusted.version}, older than version {state.trust_version} this "
                "robot holds (replay)"
            )
            raise BundleRejected(Reason.TRUST_ROOT_ROLLBACK, message, file=TRUST_FILE, field="versions")
        floor = judging_floor(state, now)
        judged_at = now if floor is None else max(now, floor)
        expires = trusted.model.expires
        if judged_at >= expires:
            message = (
                f"trust root version {trusted.version} expired at {expires.isoformat()} "
                f"(judged at {judged_at.isoformat()}): installing nothing new until a newer version"
            )
            raise BundleExpired(message, expires_at=expires, judged_at=judged_at, file=TRUST_FILE)
        verified = verify_bundle(
            config.device,
            files.bundle,
            files.root,
            files.root_signature,
            files.proof,
            TrustAnchors.from_trust_root(trusted.model),
            state.last_serial,
            now,
            keyring,
            last_bundle_sha256=state.last_bundle_sha256,
            time_floor=floor,
            trust_version=trusted.version,
        )
    # Signed instants only: the clock reading, however plausible, never lifts the floor.
    issued = verified.root.issued_at
    new_state = TrustState(
        last_serial=verified.root.serial,
        last_bundle_sha256=verified.bundle_sha256,
        time_floor=issued if state.time_floor is None else max(state.time_floor, issued),
        last_commit=files.commit,
        expires_at=min(verified.root.expires_at, verified.bundle.expires_at, expires),
        trust_version=trusted.version,
        trust_root=base64.b64encode(trusted.raw).decode("ascii"),
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
