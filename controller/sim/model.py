"""The simulator's small records: robot behaviour, per-deployment traces, counters (plain data).

Shared by the robot side (:mod:`controller.sim.robot`) and the report (:mod:`controller.sim.report`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Behaviour:
    poll_seconds: float
    jitter: float  # fraction: 0.2 is ±20 %
    apply_seconds: float
    failure_rate: float
    latency_seconds: float
    heartbeat_seconds: float


@dataclass
class Trace:
    """One deployment as one robot lived it; times in seconds since the merge."""

    device: str
    deployment_id: str
    app: str
    version: str
    action: str
    received_s: float
    started_s: float | None = None
    finished_s: float | None = None  # when the outcome's report reached the server
    outcome: str | None = None  # deployed, staged, failed, rolled_back


@dataclass
class Counters:
    """One robot's tally (robots run on several threads: each counts its own, summed at the end)."""

    polls: int = 0
    skipped_polls: int = 0  # no-op polls counted, not run (SimSettings.skip_noop_polls)
    skipped_unmoved: int = 0  # of those, polls skipped because the robot's own ref had not moved
    fetches: int = 0  # polls that brought a commit the robot had not seen
    verifications: int = 0
    rejected: int = 0  # bundles the verifier refused
    pushes: int = 0
    transport_errors: int = 0

    def add(self, other: Counters) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Installed:
    current: str | None = None
    previous: str | None = None
