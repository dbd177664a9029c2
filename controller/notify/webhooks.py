"""Webhook notifications of rollout transitions (the only controller module that imports ``requests``).

The last step of a reconcile, after the state branch is pushed: each pending message of the
outbox (:mod:`controller.notify.outbox`: one per subscribed webhook and audit event, committed
with the audit lines) is POSTed as JSON ``{"format", "fleet", "id", "event"}``. ``id`` is the
audit event key, also sent as ``Idempotency-Key``: delivery is at least once (a controller that
dies after the push sends again after its restart), so receivers drop the ids they have seen.
Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter
(``Retry-After`` honoured up to a cap).

With a shared secret each attempt is signed (:mod:`controller.notify.signing`: HMAC-SHA256 over
its timestamp and the exact body). Without one the messages go out unsigned and a warning is
logged on every call that sends: existing receivers keep working while the operator sets a secret.

Nothing here raises into the reconcile loop. The state is already in git; a receiver that is down
must not stall robots. :func:`send` returns one :class:`Delivery` per message, which the outbox
keeps for the next reconcile or drops, audited, after its bounded rounds. All waiting is bounded:
attempts per delivery, a cap per delay, and a time budget per call after which the remaining
deliveries fail without being tried.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from pydantic import JsonValue

from controller.audit.events import AuditEvent, canonical_json, event_key
from controller.notify.forge import CommitState, Forge
from controller.notify.outbox import ROLLOUT_TRANSITIONS, wants
from controller.notify.signing import WebhookSecret
from fleetcd.compat import UTC
from fleetcd.models.fleet import Webhook

__all__ = [
    "ROLLOUT_TRANSITIONS",
    "Delivery",
    "Message",
    "WebhookSettings",
    "body",
    "messages",
    "post_commit_status",
    "send",
    "wants",
]

PAYLOAD_FORMAT = "fleetcd.dev/webhook/v1"
USER_AGENT = "fleetcd-controller"

log = logging.getLogger("fleetcd.controller")


@dataclass(frozen=True)
class WebhookSettings:
    """Bounds on how long notifications may hold up the loop; units in the names."""

    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0
    max_attempts: int = 4  # per delivery, the first try included
    backoff_initial_seconds: float = 0.5  # doubled after each failed attempt ...
    backoff_max_seconds: float = 8.0  # ... up to this
    jitter_fraction: float = 0.25  # each delay is shortened by up to this fraction, at random
    retry_after_cap_seconds: float = 30.0  # a receiver asking for longer gets this
    budget_seconds: float = 60.0  # per send() call; afterwards remaining deliveries fail untried

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 10:
            raise ValueError(f"max_attempts must be 1..10, got {self.max_attempts}")
        if not 0.0 <= self.jitter_fraction <= 1.0:
            raise ValueError(f"jitter_fraction must be 0..1, got {self.jitter_fraction}")
        for name in ("connect_timeout_seconds", "read_timeout_seconds", "budget_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def backoff(self, failed_attempts: int, jitter: float) -> float:
        """Delay after ``failed_attempts`` failures; ``jitter`` is uniform in [0, 1)."""
        doubled = self.backoff_initial_seconds * 2.0 ** (failed_attempts - 1)
        base = min(self.backoff_max_seconds, doubled)
        return base * (1.0 - self.jitter_fraction * jitter)


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one event to one webhook."""

    url: str  # redacted (scheme://host[:port]): paths and queries of webhook URLs often hold tokens
    event_key: str
    kind: str
    ok: bool
    attempts: int  # 0: not tried (receiver unreachable earlier, or the time budget was spent)
    status: int | None  # last HTTP status, None when no response came back
    error: str | None

    def as_audit_data(self) -> dict[str, JsonValue]:
        return {
            "url": self.url,
            "event_key": self.event_key,
            "kind": self.kind,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
        }


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # fleet.yaml refuses such a URL; a log line must not fail on one anyway
        return "(a URL that does not parse)"
    host = parts.hostname or "?"
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def body(fleet: str, key: str, event_json: Mapping[str, JsonValue]) -> bytes:
    """The POST body: the event exactly as its audit line holds it, and its key as ``id``."""
    return canonical_json({"format": PAYLOAD_FORMAT, "fleet": fleet, "id": key, "event": dict(event_json)})


@dataclass(frozen=True)
class Message:
    """One event for one webhook."""

    url: str
    key: str  # the audit event key: Idempotency-Key and the body's ``id``
    kind: str
    event: Mapping[str, JsonValue]  # as logged


def messages(webhooks: Sequence[Webhook], events: Sequence[AuditEvent]) -> list[Message]:
    """Each event for each webhook subscribed to its kind, webhook by webhook, for :func:`send`."""
    return [
        Message(webhook.url, event_key(event), event.kind.value, event.as_json())
        for webhook in webhooks
        for event in events
        if wants(webhook, event.kind)
    ]


