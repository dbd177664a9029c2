"""Agent step 1 (sync), which server a poll asks first: the configured order, failed ones last.

A poll asks ``remote.replicas`` in order, then the primary (:func:`agent.sync.desired.poll_connections`),
and the first server that answers is used. A replica that is down but does not refuse the
connection (a host gone, packets dropped) costs a poll its whole connect timeout, up to
``remote.timeout_seconds``, and would cost it again every poll. So a server that failed is asked
*last* for :data:`FAILED_ASKED_LAST_SECONDS` after the failure: still asked when every other server
fails too, and back in its place once the time is up (or once it answered), so a replica that
recovers takes its share of the polls again.

:func:`order` is pure (the failures and ``now`` in, the order out). The failures are a cache in
the robot's bare repository (``fleetcd-poll-failures.json``): lost or unreadable, every server is
simply in its configured order again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from agent.errors import DiskFull
from agent.state.atomic import read_bytes, write_atomic

FAILED_ASKED_LAST_SECONDS = 600.0  # ten poll intervals at the default 60 s
FAILURES_FILE = "fleetcd-poll-failures.json"
MAX_FAILURES_BYTES = 64 * 1024  # a few URLs; anything larger is not ours: ignored
log = logging.getLogger(__name__)
T = TypeVar("T")


def order(servers: Sequence[T], urls: Sequence[str], failures: Mapping[str, float], now: float) -> list[T]:
    """``servers`` (with their ``urls``) in configured order, those that failed less than
    :data:`FAILED_ASKED_LAST_SECONDS` before ``now`` moved to the end (in configured order too).
    A failure time after ``now`` (the clock stepped back) counts as recent."""

    def recent(url: str) -> bool:
        failed = failures.get(url)
        return failed is not None and now - failed < FAILED_ASKED_LAST_SECONDS

    fresh = [s for s, url in zip(servers, urls, strict=True) if not recent(url)]
    failed = [s for s, url in zip(servers, urls, strict=True) if recent(url)]
    return fresh + failed


def load_failures(repo_dir: Path, urls: Sequence[str]) -> dict[str, float]:
    """The failure times kept for ``urls``; an unreadable cache is an empty one."""
    try:
        raw = read_bytes(repo_dir / FAILURES_FILE)
    except OSError:
        return {}
    if raw is None or len(raw) > MAX_FAILURES_BYTES:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        url: float(when)
        for url, when in data.items()
        if url in urls and isinstance(when, (int, float)) and not isinstance(when, bool)
    }


def save_failures(repo_dir: Path, failures: Mapping[str, float]) -> None:
    """Keep ``failures`` (best effort: a cache that cannot be written costs only the order)."""
    try:
        write_atomic(repo_dir / FAILURES_FILE, json.dumps(dict(sorted(failures.items()))).encode())
    except (OSError, DiskFull) as exc:
        log.warning("cannot keep which servers failed (%s): every poll asks them in order", exc)
