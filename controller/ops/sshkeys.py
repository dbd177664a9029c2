"""A robot's SSH key: made with ``ssh-keygen`` (ed25519), or a public key the operator brings.

The robot logs in to the git server with this key and nothing else; gitolite knows it by the
key file's name (``keydir/<id>.pub``). A public key is read by ``ssh-keygen -l`` itself, so
whatever OpenSSH would refuse is refused here with the file named, and only its first line (type,
base64 body, comment) is ever written to the gitolite checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import InvalidContent, SetupError

KEY_TYPE = "ed25519"
PRIVATE_KEY_FILE = "id_ed25519"  # the public key is beside it with ``.pub``, as the agent expects
MAX_PUBLIC_KEY_BYTES = 16 * 1024  # an RSA-16384 public key is ~2.8 KB; anything bigger is not a key
KEYGEN_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class PublicKey:
    """One OpenSSH public key: ``<type> <base64> [comment]`` and its SHA256 fingerprint."""

    line: str
    fingerprint: str  # 'SHA256:...'

    @property
    def body(self) -> str:
        """Type and base64: what identifies the key whatever its comment says."""
        return " ".join(self.line.split()[:2])


def _keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SetupError("ssh-keygen is not installed (Debian package openssh-client)")
    return found


def read_public_key(path: Path, shown: str | None = None) -> PublicKey:
    """The public key in ``path``; InvalidContent naming the file when it is not one."""
    name = shown or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"{name}: cannot read the public key: {exc.strerror or exc}") from exc
    if len(raw) > MAX_PUBLIC_KEY_BYTES:
        raise InvalidContent.at(name, f"is {len(raw)} bytes; an SSH public key is one short line")
    lines = [x for x in raw.decode("utf-8", errors="replace").splitlines() if x.strip()]
    if len(lines) != 1 or lines[0].lstrip().startswith("-----BEGIN"):
        raise InvalidContent.at(name, "is not one OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    done = subprocess.run(
        [_keygen(), "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=KEYGEN_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise InvalidContent.at(name, "ssh-keygen does not read it as an SSH public key", line=1)
    fingerprint = done.stdout.split()[1]
    return PublicKey(line=" ".join(lines[0].split()), fingerprint=fingerprint)


def generate_key(folder: Path, comment: str) -> PublicKey:
    """A new ed25519 key pair as ``folder/id_ed25519`` (0600) and ``.pub``; no passphrase (the
    agent runs unattended). ``folder`` must not hold a key already."""
    private = folder / PRIVATE_KEY_FILE
    if private.exists() or private.with_suffix(".pub").exists():
        raise SetupError(f"{private}: a key is already there; it is never overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [_keygen(), "-q", "-t", KEY_TYPE, "-N", "", "-C", comment, "-f", str(private)],
        capture_output=True,
        text=True,
        timeout=KEYGEN_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise SetupError(f"ssh-keygen could not make {private}: {done.stderr.strip()}")
    private.chmod(0o600)
    return read_public_key(private.with_name(PRIVATE_KEY_FILE + ".pub"))
