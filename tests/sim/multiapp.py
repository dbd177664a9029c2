"""Several apps on one robot: the real controller rolling out two apps, each in its own waves, to a
real robot agent that runs both (tarball executor, real app processes, real git, gpg and HTTP).

The fleet has two robots: ``robot-1`` (cohort ``staging``) runs the real agent; ``robot-2``
(cohort ``canary``) is a simulated robot (:class:`tests.sim.robots.SimFleet`) that verifies its
bundle and reports what the test tells it to. Every app gets its own port on the real robot, its
own release (an http probe on that port), its own rollout (waves staging → canary) and its own
config (``configs/<app>/default.yaml``, written by the agent to ``apps/<app>/config/<app>.yaml``)::

    world = MultiAppWorld.create(tmp_path, keys, artifacts)
    world.publish("navstack", "1.0.0")         # release + rollout merged, controller reconciled
    world.once()                                # one agent cycle on robot-1 (every app)
    assert world.answer("navstack") == "1.0.0"  # the app answers on its own port
    world.close()                               # stops the app processes
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agent.executors.base import ExecutorContext
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR, TarballExecutor
from agent.loop import CycleResult, run_once
from agent.paths import AgentPaths
from agent.state.journal import Journal, JournalEntry
from controller.records.model import DeploymentRecord
from controller.state.model import RolloutState
from fleetcd.compat import UTC
from fleetcd.models.agent import AgentConfig
from tests.apps import (
    AppBehaviour,
    build_app_tarball,
    free_port,
    stop_all,
    tarball_artifact,
    wait_for_version,
)
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.provision import trust_pins, write_keys_dir
from tests.sim.world import Clock, ControllerWorld

ROBOT, OTHER = "robot-1", "robot-2"  # the real agent; a simulated robot in the next wave
APPS = ("navstack", "perception")
WATCH_SECONDS = 1
SOAK_SECONDS = 60
CONFIG_SCHEMA = {
    "type": "object",
    "properties": {"rate_hz": {"type": "number", "minimum": 1, "maximum": 100}},
    "required": ["rate_hz"],
    "additionalProperties": False,
}
WAVES = {
    "type": "waves",
    "waves": [
        {
            "name": "staging",
            "cohort": "staging",
            "soak_seconds": SOAK_SECONDS,
            "failure_threshold": {"count": 0},
        },
        {"name": "canary", "cohort": "canary", "soak_seconds": SOAK_SECONDS},
    ],
}


@dataclass
class MultiAppWorld:
    controller: ControllerWorld
    artifacts: ArtifactServer
    config: AgentConfig
    root: Path
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, keys: KeyFactory, artifacts: ArtifactServer) -> MultiAppWorld:
        fleet = FleetRepoBuilder(root / "work", keys=keys, name="multiapp")
        fleet.device(ROBOT)
        fleet.device(OTHER)
        fleet.cohort("staging", [ROBOT], stage="staging")
        fleet.cohort("canary", [OTHER], stage="canary")
        clock = Clock(datetime.now(UTC).replace(microsecond=0))
        controller = ControllerWorld.create(
            root, fleet, keys, "two robots", clock=clock, cache="controller-cache"
        )
        keys_dir = write_keys_dir(root / "robot-keys", controller.sim.keys)
        config = AgentConfig.model_validate(
            {
                "apiVersion": "fleetcd.dev/v1",
                "kind": "AgentConfig",
                "device": ROBOT,
                "remote": {"url": str(controller.server)},
                "trust": trust_pins(controller.fleet, keys_dir),
                "state_dir": str(root / "robot-state"),
                "poll": {"interval_seconds": 5, "heartbeat_seconds": 60},
            }
        )
        return cls(controller, artifacts, config, root, {app: free_port() for app in APPS})

    # --- the fleet repository ----------------------------------------------------------------------
    @property
    def fleet(self) -> FleetRepoBuilder:
        return self.controller.fleet

    def release(
        self, app: str, version: str, behaviour: AppBehaviour = "healthy", **fields: Any
    ) -> dict[str, Any]:
        """A signed release of ``app``: a real tarball on the artifact server, an http probe on the
        app's own port, and the app's config schema."""
        folder = self.root / "published"
        folder.mkdir(exist_ok=True)
        name = f"{app}-{version}.tar.gz"
        data, _sha = build_app_tarball(folder / name, version, behaviour=behaviour)
        url = self.artifacts.add(f"/{name}", data)
        command = [sys.executable, "app.py", "--port", str(self.ports[app])]
        probe = {
            "name": "healthz",
            "type": "http",
            "url": f"http://127.0.0.1:{self.ports[app]}/healthz",
            "timeout_seconds": 2,
            "attempts": 3,
            "interval_seconds": 1,
        }
        fields.setdefault("health", {"watch_seconds": WATCH_SECONDS, "probes": [probe]})
        fields.setdefault("config", {"path": f"{app}.yaml", "schema": CONFIG_SCHEMA})
        return self.fleet.release(
            app, version, artifacts=[tarball_artifact(url, data, command=command)], **fields
        )

    def publish(
        self,
        app: str,
        version: str,
        behaviour: AppBehaviour = "healthy",
        *,
        rate_hz: float = 10,
        rollout: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Release ``version`` of ``app``, set its config and point its rollout (named after the app)
        at it; merged and reconciled."""
        self.release(app, version, behaviour, **fields)
        self.fleet.config(app, "default", {"rate_hz": rate_hz})
        self.fleet.rollout(
            app, app=app, release=version, cohorts=["staging", "canary"], strategy=WAVES, **(rollout or {})
        )
        self.controller.merge(f"{app} {version}")
        self.reconcile()

    def reconcile(self, seconds: float = 1) -> None:
        self.controller.clock.tick(seconds)
        self.controller.reconcile()

    # --- the robots ----------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.controller.clock.now

    @property
    def paths(self) -> AgentPaths:
        assert self.config.state_dir is not None
        return AgentPaths(Path(self.config.state_dir))

    def once(self) -> CycleResult:
        """One cycle of the real agent on ``robot-1`` at the world's instant."""
        return run_once(self.config, self.now)

    def other_reports(self, app: str, activity: str) -> None:
        """The simulated ``robot-2`` reports ``activity`` for its deployment of ``app``."""
        self.controller.sim.report(OTHER, app, activity, self.now)

    def executor(self) -> TarballExecutor:
        paths = self.paths
        return TarballExecutor(ExecutorContext(paths.apps_dir, paths.downloads_dir), self.config)

    def entry(self, app: str) -> JournalEntry | None:
        return Journal(self.paths.journal(app)).load()

    def config_file(self, app: str) -> Path:
        return self.paths.apps_dir / app / "config" / f"{app}.yaml"

    def answer(self, app: str, version: str | None = None, limit_s: float = 10.0) -> str | None:
        return wait_for_version(self.ports[app], version, limit_s=limit_s)

    def records(self, app: str, device: str = ROBOT) -> list[DeploymentRecord]:
        return [r for r in self.controller.state().devices[device].records if r.app == app]

    def rollout(self, app: str) -> RolloutState:
        return self.controller.state().rollouts[app]

    def desired_versions(self, device: str = ROBOT) -> dict[str, str]:
        return {d.app: d.version for d in self.controller.sim.bundle(device, self.now).deployments}

    def close(self) -> None:
        stop_all(Supervisor(self.paths.apps_dir / RUN_DIR))


def config_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_bytes())
    assert isinstance(loaded, dict)
    return loaded
