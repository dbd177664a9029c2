"""Noticing local edits of config files at once: the only module importing ``watchfiles``.

:class:`DriftWatcher` watches the *directories* of the files (editors and our own atomic writes
replace a file by rename, which a watch on the file itself would lose) and keeps the watched files
that changed until :meth:`~DriftWatcher.changed` is called. It only hints: ``run`` reports drift
early, and the hash check of :func:`agent.configfiles.write.drifted` decides (our own rewrite of a
file shows up here too, and then hashes clean).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from watchfiles import Change, watch

DEBOUNCE_MS = 200  # group the events of one save; small, so drift is reported promptly
POLL_TIMEOUT_MS = 200  # how often the thread looks at the stop flag when nothing happens
READY_TIMEOUT_SECONDS = 10.0


class DriftWatcher:
    """A background thread collecting edits of ``paths``; stop it with :meth:`stop` (or ``with``)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        # Keys are resolved: watchfiles reports paths under the (resolved) directories it watches.
        self._keys: dict[Path, Path] = {}
        for path in paths:
            self._keys[path.parent.resolve() / path.name] = path
        self._dirs = sorted({key.parent for key in self._keys if key.parent.is_dir()})
        self._changed: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleetcd-config-drift", daemon=True)
        if self._dirs:
            self._thread.start()
            # The first (empty) yield comes after the OS watches are set up: an edit made once
            # the constructor returned is seen.
            self._ready.wait(READY_TIMEOUT_SECONDS)

    def changed(self) -> set[Path]:
        """The watched files changed (edited, replaced, deleted) since the last call."""
        with self._lock:
            found, self._changed = self._changed, set()
        return found

    @property
    def running(self) -> bool:
        """False once stopped, or when none of the files' directories existed to be watched."""
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> DriftWatcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wanted(self, _change: Change, raw: str) -> bool:
        return Path(raw) in self._keys

    def _run(self) -> None:
        for changes in watch(
            *self._dirs,
            watch_filter=self._wanted,
            debounce=DEBOUNCE_MS,
            stop_event=self._stop,
            rust_timeout=POLL_TIMEOUT_MS,
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        ):
            self._ready.set()
            if changes:
                with self._lock:
                    self._changed.update(self._keys[Path(raw)] for _change, raw in changes)
