"""Throwaway OpenPGP keys for tests: ed25519, no passphrase, generated once per test session.

``shared_keys()`` returns one process-wide :class:`KeyFactory` whose GNUPGHOME lives in a temp
directory (removed, and its gpg-agent stopped, at exit). Keys are cached by name, so every test
asking for ``keys.key("alice")`` gets the same key. Besides ordinary keys it makes the awkward
ones trust tests need: expired, revoked, signing through a subkey, and raw gpg signatures
(text mode, SHA-1, several signers) that :class:`fleetcd.trust.gpg.Signer` refuses to make.

Use it from a test module with a one-line fixture (``gpg_available`` from conftest skips, or fails
under CI, when gpg is missing)::

    from tests.gpgkeys import KeyFactory, shared_keys

    @pytest.fixture(scope="session")
    def keys(gpg_available: str) -> KeyFactory:
        return shared_keys()
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fleetcd.trust.gpg import Keyring, Signer, gpg_binary

PAST_CREATION = "20200101T000000"  # expired keys are born here with a 1-year life...
PAST_SIGNING = "20200601T000000"  # ...and sign while still valid


@dataclass(frozen=True)
class GpgKey:
    name: str
    fingerprint: str  # primary, 40 upper-case hex
    public: bytes  # armored, as committed to keys/<name>.asc
    faked_time: str | None = None  # sign "in the past" (expired keys)
    revocation: bytes = b""  # armored revocation certificate, for revoked keys

    @property
    def email(self) -> str:
        return f"{self.name}@fleet.test"

    @property
    def key_file(self) -> str:
        return f"keys/{self.name}.asc"


class KeyFactory:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.signer = Signer(home)
        self._keys: dict[str, GpgKey] = {}

    def gpg(self, *args: str, data: bytes | None = None) -> bytes:
        """Run the gpg CLI in this home (for what the Signer deliberately cannot do)."""
        command = [gpg_binary(), "--batch", "--homedir", str(self.home), "--pinentry-mode", "loopback"]
        done = subprocess.run(
            [*command, "--passphrase", "", *args], input=data, capture_output=True, check=True
        )
        return done.stdout

    def _fingerprint_of(self, email: str) -> str:
        listing = self.gpg("--with-colons", "--list-keys", f"<{email}>").decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def key(self, name: str) -> GpgKey:
        """An ordinary signing key (2 years)."""
        if name not in self._keys:
            fingerprint = self.signer.generate_key(name.title(), f"{name}@fleet.test")
            self._keys[name] = GpgKey(name, fingerprint, self.signer.export_public(fingerprint))
        return self._keys[name]

    def expired_key(self, name: str) -> GpgKey:
        """A key created in 2020 with a 1-year life; its signatures date from when it was valid."""
        if name not in self._keys:
            email = f"{name}@fleet.test"
            uid = f"{name.title()} <{email}>"
            self.gpg("--faked-system-time", PAST_CREATION, "--quick-gen-key", uid, "ed25519", "sign", "1y")
            fingerprint = self._fingerprint_of(email)
            public = self.signer.export_public(fingerprint)
            self._keys[name] = GpgKey(name, fingerprint, public, faked_time=PAST_SIGNING)
        return self._keys[name]

    def revoked_key(self, name: str) -> GpgKey:
        """A key whose key file also carries its revocation certificate.

        The revocation stays out of the signing home, so the key can still sign: what a verifier
        sees is a signature by a key revoked later.
        """
        if name not in self._keys:
            fingerprint = self.signer.generate_key(name.title(), f"{name}@fleet.test")
            stored = (self.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_bytes()
            # gpg prefixes the armor line with ':' so the file cannot be imported by accident
            revocation = stored.replace(
                b":-----BEGIN PGP PUBLIC KEY BLOCK-----", b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
            )
            public = self.signer.export_public(fingerprint) + b"\n" + revocation
            self._keys[name] = GpgKey(name, fingerprint, public, revocation=revocation)
        return self._keys[name]

    def subkey_key(self, name: str) -> GpgKey:
        """A certify-only primary key whose signatures are made by its signing subkey."""
        if name not in self._keys:
            email = f"{name}@fleet.test"
            self.gpg("--quick-gen-key", f"{name.title()} <{email}>", "ed25519", "cert", "2y")
            fingerprint = self._fingerprint_of(email)
            self.gpg("--quick-add-key", fingerprint, "ed25519", "sign", "2y")
            self._keys[name] = GpgKey(name, fingerprint, self.signer.export_public(fingerprint))
        return self._keys[name]

    def sign(self, data: bytes, key: GpgKey) -> bytes:
        """An armored detached signature by ``key`` over ``data``."""
        if key.faked_time is None:
            return self.signer.sign_detached(data, key.fingerprint)
        return self.raw_sign(data, key, "--faked-system-time", key.faked_time)

    def raw_sign(self, data: bytes, *signers: GpgKey | str) -> bytes:
        """``gpg --detach-sign --armor`` with each key as a ``--local-user`` and any extra options."""
        args: list[str] = []
        for item in signers:
            args += ["--local-user", item.fingerprint] if isinstance(item, GpgKey) else [item]
        return self.gpg(*args, "--detach-sign", "--armor", data=data)

    def keyring(self, keys: Iterable[GpgKey]) -> Keyring:
        """A verification keyring from the keys' files, as the fleet repo would hold them."""
        return Keyring.from_armored({key.key_file: key.public for key in keys})

    def close(self) -> None:
        self.signer.close()
        shutil.rmtree(self.home, ignore_errors=True)


_shared: KeyFactory | None = None


def shared_keys() -> KeyFactory:
    """The session-wide factory (created on first use, cleaned up at interpreter exit)."""
    global _shared
    if _shared is None:
        _shared = KeyFactory(Path(tempfile.mkdtemp(prefix="fleetcd-test-gpg-")))
        atexit.register(_shared.close)
    return _shared
