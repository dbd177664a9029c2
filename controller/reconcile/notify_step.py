"""The notify step around the write step: settle the outbox, queue new messages, deliver after the push.

Three calls per reconcile (:mod:`controller.notify.outbox` explains the at-least-once scheme):

1. :func:`settle_outbox`, before the audit lines are appended: folds what the previous notify step
   saw (kept in the mirror under that state commit) into the outbox; drops become audit events.
2. :func:`queue_outbox`, after appending: one entry per subscribed webhook for each event this
   reconcile newly logged — the outbox file goes into the same state commit as those lines.
3. :func:`deliver_outbox`, after the push: POSTs every pending entry and keeps the outcomes in
   the mirror for step 1 of the next reconcile.

A controller with ``notify`` off leaves the outbox as it found it.

:func:`post_status`, after the push too, posts the commit status of main's head to the git host
when the controller is configured with one (:mod:`controller.notify.forge`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.audit.chain import added_keys
from controller.audit.events import AuditEvent, event_key
from controller.notify.forge import DESCRIPTION_CHARS, Forge, Posted, already_posted, remember_posted, verdict
from controller.notify.outbox import OutboxEntry, Outcome, decode, encode, enqueue, settle, webhook_id
from controller.notify.signing import WebhookSecret
from controller.state.layout import OUTBOX_FILE
from fleetcd.git.mirror import replace_file
from fleetcd.models.fleet import Webhook

log = logging.getLogger("fleetcd.controller")
OUTCOMES_FILE = "fleetcd-outbox.json"  # in the mirror (a cache): losing it only means sending again


class _Outcomes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state_commit: str
    outcomes: dict[str, Outcome]


def pending(files: Mapping[str, bytes]) -> list[OutboxEntry]:
    """The outbox of a state commit's files."""
    return decode(files.get(OUTBOX_FILE))


def settle_outbox(
    files: Mapping[str, bytes],
    state_commit: object,
    webhooks: Sequence[Webhook],
    mirror: Path,
    now: datetime,
) -> tuple[list[OutboxEntry], list[AuditEvent]]:
    """Entries still pending after the outcomes seen for ``state_commit``, and drop events."""
    return settle(pending(files), _read(mirror, str(state_commit)), webhooks, now)


def queue_outbox(
    entries: Sequence[OutboxEntry],
    events: Sequence[AuditEvent],
    audit_before: Mapping[str, bytes],
    audit_appended: Mapping[str, bytes],
    webhooks: Sequence[Webhook],
) -> dict[str, bytes | None]:
    """The outbox file for the state commit: ``entries`` plus the events newly logged in it."""
    logged = added_keys(audit_before, audit_appended)
    fresh = [event for event in events if event_key(event) in logged]
    return {OUTBOX_FILE: encode(enqueue(entries, fresh, webhooks))}


def deliver_outbox(
    outbox: Mapping[str, bytes | None],
    webhooks: Sequence[Webhook],
    fleet: str,
    mirror: Path,
    state_commit: object,
    secret: WebhookSecret | None = None,
) -> int:
    """POST every pending entry, signed with ``secret`` if there is one; returns how many were
    delivered. Never raises for a receiver."""
    entries = decode(outbox.get(OUTBOX_FILE))
    urls = {webhook_id(w.url): w.url for w in webhooks}
    sendable = [entry for entry in entries if entry.webhook in urls]
    if not sendable:
        return 0
    from controller.notify.webhooks import Message, send  # requests only where something is sent

    deliveries = send(
        [Message(urls[e.webhook], e.event_key, e.kind, e.event) for e in sendable],
        fleet=fleet,
        secret=secret,
    )
    outcomes = {e.id: Outcome(ok=d.ok, error=d.error) for e, d in zip(sendable, deliveries, strict=True)}
    _write(mirror, str(state_commit), outcomes)
    return sum(outcome.ok for outcome in outcomes.values())


def post_status(
    forge: Forge,
    mirror: Path,
    sha: str,
    stalled: str | None,
    failed: str | None,
    phases: Iterable[tuple[str, str]],
) -> bool:
    """Post main's commit status unless the forge already accepted this very status (kept in the
    mirror); True when the forge has it. Never raises for the forge: a failure is logged and
    posted again by the next full reconcile (not the idle fast path)."""
    state, description = verdict(stalled, failed, phases)
    posted = Posted(sha, state.value, description[:DESCRIPTION_CHARS])
    if already_posted(mirror, posted):
        return True
    from controller.notify.webhooks import post_commit_status  # requests only where something is sent

    delivery = post_commit_status(forge, sha, state, description)
    if delivery.ok:
        remember_posted(mirror, posted)
    else:
        log.warning(
            "commit status %s for %s not posted to %s: %s (posted again by the next full reconcile)",
            state.value,
            sha[:12],
            delivery.url,
            delivery.error,
        )
    return delivery.ok


def _read(mirror: Path, state_commit: str) -> dict[str, Outcome]:
    try:
        seen = _Outcomes.model_validate_json((mirror / OUTCOMES_FILE).read_bytes())
    except (OSError, ValidationError):
        return {}
    return dict(seen.outcomes) if seen.state_commit == state_commit else {}


def _write(mirror: Path, state_commit: str, outcomes: dict[str, Outcome]) -> None:
    if not mirror.is_dir():
        return
    data = _Outcomes(state_commit=state_commit, outcomes=outcomes).model_dump_json().encode()
    replace_file(mirror, OUTCOMES_FILE, data)
