"""``fleetcd keys``: development keys for a local fleet, and which trusted keys have a key file.

``generate_dev_keys`` makes one ed25519 key per role (no passphrase: development only) in a keyring
of the repository's own (``.fleetcd/gnupg``, git-ignored), exports each public key to
``keys/<role>.asc``, writes the fingerprints into the trust root's first version
(``trust/root/1.yaml``) in place and signs it with the new root key. The file is checked before any
key is made and re-loaded after the edit, so a failure leaves it untouched. A fleet whose trust root
already moved past version 1 rotates keys with ``fleetcd keys propose`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.layout import trust_root_path, trust_root_signature_path
from fleetcd.loading.documents import load_document
from fleetcd.loading.strict_yaml import field_path
from fleetcd.models import TrustRoot
from fleetcd.operator.fleetfile import (
    DEV_ROLES,
    TrustedKey,
    rewrite_fingerprints,
    role_fingerprint_paths,
    trusted_keys,
    value_at,
)
from fleetcd.operator.repo import load_fleet, load_trust_root, read_file, trust_root_versions, write_atomic
from fleetcd.trust.gpg import Keyring, Signer

DEV_KEY_EXPIRY = "2y"
DEV_EMAIL_DOMAIN = "fleetcd.invalid"  # RFC 2606: can never be a real mailbox


def key_file(role: str) -> str:
    return f"keys/{role}.asc"


def generate_dev_keys(repo: Path, gnupghome: Path) -> dict[str, str]:
    """Create the development keys; returns role → fingerprint (in :data:`DEV_ROLES` order)."""
    if trust_root_versions(repo) not in ([], [1]):
        raise SetupError(
            f"{repo}: the trust root is past version 1; change keys with 'fleetcd keys propose' and "
            "'fleetcd keys sign' (docs/signing-and-approval.md)"
        )
    rel = trust_root_path(1)
    raw = read_file(repo, rel)
    root = load_document(rel, raw, TrustRoot)
    paths = role_fingerprint_paths(root.data, file=rel)
    created: dict[str, str] = {}
    with Signer(gnupghome) as signer:
        for role in DEV_ROLES:
            created[role] = signer.generate_key(
                name=f"{root.model.fleet} {role} development key",
                email=f"{role}@{root.model.fleet}.{DEV_EMAIL_DOMAIN}",
                expire=DEV_KEY_EXPIRY,
            )
        exported = {role: signer.export_public(fpr) for role, fpr in created.items()}
        updated = rewrite_fingerprints(
            raw.decode("utf-8"), root.parsed, {paths[role]: fpr for role, fpr in created.items()}, file=rel
        ).encode("utf-8")
        # The edit must leave a valid trust root naming exactly the new keys, or nothing is written.
        check = load_document(rel, updated, TrustRoot)
        for role, fpr in created.items():
            if value_at(check.data, paths[role]) != fpr:
                raise InvalidContent.at(
                    rel, f"rewriting the {role} fingerprint failed", field=field_path(paths[role])
                )
        signature = signer.sign_detached(updated, created["root"])
    for role, armored in exported.items():
        write_atomic(repo / key_file(role), armored)
    folder = repo / f"{rel}.d"
    for stale in folder.glob("*.asc") if folder.is_dir() else []:
        stale.unlink()  # signatures over the placeholder text sign nothing anyone trusts
    write_atomic(repo / rel, updated)
    write_atomic(repo / trust_root_signature_path(1, created["root"]), signature)
    return created


@dataclass(frozen=True)
class KeyStatus:
    """A trusted key and the ``keys/*.asc`` files that hold its public half (empty: missing)."""

    key: TrustedKey
    files: tuple[str, ...]


@dataclass(frozen=True)
class KeyListing:
    keys: tuple[KeyStatus, ...]
    problems: tuple[str, ...]  # unreadable key files, one message each
    untrusted_files: tuple[str, ...]  # key files holding no fingerprint the fleet trusts


def list_keys(repo: Path) -> KeyListing:
    """Every key the newest trust root and fleet.yaml's commit policy trust, with the key files
    holding it; each file read in its own keyring."""
    fleet = load_fleet(repo)
    root = load_trust_root(repo)
    holders: dict[str, list[str]] = {}
    problems: list[str] = []
    key_dir = repo / "keys"
    files = sorted(p for p in key_dir.glob("*.asc") if p.is_file()) if key_dir.is_dir() else []
    for path in files:
        rel = f"keys/{path.name}"
        try:
            with Keyring.from_armored({rel: path.read_bytes()}) as keyring:
                for fpr in keyring.fingerprints():
                    holders.setdefault(fpr, []).append(rel)
        except InvalidContent as exc:
            problems.extend(str(d) for d in exc.diagnostics)
    trusted = trusted_keys(root.model, fleet.model)
    wanted = {k.fingerprint for k in trusted}
    every_file = {f for fs in holders.values() for f in fs}
    holding_trusted = {f for fpr in wanted for f in holders.get(fpr, [])}
    untrusted = sorted(every_file - holding_trusted)
    return KeyListing(
        keys=tuple(KeyStatus(k, tuple(holders.get(k.fingerprint, []))) for k in trusted),
        problems=tuple(problems),
        untrusted_files=tuple(untrusted),
    )
