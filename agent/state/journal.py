"""The converge journal: where the agent is in applying one deployment, persisted before each step.

The converge state machine records the state it is *about to* act in (``record`` before acting), so
after a crash or power cut it reloads the last entry and resumes or rolls back from there. Writes go
through :func:`agent.state.atomic.write_atomic`, so the file is always one whole entry. Each write
also carries a sequence number that only grows (``clear`` writes an empty entry with the next number
instead of deleting the file), which makes the history of a journal easy to follow in debugging.

An entry's ``state`` is one of the journal's activities (:data:`fleetcd.vocabulary.JournalActivity`:
``idle`` … ``failed``, including the robot-only ``switched``, ``healthy`` and ``rolling_back``); the
vocabulary module says how each is reported to the controller.

The file is a small JSON document: ``{"format": 1, "seq": 7, "entry": {...} | null}``. A file that
does not parse is :class:`agent.errors.CorruptState`, never silently treated as "no deployment":
the loop reports it, sets it aside and rebuilds it from what the executor shows
(:mod:`agent.converge.repair`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, ValidationError

from agent.errors import CorruptState
from agent.state.atomic import read_bytes, write_atomic
from fleetcd.models.base import FrozenModel
from fleetcd.vocabulary import Activity, JournalActivity

JOURNAL_FORMAT: Literal[1] = 1
JOURNAL_FILE_MODE = 0o600  # the journal names versions and reasons: root's business only
REASON_MAX_CHARS = 2000


# States in which nothing is in flight: a restart finds nothing to resume or undo.
SETTLED_STATES = frozenset(
    {
        Activity.IDLE,
        Activity.STAGED,
        Activity.HEALTHY,
        Activity.ROLLED_BACK,
        Activity.FAILED,
    }
)


class JournalEntry(FrozenModel):
    """One deployment's progress: what is being applied, over what, and how far it got."""

    deployment_id: str = Field(min_length=1, max_length=256)
    version: str = Field(min_length=1, max_length=256)
    previous_version: str | None
    state: JournalActivity
    attempts: int = Field(ge=0)
    updated_at: AwareDatetime
    reason: str | None = Field(default=None, max_length=REASON_MAX_CHARS)
    # Optional since the first format-1 files, which lack them and still load:
    action: Literal["deploy", "stage", "rollback"] = "deploy"  # as the bundle asked
    stage_only: bool = False  # install only (blue/green), stop in STAGED
    first_deferred_at: AwareDatetime | None = None  # a gate first held this deployment back
    committed: bool = False  # HEALTHY and the executor released what only a rollback needed
    # The release's rollback.target when it was chosen over previous_version; decided once, on
    # entering ROLLING_BACK, so a rollback resumed after a crash goes to the same version.
    rollback_target: str | None = Field(default=None, max_length=256)
    # Only the config changed (the version already ran): no download or install, the config is
    # written and the running version restarted, watched, and on failure its old config restored.
    config_only: bool = False

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    def moved_to(
        self, state: JournalActivity, *, now: datetime, reason: str | None = None, attempts: int | None = None
    ) -> JournalEntry:
        """The same deployment in ``state`` as of ``now`` (validated like a fresh entry)."""
        data = self.model_dump()
        data.update(state=state, updated_at=now, reason=reason)
        if attempts is not None:
            data["attempts"] = attempts
        return JournalEntry.model_validate(data)


class JournalFile(FrozenModel):
    """The on-disk envelope: format version, sequence number, and the entry (None once cleared)."""

    format: Literal[1]
    seq: int = Field(ge=0)
    entry: JournalEntry | None


class Journal:
    """The journal file at ``path``; its directory must exist and be on a local disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> JournalFile | None:
        raw = read_bytes(self.path)
        if raw is None:
            return None
        try:
            return JournalFile.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<document>'}: {e['msg']}" for e in exc.errors()
            )
            raise CorruptState(self.path, problems) from exc

    def load(self) -> JournalEntry | None:
        """The last recorded entry; None on first boot or after :meth:`clear`."""
        current = self._read()
        return None if current is None else current.entry

    @property
    def seq(self) -> int:
        """Sequence number of the last write (0 before the first)."""
        current = self._read()
        return 0 if current is None else current.seq

    def record(self, entry: JournalEntry) -> int:
        """Persist ``entry`` durably, before the caller acts on it; returns its sequence number."""
        return self._write(entry, self.seq + 1)

    def clear(self) -> int:
        """Forget the deployment (nothing in flight); the sequence number keeps growing."""
        try:
            seq = self.seq + 1
        except CorruptState:
            seq = 1  # clearing is how an operator recovers from a corrupt journal
        return self._write(None, seq)

    def _write(self, entry: JournalEntry | None, seq: int) -> int:
        document = JournalFile(format=JOURNAL_FORMAT, seq=seq, entry=entry)
        write_atomic(self.path, document.model_dump_json(indent=2).encode() + b"\n", mode=JOURNAL_FILE_MODE)
        return seq
