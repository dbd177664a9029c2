"""``fleetcd sign`` and ``fleetcd approve``: detached signatures written into the fleet repository.

Both refuse to sign what would not validate: the release (and, for an approval, the rollout and the
release it names) must strict-load first, because a signature over invalid content only hides the
problem until CI. A key is used only in the role the newest trust root (``trust/root/<N>.yaml``)
gives it. Signatures cover:

* release: the exact bytes of ``releases/<app>/<version>.yaml`` →
  ``releases/<app>/<version>.yaml.d/<FPR>.asc``;
* approval: :func:`fleetcd.trust.approval.approval_payload` (canonical rollout + release sha256 +
  the Merkle root of the app's ``configs/<app>/*.yaml`` files) →
  ``approvals/<rollout>/<FPR>.asc``;
* withdrawal approval: :func:`fleetcd.trust.approval.withdrawal_payload` (the withdrawal's exact
  bytes + the release's sha256) → ``withdrawals/<app>/<version>.yaml.d/<FPR>.asc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcd.desired.configset import app_config_files, config_root
from fleetcd.errors import InvalidContent
from fleetcd.layout import FileKind, classify, release_path, release_signature_path
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.models import Release, Rollout, TrustRoot, Withdrawal
from fleetcd.operator.repo import (
    KeyChoice,
    ensure_exists,
    load_trust_root,
    read_file,
    relative,
    write_atomic,
)
from fleetcd.reasons import Reason
from fleetcd.trust.approval import approval_payload, withdrawal_payload
from fleetcd.trust.gpg import Signer


def release_signers(root: Loaded[TrustRoot]) -> KeyChoice:
    keys = tuple(root.model.release_signers.keys)
    return KeyChoice("a release signer", "release_signers.keys", keys, root.path)


def approvers(root: Loaded[TrustRoot]) -> KeyChoice:
    return KeyChoice("an approver", "approvers", tuple(root.model.approvers), root.path)


def load_release(repo: Path, rel: str) -> Loaded[Release]:
    """A release file strictly loaded, sitting where its app and version say it should."""
    where = classify(rel)
    if where is None or where.kind is not FileKind.RELEASE:
        raise InvalidContent.at(rel, "not a release file: releases/<app>/<version>.yaml expected")
    doc = load_document(rel, read_file(repo, rel), Release)
    _matches(doc.path, doc.line("app"), "app", doc.model.app, where.name)
    _matches(doc.path, doc.line("version"), "version", doc.model.version, where.version)
    return doc


def load_rollout(repo: Path, rel: str) -> Loaded[Rollout]:
    where = classify(rel)
    if where is None or where.kind is not FileKind.ROLLOUT:
        raise InvalidContent.at(
            rel,
            "not a rollout or withdrawal file: rollouts/<name>.yaml or "
            "withdrawals/<app>/<version>.yaml expected",
        )
    doc = load_document(rel, read_file(repo, rel), Rollout)
    _matches(doc.path, doc.line("name"), "name", doc.model.name, where.name)
    return doc


def sign_release(repo: Path, release_file: Path, gnupghome: Path, fingerprint: str | None = None) -> Path:
    """Sign the exact bytes of a valid release file; returns the signature file written."""
    release = load_release(repo, relative(repo, release_file))
    choice = release_signers(load_trust_root(repo))
    with Signer(gnupghome) as signer:
        fpr = choice.pick(signer.secret_fingerprints(), fingerprint)
        signature = signer.sign_detached(release.raw, fpr)
    target = repo / release_signature_path(release.model.app, release.model.version, fpr)
    write_atomic(target, signature)
    return target


@dataclass(frozen=True)
class ApprovalSubject:
    """What an approver signs for one rollout or withdrawal: the payload bytes, and the folder the
    approvals go to (``approvals/<rollout>`` or ``withdrawals/<app>/<version>.yaml.d``)."""

    folder: str
    payload: bytes


def approval_subject(repo: Path, document: Path) -> ApprovalSubject:
    """Load the rollout or withdrawal and the release it names (all must be valid); its payload."""
    rel = relative(repo, document)
    where = classify(rel)
    if where is not None and where.kind is FileKind.WITHDRAWAL:
        return _withdrawal_subject(repo, rel)
    rollout = load_rollout(repo, rel)
    model = rollout.model
    release_rel = release_path(model.app, model.release)
    ensure_exists(repo, release_rel, rollout.path, rollout.line("release"), "release")
    release = load_release(repo, release_rel)
    configs = app_config_files(_config_files(repo, model.app), model.app)
    payload = approval_payload(model.name, rollout.data, release.path, release.raw, config_root(configs))
    return ApprovalSubject(f"approvals/{model.name}", payload)


def _withdrawal_subject(repo: Path, rel: str) -> ApprovalSubject:
    doc = load_document(rel, read_file(repo, rel), Withdrawal)
    where = classify(rel)
    assert where is not None  # approval_subject
    _matches(doc.path, doc.line("app"), "app", doc.model.app, where.name)
    _matches(doc.path, doc.line("version"), "version", doc.model.version, where.version)
    release_rel = release_path(doc.model.app, doc.model.version)
    ensure_exists(repo, release_rel, doc.path, doc.line("version"), "version")
    release = load_release(repo, release_rel)
    return ApprovalSubject(f"{rel}.d", withdrawal_payload(rel, doc.raw, release.path, release.raw))


def _config_files(repo: Path, app: str) -> dict[str, bytes]:
    """The app's config files in the working copy, as they would be committed."""
    folder = repo / "configs" / app
    if not folder.is_dir():
        return {}
    return {relative(repo, f): f.read_bytes() for f in sorted(folder.glob("*.yaml")) if f.is_file()}


def approve_rollout(repo: Path, rollout_file: Path, gnupghome: Path, fingerprint: str | None = None) -> Path:
    """Approve a rollout (or a withdrawal) with one approver key; returns the approval file written."""
    subject = approval_subject(repo, rollout_file)
    choice = approvers(load_trust_root(repo))
    with Signer(gnupghome) as signer:
        fpr = choice.pick(signer.secret_fingerprints(), fingerprint)
        return _write_approval(repo, subject, fpr, signer.sign_detached(subject.payload, fpr))


def approve_rollout_all(repo: Path, rollout_file: Path, gnupghome: Path) -> list[Path]:
    """Approve with every approver key the keyring holds (development fleets and demos)."""
    subject = approval_subject(repo, rollout_file)
    choice = approvers(load_trust_root(repo))
    with Signer(gnupghome) as signer:
        available = signer.secret_fingerprints()
        present = choice.present(available)
        if not present:
            choice.pick(available, None)  # raises the "no approver key here" error
        return [
            _write_approval(repo, subject, fpr, signer.sign_detached(subject.payload, fpr)) for fpr in present
        ]


def _write_approval(repo: Path, subject: ApprovalSubject, fpr: str, signature: bytes) -> Path:
    target = repo / subject.folder / f"{fpr}.asc"
    write_atomic(target, signature)
    return target


def _matches(path: str, line: int | None, field: str, declared: str, from_path: str) -> None:
    if declared != from_path:
        raise InvalidContent.at(
            path,
            f"{declared!r} does not match the file's location (expected {from_path!r})",
            line=line,
            field=field,
            reason=Reason.NAME_MISMATCH,
        )
