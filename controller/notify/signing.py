"""HMAC-SHA256 signatures on webhook bodies (pure, no I/O but :func:`load_secret`).

Each POST carries two headers::

    X-Fleetcd-Timestamp: 1733490000               # unix seconds when this attempt was sent
    X-Fleetcd-Signature-256: sha256=<64 hex>      # HMAC-SHA256(secret, b"<timestamp>." + body)

The MAC covers the timestamp and the exact body bytes, so a receiver that checks the MAC and then
refuses timestamps older than a few minutes refuses replays of a captured delivery; it drops
duplicates within that window by the body's ``id`` (deliveries are at least once). A retry is
signed again with its own timestamp. docs/operating.md ("Webhooks") shows a receiver's check.

The secret is shared with the receivers and read from a file or the environment by the
controller, never from the fleet repository (robots may read all of it). :class:`WebhookSecret`
never shows its bytes in a ``repr``, so it cannot reach a log line or a traceback by accident.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

SIGNATURE_HEADER = "X-Fleetcd-Signature-256"
TIMESTAMP_HEADER = "X-Fleetcd-Timestamp"
SECRET_ENV = "FLEETCD_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret
MIN_SECRET_BYTES = 16  # a shorter shared secret is guessable offline from one captured delivery
MAX_SECRET_BYTES = 4096


class SecretError(ValueError):
    """A webhook secret that cannot be used; the message names where it came from, never its bytes."""


class WebhookSecret:
    """The shared secret's bytes; ``repr`` and ``str`` never show them."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes, where: str) -> None:
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise SecretError(
                f"{where}: the webhook secret must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes,"
                f" got {len(key)}"
            )
        self._key = key

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        """The two headers that sign ``body`` as sent at ``timestamp`` (unix seconds)."""
        return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(self._key, timestamp, body)}

    def __repr__(self) -> str:
        return "WebhookSecret(<redacted>)"

    __str__ = __repr__


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``b"<timestamp>." + body``."""
    mac = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def load_secret(file: Path | None, env: str | None) -> WebhookSecret | None:
    """The secret from ``file`` (its bytes, one trailing newline ignored) or the value of
    :data:`SECRET_ENV`; None when neither is set. Both set is refused: which one wins would be a
    guess."""
    if file is not None and env:
        raise SecretError(f"--webhook-secret-file and {SECRET_ENV} are both set; use one")
    if file is not None:
        try:
            with file.open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 3)  # a bounded read: 2 for a line end
        except OSError as exc:
            raise SecretError(f"{file}: cannot read the webhook secret: {exc.strerror}") from exc
        if len(data) > MAX_SECRET_BYTES + 2:
            raise SecretError(f"{file}: the webhook secret must be at most {MAX_SECRET_BYTES} bytes")
        return WebhookSecret(_chomp(data), str(file))
    if env:
        return WebhookSecret(_chomp(env.encode("utf-8")), SECRET_ENV)
    return None


def _chomp(data: bytes) -> bytes:
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
