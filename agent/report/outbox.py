"""Agent step 6 (report), queue: the latest report not yet accepted by the server, kept on disk.

A robot on a flaky link builds a report every cycle but may not deliver it for hours. Only the
newest matters (each report is the robot's whole state, and the controller ignores any report whose
``seq`` does not grow), so the outbox holds exactly one: :meth:`Outbox.put` replaces it with a newer
one, never with an older one; :meth:`Outbox.sent` drops it once the server took it (or a newer
one). The file is written through :func:`agent.state.atomic.write_atomic`, so a power cut keeps the
old or the new report, and a restarted agent still delivers what it had queued.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from agent.state.atomic import fsync_dir, read_model, write_atomic
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.reports import StatusReport

OUTBOX_FILE_MODE = 0o600


class Outbox:
    """One pending report in the file ``path`` (``AgentPaths.outbox``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pending(self) -> StatusReport | None:
        """The report waiting to be delivered, or None."""
        return read_model(self.path, StatusReport, "a status report")

    def put(self, report: StatusReport) -> None:
        """Queue ``report`` unless a report with the same or a higher seq is already waiting."""
        waiting = self.pending()
        if waiting is not None and waiting.seq >= report.seq:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, canonical_bytes(report), mode=OUTBOX_FILE_MODE)

    def sent(self, seq: int) -> None:
        """The server accepted the report ``seq``: drop the waiting one if it is not newer."""
        waiting = self.pending()
        if waiting is None or waiting.seq > seq:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fsync_dir(self.path.parent)
