"""Walking the trust-root chain (TUF root rotation): version N+1 from a trusted version N (pure).

Shared by the controller (``fleetcd validate`` and the reconcile's ``load`` step check the chain on
``main`` from version 1) and the robot (it walks from the version it holds, or from the root keys
pinned in ``agent.yaml``, over the chain its desired-state commit carries). Only raw bytes go in;
nothing is parsed before the signatures of the version that vouches for it verified:

1. a threshold of the *trusted* version's root keys signed the exact bytes of the next one;
2. then it is parsed (strict YAML, the model) and must say version N+1 and the same fleet;
3. a threshold of its *own* root keys signed it too (a new root key set must prove it holds its
   keys, so a typo in a fingerprint cannot lock the fleet out of its next rotation).

A failed check raises :class:`TrustChainRejected` naming the file and field. Expiry is not judged
here: the caller knows the clock (the controller stalls, a robot keeps running and installs
nothing new). Pure over the :class:`~fleetcd.trust.policy.Verifier` protocol: no files, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.layout import trust_root_path
from fleetcd.loading.documents import load_document
from fleetcd.models.fleet import KeyRef
from fleetcd.models.trustroot import RootKeys, TrustRoot
from fleetcd.reasons import Reason
from fleetcd.trust.policy import ThresholdStatus, Verifier, check_trust_root

MAX_CHAIN_VERSIONS = 64  # versions one desired-state commit carries; older robots are re-provisioned
MAX_ROOT_DOCUMENT_BYTES = 64 * 1024
MAX_ROOT_SIGNATURES = 32  # .asc files per version; thresholds are at most 16


class TrustChainRejected(InvalidContent):
    """A trust-root version failed a check: it does not count, nor does anything after it."""

    def __init__(self, reason: Reason, message: str, *, file: str, field: str | None = None) -> None:
        self.reason = reason
        super().__init__([Diagnostic(file, None, field, message, reason)])


@dataclass(frozen=True)
class RootVersion:
    """One version as found: its exact bytes and its detached signatures (path -> armored)."""

    version: int
    raw: bytes
    signatures: Mapping[str, bytes]

    @property
    def path(self) -> str:
        return trust_root_path(self.version)


@dataclass(frozen=True)
class TrustedRoot:
    """A verified trust-root version and the sha256 of its exact bytes."""

    model: TrustRoot
    raw: bytes

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Pin:
    """What a robot is provisioned with: the root keys of trust-root ``version`` and their threshold."""

    version: int
    root: RootKeys
    fleet: str | None = None


def parse_trusted(raw: bytes, *, schema: bool = False) -> TrustedRoot:
    """A version verified before (the robot's held copy): parsed again, no signatures checked."""
    return TrustedRoot(_parse(raw, "trust root", schema=schema), raw)


def verify_first(
    pin: Pin, candidate: RootVersion, verifier: Verifier, *, schema: bool = False
) -> TrustedRoot:
    """Version ``pin.version`` itself: signed by the pinned keys, and its root keys are the pinned ones."""
    if candidate.version != pin.version:
        message = f"expected the pinned version {pin.version}, found version {candidate.version}"
        raise TrustChainRejected(Reason.TRUST_ROOT_VERSION, message, file=candidate.path, field="version")
    _require(candidate, pin.root.keys, pin.root.threshold, verifier, by="the pinned root keys")
    model = _parse(candidate.raw, candidate.path, schema=schema)
    _check_identity(model, candidate, pin.version, pin.fleet)
    if model.root.fingerprints != pin.root.fingerprints or model.root.threshold != pin.root.threshold:
        message = (
            f"version {pin.version} names root keys {sorted(model.root.fingerprints)} (threshold "
            f"{model.root.threshold}); this robot pinned {sorted(pin.root.fingerprints)} "
            f"(threshold {pin.root.threshold})"
        )
        raise TrustChainRejected(Reason.SIGNATURE_UNTRUSTED, message, file=candidate.path, field="root")
    return TrustedRoot(model, candidate.raw)


def verify_self_signed(candidate: RootVersion, verifier: Verifier, *, schema: bool = True) -> TrustedRoot:
    """Version 1 of a repository (the controller's start): a threshold of its own root keys signed it."""
    model = _parse(candidate.raw, candidate.path, schema=schema)
    _check_identity(model, candidate, 1, None)
    _require(candidate, model.root.keys, model.root.threshold, verifier, by="version 1")
    return TrustedRoot(model, candidate.raw)


def verify_next(
    trusted: TrustedRoot, candidate: RootVersion, verifier: Verifier, *, schema: bool = False
) -> TrustedRoot:
    """Version N+1 after the trusted version N (the module docstring's three checks)."""
    current = trusted.model
    expected = current.version + 1
    if candidate.version != expected:
        message = f"version {candidate.version} cannot follow version {current.version}; expected {expected}"
        raise TrustChainRejected(Reason.TRUST_ROOT_VERSION, message, file=candidate.path, field="version")
    by = f"version {current.version}"
    _require(candidate, current.root.keys, current.root.threshold, verifier, by=by)
    model = _parse(candidate.raw, candidate.path, schema=schema)
    _check_identity(model, candidate, expected, current.fleet)
    _require(candidate, model.root.keys, model.root.threshold, verifier, by=f"version {expected} itself")
    return TrustedRoot(model, candidate.raw)


def walk(
    start: TrustedRoot, chain: Sequence[RootVersion], verifier: Verifier, *, schema: bool = False
) -> TrustedRoot:
    """The newest version reachable from ``start`` over ``chain``; versions up to ``start`` are skipped.

    Every version after ``start`` must verify, in order and without gaps: one that does not raises
    (nothing after a broken link counts, and a half-walked chain is never reported as the newest).
    """
    if len(chain) > MAX_CHAIN_VERSIONS:
        message = f"{len(chain)} trust-root versions; at most {MAX_CHAIN_VERSIONS} travel together"
        raise TrustChainRejected(Reason.TOO_LARGE, message, file=chain[-1].path)
    current = start
    for candidate in sorted(chain, key=lambda c: c.version):
        if candidate.version <= current.version:
            continue
        current = verify_next(current, candidate, verifier, schema=schema)
    return current


def _require(
    candidate: RootVersion, keys: Sequence[KeyRef], threshold: int, verifier: Verifier, *, by: str
) -> ThresholdStatus:
    _check_caps(candidate)
    status = check_trust_root(
        candidate.path, candidate.raw, candidate.signatures, keys, threshold, verifier, by=by
    )
    if not status.met:
        errors = [d for d in status.diagnostics if d.severity == "error"]
        detail = errors[-1].message if errors else f"{len(status.verified)} of {threshold} verified"
        reason = errors[-1].reason if errors else Reason.BELOW_THRESHOLD
        message = f"root keys of {by}: {detail}"
        raise TrustChainRejected(reason, message, file=candidate.path, field="signatures")
    return status


def _check_caps(candidate: RootVersion) -> None:
    if len(candidate.raw) > MAX_ROOT_DOCUMENT_BYTES:
        message = f"{len(candidate.raw)} bytes; at most {MAX_ROOT_DOCUMENT_BYTES}"
        raise TrustChainRejected(Reason.TOO_LARGE, message, file=candidate.path)
    if len(candidate.signatures) > MAX_ROOT_SIGNATURES:
        message = f"{len(candidate.signatures)} signature files; at most {MAX_ROOT_SIGNATURES}"
        raise TrustChainRejected(Reason.TOO_LARGE, message, file=candidate.path, field="signatures")


def _parse(raw: bytes, path: str, *, schema: bool) -> TrustRoot:
    try:
        return load_document(path, raw, TrustRoot, schema=schema).model
    except InvalidContent as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        message = first.message if first else str(exc)
        field = first.field if first else None
        reason = first.reason if first else Reason.INVALID
        raise TrustChainRejected(reason, message, file=path, field=field) from None


def _check_identity(model: TrustRoot, candidate: RootVersion, version: int, fleet: str | None) -> None:
    if model.version != version or candidate.version != version:
        message = f"the file says version {model.version}; expected {version}"
        raise TrustChainRejected(Reason.TRUST_ROOT_VERSION, message, file=candidate.path, field="version")
    if fleet is not None and model.fleet != fleet:
        message = f"version {version} is for fleet {model.fleet!r}, not {fleet!r}"
        raise TrustChainRejected(Reason.WRONG_FLEET, message, file=candidate.path, field="fleet")
