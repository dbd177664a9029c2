"""The agent's test world: a fleet repository written by the REAL controller, a real artifact server
and a real robot agent converging from it — real git, real gpg, real HTTP, real app processes.

It is built on the simulator's pieces: a one-robot :class:`tests.fleetrepo.FleetRepoBuilder` fleet
(signed releases, approved rollouts) on a :class:`tests.sim.world.ControllerWorld` (a bare server,
:func:`controller.reconcile.steps.reconcile_once` on the world's clock writing each robot's signed
desired state) and :class:`tests.httpserver.ArtifactServer` serving tarball apps from
:mod:`tests.apps`. The robot ``robot-1`` is provisioned as :mod:`tests.sim.provision` provisions
every robot (an :class:`AgentConfig` pinning the fleet's keys), its state under the test's
``tmp_path``::

    world = AgentWorld.create(tmp_path, keys, artifacts)
    world.publish("1.0.0")             # release + rollout merged, controller reconciled
    result = world.once()              # one agent cycle (sync, verify, converge, report)
    assert world.answer() == "1.0.0"   # the app answers over HTTP
    world.close()                      # stops the app processes

Releases get a short watch window (``WATCH_SECONDS``) and an http probe on the app's port, so a
whole install-and-watch takes seconds. The world's clock starts at the real time and the agent runs
at the same instant, so the controller's bundle is fresh for both.

With ``docker_base_url`` (a private engine, tests/dockerd.py) the robot runs the Docker executor and
a release's artifact is a ``container_image`` pinned by digest (``publish(version, image=...)``):
busybox httpd serving the image's ``/www`` on the world's port with host networking, so the same
probe and :meth:`AgentWorld.answer` tell which version runs (``unhealthy``: the container runs but
serves nothing; ``crash``: it exits at once).

:class:`RealRobot` (the robot's side: its paths, one cycle, the executor, closing), :func:`agent_document`,
:func:`app_tarball` and :func:`http_probe` serve :mod:`tests.sim.multiapp` too.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agent.executors import make_executor
from agent.executors.base import Executor, ExecutorContext
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR, TarballExecutor
from agent.loop import CycleResult, Runtime, run_once
from agent.paths import AgentPaths
from agent.state.journal import Journal, JournalEntry
from controller.records.model import DeploymentRecord
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

DEVICE = "robot-1"
APP = "web"
WATCH_SECONDS = 1
ROOT = Path(__file__).resolve().parent.parent
IMAGE_PAGE_PREFIX = "app "  # what the busybox test image's /www/index.html says before its version


def image_command(port: int, behaviour: AppBehaviour) -> list[str]:
    """The command of a busybox test image's container (tests/dockerd.py) for ``behaviour``."""
    if behaviour == "crash":
        return ["/bin/sh", "-c", "echo crashing on purpose >&2; exit 3"]
    if behaviour == "unhealthy":
        return ["/bin/sleep", "3600"]  # up and running, but nothing answers the probe
    return ["/bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]


def served_version(port: int, version: str | None = None, limit_s: float = 10.0) -> str | None:
    """The version busybox httpd serves on ``port`` (``app <version>``), waiting for ``version``."""
    deadline = time.monotonic() + limit_s
    while True:
        answer = None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                answer = response.read().decode().strip().removeprefix(IMAGE_PAGE_PREFIX)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if (answer is not None and version in (None, answer)) or time.monotonic() >= deadline:
            return answer
        time.sleep(0.05)


def at(state: str, do: Callable[[], None]) -> Runtime:
    """A runtime that runs ``do`` once, just before the agent records ``state`` in its journal (the
    ``before-<state>`` checkpoint): a fault timed between two steps of a cycle."""
    done: list[str] = []

    def checkpoint(name: str) -> None:
        if name == f"before-{state}" and not done:
            done.append(name)
            do()

    return Runtime(checkpoint=checkpoint)


def live_clock() -> Clock:
    """A world clock at the real time: the agent runs at the same instant, so bundles are fresh."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


def agent_document(root: Path, controller: ControllerWorld, device: str) -> dict[str, Any]:
    """``agent.yaml`` of the real robot ``device``: pins the fleet's keys (written under ``root``),
    polls ``controller``'s server every 5 s, keeps its state in ``root/robot-state``."""
    keys_dir = write_keys_dir(root / "robot-keys", controller.sim.keys)
    return {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "AgentConfig",
        "device": device,
        "remote": {"url": str(controller.server)},
        "trust": trust_pins(controller.fleet, keys_dir),
        "state_dir": str(root / "robot-state"),
        "poll": {"interval_seconds": 5, "heartbeat_seconds": 60},
    }


def http_probe(port: int, path: str) -> dict[str, Any]:
    """A release's http probe ``healthz`` of ``path`` on ``port``: 3 attempts, 1 s apart."""
    return {
        "name": "healthz",
        "type": "http",
        "url": f"http://127.0.0.1:{port}{path}",
        "timeout_seconds": 2,
        "attempts": 3,
        "interval_seconds": 1,
    }


def app_tarball(
    root: Path, artifacts: ArtifactServer, app: str, version: str, port: int, behaviour: AppBehaviour
) -> dict[str, Any]:
    """A release artifact: the test app's tarball (answering ``version`` on ``port``), built under
    ``root/published`` and served by ``artifacts``."""
    folder = root / "published"
    folder.mkdir(exist_ok=True)
    name = f"{app}-{version}.tar.gz"
    data, _sha = build_app_tarball(folder / name, version, behaviour=behaviour)
    url = artifacts.add(f"/{name}", data)
    return tarball_artifact(url, data, command=[sys.executable, "app.py", "--port", str(port)])


@dataclass
class RealRobot:
    """The real agent of one robot (``config``) beside a controller world: what both agent worlds share."""

    controller: ControllerWorld
    artifacts: ArtifactServer
    config: AgentConfig

    def reconcile(self, seconds: float = 1) -> None:
        """The controller's next reconcile, ``seconds`` later (ingests the robot's report)."""
        self.controller.clock.tick(seconds)
        self.controller.reconcile()

    @property
    def now(self) -> datetime:
        return self.controller.clock.now

    @property
    def paths(self) -> AgentPaths:
        assert self.config.state_dir is not None
        return AgentPaths(Path(self.config.state_dir))

    def once(self, runtime: Runtime | None = None) -> CycleResult:
        """One agent cycle at the world's instant, with the real executor, clock and hooks."""
        return run_once(self.config, self.now, runtime=runtime)

    def executor(self) -> TarballExecutor:
        """A tarball executor over the agent's state (same slots and supervisor as the agent's)."""
        paths = self.paths
        return TarballExecutor(ExecutorContext(paths.apps_dir, paths.downloads_dir), self.config)

    def close(self) -> None:
        """Stop the app processes the agent started."""
        stop_all(Supervisor(self.paths.apps_dir / RUN_DIR))


@dataclass
class AgentWorld(RealRobot):
    config_file: Path  # the same config as agent.yaml, for subprocesses and the CLI
    port: int
    root: Path
    strategy: dict[str, Any]

    # --- building --------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: Path,
        keys: KeyFactory,
        artifacts: ArtifactServer,
        *,
        strategy: dict[str, Any] | None = None,
        agent: dict[str, Any] | None = None,
        docker_base_url: str | None = None,
    ) -> AgentWorld:
        """The fleet (one robot in a staging cohort), its server, a controller and the robot's agent
        (with the Docker executor on the engine at ``docker_base_url`` when given)."""
        fleet = FleetRepoBuilder(root / "work", keys=keys, name="agentworld")
        fleet.device(DEVICE)
        fleet.cohort("staging", [DEVICE], stage="staging")
        controller = ControllerWorld.create(
            root, fleet, keys, "an empty fleet", clock=live_clock(), cache="controller-cache"
        )
        document = {
            **agent_document(root, controller, DEVICE),
            **({"executor": "docker", "docker": {"base_url": docker_base_url}} if docker_base_url else {}),
            **(agent or {}),
        }
        config_file = root / "agent.yaml"
        config_file.write_text(yaml.safe_dump(document, sort_keys=False))
        config = AgentConfig.model_validate(document)
        strategy = strategy or {"type": "all_at_once"}
        return cls(controller, artifacts, config, config_file, free_port(), root, strategy)

    def release(
        self, version: str, behaviour: AppBehaviour = "healthy", *, image: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Add a signed release of the app with an http probe: a real tarball on the artifact server,
        or, given ``image`` (``repo@sha256:…``), that container image."""
        if image is not None:
            artifact = {
                "kind": "container_image",
                "name": "app",
                "image": image,
                "command": image_command(self.port, behaviour),
                "ports": {"http": self.port},
                **fields.pop("artifact", {}),
            }
            fields.setdefault("health", self.health("/"))
            return self.controller.fleet.release(APP, version, artifacts=[artifact], **fields)
        tarball = app_tarball(self.root, self.artifacts, APP, version, self.port, behaviour)
        artifact = {**tarball, **fields.pop("artifact", {})}
        fields.setdefault("health", self.health("/healthz"))
        return self.controller.fleet.release(APP, version, artifacts=[artifact], **fields)

    def health(self, path: str, watch_seconds: int = WATCH_SECONDS) -> dict[str, Any]:
        """A release's health section: one http probe ``healthz`` of ``path`` on the app's port."""
        return {"watch_seconds": watch_seconds, "probes": [http_probe(self.port, path)]}

    def publish(
        self, version: str, behaviour: AppBehaviour = "healthy", *, image: str | None = None, **fields: Any
    ) -> None:
        """Release ``version`` and point the rollout at it; merged and reconciled by the controller."""
        rollout_fields = fields.pop("rollout", {})
        self.release(version, behaviour, image=image, **fields)
        self.controller.fleet.rollout(
            APP, app=APP, release=version, devices=[DEVICE], strategy=self.strategy, **rollout_fields
        )
        self.controller.merge(f"{APP} {version}")
        self.reconcile()

    # --- the robot -------------------------------------------------------------------------------
    def agent_executor(self) -> Executor:
        """The executor agent.yaml names (tarball or docker), over the agent's state."""
        paths = self.paths
        return make_executor(
            self.config.executor, ExecutorContext(paths.apps_dir, paths.downloads_dir), self.config
        )

    def entry(self) -> JournalEntry | None:
        return Journal(self.paths.journal(APP)).load()

    def answer(self, version: str | None = None, limit_s: float = 10.0) -> str | None:
        """The version the app answers with over HTTP (waits for ``version`` when given)."""
        if self.config.executor == "docker":
            return served_version(self.port, version, limit_s)
        return wait_for_version(self.port, version, limit_s=limit_s)

    def records(self) -> list[DeploymentRecord]:
        """The controller's deployment records of the robot, oldest first."""
        return list(self.controller.state().devices[DEVICE].records)

    def record(self, deployment_id: str) -> DeploymentRecord:
        (found,) = [r for r in self.records() if r.id == deployment_id]
        return found

    def deployment_id(self) -> str:
        """The id of the deployment the robot's current bundle gives the app."""
        (deployment,) = [d for d in self.controller.sim.bundle(DEVICE, self.now).deployments if d.app == APP]
        return deployment.deployment_id
