"""Agent step 6 (report), when to push: a report goes out when it says something new or a heartbeat is due.

:func:`push_due` is the decision, pure (``now`` is passed in): push unless the last pushed report
said the same (:func:`digest`, which leaves out ``seq`` and ``reported_at``), less than
``poll.heartbeat_seconds`` ago, and nothing waits in the outbox. ``push.json``
(:class:`PushState`) remembers the last push; :func:`load_push_state` and :func:`save_push_state`
read and write it. An unreadable ``push.json`` counts as no push yet: pushing again is always safe.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import AwareDatetime

from agent.state.atomic import read_bytes, write_atomic
from fleetcd.compat import UTC
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.models.base import FrozenModel
from fleetcd.reports import StatusReport

PUSH_FILE_MODE = 0o600


class PushState(FrozenModel):
    """``push.json``: when the last report was pushed and a digest of what it said."""

    seq: int
    at: AwareDatetime
    digest: str


def digest(report: StatusReport) -> str:
    """What a report says, without the fields that change every time (seq, reported_at)."""
    said = report.model_copy(update={"seq": 0, "reported_at": datetime(1970, 1, 1, tzinfo=UTC)})
    return hashlib.sha256(canonical_bytes(said)).hexdigest()


def push_due(
    last: PushState | None, said: str, now: datetime, heartbeat: timedelta, *, waiting: bool
) -> bool:
    """Whether the report whose :func:`digest` is ``said`` is pushed now.

    A last push recorded in the future (pushed while the clock ran ahead, then set back) never keeps
    the robot quiet: it pushes, and ``push.json`` takes the corrected time.
    """
    since = None if last is None else now - last.at
    quiet = (
        last is not None
        and since is not None
        and timedelta(0) <= since < heartbeat
        and last.digest == said
        and not waiting
    )
    return not quiet


def load_push_state(path: Path) -> PushState | None:
    raw = read_bytes(path)
    try:
        return None if raw is None else PushState.model_validate_json(raw)
    except ValueError:
        return None  # unknown: push again, which is always safe


def save_push_state(path: Path, state: PushState) -> None:
    write_atomic(path, state.model_dump_json().encode(), mode=PUSH_FILE_MODE)
