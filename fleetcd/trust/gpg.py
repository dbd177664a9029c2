"""GnuPG adapter (the only module that imports ``gnupg``): verify and make detached signatures.

Verification side: :class:`Keyring` is a throwaway GNUPGHOME built from the fleet repository's
``keys/*.asc`` only, never the user's ``~/.gnupg``; it answers "which primary key made this
signature over these exact bytes, and is that key usable" as a :class:`VerifyResult`. Whether
that key is *trusted* is decided later, against ``fleet.yaml``, by :mod:`fleetcd.trust.policy`.
Everything fails closed: a missing gpg, a hung gpg or an unexpected status is never "valid".

Signing side: :class:`Signer` works in a GNUPGHOME that holds secret keys (an operator's, the
controller's, or a test's). Several processes may sign in one home at once (two reconciles, an
operator and the controller): each Signer holds a shared lock on :data:`SIGNER_LOCK_FILE` in the
home while it lives, and only the last one out stops the home's gpg-agent. (Stopping it under a
signer that was still using it was what made a concurrent reconcile fail with a false
``no secret key``.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import gnupg

from fleetcd.compat import UTC
from fleetcd.errors import Diagnostic, InvalidContent, SetupError
from fleetcd.reasons import Reason

SECRET_LIST_RETRY_SECONDS = 0.5

SIGNATURE_MAX_BYTES = 64 * 1024  # an armored ed25519/RSA-4096 signature is well under 2 KiB
KEY_FILE_MAX_BYTES = 1024 * 1024
GPG_TIMEOUT_SECONDS = 30.0  # per gpg invocation; a hung gpg is killed, never waited on forever
MIN_GPG_VERSION = (2, 2)  # ERRSIG carries the issuer fingerprint and VALIDSIG the primary's
BINARY_SIGNATURE_CLASS = "00"  # text-mode (01) would also accept the file with other line endings
STRONG_DIGESTS = {"8": "SHA256", "9": "SHA384", "10": "SHA512", "11": "SHA224"}  # RFC 4880 §9.4
_ARMOR_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"
_ARMOR_PUBLIC_KEY = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_SECRET_KEY = b"-----BEGIN PGP PRIVATE KEY BLOCK-----"
# Verification homes never start gpg-agent or dirmngr: nothing to leak, no network lookups.
_KEYRING_OPTIONS = ["--no-autostart", "--no-auto-key-retrieve"]
# gpg's web of trust plays no part: trust comes from fleet.yaml fingerprints alone. (Only on verify:
# imports need the default model, which creates the trustdb a later revocation import updates.)
_VERIFY_OPTIONS = ["--trust-model", "always"]
# In a signing home: every live Signer holds it shared; closing, one that gets it exclusively is the
# last user of the home's gpg-agent and may stop it (gpg ignores files it does not know).
SIGNER_LOCK_FILE = ".fleetcd-signer.lock"

T = TypeVar("T")


@dataclass(frozen=True)
class VerifyResult:
    """What gpg said about one detached signature: ``reason`` is None exactly when valid."""

    valid: bool
    fingerprint: str | None  # primary-key fingerprint, upper case, when gpg could tell
    reason: Reason | None
    detail: str  # human phrase plus gpg's own status line, for messages


def gpg_binary(candidate: str | None = None) -> str:
    """The gpg executable to use (``candidate`` if given, else ``gpg``/``gpg2`` on PATH)."""
    names = [candidate] if candidate else ["gpg", "gpg2"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise SetupError(
        f"{Reason.GPG_UNAVAILABLE}: GnuPG not found (looked for {', '.join(names)}); install GnuPG 2.2+ "
        "(Debian: apt-get install gnupg). Without it no signature can be checked, so nothing is trusted."
    )


class _GPG(gnupg.GPG):  # type: ignore[misc]  # python-gnupg ships no type hints
    """python-gnupg with a deadline: a gpg process that outlives it is killed."""

    def __init__(self, *, timeout_seconds: float, **kwargs: Any) -> None:
        self.timeout_seconds = timeout_seconds
        self.timed_out = False
        self._timers: dict[int, threading.Timer] = {}
        try:
            super().__init__(**kwargs)  # runs gpg once (--list-config), so the timer must exist first
        except ValueError:  # python-gnupg's "Error invoking gpg: -9" for the probe we killed
            if not self.timed_out:
                raise

    def _open_subprocess(self, args: Any, passphrase: bool = False) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = super()._open_subprocess(args, passphrase)
        timer = threading.Timer(self.timeout_seconds, self._kill, (process,))
        timer.daemon = True
        self._timers[process.pid] = timer
        timer.start()
        return process

    def _collect_output(self, process: subprocess.Popen[bytes], *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._collect_output(process, *args, **kwargs)
        finally:
            timer = self._timers.pop(process.pid, None)
            if timer is not None:
                timer.cancel()

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            self.timed_out = True
            process.kill()

    def run(self, what: str, call: Callable[[], T]) -> T:
        """Run one python-gnupg call; a timeout or a failure to run gpg becomes SetupError."""
        self.timed_out = False
        failure: Exception | None = None
        try:
            result = call()
        except (OSError, ValueError) as exc:  # python-gnupg's ways of saying "gpg did not run"
            failure = exc
        if self.timed_out:
            raise SetupError(
                f"{Reason.GPG_UNAVAILABLE}: gpg did not finish {what} within {self.timeout_seconds:g} s"
            )
        if failure is not None:
            raise SetupError(f"{Reason.GPG_UNAVAILABLE}: gpg failed while {what}: {failure}") from failure
        return result


def _open_gpg(home: Path, gpgbinary: str | None, timeout_seconds: float, options: list[str]) -> _GPG:
    binary = gpg_binary(gpgbinary)
    try:
        gpg = _GPG(timeout_seconds=timeout_seconds, gpgbinary=binary, gnupghome=str(home), options=options)
    except (OSError, ValueError) as exc:
        raise SetupError(f"{Reason.GPG_UNAVAILABLE}: cannot run {binary}: {exc}") from exc
    if gpg.timed_out:
        raise SetupError(f"{Reason.GPG_UNAVAILABLE}: {binary} did not answer within {timeout_seconds:g} s")
    version = tuple(gpg.version or ())
    if version < MIN_GPG_VERSION:
        raise SetupError(
            f"{Reason.GPG_UNAVAILABLE}: {binary} is version {'.'.join(map(str, version)) or 'unknown'}; "
            f"fleetcd needs GnuPG {'.'.join(map(str, MIN_GPG_VERSION))} or newer"
        )
    return gpg


def _status_lines(stderr: str) -> list[tuple[str, str]]:
    lines = []
    for raw in stderr.splitlines():
        if raw.startswith("[GNUPG:] "):
            keyword, _, value = raw[len("[GNUPG:] ") :].partition(" ")
            # python-gnupg decodes as latin-1 (never fails); user IDs are UTF-8
            lines.append((keyword, value.strip().encode("latin-1").decode("utf-8", "replace")))
    return lines


def _invalid(reason: Reason, detail: str, fingerprint: str | None = None) -> VerifyResult:
    return VerifyResult(valid=False, fingerprint=fingerprint, reason=reason, detail=detail)


# Checked in this order: the first keyword present decides. NO_PUBKEY comes with an ERRSIG.
_PROBLEMS = (
    ("REVKEYSIG", Reason.KEY_REVOKED, "signing key was revoked"),
    ("EXPKEYSIG", Reason.KEY_EXPIRED, "signing key has expired"),
    ("BADSIG", Reason.SIGNATURE_INVALID, "signature over different bytes"),
    ("EXPSIG", Reason.SIGNATURE_INVALID, "signature has expired"),
    ("NO_PUBKEY", Reason.SIGNATURE_UNTRUSTED, "signed by a key that is not in keys/"),
    ("ERRSIG", Reason.SIGNATURE_INVALID, "signature could not be checked"),
)


def _interpret(statuses: list[tuple[str, str]], returncode: int | None) -> VerifyResult:
    values = {keyword: value for keyword, value in reversed(statuses)}  # first occurrence wins
    count = sum(1 for keyword, _ in statuses if keyword == "NEWSIG")
    if count == 0:
        found = "; ".join(f"{k} {v}".strip() for k, v in statuses) or "no status"
        return _invalid(Reason.SIGNATURE_INVALID, f"no detached OpenPGP signature found (gpg: {found})")
    if count > 1:
        return _invalid(Reason.SIGNATURE_INVALID, f"{count} signatures in one file; one file holds one")
    validsig = values.get("VALIDSIG", "").split()
    primary = validsig[9].upper() if len(validsig) >= 10 else None
    for keyword, reason, phrase in _PROBLEMS:
        if keyword in values:
            line = f"{keyword} {values[keyword]}"
            if keyword == "NO_PUBKEY" and len(values.get("ERRSIG", "").split()) >= 7:
                line = f"{line}, issuer fingerprint {values['ERRSIG'].split()[6]}"
            return _invalid(reason, f"{phrase} (gpg: {line})", primary)
    if "GOODSIG" not in values or primary is None or returncode != 0:
        return _invalid(
            Reason.SIGNATURE_INVALID, f"gpg did not report one good signature (exit {returncode})"
        )
    good = f"GOODSIG {values['GOODSIG']}"
    digest, sig_class = validsig[7], validsig[8]
    if sig_class != BINARY_SIGNATURE_CLASS:
        return _invalid(
            Reason.SIGNATURE_INVALID,
            f"signature class 0x{sig_class} is not a binary-document signature; sign the exact bytes "
            f"with 'gpg --detach-sign --armor' (no --textmode) (gpg: {good})",
            primary,
        )
    if digest not in STRONG_DIGESTS:
        return _invalid(
            Reason.SIGNATURE_INVALID,
            f"weak digest algorithm {digest}; use SHA256 or stronger (gpg: {good})",
            primary,
        )
    return VerifyResult(valid=True, fingerprint=primary, reason=None, detail=f"good signature (gpg: {good})")


def _key_file_problem(data: bytes) -> str | None:
    if len(data) > KEY_FILE_MAX_BYTES:
        return f"key file is {len(data)} bytes; at most {KEY_FILE_MAX_BYTES}"
    if _ARMOR_SECRET_KEY in data:
        return "holds a SECRET key: never commit it; commit 'gpg --armor --export FINGERPRINT' instead"
    if _ARMOR_PUBLIC_KEY not in data:
        return "not an armored OpenPGP public key (expected '-----BEGIN PGP PUBLIC KEY BLOCK-----')"
    return None


class Keyring:
    """A dedicated, throwaway GNUPGHOME holding only the given public keys."""

    def __init__(self, gpg: _GPG, home: Path) -> None:
        self._gpg = gpg
        self._home = home
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(home), True)

    @classmethod
    def from_armored(
        cls,
        keys: Mapping[str, bytes],
        *,
        gpgbinary: str | None = None,
        timeout_seconds: float = GPG_TIMEOUT_SECONDS,
    ) -> Keyring:
        """Import ``keys`` (repository path -> armored bytes); a bad file is InvalidContent naming it."""
        home = Path(tempfile.mkdtemp(prefix="fleetcd-keyring-"))
        try:
            keyring = cls(_open_gpg(home, gpgbinary, timeout_seconds, _KEYRING_OPTIONS), home)
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        try:
            keyring._import_all(keys)
        except BaseException:
            keyring.close()
            raise
        return keyring

    def _import_all(self, keys: Mapping[str, bytes]) -> None:
        problems: dict[str, str] = {}
        retry: list[str] = []
        for name in sorted(keys):
            problem = _key_file_problem(keys[name]) or self._import(name, keys[name], last_try=False)
            if problem == "":
                retry.append(name)
            elif problem:
                problems[name] = problem
        # A revocation certificate on its own applies only once its key is in: retry after the rest,
        # so a revocation is never silently dropped because its file sorts first.
        for name in retry:
            problem = self._import(name, keys[name], last_try=True)
            if problem:
                problems[name] = problem
        if problems:
            raise InvalidContent(
                Diagnostic(name, None, None, message, Reason.INVALID)
                for name, message in sorted(problems.items())
            )

    def _import(self, name: str, data: bytes, *, last_try: bool) -> str | None:
        """None when imported, "" when nothing applied yet (retry later), else the problem."""
        result = self._gpg.run(f"importing {name}", lambda: self._gpg.import_keys(data))
        if result.sec_read:
            return "holds a SECRET key: never commit it; commit 'gpg --armor --export FINGERPRINT' instead"
        if result.not_imported:
            texts = "; ".join(r["text"] for r in result.results if "problem" in r) or "rejected by gpg"
            return f"{result.not_imported} key(s) not imported: {texts}"
        if (result.fingerprints or result.n_revoc) and result.returncode == 0:
            return None
        if not last_try:
            return ""
        said = [line for line in (result.stderr or "").splitlines() if not line.startswith("[GNUPG:]")]
        note = said[-1].removeprefix("gpg: ") if said else f"exit {result.returncode}"
        return f"holds no OpenPGP public key, nor a revocation of a key in keys/ (gpg: {note})"

    def fingerprints(self) -> set[str]:
        """Primary-key fingerprints of every key in this keyring (expired and revoked included)."""
        keys = self._gpg.run("listing keys", self._gpg.list_keys)
        return {str(key["fingerprint"]).upper() for key in keys}

    def earliest_expiry(self) -> datetime | None:
        """When the first key or subkey in this keyring expires (None: none ever does).

        gpg judges expiry when it verifies, so a verdict over these keys holds until then at most."""
        keys = self._gpg.run("listing keys", self._gpg.list_keys)
        stamps = [str(key.get("expires") or "") for key in keys]
        subkeys = [sub for key in keys for sub in key.get("subkey_info", {}).values()]
        stamps += [str(sub.get("expires") or "") for sub in subkeys]
        found = [int(stamp) for stamp in stamps if stamp.isdigit()]
        return datetime.fromtimestamp(min(found), UTC) if found else None

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        """Check one detached signature over exactly ``data``; never raises for bad signatures."""
        if len(signature) > SIGNATURE_MAX_BYTES:
            return _invalid(
                Reason.SIGNATURE_INVALID,
                f"signature file is {len(signature)} bytes; at most {SIGNATURE_MAX_BYTES}",
            )
        if not signature.strip():
            return _invalid(Reason.SIGNATURE_INVALID, "signature file is empty")
        if signature.count(_ARMOR_SIGNATURE) > 1:
            return _invalid(
                Reason.SIGNATURE_INVALID, "several armored signatures in one file; one file holds one"
            )
        fd, sig_path = tempfile.mkstemp(dir=self._home, suffix=".asc")  # python-gnupg reads it from a file
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(signature)
            result = self._gpg.run(
                "verifying a signature", lambda: self._gpg.verify_data(sig_path, data, _VERIFY_OPTIONS)
            )
        finally:
            Path(sig_path).unlink(missing_ok=True)
        return _interpret(_status_lines(result.stderr or ""), result.returncode)

    def close(self) -> None:
        """Remove the temporary home (idempotent)."""
        self._cleanup()

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Signer:
    """Makes detached signatures with secret keys in ``gnupghome`` (operators, controller, tests)."""

    def __init__(
        self,
        gnupghome: Path,
        *,
        gpgbinary: str | None = None,
        timeout_seconds: float = GPG_TIMEOUT_SECONDS,
    ) -> None:
        gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home = gnupghome
        # Shared before gpg first runs, so a closing Signer cannot stop the agent under this one.
        self._lock = _shared_lock(gnupghome / SIGNER_LOCK_FILE)
        self._release = weakref.finalize(self, _close_fd, self._lock)
        try:
            self._gpg = _open_gpg(gnupghome, gpgbinary, timeout_seconds, [])
        except BaseException:
            self._release()
            raise

    def generate_key(self, name: str, email: str, expire: str = "2y") -> str:
        """A new ed25519 signing key without passphrase (development keys); returns its fingerprint."""
        params = self._gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            key_usage="sign",
            name_real=name,
            name_email=email,
            expire_date=expire,
            no_protection=True,
        )
        result = self._gpg.run(f"generating a key for {email}", lambda: self._gpg.gen_key(params))
        if not result.fingerprint:
            raise SetupError(f"gpg could not generate a key for {email}: {result.stderr.strip()}")
        return str(result.fingerprint).upper()

    def sign_detached(self, data: bytes, fingerprint: str) -> bytes:
        """An armored detached signature over exactly ``data``, made by ``fingerprint`` (or its subkey)."""
        own = self._own_fingerprints(fingerprint)
        if not own:
            raise SetupError(f"no secret key {fingerprint} in {self.home}")
        # --local-user makes gpg fail rather than fall back to another default key.
        result = self._gpg.run(
            f"signing with {fingerprint}",
            lambda: self._gpg.sign(
                data, detach=True, clearsign=False, binary=False, extra_args=["--local-user", fingerprint]
            ),
        )
        if not result.data or str(result.fingerprint or "").upper() not in own:
            raise SetupError(f"gpg could not sign with {fingerprint}: {(result.stderr or '').strip()}")
        return bytes(result.data)

    def _own_fingerprints(self, fingerprint: str) -> set[str]:
        """The primary and subkey fingerprints of secret key ``fingerprint``."""
        keys = self._gpg.run("listing secret keys", lambda: self._gpg.list_keys(True, keys=[fingerprint]))
        own: set[str] = set()
        for key in keys:
            if str(key["fingerprint"]).upper() == fingerprint.upper():
                own.add(fingerprint.upper())
                own.update(str(sub[2]).upper() for sub in key.get("subkeys", []) if len(sub) > 2 and sub[2])
        return own

    def export_public(self, fingerprint: str) -> bytes:
        """The armored public key, as committed to ``keys/<name>.asc``."""
        armored = self._gpg.run(
            f"exporting {fingerprint}", lambda: self._gpg.export_keys(fingerprint, armor=True, minimal=True)
        )
        if not armored:
            raise SetupError(f"no public key {fingerprint} in {self.home}")
        return str(armored).encode("ascii")

    def secret_fingerprints(self) -> list[str]:
        """Fingerprints of every secret key in the home. A listing gpg failed (non-zero exit) or that
        came back empty is asked for once more: under load, with the agent being restarted by
        another process, gpg listed no secret key once, which the caller then reported as "no
        secret key of a controller key". A second failure is a SetupError quoting gpg."""
        keys = self._gpg.run("listing secret keys", lambda: self._gpg.list_keys(True))
        if keys.returncode or not keys:
            time.sleep(SECRET_LIST_RETRY_SECONDS)
            keys = self._gpg.run("listing secret keys", lambda: self._gpg.list_keys(True))
        if keys.returncode:
            said = " | ".join(line for line in (keys.stderr or "").splitlines()[-3:] if line.strip())
            raise SetupError(
                f"{Reason.GPG_UNAVAILABLE}: gpg failed listing the secret keys in {self.home}: {said}"
            )
        return sorted(str(key["fingerprint"]).upper() for key in keys)

    def close(self) -> None:
        """Stop the gpg-agent that signing started in this home, unless another Signer (in any
        process) still uses it; the home itself stays. Idempotent."""
        if not self._release.alive:
            return
        last = self._lock is not None and _try_exclusive(self._lock)
        try:
            if last:
                self._stop_agent()
        finally:
            self._release()  # after the agent is gone: a Signer starting meanwhile waits for it

    def _stop_agent(self) -> None:
        gpgconf = shutil.which("gpgconf", path=str(Path(self._gpg.gpgbinary).parent)) or shutil.which(
            "gpgconf"
        )
        if gpgconf:
            subprocess.run(
                [gpgconf, "--homedir", str(self.home), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=GPG_TIMEOUT_SECONDS,
                check=False,
            )

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shared_lock(path: Path) -> int | None:
    """An fd holding a shared flock on ``path``; None where the home cannot hold the file (read-only):
    then nothing tells whether others use the agent, so it is left running."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a last Signer stops the agent
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_exclusive(fd: int) -> bool:
    """True when no other Signer holds the lock. (A failed upgrade may drop our shared lock: we
    are closing anyway.)"""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
