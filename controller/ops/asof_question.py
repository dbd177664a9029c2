"""The question ``fleetcd history ROBOT --at T`` (or ``--commit C``) asks: a robot and an instant.

``--at`` takes ISO 8601 with a UTC offset or an age before now (:func:`parse_instant`, pure);
``--commit`` names a main commit, whose instant is the state commit that processed it
(:func:`instant_of_commit`, read from git). :func:`controller.ops.asof.history_at` answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.ops.instant import state_processing
from fleetcd.errors import InvalidContent
from fleetcd.git.log import LogEntry, full_commit_id
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.signatures import is_descendant
from fleetcd.reasons import Reason


@dataclass(frozen=True)
class Instant:
    """The question: a robot and an instant, and (with ``--commit``) the main commit it came from."""

    device: str
    at: datetime
    main_commit: str | None = None
    state: LogEntry | None = None  # with ``--commit``: the state commit that processed it
    # With status shards: the robot's newest report in its own shard (None: it has none there).
    sharded: bool = False
    reports_tip: Oid | None = None
    notes: tuple[str, ...] = ()


def main_commit_id(repo: Repository, main: str, rev: str) -> str:
    """The full id of ``rev``, a commit on main's history; ValueError saying why not."""
    found = full_commit_id(repo, rev)
    if found is None:
        raise ValueError(f"{rev!r} names no commit in the fleet repository")
    if not is_descendant(repo, main, found):
        raise ValueError(f"commit {found[:12]} is not on main's history")
    return found


def instant_of_commit(repo: Repository, device: str, main_commit: str) -> Instant:
    """``--commit``: the instant of the state commit that processed ``main_commit``."""
    entry = state_processing(repo, main_commit)
    if entry is None:
        raise InvalidContent.at(
            STATE_BRANCH,
            f"no state commit has processed main commit {main_commit[:12]} yet (has the controller run "
            "since it was merged?)",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    return Instant(device, entry.when, main_commit, entry)


_RELATIVE = re.compile(r"^-(?:(\d{1,6})d)?(?:(\d{1,8})h)?(?:(\d{1,10})m)?(?:(\d{1,12})s)?$")
MAX_LOOKBACK = timedelta(days=100 * 366)  # a relative instant further back is a typo


def parse_instant(text: str, now: datetime) -> datetime:
    """``--at``: ISO 8601 with a UTC offset (``2026-05-04T14:05:00+09:00``, ``…Z``), or an age
    before ``now`` (``-2h``, ``-1d12h``, ``-90s``). Raises ValueError saying what is accepted."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative is not None and any(relative.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in relative.groups())
        age = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if age > MAX_LOOKBACK:
            raise ValueError(f"{text!r} reaches back more than {MAX_LOOKBACK.days} days")
        return now - age
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time with a UTC offset (2026-05-04T14:05:00+09:00, "
            "2026-05-04T05:05:00Z) nor an age such as -2h, -30m or -1d12h"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +HH:MM (a time without one is ambiguous)")
    return parsed
