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
* ``time_floor`` — the latest instant this robot has trustworthily seen: the newest accepted root's
  ``issued_at``, the wall clock at each acceptance, and the expiry of a bundle found expired
  (:func:`record_expiry`). Expiry is judged at ``max(now, time_floor)``, so resetting the clock to
  1970 cannot make an expired bundle look fresh. Only signed instants and clock readings taken while
  a signed bundle was still valid raise it, so a clock running far ahead cannot push it past the
  next bundle's expiry and lock the robot out.
* ``last_commit`` / ``expires_at`` — let :func:`check_unchanged` skip the gpg work when a poll
  brought the very commit already verified, while still noticing that it expired.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime

from agent.state.atomic import read_model, write_atomic
from agent.sync.desired import DesiredFiles
from fleetcd.desired import BundleExpired, TrustAnchors, VerifiedBundle, verify_bundle
from fleetcd.desired.bundle import ROOT_FILE
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import FrozenModel, Stage
from fleetcd.trust.gpg import Keyring

TRUST_FORMAT: Literal[1] = 1
TRUST_FILE_MODE = 0o600
KEY_SUFFIX = ".asc"


class TrustState(FrozenModel):
    """What the robot remembers between verifications (see the module docstring)."""

    format: Literal[1] = TRUST_FORMAT
    last_serial: int | None = None
    last_bundle_sha256: str | None = None
    time_floor: AwareDatetime | None = None
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
            time_floor=state.time_floor,
        )
    # Accepted means now < expiry, so the clock reading cannot lift the floor past this bundle's life.
    floor = max(
        instant for instant in (state.time_floor, verified.root.issued_at, now) if instant is not None
    )
    new_state = TrustState(
        last_serial=verified.root.serial,
        last_bundle_sha256=verified.bundle_sha256,
        time_floor=floor,
        last_commit=files.commit,
        expires_at=min(verified.root.expires_at, verified.bundle.expires_at),
    )
    return verified, new_state


def record_expiry(state: TrustState, error: BundleExpired) -> TrustState:
    """The state after a bundle was found expired: the floor reaches at least its (signed) expiry."""
    floor = error.expires_at if state.time_floor is None else max(state.time_floor, error.expires_at)
    return state.model_copy(update={"time_floor": floor})


def check_unchanged(state: TrustState, files: DesiredFiles, now: datetime) -> bool:
    """True when ``files`` is the commit last accepted and still valid (no gpg needed to act on it).

    Raises :class:`BundleExpired` when it is that commit but its life is over (judged at
    ``max(now, time_floor)``); False when it is another commit, which must go through
    :func:`verify_desired`.
    """
    if state.last_commit != files.commit or state.expires_at is None:
        return False
    judged_at = now if state.time_floor is None else max(now, state.time_floor)
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
