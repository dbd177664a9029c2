"""Deciding whether to trust the git server's SSH host key (or TLS certificate) on connect.

Used by :mod:`fleetcd.git.remote` (libgit2: the controller) for every fetch and push; the policy
and fingerprints live in :mod:`fleetcd.git.knownhosts`, which the robot's git CLI transport uses
through OpenSSH's ``KnownHostsCommand``. A robot is provisioned with the
server's host key fingerprint (``SHA256:...`` as ``ssh-keygen -lf key.pub`` prints it) and accepts
no other key, so a hijacked network cannot impersonate the git server. Without a pin, libgit2's own
check against ``~/.ssh/known_hosts`` (TLS: the system CA store) decides. Accepting any key takes an
explicit ``insecure_accept_any_host_key=True``.

Why the ffi below: pygit2 hands its ``certificate_check`` callback ``None`` instead of the host key,
and by default *accepts* every SSH host key. libgit2 itself passes a ``git_cert_hostkey`` holding the
raw key and its SHA-256; we install our own C callback to read it. Its layout (libgit2 ≥ 1.1) is
fixed here and cross-checked at run time (the SHA-256 libgit2 reports must equal our hash of the raw
key), so a layout change rejects the connection instead of trusting it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pygit2.ffi import C, ffi

from fleetcd.git.knownhosts import HostKeyPolicy, fingerprint

__all__ = ["HostKeyCheck", "HostKeyPolicy", "fingerprint"]

# git_cert_hostkey (include/git2/cert.h): parent (int), type (int), md5[16], sha1[20], sha256[32],
# raw_type (int), hostkey (const char *), hostkey_len (size_t) → offsets on LP64 platforms.
_TYPE_OFFSET = 4
_SHA256_OFFSET = 44
_HOSTKEY_OFFSET = 80
_HOSTKEY_LEN_OFFSET = 88
_CERT_SSH_SHA256 = 1 << 2
_CERT_SSH_RAW = 1 << 3
_ACCEPT = 0
_REJECT = -17  # GIT_ECERTIFICATE


@dataclass
class HostKeyCheck:
    """One connection's check; keeps its C callback alive and remembers why it said no."""

    policy: HostKeyPolicy
    rejection: str | None = None
    seen: str | None = None
    _c_callback: Any = field(default=None, repr=False)

    def c_callback(self) -> Any:
        """A ``git_transport_certificate_check_cb`` for libgit2 (only needed when keys are pinned)."""
        if self._c_callback is None:
            self._c_callback = ffi.callback("int(git_cert *, int, const char *, void *)", self._check)
        return self._c_callback

    def _check(self, cert: Any, valid: int, host: Any, _payload: Any) -> int:
        try:
            name = ffi.string(host).decode("utf-8", "replace") if host else "?"
            if cert == ffi.NULL or cert.cert_type != C.GIT_CERT_HOSTKEY_LIBSSH2:
                return _ACCEPT if self.decide(None, bool(valid), name) else _REJECT
            return _ACCEPT if self.decide(_ssh_fingerprint(cert), bool(valid), name) else _REJECT
        except Exception as exc:  # an exception must not cross into C: fail closed
            self.rejection = f"host key check failed: {exc}"
            return _REJECT

    def decide(self, seen: str | None, valid: bool, host: str) -> bool:
        """True to connect. ``seen`` is the SSH key's fingerprint when known (None: TLS or unknown)."""
        self.seen = seen
        if self.policy.insecure_accept_any_host_key:
            return True
        if self.policy.pinned_sha256:
            if seen is not None and seen in self.policy.pinned_sha256:
                return True
            self.rejection = (
                f"host key {seen or '(not available)'} of {host} is not one of the pinned keys "
                f"{', '.join(self.policy.pinned_sha256)}"
            )
            return False
        if not valid:
            key = f"host key {seen}" if seen else "the host key"
            self.rejection = (
                f"{key} of {host} is not in ~/.ssh/known_hosts (TLS: the certificate is not trusted); "
                "pin its fingerprint or add it there"
            )
        return valid


def _ssh_fingerprint(cert: Any) -> str:
    raw = ffi.cast("unsigned char *", cert)
    kinds = ffi.cast("int *", raw + _TYPE_OFFSET)[0]
    if not kinds & _CERT_SSH_RAW:
        raise ValueError("libgit2 did not pass the raw host key")
    key_ptr = ffi.cast("char **", raw + _HOSTKEY_OFFSET)[0]
    key_len = ffi.cast("size_t *", raw + _HOSTKEY_LEN_OFFSET)[0]
    if key_ptr == ffi.NULL or not 0 < key_len < 1 << 16:
        raise ValueError("implausible host key in the certificate structure")
    key = bytes(ffi.buffer(key_ptr, key_len))
    if kinds & _CERT_SSH_SHA256:
        reported = bytes(ffi.buffer(raw + _SHA256_OFFSET, 32))
        if reported != hashlib.sha256(key).digest():
            raise ValueError("certificate structure does not match this libgit2 (SHA-256 mismatch)")
    return fingerprint(key)
