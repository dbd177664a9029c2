"""Threshold decisions over detached signatures: release signatures and rollout approvals (pure).

Step 2 of a reconcile (and the agent's verify step) hands this module raw bytes: the signed file,
the ``.asc`` files next to it, the trusted keys from the trust root (``trust/root/<N>.yaml``) and
a :class:`Verifier` (the real one is :class:`fleetcd.trust.gpg.Keyring`). It returns a
:class:`ThresholdStatus`; it never reads files, parses YAML or asks a clock.

A signature counts only when it is valid, its primary fingerprint is listed in the trust root for
this role, and that fingerprint is the one its file is named after; each key counts once. Problems
with single files are warnings (a stale approval or a former signer's signature is harmless by
itself); falling short of the threshold is the error, and its message names what did verify and
what went wrong with the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from fleetcd.errors import Diagnostic
from fleetcd.models.base import FINGERPRINT_PATTERN
from fleetcd.models.fleet import KeyRef, SignerSet
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import VerifyResult

SIGNATURE_SUFFIX = ".asc"


class Verifier(Protocol):
    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult: ...


@dataclass(frozen=True)
class SignatureCheck:
    file: str  # the .asc path
    claimed: str  # the fingerprint the file is named after
    result: VerifyResult
    counted: bool = False  # towards the threshold


@dataclass(frozen=True)
class ThresholdStatus:
    required: int
    verified: tuple[str, ...]  # distinct trusted fingerprints that verified, in file order
    checks: tuple[SignatureCheck, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def met(self) -> bool:
        return len(self.verified) >= self.required


@dataclass(frozen=True)
class _Role:
    noun: str  # "release signatures" / "approvals"
    member: str  # "release signer" / "approver"
    short_reason: Reason
    listed_in: str = "the trust root"


_RELEASE = _Role("release signatures", "release signer", Reason.BELOW_THRESHOLD)
_APPROVAL = _Role("approvals", "approver", Reason.APPROVAL_MISSING)


def check_release(
    release_path: str,
    release_bytes: bytes,
    signatures: Mapping[str, bytes],
    signers: SignerSet,
    verifier: Verifier,
) -> ThresholdStatus:
    """Do ``signers.threshold`` distinct release signers vouch for exactly ``release_bytes``?"""
    trusted = {key.fingerprint: key.name for key in signers.keys}
    return _check(release_path, release_bytes, signatures, trusted, signers.threshold, _RELEASE, verifier)


def check_approvals(
    rollout_path: str,
    payload: bytes,
    approvals: Mapping[str, bytes],
    approvers: Sequence[KeyRef],
    required: int,
    verifier: Verifier,
) -> ThresholdStatus:
    """Did ``required`` distinct approvers sign ``payload`` (see :mod:`fleetcd.trust.approval`)?"""
    trusted = {key.fingerprint: key.name for key in approvers}
    return _check(rollout_path, payload, approvals, trusted, required, _APPROVAL, verifier)


def check_trust_root(
    path: str,
    raw: bytes,
    signatures: Mapping[str, bytes],
    root_keys: Sequence[KeyRef],
    threshold: int,
    verifier: Verifier,
    *,
    by: str,
) -> ThresholdStatus:
    """Do ``threshold`` distinct root keys of ``by`` (e.g. "version 3") vouch for exactly ``raw``?"""
    role = _Role("root signatures", "root key", Reason.BELOW_THRESHOLD, by)
    trusted = {key.fingerprint: key.name for key in root_keys}
    return _check(path, raw, signatures, trusted, threshold, role, verifier)


def _claimed(path: str) -> str | None:
    name = PurePosixPath(path).name
    if not name.endswith(SIGNATURE_SUFFIX):
        return None
    stem = name[: -len(SIGNATURE_SUFFIX)]
    return stem if re.fullmatch(FINGERPRINT_PATTERN, stem) else None


def _short(detail: str) -> str:
    return detail.split(" (gpg: ", 1)[0]


def _judge(
    claimed: str | None, result: VerifyResult, trusted: Mapping[str, str], counted: list[str], role: _Role
) -> tuple[Reason, str] | None:
    """Why this signature does not count, or None when it does."""
    signer = result.fingerprint
    if claimed is None:
        return Reason.NAME_MISMATCH, "file name is not <40 upper-case hex fingerprint>.asc"
    if not result.valid or signer is None:
        return result.reason or Reason.SIGNATURE_INVALID, result.detail
    if signer != claimed:
        return (
            Reason.NAME_MISMATCH,
            f"made by {trusted.get(signer, signer)}, not by the key it is named after",
        )
    if signer not in trusted:
        return Reason.SIGNATURE_UNTRUSTED, f"valid, but {signer} is not a {role.member} in {role.listed_in}"
    if signer in counted:
        return Reason.DUPLICATE_ID, "another signature by the same key; each key counts once"
    return None


def _check(
    subject: str,
    data: bytes,
    files: Mapping[str, bytes],
    trusted: Mapping[str, str],
    required: int,
    role: _Role,
    verifier: Verifier,
) -> ThresholdStatus:
    verified: list[str] = []
    checks: list[SignatureCheck] = []
    diagnostics: list[Diagnostic] = []
    problems: list[str] = []  # "who: what", repeated in the threshold message
    for path in sorted(files):
        claimed = _claimed(path)
        result = verifier.verify_detached(data, files[path])
        verdict = _judge(claimed, result, trusted, verified, role)
        checks.append(SignatureCheck(path, claimed or "", result, counted=verdict is None))
        if verdict is None:
            verified.append(claimed or "")
            continue
        reason, problem = verdict
        diagnostics.append(Diagnostic(path, None, None, problem, reason, severity="warning"))
        label = trusted.get(claimed, claimed) if claimed else PurePosixPath(path).name
        problems.append(f"{label}: {_short(problem)}")

    if len(verified) < required:
        names = ", ".join(trusted.get(f, f) for f in verified) or "none"
        message = f"{len(verified)} of {required} required {role.noun} verified ({names})"
        short_reason = role.short_reason
        if not files and role.noun != _APPROVAL.noun:
            short_reason = Reason.SIGNATURE_MISSING
            message += f"; no signature files in {subject}.d/"
        message += "".join(f"; {problem}" for problem in problems)
        diagnostics.append(Diagnostic(subject, None, None, message, short_reason))
    return ThresholdStatus(required, tuple(verified), tuple(checks), tuple(diagnostics))
