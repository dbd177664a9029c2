"""Where the agent keeps its state on the robot: one directory, every file named here.

The state directory is ``state_dir`` from agent.yaml, else systemd's ``$STATE_DIRECTORY`` (the unit
sets ``StateDirectory=fleetcd``), else ``/var/lib/fleetcd``. Everything below it is written through
:mod:`agent.state.atomic`, so a power cut leaves each file whole; the layout is::

    repo.git/         bare git repository: the robot's desired-state fetches and status pushes
    desired.json      the last accepted desired-state files (re-verified when offline)
    trust.json        serial, bundle digest and clock floor of the last accepted bundle
    journal/<app>.json  the converge journal of one app (agent.state.journal)
    migrations/<app>.json  the release migrations run for one app (agent.state.migrations)
    status.json       the last report built; outbox: the last one not yet pushed
    push.json         when the last report was pushed, and what it said (heartbeat)
    configs.json      config files written for apps, with their sha256 (drift detection)
    config-history/<app>/<version>.json  a version's config, saved before a deployment replaced it
    apps/<app>/       each executor's files per app; downloads/: partial downloads
    metrics/agent.prom  Prometheus metrics for node_exporter's textfile collector (agent.report.metrics)
    <file>.corrupt-<UTC time>  a state file that did not parse, set aside (agent.converge.repair)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.errors import StateDirUnwritable
from agent.state.atomic import NO_SPACE_ERRNOS
from fleetcd.models.agent import AgentConfig

DEFAULT_STATE_DIR = Path("/var/lib/fleetcd")
STATE_DIRECTORY_ENV = "STATE_DIRECTORY"  # set by systemd from StateDirectory=; ':'-separated
STATE_DIR_MODE = 0o700  # journals and the repository name versions and keys: root's business only


@dataclass(frozen=True)
class AgentPaths:
    """Every path under one state directory; :meth:`create` makes the directories."""

    state_dir: Path

    @property
    def repo(self) -> Path:
        return self.state_dir / "repo.git"

    @property
    def desired_cache(self) -> Path:
        return self.state_dir / "desired.json"

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    def journal(self, app: str) -> Path:
        return self.journal_dir / f"{app}.json"

    def migrations(self, app: str) -> Path:
        return self.state_dir / "migrations" / f"{app}.json"

    @property
    def trust_file(self) -> Path:
        return self.state_dir / "trust.json"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def outbox(self) -> Path:
        return self.state_dir / "outbox"

    @property
    def push_file(self) -> Path:
        return self.state_dir / "push.json"

    @property
    def apps_dir(self) -> Path:
        return self.state_dir / "apps"

    @property
    def downloads_dir(self) -> Path:
        return self.state_dir / "downloads"

    @property
    def config_hashes(self) -> Path:
        return self.state_dir / "configs.json"

    @property
    def config_history(self) -> Path:
        return self.state_dir / "config-history"

    @property
    def metrics_file(self) -> Path:
        """node_exporter reads every ``*.prom`` of a folder: this one holds nothing else."""
        return self.state_dir / "metrics" / "agent.prom"

    def create(self) -> AgentPaths:
        """Make the state directory and its subdirectories (idempotent) and check that a file can be
        created in it; returns self. :class:`StateDirUnwritable` names the directory when not."""
        try:
            self.state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
            for folder in (
                self.journal_dir,
                self.apps_dir,
                self.downloads_dir,
                self.state_dir / "migrations",
            ):
                folder.mkdir(mode=STATE_DIR_MODE, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.state_dir, prefix=".write-check-")
            os.close(fd)
            Path(probe).unlink()
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                return self  # writable, only full: each write reports DiskFull where it happens
            raise StateDirUnwritable(self.state_dir, exc.strerror or str(exc)) from exc
        return self

    def journaled_apps(self) -> list[str]:
        """Apps that have a journal file, sorted (what the robot has ever converged)."""
        if not self.journal_dir.is_dir():
            return []
        return sorted(p.stem for p in self.journal_dir.glob("*.json") if not p.name.startswith("."))


def resolve_state_dir(config: AgentConfig, environ: Mapping[str, str] | None = None) -> Path:
    """agent.yaml's ``state_dir``, else the first entry of ``$STATE_DIRECTORY``, else the default."""
    if config.state_dir is not None:
        return Path(config.state_dir)
    env = os.environ if environ is None else environ
    first = env.get(STATE_DIRECTORY_ENV, "").split(":", 1)[0]
    return Path(first) if first else DEFAULT_STATE_DIR


def agent_paths(config: AgentConfig, environ: Mapping[str, str] | None = None) -> AgentPaths:
    return AgentPaths(resolve_state_dir(config, environ))
