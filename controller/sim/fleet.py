"""What the simulated robots are provisioned with, read from the fleet repository's main branch.

Before a simulation starts, the controller's mirror is fetched and main read the way the
controller reads it: the active (not decommissioned) devices become the virtual robots, and each
robot's trust anchors are the ones the newest trust root states
(:meth:`TrustAnchors.from_trust_root`) with the public keys of ``keys/*.asc``. A robot that
already pushed reports (a rehearsal run again on the same repository) resumes from its last one:
its sequence number, installed versions and the serial it last accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.ingest.reports import read_reports
from controller.reconcile.source import Source, fetch_all, open_mirror
from fleetcd.desired import TrustAnchors
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.git.trees import read_tree
from fleetcd.loading.fleetspec import load_spec
from fleetcd.reports import StatusReport


@dataclass(frozen=True)
class FleetView:
    name: str
    devices: tuple[str, ...]  # active devices, sorted: the robots to simulate
    anchors: TrustAnchors
    keys: dict[str, bytes]  # keys/*.asc on main
    poll_seconds: float  # fleet.yaml defaults.poll_seconds
    reports: dict[str, StatusReport] = field(default_factory=dict)  # last report on the server, if any


def load_fleet(source: Source) -> FleetView:
    """The fleet as main states it; raises InvalidContent when fleet.yaml or a device does not load."""
    repo = open_mirror(source)
    fetched = fetch_all(repo, source)
    files, _problems = read_tree(repo, str(fetched.main))
    spec, problems = load_spec(files)
    if spec.fleet is None:
        raise InvalidContent(problems) if problems else SetupError(f"{source.url}: main has no fleet.yaml")
    broken = [p for p in problems if p.file == "fleet.yaml" or p.file.startswith(("devices/", "keys/"))]
    if broken:
        raise InvalidContent(broken)
    fleet = spec.fleet.model
    if spec.trust_root is None:
        raise (
            InvalidContent([p for p in problems if p.file.startswith("trust/")])
            if problems
            else SetupError(f"{source.url}: main has no trust root (trust/root/1.yaml)")
        )
    devices = tuple(sorted(d for d, doc in spec.devices.items() if not doc.model.decommissioned))
    found = read_reports(repo, devices)
    reports = {device: report for device, (report, _) in found.items() if report is not None}
    return FleetView(
        name=fleet.name,
        devices=devices,
        anchors=TrustAnchors.from_trust_root(spec.trust_root),
        keys=dict(spec.keys),
        poll_seconds=float(fleet.defaults.poll_seconds),
        reports=reports,
    )
