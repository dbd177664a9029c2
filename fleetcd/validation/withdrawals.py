"""Which withdrawals are in force: those a threshold of the fleet's approvers signed (pure apart
from the verifier handed in).

A withdrawal (``withdrawals/<app>/<version>.yaml``) stops every new deployment of a release and
removes it as a rollback target, so whoever can commit to main must not be able to withdraw the
stable release alone. It takes effect only with approver signatures in
``withdrawals/<app>/<version>.yaml.d/<FPR>.asc`` over
:func:`fleetcd.trust.approval.withdrawal_payload` (the withdrawal's exact bytes and the release
file's sha256), counted by the same threshold code as rollout approvals against the newest verified
trust root.

How many: the highest number any stage needs (:func:`required_approvals`, normally production's).
A withdrawal acts on the whole fleet at once: it blocks the release for robots in every stage,
including as the target a halted rollout rolls back to, and which robots run the release changes
under it; the threshold must not move with them.

One that falls short is reported as a *warning* on the withdrawal (``approval_missing``, or
``approval_stale`` when an approver's signature is over other bytes) and left out of the validated
spec: the controller then ignores it, logs why, and goes on. It never stalls main, since stalling
would block rollbacks too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from fleetcd.errors import Diagnostic
from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.models import TrustRoot
from fleetcd.models.base import Stage
from fleetcd.reasons import Reason
from fleetcd.trust.approval import withdrawal_payload
from fleetcd.trust.policy import Verifier, check_approvals


@dataclass(frozen=True)
class WithdrawalCheck:
    """The withdrawals in force, by (app, version), and why the others are not."""

    in_force: frozenset[tuple[str, str]]
    diagnostics: tuple[Diagnostic, ...]


def required_approvals(root: TrustRoot) -> int:
    """Approvals a withdrawal needs: the most any stage needs (see the module docstring)."""
    return max(root.approvals.required(stage) for stage in Stage)


def check(spec: FleetSpec, root: TrustRoot, verifier: Verifier) -> WithdrawalCheck:
    """Every withdrawal of ``spec`` against the approvers and thresholds of ``root``."""
    in_force: set[tuple[str, str]] = set()
    found: list[Diagnostic] = []
    for key in sorted(spec.withdrawals):
        if spec.release(*key) is None:
            continue  # nothing to withdraw; the missing release is reported by the reference checks
        problems = list(_check_one(spec, key, root, verifier))
        found += problems  # per-file notes alone (a former approver's signature) do not block
        if not any(d.file == spec.withdrawals[key].path for d in problems):
            in_force.add(key)
    return WithdrawalCheck(frozenset(in_force), tuple(found))


def approved_only(spec: FleetSpec, in_force: frozenset[tuple[str, str]]) -> FleetSpec:
    """``spec`` holding only the withdrawals in ``in_force``: what everything downstream acts on."""
    return replace(spec, withdrawals={k: d for k, d in spec.withdrawals.items() if k in in_force})


def _check_one(
    spec: FleetSpec, key: tuple[str, str], root: TrustRoot, verifier: Verifier
) -> Iterator[Diagnostic]:
    doc = spec.withdrawals[key]
    release = spec.release(*key)
    assert release is not None  # check
    payload = withdrawal_payload(doc.path, doc.raw, release.doc.path, release.doc.raw)
    approvals = spec.withdrawal_approvals.get(key, {})
    required = required_approvals(root)
    status = check_approvals(doc.path, payload, approvals, root.approvers, required, verifier)
    approvers = {k.fingerprint for k in root.approvers}
    stale = {
        c.file
        for c in status.checks
        if not c.counted
        and c.claimed in approvers
        and c.result.reason is Reason.SIGNATURE_INVALID
        and "BADSIG" in c.result.detail
    }
    again = f"approve it with `fleetcd approve {doc.path}`"
    for diagnostic in status.diagnostics:
        if diagnostic.file in stale:
            message = (
                f"stale: signed over other content; an approval covers the exact bytes of {doc.path} "
                f"and {release.doc.path}, and the withdrawal changed since: {again} again"
            )
            yield Diagnostic(diagnostic.file, None, None, message, Reason.APPROVAL_STALE, "warning")
        elif diagnostic.file == doc.path:
            reason = Reason.APPROVAL_STALE if stale else Reason.APPROVAL_MISSING
            message = (
                f"not in force: {diagnostic.message}; a withdrawal needs the approvals of the "
                f"strictest stage ({required}); until then the controller ignores it and keeps "
                f"deploying {key[0]} {key[1]}: {again}"
            )
            yield Diagnostic(doc.path, None, None, message, reason, "warning")
        else:
            yield diagnostic
