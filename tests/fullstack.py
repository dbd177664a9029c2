"""The whole of fleetcd on one machine, for tests/test_fullstack.py.

- **git server**: gitolite3 behind OpenSSH on loopback (tests/gitolite.py), set up as
  docs/git-server.md says: one SSH key per robot, the per-ref ACL, the namespace trigger.
- **controller**: the real :func:`reconcile_once`, in-process, reaching gitolite over SSH with the
  ``fleetcd-controller`` key and the server's host key pinned; its clock is injected, so soak
  times pass at once. A reconcile killed with SIGKILL runs in a subprocess (:func:`crash_main`).
- **robots**: four (one staging, two canary, one production), each a
  :class:`tests.dockerd.RobotHost` (its own network namespace and dockerd) running the real agent
  (:func:`agent.loop.run_once`) with its own SSH key, the host key pinned and the Docker executor
  pulling digest-pinned busybox images from the private registry. Agents use the controller's
  instant for bundle freshness and the real clock for their health watch windows.

People merging to main is not under test: :meth:`FullStack.merge` commits and copies ``main``
into the server's repository server-side. Everything else goes through SSH. ::

    stack.publish("web", "1.0.0", port, waves())   # image pushed, release signed, rollout approved, merged
    rounds = stack.drive(lambda s: rollout_phase(s, "web") is RolloutPhase.COMPLETED)
    assert stack.robots["prod-1"].call(served_version, port) == "1.0.0"   # asked on the robot's loopback
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agent.loop import CycleResult, run_once
from controller.reconcile.result import ReconcileResult
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.reconcile.steps import reconcile_once
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.compat import UTC
from fleetcd.desired import TrustAnchors
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.remote import SshKey
from fleetcd.models import TrustRoot
from fleetcd.models.agent import AgentConfig
from tests.dockerd import DockerWorld, RobotHost, find_binary
from tests.fleetrepo import FleetRepoBuilder
from tests.gitolite import CONTROLLER, Gitolite
from tests.gpgkeys import KeyFactory
from tests.sim.provision import trust_pins
from tests.sim.robots import SimFleet
from tests.sim.world import Clock

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["staging", "canary", "production"]
ROBOTS = {"stg-1": "staging", "can-1": "canary", "can-2": "canary", "prod-1": "production"}
SOAK_SECONDS = 60
ROUND_SECONDS = SOAK_SECONDS + 1  # the injected clock's step per round: every soak is over by the next
WATCH_SECONDS = 1  # the releases' health watch window (real seconds on the robot)
MAX_ROUNDS = 12


def waves() -> dict[str, Any]:
    """staging → canary → production, each soaking a minute; any canary failure fails its wave."""
    return {
        "type": "waves",
        "waves": [
            {"name": stage, "cohort": stage, "soak_seconds": SOAK_SECONDS}
            | ({"failure_threshold": {"count": 0}} if stage == "canary" else {})
            for stage in STAGES
        ],
    }


def httpd(port: int) -> list[str]:
    """busybox httpd serving the image's ``/www`` (``app <version>``) on the robot's loopback."""
    return _pid1(f"httpd -f -p 127.0.0.1:{port} -h /www")


def httpd_with_metrics(port: int, metrics_port: int) -> list[str]:
    """As :func:`httpd`, but first a metrics endpoint on ``metrics_port``; where that port is taken,
    the app comes up serving an empty directory, so its health page answers 404."""
    return _pid1(
        f"if httpd -p 127.0.0.1:{metrics_port} -h /www; then root=/www; else root=/tmp; fi; "
        f"httpd -f -p 127.0.0.1:{port} -h $root"
    )


def _pid1(script: str) -> list[str]:
    # As a container's PID 1 httpd would ignore SIGTERM, and every switch would wait out the engine's
    # stop timeout before SIGKILL: a shell that exits on TERM takes the whole container down at once.
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM; {script} & wait"]


def rollout_phase(state: StateSnapshot, rollout: str) -> RolloutPhase | None:
    found = state.rollouts.get(rollout)
    return found.phase if found is not None else None


def wave_phase(state: StateSnapshot, rollout: str, wave: str) -> WavePhase | None:
    found = state.rollouts.get(rollout)
    phases = [w.phase for w in found.waves if w.name == wave] if found is not None else []
    return phases[0] if phases else None


class RobotsUnavailable(RuntimeError):
    """A robot's network namespace or engine cannot be set up here: the caller skips (fails under CI)."""


