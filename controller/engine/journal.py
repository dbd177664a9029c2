"""Audit events the rollout engine decides on, with the fields every one of them shares (pure).

Every event carries the rollout, the main commit being processed and the generation, so two
genuine occurrences never share an :func:`~controller.audit.events.event_key` (a second pause is
necessarily seen at a later commit), while a replay of the same decision derives the same key and
is written once. ``at`` is the ``now`` the engine was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import JsonValue

from controller.audit.events import AuditEvent, AuditKind
from controller.state.model import WaveCounts


class Journal:
    def __init__(self, rollout: str, commit: str, generation: int, now: datetime) -> None:
        self.rollout, self.commit, self.generation, self.now = rollout, commit, generation, now
        self.events: list[AuditEvent] = []

    def emit(
        self,
        kind: AuditKind,
        *,
        reason: str | None = None,
        device: str | None = None,
        extra: Mapping[str, JsonValue] | None = None,
        **data: JsonValue,
    ) -> None:
        self.events.append(
            AuditEvent(
                at=self.now,
                kind=kind,
                rollout=self.rollout,
                device=device,
                commit=self.commit,
                reason=reason,
                data={"generation": self.generation, **data, **(extra or {})},
            )
        )


def counts_data(counts: WaveCounts) -> dict[str, JsonValue]:
    """Wave statistics as audit data (the gate numbers receipts quote)."""
    return {name: int(value) for name, value in counts.model_dump().items()}
