"""The migrations ledger: which release migrations ran on this robot, per app, and how far each got.

Place in the flow: :mod:`agent.converge.migrate` records a run here *before* it starts a migration
(``running``) and again when it ends (``applied``, or ``failed``), and once more when it is undone
(``rolled_back``). Like the converge journal, the file (``migrations/<app>.json``) is written
atomically before each action, so after a crash or power cut the agent knows which migration was
cut short (its run still says ``running``) and what each run's rollback command is — the ledger
carries the argv, so undoing needs neither the network nor the release.

A migration is identified by its name and applied once per robot: a release that lists a name the
ledger holds as ``applied`` (by an earlier deployment that committed) skips it. The ledger keeps the
last :data:`MAX_RUNS` runs; older ones are dropped oldest first, and only committed ones are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, ValidationError

from agent.errors import CorruptState
from agent.state.atomic import read_bytes, write_atomic
from fleetcd.models.base import FrozenModel
from fleetcd.vocabulary import MigrationState

MAX_RUNS = 500  # per app: years of releases; only committed runs are ever dropped
LEDGER_FILE_MODE = 0o600

UNDONE = frozenset({MigrationState.ROLLED_BACK})


class MigrationRun(FrozenModel):
    """One migration of one deployment on this robot."""

    name: str = Field(min_length=1, max_length=63)
    version: str = Field(min_length=1, max_length=256)
    deployment_id: str = Field(min_length=1, max_length=256)
    rollback: list[str] | None = Field(default=None, max_length=256)  # argv; None: irreversible
    timeout_seconds: int = Field(ge=1, le=3600)
    state: MigrationState
    committed: bool = False  # the deployment that ran it committed: it is never undone
    at: AwareDatetime  # when the state was recorded


class MigrationLedger(FrozenModel):
    format: Literal[1] = 1
    runs: list[MigrationRun] = Field(default_factory=list, max_length=MAX_RUNS)

    def applied(self) -> set[str]:
        """Names whose last run stands applied (a later deployment skips them)."""
        last = {run.name: run.state for run in self.runs}
        return {name for name, state in last.items() if state is MigrationState.APPLIED}

    def of(self, deployment_id: str) -> list[MigrationRun]:
        return [r for r in self.runs if r.deployment_id == deployment_id]

    def open_elsewhere(self, deployment_id: str) -> list[str]:
        """Deployments other than ``deployment_id`` with runs neither committed nor undone."""
        found = [
            r.deployment_id
            for r in self.runs
            if r.deployment_id != deployment_id and not r.committed and r.state not in UNDONE
        ]
        return list(dict.fromkeys(found))

    def with_run(self, run: MigrationRun) -> MigrationLedger:
        """``run`` recorded: it replaces the deployment's run of that name in place, or is appended;
        beyond :data:`MAX_RUNS` the oldest committed runs are dropped."""
        key = (run.deployment_id, run.name)
        at = next((i for i, r in enumerate(self.runs) if (r.deployment_id, r.name) == key), None)
        runs = [*self.runs, run] if at is None else [*self.runs[:at], run, *self.runs[at + 1 :]]
        while len(runs) > MAX_RUNS:
            oldest = next((r for r in runs if r.committed), runs[0])
            runs.remove(oldest)
        return MigrationLedger(runs=runs)

    def committed(self, deployment_id: str) -> MigrationLedger:
        """The deployment's runs marked committed (never undone by a later rollback)."""
        runs = [
            r.model_copy(update={"committed": True}) if r.deployment_id == deployment_id else r
            for r in self.runs
        ]
        return MigrationLedger(runs=runs)


class Ledger:
    """The ledger file at ``path`` (its directory is created by :meth:`agent.paths.AgentPaths.create`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> MigrationLedger:
        raw = read_bytes(self.path)
        if raw is None:
            return MigrationLedger()
        try:
            return MigrationLedger.model_validate_json(raw)
        except ValidationError as exc:
            raise CorruptState(self.path, f"not a migrations ledger: {exc.error_count()} problem(s)") from exc

    def save(self, ledger: MigrationLedger) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, ledger.model_dump_json(indent=2).encode() + b"\n", mode=LEDGER_FILE_MODE)
