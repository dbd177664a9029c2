"""Settings of one simulation run (``fleetcd sim``), with bounded, documented defaults.

Read by :func:`controller.sim.run.run_simulation`; built by the CLI (:mod:`controller.sim.rehearsal`),
the tests and ``bench/e2e_rollout.py``. Rates are probabilities in [0, 1]; times are in seconds of
the simulation's clock (simulated seconds with ``virtual_time``, wall seconds without).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fleetcd.shards import ShardSpec, check_shard_name, check_shards

DEFAULT_POLL_SECONDS = 60.0  # fleet.yaml's defaults.poll_seconds when the caller gives none
DEFAULT_JITTER_PERCENT = 20.0  # each poll interval is poll_seconds * (1 ± jitter)
DEFAULT_APPLY_SECONDS = 30.0  # download, install, switch and the health watch, per deployment
DEFAULT_CONTROLLER_SECONDS = 10.0  # between reconciles (plus one at the merge, as --watch would)
DEFAULT_HEARTBEAT_SECONDS = 300.0  # the agent's poll.heartbeat_seconds default
DEFAULT_MAX_SECONDS = 3600.0
VIRTUAL_TIME_FROM_ROBOTS = 50  # from this many robots on, the CLI defaults to a virtual clock
# Robots' events between two reconciles run on this many threads (virtual clock only): their time
# goes to waiting for git and gpg processes, so a few threads use two cores well.
DEFAULT_WORKERS = 4


_FLOATS = (
    "offline_rate",
    "failure_rate",
    "latency_seconds",
    "poll_seconds",
    "jitter_percent",
    "apply_seconds",
    "heartbeat_seconds",
    "controller_seconds",
    "max_seconds",
)


@dataclass(frozen=True)
class SimShard:
    """One status shard of a rehearsal (docs/git-server.md, "Status shards"): its name, the URL the
    controller fetches it from and, when given, the URL the robots push to (e.g. a ``git://`` daemon
    in front of the same repository)."""

    name: str
    url: str
    push_url: str | None = None


@dataclass(frozen=True)
class SimSettings:
    """One rehearsal: the fleet repository, the robots' behaviour and the clock.

    ``url`` is the fleet repository the controller reconciles (and writes: state branch, desired
    state). Robots reach it at ``robots_url`` when given (e.g. a ``git://`` daemon in front of the
    same repository), else at ``url``, and push to ``robots_push_url`` when given. ``robots`` None
    simulates every active device of the fleet.
    """

    url: str
    gnupghome: Path  # the controller's secret key (fleet.yaml trust.controller)
    workdir: Path  # robots' own repositories and the controller's mirror
    robots_url: str | None = None
    robots_push_url: str | None = None  # where robots push reports, if not robots_url (same repository)
    robots: int | None = None
    offline_rate: float = 0.0  # each robot stays silent for the whole run with this probability
    failure_rate: float = 0.0  # each deployment fails its health watch with this probability
    latency_seconds: float = 0.0  # added to every poll answer and every report push
    poll_seconds: float | None = None  # None: fleet.yaml's defaults.poll_seconds
    jitter_percent: float = DEFAULT_JITTER_PERCENT
    apply_seconds: float = DEFAULT_APPLY_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    controller_seconds: float = DEFAULT_CONTROLLER_SECONDS
    seed: int = 0
    virtual_time: bool | None = True  # None: virtual from VIRTUAL_TIME_FROM_ROBOTS robots on
    start: datetime | None = None  # the merge instant on the simulated clock; None: now
    until_done: bool = True  # stop once every rollout finished and every robot is in sync
    max_seconds: float = DEFAULT_MAX_SECONDS
    namespaces: bool = True  # the controller's delivery layout (per-robot GIT_NAMESPACE refs)
    # A poll when no desired-state ref moved since the robot's last fetch would be a no-op: count it
    # without running git (long soaks at scale). Server CPU then leaves those polls out.
    skip_noop_polls: bool = False
    # With skip_noop_polls, also count, not run, a poll that would find the robot's own desired ref
    # where it was (the controller's last push left it at the commit the robot holds), except on
    # every unmoved_poll_sample-th robot, whose polls keep the rule above: a measured sample of
    # no-op polls. 0: off (only polls when no desired ref of the repository moved are skipped).
    unmoved_poll_sample: int = 0
    workers: int = DEFAULT_WORKERS  # 1: every event in order on one thread
    # Robots push their status to these repositories, each robot to the one fleetcd.shards.shard_of
    # gives it, and the controller reads them all (``controller run --status-shard``); empty: status
    # goes to the fleet repository (robots_push_url).
    status_shards: tuple[SimShard, ...] = ()

    def __post_init__(self) -> None:
        for name in _FLOATS:  # NaN passes every comparison below: refuse it (and inf) first
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value}")
        for name in ("offline_rate", "failure_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {value}")
        if not 0.0 <= self.jitter_percent < 100.0:
            raise ValueError(f"jitter_percent must be within [0, 100), not {self.jitter_percent}")
        positive = ("apply_seconds", "controller_seconds", "heartbeat_seconds", "max_seconds")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.poll_seconds is not None and self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, not {self.poll_seconds}")
        if self.latency_seconds < 0:
            raise ValueError(f"latency_seconds must not be negative, not {self.latency_seconds}")
        if self.unmoved_poll_sample < 0:
            raise ValueError(f"unmoved_poll_sample must not be negative, not {self.unmoved_poll_sample}")
        if self.unmoved_poll_sample and not self.skip_noop_polls:
            raise ValueError("unmoved_poll_sample needs skip_noop_polls")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if self.robots is not None and self.robots < 1:
            raise ValueError(f"robots must be at least 1, not {self.robots}")
        if self.status_shards:
            check_shards(ShardSpec(check_shard_name(s.name), s.url) for s in self.status_shards)
        if self.start is not None and self.start.utcoffset() is None:
            raise ValueError("start needs a time zone")
