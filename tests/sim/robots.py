"""Simulated robots: each reads and *verifies* its own desired state (real gpg, the real verifier)
and writes real status report commits to its own status ref on the server.

Only the converge part is simulated: the test decides what each robot reports. :class:`SimFleet`
plays every robot of a controller world one report at a time; :class:`PinningRobot` also pins the
bundle digest it accepted, as the real agent does; :func:`reports_for` and :func:`push_reports` let
a benchmark's whole fleet report at once, in one pack (as many robots pushing leave after a
``git gc``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2

from controller.delivery.write import delivery_ref
from controller.state.model import DeviceFile
from fleetcd.desired import (
    BUNDLE_FILE,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    TrustAnchors,
    verify_bundle,
)
from fleetcd.desired.bundle import Bundle
from fleetcd.desired.chain import TRUST_FILE, parse_trust_file
from fleetcd.desired.verify import verify_trust
from fleetcd.git.objects import Identity, commit, object_batch, read_blob, ref_target, update_refs, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.reports import STATUS_FILE, DeploymentReport, StatusReport
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.rootchain import Pin, TrustedRoot

ROBOT = Identity("simulated robot", "robot@fleetcd.invalid")
DESIRED_FILES = (BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE)


@dataclass
class SimRobot:
    device: str
    seq: int = 0
    last_serial: int | None = None
    reports: dict[str, DeploymentReport] = field(default_factory=dict)
    trust: TrustedRoot | None = None  # the newest trust-root version it verified, as the agent holds it


@dataclass
class SimFleet:
    server: Path
    anchors: TrustAnchors
    keys: dict[str, bytes]  # keys/*.asc of the fleet (the robots' pinned public keys)
    namespaces: bool = True
    robots: dict[str, SimRobot] = field(default_factory=dict)
    # With a pin the robots verify like the real agent: walk trust.json from the version they hold
    # (or the pin) and take the keys from the newest verified version; without, ``anchors`` is fixed.
    pin: Pin | None = None

    def bundle(self, device: str, now: datetime) -> Bundle:
        """The robot's verified bundle (every robot gets one, possibly with no deployments)."""
        repo = pygit2.Repository(str(self.server))
        ref = delivery_ref(device, namespaces=self.namespaces)
        assert ref_target(repo, ref) is not None, f"no desired state at {ref}"
        parts = [read_blob(repo, ref, name) for name in DESIRED_FILES]
        assert all(p is not None for p in parts), f"{ref} is missing files"
        robot = self.robots.setdefault(device, SimRobot(device))
        chain = parse_trust_file(read_blob(repo, ref, TRUST_FILE) or b"") if self.pin is not None else None
        keys = {**self.keys, **{f"desired:{p}": d for p, d in (chain.keys if chain else {}).items()}}
        anchors, version, trusted = self.anchors, None, None
        with Keyring.from_armored(keys) as keyring:
            if chain is not None and self.pin is not None:
                trusted = verify_trust(chain, self.pin, robot.trust, keyring)
                anchors, version = TrustAnchors.from_trust_root(trusted.model), trusted.version
            verified = verify_bundle(
                device,
                parts[0],
                parts[1],
                parts[2],
                parts[3],  # type: ignore[arg-type]
                anchors,
                robot.last_serial,
                now,
                keyring,
                trust_version=version,
            )
        robot.last_serial = verified.root.serial
        robot.trust = trusted or robot.trust
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


class PinningRobot:
    """A robot that remembers the serial *and* the bundle digest it accepted, as the real agent
    does, so a second, different root under an already used serial is caught."""

    def __init__(self, world: Any, device: str) -> None:  # a tests.sim.world.ControllerWorld
        self.world, self.device = world, device
        self.serial: int | None = None
        self.digest: str | None = None

    def poll(self) -> int:
        repo = pygit2.Repository(str(self.world.server))
        target = ref_target(repo, delivery_ref(self.device, namespaces=True))
        assert target is not None
        bundle, root, signature, proof = (read_blob(repo, target, name) or b"" for name in DESIRED_FILES)
        with Keyring.from_armored(self.world.sim.keys) as keyring:
            verified = verify_bundle(
                self.device,
                bundle,
                root,
                signature,
                proof,
                self.world.sim.anchors,
                self.serial,
                self.world.clock.now,
                keyring,
                last_bundle_sha256=self.digest,
            )
        self.serial, self.digest = verified.root.serial, hashlib.sha256(bundle).hexdigest()
        return self.serial


# --- a whole fleet at once (benchmarks) ---------------------------------------------------------


def reports_for(
    files: Mapping[str, DeviceFile], seq: int, activity: str, at: datetime, *, agent_version: str = "sim"
) -> list[StatusReport]:
    """Every robot reports ``activity`` for each deployment it holds (an empty report if none)."""
    out = []
    for device, data in files.items():
        deployments = [
            DeploymentReport.model_validate(
                {
                    "deployment_id": r.id,
                    "app": r.app,
                    "version": r.version,
                    "activity": activity,
                    "error": "none",
                    "message": "",
                    "updated_at": at,
                }
            )
            for r in data.records
        ]
        out.append(
            StatusReport.model_validate(
                {
                    "format": "fleetcd.dev/status/v1",
                    "device": device,
                    "seq": seq,
                    "agent_version": agent_version,
                    "reported_at": at,
                    "bundle_serial": None,
                    "deployments": deployments,
                }
            )
        )
    return out


def push_reports(
    repository: Path, reports: list[StatusReport], at: datetime, *, author: Identity = ROBOT
) -> None:
    """One status commit per robot on its status ref in ``repository`` (objects as one pack)."""
    repo = pygit2.Repository(str(repository))
    updates = {}
    with object_batch(repo) as staged:
        for report in reports:
            ref = status_ref(report.device)
            parent = ref_target(repo, ref)
            tree = write_tree(staged, {STATUS_FILE: report.model_dump_json().encode()})
            parents = [parent] if parent is not None else []
            updates[ref] = (
                parent,
                commit(staged, None, tree, f"status of {report.device}", parents, author, at),
            )
    update_refs(repo, updates, message="simulated robots report")
