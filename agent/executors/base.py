"""The one interface every executor implements, and what it is handed.

The converge state machine (:mod:`agent.converge`) drives an executor through
``fetch → install → switch → (watch) → commit | rollback``; it persists its journal *before* each
call, so every method must be idempotent: called again after a crash at any point inside it, it
finishes the job (or finds it done) instead of failing. Rollback and ``active`` work from what is on
the robot only, never the network, so a crash-looping version falls back with the link down.

Executors are listed by name in :data:`agent.executors.EXECUTORS` (pre-commit's languages dict).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fleetcd.compat import StrEnum
from fleetcd.models.release import Release
from fleetcd.vocabulary import DriftKind


class RunState(StrEnum):
    """What the executor sees of one version of an app right now."""

    RUNNING = "running"
    EXITED = "exited"  # it was started and is no longer running (crashed or stopped)
    MISSING = "missing"  # never installed here, or already removed


@dataclass(frozen=True)
class AppTarget:
    """One version of one app, as the agent will run it: the verified release and its config."""

    deployment_id: str
    app: str
    version: str
    release: Release  # parsed from signature-checked bytes; artifacts carry url/sha256/size/digest
    config: dict[str, Any] | None = None  # merged config values for this robot (already validated)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the app (e.g. config path)
    # Told (artifact name, bytes on disk) while ``fetch`` downloads; None: nobody listens. It returns
    # at once and never raises (agent.report.progress); executors without byte counts ignore it.
    progress: Callable[[str, int], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ExecutorContext:
    """Where an executor keeps its things; one directory per app under ``apps_dir``."""

    apps_dir: Path  # <state_dir>/apps; the executor owns <apps_dir>/<app>/
    downloads_dir: Path  # <state_dir>/downloads; partial downloads survive a restart here

    def app_dir(self, app: str) -> Path:
        return self.apps_dir / app


class Executor(Protocol):
    """Installs, starts, stops and removes versions of apps on this robot."""

    name: str

    def fetch(self, target: AppTarget) -> None:
        """Download (resumably) and check size and sha256/digest of every artifact it handles.

        Raises TransportError (retry later, partial data kept) or ApplyError (this artifact can never
        be installed: digest mismatch, too large, disk full, unsupported).
        """

    def install(self, target: AppTarget) -> None:
        """Put the version beside the running one (inactive slot, created-not-started container)."""

    def switch(self, target: AppTarget, previous: str | None) -> None:
        """Make ``target`` the active version and start it; stop ``previous`` but keep it."""

    def state(self, app: str, version: str) -> RunState:
        """Is this version of the app running now?"""

    def active(self, app: str) -> str | None:
        """The version that is active on disk / in the engine (None: no version ever activated)."""

    def rollback(self, app: str, failed: str, previous: str | None) -> None:
        """Stop ``failed`` and make ``previous`` active and running again (None: just stop)."""

    def restart(self, app: str, version: str) -> None:
        """Stop the active ``version`` and start it again, so it reads its (new) config files.

        A config-only deployment and its rollback: the version stays, its config changed.
        """

    def ensure_running(self, app: str) -> bool:
        """Start the active version if it is not running (after a reboot); True if it started it.

        Only for the loop's idle path: inside a watch window an exit is a verdict, not a repair.
        """

    def commit(self, app: str, version: str, previous: str | None) -> None:
        """The new version is healthy: release what only a rollback needed (old container, old slots)."""

    def drift(self, app: str, version: str, target: AppTarget | None) -> list[tuple[DriftKind, str]]:
        """How what runs differs from ``version`` being the app's one active version as the agent
        installed it (``target``: its release, when the agent has it); empty when it does not."""

    def restore(self, app: str, version: str, target: AppTarget | None) -> None:
        """Undo that drift: ``version`` active and running as installed, nothing else of the app running.

        Raises ApplyError when it cannot (e.g. a replaced container whose release is not at hand).
        """
