"""Provisioning the demo's robots: one folder per robot with the ``agent.yaml`` a real robot would get.

Each robot is pinned to the fleet's keys exactly as docs/agent.md describes: the public keys copied
to its own ``keys/`` folder and the fingerprints, threshold and per-stage approvals taken from
``fleet.yaml`` (:meth:`fleetcd.desired.TrustAnchors.from_fleet`), never from the desired state it
will verify. Its git remote is the fleet's bare repository; its state lives in ``state/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from controller.demo.fleet import Robot
from fleetcd.desired import TrustAnchors
from fleetcd.loading.documents import load_document
from fleetcd.models import Fleet

POLL_SECONDS = 1  # the agents' poll interval (+/- 20 % jitter); a real robot polls every minute
HEARTBEAT_SECONDS = 30


def anchors_of(fleet_root: Path) -> TrustAnchors:
    path = fleet_root / "fleet.yaml"
    return TrustAnchors.from_fleet(load_document(str(path), path.read_bytes(), Fleet).model)


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
    anchors = anchors_of(fleet_root)
    trust = {
        "keys_dir": str(keys.resolve()),
        "fleet": anchors.fleet,
        "controller": sorted(anchors.controller),
        "release_signers": sorted(anchors.release_signers),
        "release_threshold": anchors.release_threshold,
        "approvers": sorted(anchors.approvers),
        "approvals_required": {stage.value: n for stage, n in sorted(anchors.approvals_required.items())},
    }
    poll = {
        "interval_seconds": POLL_SECONDS,
        "backoff_initial_seconds": 1,
        "backoff_max_seconds": 5,
        "heartbeat_seconds": HEARTBEAT_SECONDS,
    }
    document = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "AgentConfig",
        "device": robot.id,
        "remote": {"url": str(server.resolve())},
        "trust": trust,
        "state_dir": str((home / "state").resolve()),
        "executor": executor,
        "poll": poll,
        "exec_allowlist": [str(probe.resolve())],
        **({"docker": {"base_url": docker_base_url}} if docker_base_url else {}),
    }
    path = home / "agent.yaml"
    header = (
        "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/agentconfig.json\n"
        f"# {robot.id}'s agent (docs/agent.md): trust anchors pinned from fleet.yaml at provisioning.\n"
    )
    # JSON is YAML: no tags, anchors or ambiguous scalars for the strict loader to refuse.
    path.write_text(header + json.dumps(document, indent=2) + "\n")
    return path
