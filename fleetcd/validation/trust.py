"""Signatures and approvals: the trust-root chain, release thresholds and per-stage rollout approvals.

The keyring is built from the repository's ``keys/*.asc`` only (through the keyring factory, the
one gpg-touching dependency of validation); which fingerprints count is decided by
:mod:`fleetcd.trust.policy` from the newest trust-root version whose chain verified
(``trust/root/<N>.yaml``, :mod:`fleetcd.trust.rootchain`). Every release must carry its signers'
threshold; every live (not aborted) rollout needs ``approvals.required(stage)`` of the trust root distinct
approvers over :func:`fleetcd.trust.approval.approval_payload`, where the stage is the highest one
it touches (:func:`fleetcd.planning.selection.rollout_stage`); withdrawals are in force only with
their approvals (:mod:`fleetcd.validation.withdrawals`). gpg is started only when there is
something to verify.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.layout import TRUST_ROOT_DIR, classify, trust_root_path
from fleetcd.loading.fleetspec import FleetSpec, TrustRootEntry
from fleetcd.models import TrustRoot
from fleetcd.planning.selection import rollout_stage
from fleetcd.reasons import Reason
from fleetcd.trust.approval import approval_payload, legacy_approval_payload
from fleetcd.trust.gpg import VerifyResult
from fleetcd.trust.policy import ThresholdStatus, Verifier, check_approvals, check_release
from fleetcd.trust.rootchain import (
    MAX_CHAIN_VERSIONS,
    RootVersion,
    TrustChainRejected,
    TrustedRoot,
    verify_next,
    verify_self_signed,
)
from fleetcd.validation import withdrawals
from fleetcd.validation.context import Context, at

EXPIRY_WARNING_DAYS = 30  # `fleetcd validate` warns this long before the trust root in force expires


class VerifyingKeyring(Protocol):
    """What validation needs from a keyring (:class:`fleetcd.trust.gpg.Keyring` is the real one)."""

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult: ...

    def close(self) -> None: ...


KeyringFactory = Callable[[Mapping[str, bytes]], VerifyingKeyring]


@dataclass(frozen=True)
class TrustCheck:
    """The newest trust-root version that verified (None: none did) and every finding."""

    trusted: TrustedRoot | None
    diagnostics: tuple[Diagnostic, ...]
    # (app, version) of every withdrawal its approvers signed (:mod:`fleetcd.validation.withdrawals`)
    withdrawals_in_force: frozenset[tuple[str, str]] = frozenset()


def check(ctx: Context, keyring_factory: KeyringFactory) -> TrustCheck:
    """The chain, then releases and approvals against the newest version of it that verified."""
    if not ctx.spec.trust_roots:
        return TrustCheck(None, tuple(_missing_root(ctx.spec)))
    keyring, key_problems = _open_keyring(ctx.spec.keys, keyring_factory)
    found: list[Diagnostic] = list(key_problems)
    in_force: frozenset[tuple[str, str]] = frozenset()
    try:
        trusted, problems = verify_chain(ctx.spec, keyring)
        found += problems
        if trusted is not None:
            found += _signatures(ctx, trusted.model, keyring)
            checked = withdrawals.check(ctx.spec, trusted.model, keyring)
            found += checked.diagnostics
            in_force = checked.in_force
    finally:
        keyring.close()
    return TrustCheck(trusted, tuple(found), in_force)


def _signatures(ctx: Context, root: TrustRoot, keyring: VerifyingKeyring) -> Iterator[Diagnostic]:
    for key in sorted(ctx.spec.releases):
        published = ctx.spec.releases[key]
        status = check_release(
            published.doc.path, published.doc.raw, published.signatures, root.release_signers, keyring
        )
        yield from status.diagnostics
    stages = ctx.stages
    for name in [name for name in sorted(ctx.spec.rollouts) if _needs_approval(ctx, name)]:
        entry = ctx.spec.rollouts[name]
        release = ctx.release_of(name)
        assert release is not None  # _needs_approval
        configs = ctx.spec.config_set(entry.doc.model.app)
        payload = approval_payload(
            name, entry.doc.data, release.doc.path, release.doc.raw, (configs.root, configs.count)
        )
        required = root.approvals.required(rollout_stage(entry.doc.model, ctx.cohorts, stages))
        status = check_approvals(entry.doc.path, payload, entry.approvals, root.approvers, required, keyring)
        approvers = frozenset(k.fingerprint for k in root.approvers)
        stale = _stale_approvals(ctx, name, status, approvers, keyring)
        for diagnostic in status.diagnostics:
            yield stale.get(diagnostic.file, diagnostic)


def _missing_root(spec: FleetSpec) -> Iterator[Diagnostic]:
    if any(classify(path) is not None and path.startswith(TRUST_ROOT_DIR) for path in spec.files):
        return  # there are trust-root files; the reason they did not load is reported on them
    message = (
        "no trust root: the keys this fleet trusts are listed in trust/root/1.yaml, signed by its "
        "root keys ('fleetcd keys generate' makes development keys and signs it)"
    )
    yield Diagnostic(trust_root_path(1), None, None, message, Reason.TRUST_ROOT_MISSING)


def verify_chain(spec: FleetSpec, verifier: Verifier) -> tuple[TrustedRoot | None, list[Diagnostic]]:
    """The trust-root chain on main: versions 1..N without gaps, version 1 signed by its own root
    keys, every later one by its predecessor's and its own (:mod:`fleetcd.trust.rootchain`).

    Returns the newest version that verified (a later broken one is reported, never used) and the
    findings.
    """
    versions = sorted(spec.trust_roots)
    problems: list[Diagnostic] = []
    if len(versions) > MAX_CHAIN_VERSIONS:
        message = f"{len(versions)} versions; robots take at most {MAX_CHAIN_VERSIONS} in one commit"
        problems.append(Diagnostic(TRUST_ROOT_DIR, None, None, message, Reason.TOO_LARGE))
    missing = sorted(set(range(1, versions[-1] + 1)) - set(versions)) if versions else [1]
    if missing:
        listed = ", ".join(trust_root_path(v) for v in missing[:5])
        message = f"the chain has gaps: {listed} missing (versions grow by one, none is ever deleted)"
        where = trust_root_path(versions[-1]) if versions else TRUST_ROOT_DIR
        problems.append(Diagnostic(where, None, "version", message, Reason.TRUST_ROOT_VERSION))
    trusted: TrustedRoot | None = None
    for version in versions:
        if version != (trusted.version + 1 if trusted else 1):
            break
        candidate = root_version(spec.trust_roots[version])
        try:
            if trusted is None:
                trusted = verify_self_signed(candidate, verifier)
            else:
                trusted = verify_next(trusted, candidate, verifier, schema=True)
        except TrustChainRejected as exc:
            problems.extend(exc.diagnostics)
            break
    return trusted, problems


def root_version(entry: TrustRootEntry) -> RootVersion:
    return RootVersion(entry.doc.model.version, entry.doc.raw, entry.signatures)


def _stale_approvals(
    ctx: Context, name: str, status: ThresholdStatus, approvers: frozenset[str], keyring: VerifyingKeyring
) -> dict[str, Diagnostic]:
    """Approval file -> why it is stale, for approvals by a key whose signature is over other
    bytes: over the v1 payload (rollout and release only, made before approvals covered config
    instances), or over content that has changed since (the rollout, its release, its app's config)."""
    entry, release = ctx.spec.rollouts[name], ctx.release_of(name)
    assert release is not None  # _needs_approval
    refused = [c for c in status.checks if not c.counted and not c.result.valid and c.claimed in approvers]
    if not refused:
        return {}
    legacy = legacy_approval_payload(name, entry.doc.data, release.doc.path, release.doc.raw)
    app = entry.doc.model.app
    out = {}
    again = f"approve again with `fleetcd approve {entry.doc.path}`"
    for check in refused:
        if check.result.reason is not Reason.SIGNATURE_INVALID or "BADSIG" not in check.result.detail:
            continue  # not a signature over other bytes: the key or the file is the problem
        result = keyring.verify_detached(legacy, entry.approvals[check.file])
        if result.valid and result.fingerprint == check.claimed:
            message = (
                f"stale: signed over the rollout and {release.doc.path} only (approval format v1); an "
                f"approval now covers the config instances in configs/{app}/ too, so it counts for "
                f"nothing: {again}"
            )
        else:
            message = (
                f"stale: signed over other content; an approval covers the rollout, {release.doc.path} "
                f"and every file in configs/{app}/, and one of them changed since: {again}"
            )
        out[check.file] = Diagnostic(check.file, None, None, message, Reason.APPROVAL_STALE, "warning")
    return out


def _needs_approval(ctx: Context, name: str) -> bool:
    # Aborting must never wait for reviewers, and without its release a rollout's payload is
    # undefined (the missing release is reported by the reference checks).
    return not ctx.spec.rollouts[name].doc.model.aborted and ctx.release_of(name) is not None


def _open_keyring(
    keys: Mapping[str, bytes], factory: KeyringFactory
) -> tuple[VerifyingKeyring, list[Diagnostic]]:
    """A keyring of every usable key file; broken key files are reported and left out.

    Dropping only the broken files keeps one bad key from turning every signature in the
    repository into a confusing "unknown key" error.
    """
    try:
        return factory(keys), []
    except InvalidContent as exc:
        problems = list(exc.diagnostics)
    broken = {d.file for d in problems}
    good = {path: data for path, data in keys.items() if path not in broken}
    try:
        return factory(good), problems
    except InvalidContent as exc:  # pragma: no cover - gpg disagreed with itself between two imports
        return factory({}), [*problems, *exc.diagnostics]


def expiry(
    spec: FleetSpec, trusted: TrustedRoot, now: datetime, warn_days: int = EXPIRY_WARNING_DAYS
) -> Iterator[Diagnostic]:
    """The trust-root version in force (the newest that verified) against the clock: expired is an
    error (the controller stalls on it), expiring within ``warn_days`` a warning (rotate now: past
    it the controller stalls and robots install nothing new). Pure: the caller reads the clock."""
    entry = spec.trust_roots.get(trusted.version)
    if entry is None:
        return
    expires = trusted.model.expires
    if expires <= now:
        message = (
            f"trust root version {trusted.version} expired at {expires.isoformat()}: the controller "
            "stalls and robots install nothing new until a newer version is signed "
            "('fleetcd keys propose --expires ...')"
        )
        yield at(entry.doc, ("expires",), message, Reason.EXPIRED)
    elif expires - now <= timedelta(days=warn_days):
        left = expires - now
        days = left.days
        when = f"in {days} day{'s' if days != 1 else ''}" if days else "within a day"
        message = (
            f"trust root version {trusted.version} expires {when} ({expires.isoformat()}): sign a "
            "newer version before then ('fleetcd keys propose --expires ...'), or the controller "
            "stalls and robots install nothing new"
        )
        yield at(entry.doc, ("expires",), message, Reason.EXPIRED, "warning")
