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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.state.journal import Journal, JournalEntry
from controller.records.model import DeploymentRecord
from controller.state.model import RolloutState
from fleetcd.models.agent import AgentConfig
from tests.apps import (
    AppBehaviour,
    free_port,
    wait_for_version,
)
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import RealRobot, agent_document, app_tarball, http_probe, live_clock
from tests.sim.world import ControllerWorld

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
class MultiAppWorld(RealRobot):
    root: Path
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, keys: KeyFactory, artifacts: ArtifactServer) -> MultiAppWorld:
        fleet = FleetRepoBuilder(root / "work", keys=keys, name="multiapp")
        fleet.device(ROBOT)
        fleet.device(OTHER)
        fleet.cohort("staging", [ROBOT], stage="staging")
        fleet.cohort("canary", [OTHER], stage="canary")
        controller = ControllerWorld.create(
            root, fleet, keys, "two robots", clock=live_clock(), cache="controller-cache"
        )
        config = AgentConfig.model_validate(agent_document(root, controller, ROBOT))
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
        port = self.ports[app]
        tarball = app_tarball(self.root, self.artifacts, app, version, port, behaviour)
        fields.setdefault(
            "health", {"watch_seconds": WATCH_SECONDS, "probes": [http_probe(port, "/healthz")]}
        )
        fields.setdefault("config", {"path": f"{app}.yaml", "schema": CONFIG_SCHEMA})
        return self.fleet.release(app, version, artifacts=[tarball], **fields)

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

    # --- the robots ----------------------------------------------------------------------------------
    def other_reports(self, app: str, activity: str) -> None:
        """The simulated ``robot-2`` reports ``activity`` for its deployment of ``app``."""
        self.controller.sim.report(OTHER, app, activity, self.now)

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


def config_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_bytes())
    assert isinstance(loaded, dict)
    return loaded
