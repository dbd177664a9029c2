"""Provisioning the demo's robots: one folder per robot with the ``agent.yaml`` a real robot would get.

Each robot is pinned to the fleet's keys exactly as docs/agent.md describes: the public keys copied
to its own ``keys/`` folder and the trust section written by the one function every robot is
provisioned through (:mod:`fleetcd.operator.agentconfig`, as ``fleetcd robot add`` does), never
from the desired state it will verify. Its git remote is the fleet's bare repository; its state
lives in ``state/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from controller.demo.fleet import Robot
from fleetcd.models.agent import DockerSettings, PollSettings, RemoteSettings
from fleetcd.operator.agentconfig import AGENT_CONFIG_FILE, agent_config, pinned_trust, render_agent_config
from fleetcd.operator.repo import load_trust_root

POLL_SECONDS = 1  # the agents' poll interval (+/- 20 % jitter); a real robot polls every minute
HEARTBEAT_SECONDS = 30


def provision(
    robot: Robot,
    home: Path,
    *,
    server: Path,
    fleet_root: Path,
    probe: Path,
    executor: Literal["tarball", "docker"] = "tarball",
    docker_base_url: str | None = None,
) -> Path:
    """Write ``home/agent.yaml`` (and ``home/keys/``) for ``robot``; returns the config's path."""
    keys = home / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for key in (fleet_root / "keys").glob("*.asc"):
        shutil.copy(key, keys / key.name)
    root = load_trust_root(fleet_root).model
    poll = PollSettings(
        interval_seconds=POLL_SECONDS,
        backoff_initial_seconds=1,
        backoff_max_seconds=5,
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    config = agent_config(
        robot.id,
        remote=RemoteSettings(url=str(server.resolve())),
        trust=pinned_trust(root, str(keys.resolve())),
        state_dir=str((home / "state").resolve()),
        executor=executor,
        poll=poll,
        exec_allowlist=[str(probe.resolve())],
        docker=DockerSettings(base_url=docker_base_url) if docker_base_url else None,
    )
    path = home / AGENT_CONFIG_FILE
    note = f"{robot.id}'s agent (docs/agent.md): trust anchors pinned from the trust root at provisioning."
    path.write_text(render_agent_config(config, path=str(path), note=note))
    return path
