"""A local fleet repository as operator commands see it: its root, files, keyring and fleet.yaml.

Shared by ``init``, ``keys``, ``sign`` and ``approve``: finding the root from a file inside it,
repository-relative paths (the form every diagnostic and signature path uses), the default
GNUPGHOME, strict loading of ``fleet.yaml``, and atomic writes (temp file + ``os.replace``) so an
interrupted command never leaves half a signature or half a fleet.yaml behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.layout import FLEET_FILE, TRUST_ROOT_DIR, FileKind, classify, trust_root_path
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.models import Fleet, TrustRoot
from fleetcd.models.fleet import KeyRef
from fleetcd.reasons import Reason

LOCAL_STATE_DIR = ".fleetcd"  # git-ignored by the template
DEV_GNUPGHOME = f"{LOCAL_STATE_DIR}/gnupg"


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` that holds a ``fleet.yaml``."""
    here = start.resolve()
    for candidate in [here, *here.parents] if here.is_dir() else list(here.parents):
        if (candidate / FLEET_FILE).is_file():
            return candidate
    raise SetupError(f"{start}: not inside a fleet repository (no {FLEET_FILE} here or above); pass --repo")


def relative(repo: Path, path: Path) -> str:
    """``path`` as a POSIX path relative to the repository root, refusing paths outside it."""
    full = path if path.is_absolute() else Path.cwd() / path
    try:
        return full.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise SetupError(f"{path} is not inside the fleet repository {repo}") from None


def read_file(repo: Path, rel: str) -> bytes:
    target = repo / rel
    if not target.is_file():
        raise SetupError(f"{target}: no such file")
    return target.read_bytes()


def default_gnupghome(repo: Path) -> Path:
    """Development keys when the repository has them, else the operator's own GnuPG home.

    Signing with the operator's keyring is fine: verification never uses it (it builds a keyring
    from ``keys/`` and trusts only fingerprints the trust root lists).
    """
    dev = repo / DEV_GNUPGHOME
    if dev.is_dir():
        return dev
    env = os.environ.get("GNUPGHOME")
    return Path(env) if env else Path.home() / ".gnupg"


def load_fleet(repo: Path) -> Loaded[Fleet]:
    """``fleet.yaml`` strictly loaded; raises InvalidContent naming file, line and field."""
    return load_document(FLEET_FILE, read_file(repo, FLEET_FILE), Fleet)


def trust_root_versions(repo: Path) -> list[int]:
    """The versions of ``trust/root/<N>.yaml`` in the work tree, ascending."""
    folder = repo / TRUST_ROOT_DIR
    names = sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else []
    found = [classify(f"{TRUST_ROOT_DIR}/{name}") for name in names]
    return sorted(int(c.version) for c in found if c is not None and c.kind is FileKind.TRUST_ROOT)


def load_trust_root(repo: Path, version: int | None = None) -> Loaded[TrustRoot]:
    """The newest trust-root version (or ``version``) strictly loaded; its signatures are not checked
    here (``fleetcd validate`` walks the chain), only which keys it lists for which role."""
    versions = trust_root_versions(repo)
    if not versions:
        raise SetupError(
            f"{repo}: no {trust_root_path(1)}: the fleet lists the keys it trusts there "
            "(run 'fleetcd keys generate' for development keys)"
        )
    rel = trust_root_path(versions[-1] if version is None else version)
    return load_document(rel, read_file(repo, rel), TrustRoot)


def verified_trust_root(files: Mapping[str, bytes]) -> TrustRoot:
    """The newest trust-root version of a snapshot whose chain verifies (real gpg, the snapshot's
    ``keys/``): what a robot provisioned now pins. A proposed version still short of signatures is
    never pinned; a snapshot with no verifying version is InvalidContent naming the first problem."""
    from fleetcd.loading.fleetspec import load_spec  # the operator's heavier imports, on use
    from fleetcd.trust.gpg import Keyring
    from fleetcd.validation.trust import verify_chain

    spec, problems = load_spec(files)
    with Keyring.from_armored(spec.keys) as keyring:
        trusted, chain_problems = verify_chain(spec, keyring)
    if trusted is None:
        found = [d for d in [*problems, *chain_problems] if d.file.startswith(TRUST_ROOT_DIR)]
        raise InvalidContent(found or [InvalidContent.at(trust_root_path(1), "no trust root").diagnostics[0]])
    return trusted.model


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` in one step; readers see the old or the new file, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp's 0600 would hide a committed file from other users of the work tree.
        Path(temp).chmod(0o644)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def normalize_fingerprint(value: str) -> str:
    """``--key`` as typed (spaces, lower case, ``0x``) → the 40-hex upper-case form fleet.yaml uses."""
    text = "".join(value.split()).upper().removeprefix("0X")
    if len(text) != 40 or any(c not in "0123456789ABCDEF" for c in text):
        raise SetupError(
            f"{value!r} is not a full 40-hex-digit OpenPGP fingerprint (short key ids are not accepted)"
        )
    return text


@dataclass(frozen=True)
class KeyChoice:
    """Which secret key to use for a role, out of those the keyring holds."""

    role: str  # with its article, for messages: "a release signer", "an approver"
    section: str  # the field that lists the role's keys, for messages
    allowed: tuple[KeyRef, ...]
    source: str = "the trust root"  # the file that holds ``section``

    def pick(self, available: list[str], requested: str | None) -> str:
        """The requested key (which must be allowed and present), else the first allowed one present."""
        allowed = [k.fingerprint for k in self.allowed]
        if requested is not None:
            fpr = normalize_fingerprint(requested)
            if fpr not in allowed:
                raise SetupError(
                    f"key {fpr} is not {self.role} in {self.source} ({self.section}: {self._listed()})"
                )
            if fpr not in available:
                raise SetupError(f"no secret key {fpr} in the keyring; pass --gnupghome")
            return fpr
        for fpr in available:
            if fpr in allowed:
                return fpr
        raise SetupError(
            f"no secret key of {self.role} in the keyring ({len(available)} secret key(s) there); "
            f"{self.source} lists {self.section}: {self._listed()}; pass --gnupghome or --key"
        )

    def present(self, available: list[str]) -> list[str]:
        """Every allowed key the keyring holds, in the order they are listed."""
        return [k.fingerprint for k in self.allowed if k.fingerprint in available]

    def _listed(self) -> str:
        return ", ".join(f"{k.name} {k.fingerprint}" for k in self.allowed) or "none"


def ensure_exists(repo: Path, rel: str, referrer: str, line: int | None, field: str) -> bytes:
    """The bytes of ``rel``, or InvalidContent at the referring file's field when it is missing."""
    target = repo / rel
    if not target.is_file():
        raise InvalidContent.at(
            referrer, f"{rel} does not exist", line=line, field=field, reason=Reason.UNKNOWN_REFERENCE
        )
    return target.read_bytes()
