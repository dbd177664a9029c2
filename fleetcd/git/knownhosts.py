"""Host key pins for SSH: the policy, OpenSSH fingerprints, and the ``KnownHostsCommand`` that enforces a pin.

A robot is provisioned with its git server's host key fingerprint (``SHA256:...`` as
``ssh-keygen -lf key.pub`` prints it) and must accept no other key. OpenSSH cannot pin a bare
fingerprint in ``known_hosts``, but since 8.5 it asks a ``KnownHostsCommand`` for the known keys
and hands it the key the server offered (``%K``, base64, with its type ``%t``). Run as a script
(``python -I -S knownhosts.py PINS HOST TYPE KEY``, see :func:`known_hosts_command`), this module
prints a ``known_hosts`` line for exactly that key when its SHA-256 is one of the comma-separated
PINS, and otherwise nothing, so ``StrictHostKeyChecking=yes`` refuses the connection; the refusal
is written to stderr (which ssh and git pass on) naming the key seen and the pins.

Standard library only and no package imports, so ssh can run it with ``-I -S`` (no site, ~10 ms)
and the robot side never reaches pygit2 through it. Used by :mod:`fleetcd.git.robotgit` (git CLI)
and :mod:`fleetcd.git.hostkeys` (libgit2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

PIN_PREFIX = "SHA256:"
_PIN_LENGTH = len(PIN_PREFIX) + 43  # unpadded base64 of 32 bytes
REFUSAL_MARK = "is not one of the pinned keys"  # robotgit maps stderr holding this to TransportError
_REFUSED = 1
_NO_KEY = frozenset({"", "NONE"})  # what %K and %t expand to when ssh asks without a key (ORDER)


def fingerprint(raw_key: bytes) -> str:
    """OpenSSH's fingerprint of a public key blob: ``SHA256:`` + unpadded base64 of its SHA-256."""
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(raw_key).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class HostKeyPolicy:
    """Which server keys to trust. Default: the user's known_hosts / the system CA store."""

    pinned_sha256: tuple[str, ...] = ()
    insecure_accept_any_host_key: bool = False

    def __post_init__(self) -> None:
        for pin in self.pinned_sha256:
            if not pin.startswith(PIN_PREFIX) or len(pin) != _PIN_LENGTH or "," in pin:
                raise ValueError(f"host key pin {pin!r} is not an OpenSSH SHA256 fingerprint (SHA256:...)")


def known_hosts_line(pins: tuple[str, ...], host: str, key_type: str, key_b64: str) -> str | None:
    """The ``known_hosts`` line accepting ``key_b64`` for ``host`` when it matches a pin, else None.

    ssh also asks without a key (``NONE``, to order its algorithms): nothing is known then.
    """
    if key_b64 in _NO_KEY or key_type in _NO_KEY or not host:
        return None
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return f"{host} {key_type} {key_b64}" if fingerprint(raw) in pins else None


def known_hosts_command(pins: tuple[str, ...], python: str) -> str:
    """The ``KnownHostsCommand`` value running this file with ``python`` (absolute, as ssh requires)."""
    for part in (python, __file__):
        if not Path(part).is_absolute() or any(c in part for c in "%\"'\\ \t\n"):
            raise ValueError(f"{part!r} cannot be run by ssh's KnownHostsCommand (absolute, no quotes or %)")
    if not Path(__file__).is_file():
        raise ValueError(f"{__file__} is not a file ssh can run (a zipped install?)")
    return f"{python} -I -S {__file__} {','.join(pins)} %H %t %K"


def main(argv: list[str]) -> int:
    """``PINS HOST TYPE KEY`` → print the accepting line, or say on stderr why there is none."""
    if len(argv) != 4:
        print(f"usage: {Path(__file__).name} PINS HOST TYPE KEY", file=sys.stderr)
        return _REFUSED
    pins, host, key_type, key_b64 = argv
    pinned = tuple(p for p in pins.split(",") if p)
    line = known_hosts_line(pinned, host, key_type, key_b64)
    if line is not None:
        print(line)
        return 0
    if key_b64 not in _NO_KEY:  # no key: ssh ordering its algorithms, not checking a server
        try:
            seen = fingerprint(base64.b64decode(key_b64, validate=True))
        except (binascii.Error, ValueError):
            seen = "(unreadable)"
        print(f"fleetcd: host key {seen} of {host} {REFUSAL_MARK} {', '.join(pinned)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
