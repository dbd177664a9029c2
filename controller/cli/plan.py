"""``fleetcd plan [--repo DIR] [--base REF] [--format text|markdown|json]``: what a change will do.

Reads the work tree (and the base ref's tree through git), validates the head, plans with the pure
:mod:`fleetcd.planning.plan`, checks signatures and approvals of the rollouts in the plan with gpg,
and prints the plan. Exit codes: 0 no changes, 3 changes, 1 invalid content, 4 setup (no git
repository, unknown ref, gpg missing).

Missing approvals and release signatures below threshold do not fail ``plan``: showing them is its
job (a pull request is planned before reviewers approve it). ``fleetcd validate`` fails on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import click

from fleetcd.cli.exitcodes import Exit
from fleetcd.compat import UTC
from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.git.trees import open_repository, resolve_commit
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.loading.snapshot import read_directory
from fleetcd.planning.plan import (
    ApprovalStatus,
    Change,
    Plan,
    SignatureStatus,
    TrustFacts,
    attach_schedule,
    attach_trust,
    build_plan,
)
from fleetcd.planning.render import render_json, render_markdown, render_text
from fleetcd.reasons import Reason
from fleetcd.trust.approval import approval_payload
from fleetcd.trust.gpg import Keyring, VerifyResult
from fleetcd.trust.policy import check_approvals, check_release
from fleetcd.validation import withdrawals
from fleetcd.validation.pipeline import validate_snapshot
from fleetcd.validation.worktree import read_base

# Shortfalls the plan itself reports (approvals x/y, signatures x/y): shown, never blocking.
PLAN_REPORTED = frozenset({Reason.APPROVAL_MISSING, Reason.BELOW_THRESHOLD, Reason.SIGNATURE_MISSING})
RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}


class _CachedKeyring:
    """One real keyring shared by validation and planning; each signature is checked once."""

    def __init__(self) -> None:
        self._keyring: Keyring | None = None
        self._keys: dict[str, bytes] | None = None
        self._seen: dict[tuple[bytes, bytes], VerifyResult] = {}

    def factory(self, keys: Mapping[str, bytes]) -> _CachedKeyring:
        if self._keyring is None or self._keys != dict(keys):
            self.close()
            self._keyring = Keyring.from_armored(keys)  # InvalidContent names a broken key file
            self._keys = dict(keys)
            self._seen.clear()
        return self

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        assert self._keyring is not None, "factory() first"
        key = (hashlib.sha256(data).digest(), hashlib.sha256(signature).digest())
        if key not in self._seen:
            self._seen[key] = self._keyring.verify_detached(data, signature)
        return self._seen[key]

    def close(self) -> None:
        """Validation closes what it opened; the real close happens in :meth:`shutdown`."""

    def shutdown(self) -> None:
        if self._keyring is not None:
            self._keyring.close()
            self._keyring = None


@click.command("plan")
@click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Fleet repository work tree.",
)
@click.option("--base", "base_ref", metavar="REF", help="Compare with this git ref (e.g. origin/main).")
@click.option(
    "--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text", show_default=True, help="Output."
)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    default=None,
    help="Say when each wave could start as of TIME (ISO 8601 with a zone, e.g. 2026-05-01T09:00Z); "
    "default now.",
)
@click.pass_context
def plan_command(ctx: click.Context, repo: Path, base_ref: str | None, fmt: str, at_text: str | None) -> None:
    """Show which robots get what in which wave, who is skipped and why, and approvals missing.

    Exit codes: 0 no changes, 3 changes, 1 invalid content, 4 setup problem.
    """
    at = _instant(at_text) if at_text is not None else datetime.now(UTC)
    files, problems = read_directory(repo)
    base_files: dict[str, bytes] | None = None
    base_label: str | None = None
    if base_ref is not None:
        base_files = read_base(repo, base_ref)
        base_label = f"{base_ref} ({resolve_commit(open_repository(repo), base_ref).short_id})"
    keyring = _CachedKeyring()
    try:
        result = validate_snapshot(files, base_files, keyring.factory, problems=problems)
        blocking = [d for d in result.errors if d.reason not in PLAN_REPORTED]
        _report(result.diagnostics, blocking)
        if blocking:
            ctx.exit(int(Exit.INVALID))
        base_spec = _base_spec(base_files, keyring) if base_files is not None else None
        plan = build_plan(result.spec, base_spec, base_label)
        plan = attach_trust(plan, trust_facts(result.spec, plan, keyring))
        plan = attach_schedule(plan, result.spec, at)
    finally:
        keyring.shutdown()
    click.echo(RENDERERS[fmt](plan), nl=False)
    ctx.exit(int(Exit.CHANGES if plan.has_changes else Exit.OK))


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--at") from exc
    if at.tzinfo is None:
        raise click.BadParameter(f"{text!r} names no zone (add Z or +HH:MM)", param_hint="--at")
    return at.astimezone(UTC)


def _base_spec(files: Mapping[str, bytes], keyring: _CachedKeyring) -> FleetSpec:
    """The base as the controller saw it: only its approved withdrawals withdraw anything, so a
    pull request that adds the approvals shows the release withdrawn."""
    spec = load_spec(files)[0]
    root = spec.trust_root
    if root is None or not spec.withdrawals:
        return withdrawals.approved_only(spec, frozenset())
    try:
        verifier = keyring.factory(spec.keys)
    except InvalidContent:
        return withdrawals.approved_only(spec, frozenset())  # the base's key files do not load
    return withdrawals.approved_only(spec, withdrawals.check(spec, root, verifier).in_force)


def trust_facts(spec: FleetSpec, plan: Plan, keyring: _CachedKeyring) -> TrustFacts:
    """Signature and approval outcomes for the rollouts in ``plan`` (gpg runs only if needed)."""
    live = [r for r in plan.rollouts if r.change is not Change.REMOVED and r.release_found]
    trust = spec.trust_root
    if trust is None or not live:
        return TrustFacts()
    keyring.factory(spec.keys)
    names = {key.fingerprint: key.name for key in trust.approvers}
    approvals: dict[str, ApprovalStatus] = {}
    signatures: dict[tuple[str, str], SignatureStatus] = {}
    for rollout in live:
        release = spec.release(rollout.app, rollout.version)
        assert release is not None  # release_found
        signers = trust.release_signers
        status = check_release(release.doc.path, release.doc.raw, release.signatures, signers, keyring)
        signatures[(rollout.app, rollout.version)] = SignatureStatus(len(status.verified), signers.threshold)
        entry = spec.rollouts[rollout.name]
        configs = spec.config_set(rollout.app)
        payload = approval_payload(
            rollout.name, entry.doc.data, release.doc.path, release.doc.raw, (configs.root, configs.count)
        )
        required = rollout.approvals_required
        found = check_approvals(entry.doc.path, payload, entry.approvals, trust.approvers, required, keyring)
        approvals[rollout.name] = ApprovalStatus(
            len(found.verified), tuple(names.get(f, f) for f in found.verified)
        )
    return TrustFacts(approvals=approvals, signatures=signatures)


def _report(diagnostics: tuple[Diagnostic, ...], blocking: list[Diagnostic]) -> None:
    """Errors that stop the plan, then everything else as warnings, on stderr (stdout is the plan)."""
    for diagnostic in blocking:
        click.echo(f"error: {diagnostic}", err=True)
    stopping = set(blocking)
    for diagnostic in diagnostics:
        if diagnostic not in stopping:
            click.echo(f"warning: {diagnostic}", err=True)