@dataclass(frozen=True)
class Round:
    """One round of :meth:`FullStack.drive`: every agent's cycle and what then ran where."""

    at: datetime
    cycles: dict[str, CycleResult]
    running: dict[str, dict[str, str]]  # robot → app → version of its running containers


@dataclass
class FullStack:
    fleet: FleetRepoBuilder
    server: Gitolite
    images: DockerWorld
    settings: ControllerSettings
    clock: Clock
    robots: dict[str, RobotHost]
    sim: SimFleet  # reads a robot's desired state off the server's disk, verified like the agent does
    root: Path

    @classmethod
    def create(cls, root: Path, keys: KeyFactory, server: Gitolite, images: DockerWorld) -> FullStack:
        """The fleet on the server, reconciled once, and a running robot per device (no app yet)."""
        fleet = FleetRepoBuilder(root / "work", keys=keys, name="fullstack")
        for device in ROBOTS:
            fleet.device(device)
        for stage in STAGES:
            fleet.cohort(stage, [d for d, s in ROBOTS.items() if s == stage], stage=stage)
        fleet.git_init()
        clock = Clock(datetime.now(UTC).replace(microsecond=0))
        source = Source.for_url(
            server.url(),
            root / "controller-cache",
            credentials=SshKey(CONTROLLER, server.key(CONTROLLER)),
            host_keys=HostKeyPolicy(pinned_sha256=(server.host_fingerprint,)),
        )
        settings = ControllerSettings(source=source, gnupghome=keys.home, notify=False, now=lambda: clock.now)
        anchors = TrustAnchors.from_trust_root(TrustRoot.model_validate(fleet.trust))
        sim = SimFleet(server.repo_path(), anchors, {})
        stack = cls(fleet, server, images, settings, clock, {}, sim, root)
        stack.merge("the fleet: four robots in three cohorts")
        sim.keys = {f"keys/{p.name}": p.read_bytes() for p in (fleet.root / "keys").glob("*.asc")}
        stack.reconcile()
        dockerd = find_binary("dockerd") or "dockerd"
        try:
            for device in ROBOTS:
                relayed = [server.port, images.registry.port]
                stack.robots[device] = RobotHost(device, root / "robots" / device, dockerd, relayed)
        except (OSError, RuntimeError) as exc:
            stack.close()
            raise RobotsUnavailable(f"a robot's own network namespace and dockerd: {exc}") from exc
        except BaseException:
            stack.close()
            raise
        return stack

    # --- people and the controller -----------------------------------------------------------------
    def merge(self, message: str) -> None:
        self.fleet.commit(message)
        self.server.load(self.fleet.root)

    def publish(self, app: str, version: str, port: int, strategy: dict[str, Any], **artifact: Any) -> str:
        """Push the image of ``version``, release it (signed) and roll it out (approved) to every
        cohort; returns the pinned image. ``artifact`` overrides fields (e.g. ``command``)."""
        image = self.images.push_app(version)
        fields = {"kind": "container_image", "name": "app", "image": image, "command": httpd(port)}
        probe = {
            "name": "healthz",
            "type": "http",
            "url": f"http://127.0.0.1:{port}/",
            "timeout_seconds": 2,
            "attempts": 3,
            "interval_seconds": 1,
        }
        health = {"watch_seconds": WATCH_SECONDS, "probes": [probe]}
        self.fleet.release(app, version, artifacts=[fields | artifact], health=health)
        self.fleet.rollout(app, app=app, release=version, cohorts=STAGES, strategy=strategy)
        self.merge(f"{app} {version}")
        return image

    def reconcile(self) -> ReconcileResult:
        result = reconcile_once(self.settings)
        assert result.stalled is None, result.stalled
        return result

    def state(self) -> StateSnapshot:
        repo = open_mirror(self.settings.source)
        fetch_all(repo, self.settings.source)
        return load_state(repo)

    def reconcile_killed_at(self, step: str) -> None:
        """One reconcile in a controller process that is sent SIGKILL at checkpoint ``step``."""
        source = self.settings.source
        args = [source.url, str(source.mirror), str(self.settings.gnupghome), self.clock.now.isoformat()]
        args += [step, str(self.server.key(CONTROLLER)), self.server.host_fingerprint]
        script = "import sys; from tests.fullstack import crash_main; crash_main(sys.argv[1:])"
        done = subprocess.run(
            [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])

    # --- robots ------------------------------------------------------------------------------------
    def config(self, device: str, *, key_of: str | None = None, state_dir: Path | None = None) -> AgentConfig:
        """``device``'s agent.yaml: gitolite over SSH with ``key_of``'s key (default its own), the
        server's host key pinned, the fleet's anchors pinned, the Docker executor on its engine."""
        keys_dir = self.root / "robot-keys"
        if not keys_dir.exists():
            shutil.copytree(self.fleet.root / "keys", keys_dir)
        robot = self.robots[key_of or device]
        state = state_dir or self.root / "robots" / device / "agent"
        document: dict[str, Any] = {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": device,
            "remote": {
                "url": self.server.url(),
                "ssh_key": str(self.server.key(key_of or device)),
                "host_key_sha256": self.server.host_fingerprint,
            },
            "trust": trust_pins(self.fleet, keys_dir),
            "state_dir": str(state),
            "executor": "docker",
            "docker": {"base_url": robot.engine.base_url},
            "poll": {"interval_seconds": 5, "heartbeat_seconds": 3600},
        }
        state.parent.mkdir(parents=True, exist_ok=True)
        state.with_suffix(".yaml").write_text(
            yaml.safe_dump(document, sort_keys=False)
        )  # for a person debugging
        return AgentConfig.model_validate(document)

    def agents(self) -> dict[str, CycleResult]:
        """Every robot's agent runs one cycle at the controller's instant, all at the same time."""
        now = self.clock.now
        pending = {d: robot.submit(run_once, self.config(d), now) for d, robot in self.robots.items()}
        return {device: future.result() for device, future in pending.items()}

    def running(self) -> dict[str, dict[str, str]]:
        return {device: robot.running() for device, robot in self.robots.items()}

    def drive(self, until: Callable[[StateSnapshot], bool], *, rounds: int = MAX_ROUNDS) -> list[Round]:
        """Round after round — reconcile, check ``until``, every agent once, clock + a soak — until
        ``until`` holds for the state right after a reconcile; the rounds it took."""
        done: list[Round] = []
        for _ in range(rounds):
            self.reconcile()
            state = self.state()
            if until(state):
                return done
            cycles = self.agents()
            done.append(Round(self.clock.now, cycles, self.running()))
            self.clock.tick(ROUND_SECONDS)
        phases = {
            name: (r.phase.value, [(w.name, w.phase.value) for w in r.waves])
            for name, r in state.rollouts.items()
        }
        raise AssertionError(
            f"not there after {rounds} rounds: {phases}; last round: {done[-1] if done else None}"
        )

    def close(self) -> None:
        for robot in self.robots.values():
            robot.close()


def crash_main(argv: list[str]) -> None:
    """Subprocess entry: a controller reconciling once over SSH, SIGKILLed at checkpoint ``step``."""
    url, mirror, gnupghome, now, step, key, host_key = argv
    at = datetime.fromisoformat(now)

    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    source = Source(
        url, Path(mirror), SshKey(CONTROLLER, Path(key)), HostKeyPolicy(pinned_sha256=(host_key,))
    )
    settings = ControllerSettings(
        source=source, gnupghome=Path(gnupghome), notify=False, now=lambda: at, checkpoint=checkpoint
    )
    reconcile_once(settings)
    sys.exit(3)  # the step was never reached