def send(
    messages: Sequence[Message],
    *,
    fleet: str,
    session: requests.Session | None = None,
    settings: WebhookSettings = WebhookSettings(),  # frozen: sharing it is safe
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,  # backoff jitter, not a secret
    secret: WebhookSecret | None = None,
    wall: Callable[[], float] = time.time,  # the signed timestamp
) -> list[Delivery]:
    """POST each message in order, one :class:`Delivery` each; never raises for delivery problems.

    With ``secret`` every attempt is signed; without it the messages go out unsigned, logged."""
    if messages and secret is None:
        log.warning(
            "sending %d webhook message(s) unsigned: no webhook secret"
            " (--webhook-secret-file or FLEETCD_WEBHOOK_SECRET)",
            len(messages),
        )
    unreachable: dict[str, str] = {}
    deliveries: list[Delivery] = []
    deadline = clock() + settings.budget_seconds
    with _session(session) as http:
        sender = _Sender(http, settings, sleep, clock, jitter, deadline, secret, wall)
        for message in messages:
            if message.url in unreachable:
                skipped = f"not attempted: {unreachable[message.url]}"
                deliveries.append(
                    Delivery(redact(message.url), message.key, message.kind, False, 0, None, skipped)
                )
                continue
            delivery = sender.send(
                message.url, message.key, message.kind, body(fleet, message.key, message.event)
            )
            deliveries.append(delivery)
            if not delivery.ok and delivery.status is None and delivery.attempts:
                # One dead receiver costs one round of retries per reconcile, not one per event.
                unreachable[message.url] = (
                    f"receiver unreachable earlier in this reconcile ({delivery.error})"
                )
    return deliveries


def _session(session: requests.Session | None) -> contextlib.AbstractContextManager[requests.Session]:
    """The caller's session, left open; else a new one, closed at the end of the block."""
    return requests.Session() if session is None else contextlib.nullcontext(session)


@dataclass
class _Sender:
    http: requests.Session
    settings: WebhookSettings
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    jitter: Callable[[], float]
    deadline: float
    secret: WebhookSecret | None
    wall: Callable[[], float]

    def send(
        self, url: str, key: str, kind: str, body: bytes, extra: Mapping[str, str] | None = None
    ) -> Delivery:
        where = redact(url)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Fleetcd-Event": kind,
            "User-Agent": USER_AGENT,
            **(extra or {}),
        }
        status: int | None = None
        error = "not attempted: notify budget spent"
        attempts = 0
        while attempts < self.settings.max_attempts and self.clock() < self.deadline:
            attempts += 1
            retry_after: float | None = None
            signed = dict(headers)
            if self.secret is not None:  # each attempt its own timestamp: a retry is not stale
                signed.update(self.secret.headers(body, int(self.wall())))
            try:
                with self.http.post(
                    url,
                    data=body,
                    headers=signed,
                    timeout=(self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds),
                    allow_redirects=False,  # a redirected POST is a misconfiguration, not a delivery
                    stream=True,  # the receiver's body is never read
                ) as response:
                    status = response.status_code
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except (requests.ConnectionError, requests.Timeout) as exc:
                status, error, retryable = None, f"{type(exc).__name__}: {_short(exc, url)}", True
            except (requests.RequestException, OSError, ValueError) as exc:
                return Delivery(
                    where, key, kind, False, attempts, None, f"{type(exc).__name__}: {_short(exc, url)}"
                )
            else:
                if 200 <= status < 300:
                    return Delivery(where, key, kind, True, attempts, status, None)
                retryable = status >= 500 or status == 429
                error = f"HTTP {status}"
            if not retryable or attempts == self.settings.max_attempts:
                break
            delay = self.settings.backoff(attempts, self.jitter())
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.retry_after_cap_seconds))
            if self.clock() + delay >= self.deadline:
                error += "; no retry: notify budget spent"
                break
            self.sleep(delay)
        return Delivery(where, key, kind, False, attempts, status, error)


def post_commit_status(
    forge: Forge,
    sha: str,
    state: CommitState,
    description: str,
    *,
    session: requests.Session | None = None,
    settings: WebhookSettings = WebhookSettings(),  # frozen: sharing it is safe
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> Delivery:
    """POST ``state`` for ``sha`` to the forge, retried like a webhook; never raises for the forge."""
    deadline = clock() + settings.budget_seconds
    with _session(session) as http:
        sender = _Sender(http, settings, sleep, clock, jitter, deadline, None, time.time)
        return sender.send(
            forge.url(sha),
            f"{sha}:{state.value}",
            "commit_status",
            forge.body(state, description),
            forge.headers(),
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _short(exc: BaseException, url: str) -> str:
    """The error's first line, at most 300 characters, without the URL's path, query or user info:
    requests names them ("Max retries exceeded with url: /hook/<token>?sig=..."), they often carry
    a token, and the error is kept in the outbox and the notify_dropped line on the state branch."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    for secret in sorted(_secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, "…")
    return text[:300]


def _secrets_of(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
        found = {url, parts.path, parts.query, parts.fragment, parts.username or "", parts.password or ""}
    except ValueError:
        return {url}
    if parts.query:
        found.add(f"{parts.path}?{parts.query}")
    return {secret for secret in found if len(secret) > 1}
