"""Waiting for a local fleet repository to change (watchfiles), with a timeout for the clock tick."""

from __future__ import annotations

import threading
from pathlib import Path

from watchfiles import watch


def wait_for_change(path: Path, *, timeout_seconds: float, stop: threading.Event | None = None) -> bool:
    """True when something under ``path`` (a repository's refs or objects) changed in time; returns
    False at once when ``stop`` is set."""
    for _changes in watch(
        path, rust_timeout=int(timeout_seconds * 1000), yield_on_timeout=True, stop_event=stop
    ):
        return bool(_changes)
    return False
