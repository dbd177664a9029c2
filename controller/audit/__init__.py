"""The controller's audit trail: events (what was decided) and the hash-chained log (pure).

The *plan* step emits :class:`AuditEvent` values; the *write* step appends them with
:func:`append` and commits the returned day files; ``fleetcd audit verify`` runs :func:`verify`.
No I/O and no clock here: callers pass bytes and ``at``.
"""

from __future__ import annotations

from controller.audit.chain import ChainReport, verify
from controller.audit.events import AuditEvent, AuditKind, canonical_json, event_key
from controller.audit.lines import GENESIS, day_path, line_hash
from controller.audit.tail import append, head

__all__ = [
    "GENESIS",
    "AuditEvent",
    "AuditKind",
    "ChainReport",
    "append",
    "canonical_json",
    "day_path",
    "event_key",
    "head",
    "line_hash",
    "verify",
]
