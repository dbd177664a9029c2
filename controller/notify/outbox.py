"""The webhook outbox on the state branch: deliveries that survive a crash (pure, no I/O).

Webhooks are delivered at least once. The write step puts one entry per (subscribed webhook,
newly logged audit event) into ``notify/outbox.json``, in the same state commit as the audit lines,
so the push that makes a transition official also records that it is still to be announced. The
notify step sends every entry after the push; a controller killed in between finds the entries in
the state commit and sends them after its restart. What the notify step saw (:class:`Outcome`) is
kept in the mirror, a cache, and folded into the next state commit by :func:`settle`: delivered
entries leave the outbox, failed ones stay for the next reconcile, and after :data:`MAX_ROUNDS`
failed rounds an entry is dropped with a ``notify_dropped`` audit line. An outcome that was lost
(the cache deleted, another controller) only means the entry is sent again: receivers drop
duplicates by the event id in the payload.

Webhook URLs are not written to the state branch — they often carry tokens, and robots may read
the whole repository: an entry names its webhook by the URL's sha256 (:func:`webhook_id`). A
webhook no longer in ``fleet.yaml`` has its entries dropped, audited.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, JsonValue

from controller.audit.events import AuditEvent, AuditKind, event_key
from fleetcd.models.base import Sha256
from fleetcd.models.fleet import Webhook

OUTBOX_FORMAT = "fleetcd.dev/outbox/v1"
MAX_ROUNDS = 5  # reconciles whose notify step failed an entry before it is dropped (audited)
ERROR_CHARS = 300
# What an empty ``events:`` list subscribes to: every rollout transition, not per-robot reports.
# Audit kind values (strings), so a kind added later is opted in here on purpose.
ROLLOUT_TRANSITIONS = frozenset(
    {
        "rollout_created",
        "wave_started",
        "wave_passed",
        "wave_failed",
        "rollout_halted",
        "rollout_paused",
        "rollout_resumed",
        "rollout_aborted",
        "rollback",
        "rollout_completed",
        "stalled",
    }
)
# Never announced: a dropped delivery announced to a receiver that keeps failing would drop again.
_NEVER_SENT = frozenset({AuditKind.NOTIFY_DROPPED})
_ROLLOUT_PREFIX = "rollout_"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutboxEntry(_Model):
    webhook: Sha256  # sha256 of the webhook's URL
    event_key: Sha256
    event: dict[str, JsonValue]  # the audit event exactly as its log line holds it
    rounds: int = 0  # notify steps that failed it so far
    last_error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.webhook}:{self.event_key}"

    @property
    def kind(self) -> str:
        return str(self.event.get("kind", ""))


class Outbox(_Model):
    format: str = OUTBOX_FORMAT
    entries: tuple[OutboxEntry, ...] = ()


class Outcome(_Model):
    """What one notify step saw for one entry."""

    ok: bool
    error: str | None = None


def webhook_id(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def wants(webhook: Webhook, kind: AuditKind) -> bool:
    """Does ``webhook`` subscribe to ``kind``? Names match with or without ``rollout_``."""
    if kind in _NEVER_SENT:
        return False
    if not webhook.events:
        return kind.value in ROLLOUT_TRANSITIONS
    return any(name == kind.value or _ROLLOUT_PREFIX + name == kind.value for name in webhook.events)


def decode(data: bytes | None) -> list[OutboxEntry]:
    return list(Outbox.model_validate_json(data).entries) if data is not None else []


def encode(entries: Sequence[OutboxEntry]) -> bytes | None:
    """The file's bytes; None (no file) when nothing is pending, so fleets without webhooks never
    have one."""
    if not entries:
        return None
    return Outbox(entries=tuple(entries)).model_dump_json(indent=1).encode() + b"\n"


def settle(
    entries: Sequence[OutboxEntry],
    outcomes: Mapping[str, Outcome],
    webhooks: Sequence[Webhook],
    now: datetime,
) -> tuple[list[OutboxEntry], list[AuditEvent]]:
    """The entries still pending after the last notify step's ``outcomes``, and the drop events."""
    known = {webhook_id(w.url) for w in webhooks}
    pending: list[OutboxEntry] = []
    dropped: list[AuditEvent] = []
    for entry in entries:
        outcome = outcomes.get(entry.id)
        if entry.webhook not in known:
            dropped.append(_dropped(entry, now, "the webhook is no longer in fleet.yaml"))
        elif outcome is None:
            pending.append(entry)  # not tried yet, or by a controller that died: send (again)
        elif not outcome.ok:
            failed = entry.model_copy(
                update={"rounds": entry.rounds + 1, "last_error": (outcome.error or "")[:ERROR_CHARS]}
            )
            if failed.rounds >= MAX_ROUNDS:
                dropped.append(_dropped(failed, now, f"failed {failed.rounds} times: {failed.last_error}"))
            else:
                pending.append(failed)
    return pending, dropped


def enqueue(
    pending: Sequence[OutboxEntry], events: Iterable[AuditEvent], webhooks: Sequence[Webhook]
) -> list[OutboxEntry]:
    """``pending`` plus one entry per (subscribed webhook, event) not already in it."""
    out = list(pending)
    seen = {entry.id for entry in out}
    for webhook in webhooks:
        hook = webhook_id(webhook.url)
        for event in events:
            if not wants(webhook, event.kind):
                continue
            entry = OutboxEntry(webhook=hook, event_key=event_key(event), event=event.as_json())
            if entry.id not in seen:
                seen.add(entry.id)
                out.append(entry)
    return out


def _dropped(entry: OutboxEntry, now: datetime, reason: str) -> AuditEvent:
    return AuditEvent(
        at=now,
        kind=AuditKind.NOTIFY_DROPPED,
        reason=reason,
        data={
            "webhook": entry.webhook,
            "event_key": entry.event_key,
            "kind": entry.kind,
            "rounds": entry.rounds,
        },
    )
