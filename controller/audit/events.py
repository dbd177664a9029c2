"""Audit events: what the controller records about each decision it took (pure, no I/O, no clock).

The *plan* step returns these; the *write* step appends them to the hash-chained log
(:mod:`controller.audit.chain`). ``at`` is passed in by the caller and normalised to UTC, so the
day file and the line bytes do not depend on the controller's local zone.

Identity. :func:`event_key` names an event by everything except ``at``: a controller killed after
its write and restarted re-derives the same decisions at a later ``now``, and must not log them
twice. Two genuine occurrences that would otherwise look alike must say what differs in ``data``
(a deployment id, generation, wave, the state tip…).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator

from fleetcd.compat import UTC, StrEnum

_KEY_DOMAIN = b"fleetcd-audit-event-v1\n"


class AuditKind(StrEnum):
    ROLLOUT_CREATED = "rollout_created"
    WAVE_STARTED = "wave_started"
    WAVE_PASSED = "wave_passed"
    WAVE_FAILED = "wave_failed"
    ROLLOUT_HALTED = "rollout_halted"
    ROLLOUT_PAUSED = "rollout_paused"  # `paused: true` seen; in-flight deployments continue
    ROLLOUT_RESUMED = "rollout_resumed"
    ROLLOUT_ABORTED = "rollout_aborted"
    ROLLOUT_COMPLETED = "rollout_completed"  # a generation finished; its receipt is written
    DEVICE_REPORT = "device_report"
    ROLLBACK = "rollback"
    # invalid content (nothing applied until a new commit), or a rollout whose release was withdrawn
    # (reason ``release_withdrawn``); ``reason`` says why
    STALLED = "stalled"
    HISTORY_REWRITTEN = "history_rewritten"
    NOTIFY_DROPPED = "notify_dropped"  # a webhook delivery given up after bounded retries
    # a root on the server's desired refs that the controller did not write or cannot trust (planted,
    # replayed, unreadable): it moved no serial and every robot's ref is written again; ``reason`` says why
    DESIRED_ROOT_IGNORED = "desired_root_ignored"
    # a withdrawal on main without the approvals it needs (``reason`` approval_missing or
    # approval_stale): it withdraws nothing; logged once per main commit that carries it
    WITHDRAWAL_IGNORED = "withdrawal_ignored"
    # a status shard (``data.shard``) could not be fetched (``data.error``); the reports last fetched
    # from it stand and every other shard was ingested; as for every event, an identical line already
    # in the day's file is not written again (one a day per shard and error while it lasts)
    STATUS_SHARD_UNREACHABLE = "status_shard_unreachable"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, ASCII only.

    ASCII escapes keep every line valid UTF-8 even when a robot's message carries a lone surrogate,
    and keep newlines inside strings escaped so one event is always one line.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


class AuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: Annotated[AwareDatetime, AfterValidator(_utc)]
    kind: AuditKind
    rollout: str | None = None
    device: str | None = None
    commit: str | None = None
    reason: str | None = None
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _serialisable(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # Fail when the event is built (in the plan), not halfway through writing the log.
        try:
            canonical_json(value)
        except ValueError as exc:
            raise ValueError(f"audit data must be finite JSON: {exc}") from exc
        return value

    def as_json(self) -> dict[str, Any]:
        """The event as it appears in a log line."""
        return self.model_dump(mode="json")


def key_of(event_json: Mapping[str, Any]) -> str:
    """:func:`event_key` of an event already in its JSON form (as read back from a log line)."""
    identity = {name: value for name, value in event_json.items() if name != "at"}
    return hashlib.sha256(_KEY_DOMAIN + canonical_json(identity)).hexdigest()


def event_key(event: AuditEvent) -> str:
    """Deterministic id of the occurrence ``event`` records: sha256 over all fields but ``at``."""
    return key_of(event.as_json())
