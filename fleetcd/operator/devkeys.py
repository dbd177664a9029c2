"""``fleetcd keys``: development keys for a local fleet, and which trusted keys have a key file.

``generate_dev_keys`` makes one ed25519 key per role (no passphrase: development only) in a keyring
of the repository's own (``.fleetcd/gnupg``, git-ignored), exports each public key to
``keys/<role>.asc`` and writes the fingerprints into fleet.yaml's trust block in place. fleet.yaml
is checked before any key is made and re-loaded after the edit, so a failure leaves it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import InvalidContent
from fleetcd.layout import FLEET_FILE
from fleetcd.loading.documents import load_document
from fleetcd.models import Fleet
from fleetcd.operator.fleetfile import (
    DEV_ROLES,
    TrustedKey,
    rewrite_fingerprints,
    role_fingerprint_paths,
    trusted_keys,
    value_at,
)
from fleetcd.operator.repo import load_fleet, read_file, write_atomic
from fleetcd.trust.gpg import Keyring, Signer

DEV_KEY_EXPIRY = "2y"
DEV_EMAIL_DOMAIN = "fleetcd.invalid"  # RFC 2606: can never be a real mailbox


def key_file(role: str) -> str:
    return f"keys/{role}.asc"


def generate_dev_keys(repo: Path, gnupghome: Path) -> dict[str, str]:
    """Create the development keys; returns role → fingerprint (in :data:`DEV_ROLES` order)."""
    raw = read_file(repo, FLEET_FILE)
    fleet = load_document(FLEET_FILE, raw, Fleet)
    paths = role_fingerprint_paths(fleet.data)
    created: dict[str, str] = {}
    with Signer(gnupghome) as signer:
        for role in DEV_ROLES:
            created[role] = signer.generate_key(
                name=f"{fleet.model.name} {role} development key",
                email=f"{role}@{fleet.model.name}.{DEV_EMAIL_DOMAIN}",
                expire=DEV_KEY_EXPIRY,
            )
        exported = {role: signer.export_public(fpr) for role, fpr in created.items()}
    updated = rewrite_fingerprints(
        raw.decode("utf-8"), fleet.parsed, {paths[role]: fpr for role, fpr in created.items()}
    ).encode("utf-8")
    # The edit must leave a valid fleet.yaml naming exactly the new keys, or nothing is written.
    check = load_document(FLEET_FILE, updated, Fleet)
    for role, fpr in created.items():
        if value_at(check.data, paths[role]) != fpr:
            raise InvalidContent.at(FLEET_FILE, f"rewriting the {role} fingerprint failed", field="trust")
    for role, armored in exported.items():
        write_atomic(repo / key_file(role), armored)
    write_atomic(repo / FLEET_FILE, updated)
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
    untrusted_files: tuple[str, ...]  # key files holding no fingerprint fleet.yaml lists


def list_keys(repo: Path) -> KeyListing:
    """Every key fleet.yaml trusts, with the key files holding it; each file read in its own keyring."""
    fleet = load_fleet(repo)
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
    trusted = trusted_keys(fleet.model)
    wanted = {k.fingerprint for k in trusted}
    every_file = {f for fs in holders.values() for f in fs}
    holding_trusted = {f for fpr in wanted for f in holders.get(fpr, [])}
    untrusted = sorted(every_file - holding_trusted)
    return KeyListing(
        keys=tuple(KeyStatus(k, tuple(holders.get(k.fingerprint, []))) for k in trusted),
        problems=tuple(problems),
        untrusted_files=tuple(untrusted),
    )
