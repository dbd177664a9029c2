"""Simulated robots for controller tests: each reads and *verifies* its own desired state (real gpg,
the real verifier) and writes a real status report commit to its own status ref on the server.

Only the converge part is simulated: the test decides what each robot reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pygit2

from controller.delivery.write import delivery_ref
from fleetcd.desired import (
    BUNDLE_FILE,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    TrustAnchors,
    verify_bundle,
)
from fleetcd.desired.bundle import Bundle
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.reports import STATUS_FILE, DeploymentReport, StatusReport
from fleetcd.trust.gpg import Keyring

ROBOT = Identity("simulated robot", "robot@fleetcd.invalid")


@dataclass
class SimRobot:
    device: str
    seq: int = 0
    last_serial: int | None = None
    reports: dict[str, DeploymentReport] = field(default_factory=dict)


@dataclass
class SimFleet:
    server: Path
    anchors: TrustAnchors
    keys: dict[str, bytes]  # keys/*.asc of the fleet (the robots' pinned public keys)
    namespaces: bool = True
    robots: dict[str, SimRobot] = field(default_factory=dict)

    def bundle(self, device: str, now: datetime) -> Bundle:
        """The robot's verified bundle (every robot gets one, possibly with no deployments)."""
        repo = pygit2.Repository(str(self.server))
        ref = delivery_ref(device, namespaces=self.namespaces)
        assert ref_target(repo, ref) is not None, f"no desired state at {ref}"
        parts = [
            read_blob(repo, ref, name) for name in (BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE)
        ]
        assert all(p is not None for p in parts), f"{ref} is missing files"
        robot = self.robots.setdefault(device, SimRobot(device))
        with Keyring.from_armored(self.keys) as keyring:
            verified = verify_bundle(
                device,
                parts[0],
                parts[1],
                parts[2],
                parts[3],  # type: ignore[arg-type]
                self.anchors,
                robot.last_serial,
                now,
                keyring,
            )
        robot.last_serial = verified.root.serial
        return verified.bundle

    def report(
        self, device: str, app: str, activity: str, now: datetime, *, error: str = "none", message: str = ""
    ) -> str:
        """Report ``activity`` for the robot's current deployment of ``app``; returns its id."""
        bundle = self.bundle(device, now)
        (deployment,) = [d for d in bundle.deployments if d.app == app]
        robot = self.robots[device]
        robot.reports[app] = DeploymentReport(
            deployment_id=deployment.deployment_id,
            app=app,
            version=deployment.version,
            activity=activity,
            error=error,
            message=message,
            updated_at=now,  # type: ignore[arg-type]
        )
        self.push_report(device, now)
        return deployment.deployment_id

    def push_report(self, device: str, now: datetime, **overrides: object) -> None:
        robot = self.robots.setdefault(device, SimRobot(device))
        robot.seq += 1
        fields: dict[str, object] = {
            "format": "fleetcd.dev/status/v1",
            "device": device,
            "seq": robot.seq,
            "agent_version": "sim",
            "reported_at": now,
            "bundle_serial": robot.last_serial,
            "deployments": list(robot.reports.values()),
        }
        fields.update(overrides)
        report = StatusReport.model_validate(fields)
        repo = pygit2.Repository(str(self.server))
        tree = write_tree(repo, {STATUS_FILE: report.model_dump_json().encode()})
        ref = status_ref(device)
        parent = ref_target(repo, ref)
        commit(repo, ref, tree, f"status of {device}", [parent] if parent else [], ROBOT, now)
