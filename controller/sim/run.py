"""``fleetcd sim``'s engine: N virtual robots and the real controller on one clock, until done.

Place in the flow: a rehearsal of the whole loop — merge → reconcile → per-robot desired state →
robots fetch, verify, converge, report → reconcile ingests → waves gate and advance — against a
real fleet repository, with real git and real gpg. :func:`run_simulation` reads the fleet from main
(:mod:`controller.sim.fleet`), starts one :class:`~controller.sim.robot.VirtualRobot` per active
device (or the first ``robots`` of them) and the :class:`~controller.sim.control.ControllerActor`,
runs the event heap (:mod:`controller.sim.clock`) until every rollout finished and every robot is
in sync (or the time limit), reconciles once more so the state branch holds every report, and
builds the :class:`~controller.sim.report.SimReport`.

Randomness is per robot (``random.Random(f"{seed}:{device}")``: offline or not, poll phase and
jitter, which deployments fail), so a run with the same seed, fleet and start time is the same run.
The simulation writes to ``settings.url``: run it on a copy of a real fleet (the CLI does).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.reconcile.cache import ReconcileCache
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.shards import StatusShard
from controller.reconcile.source import Source, open_mirror
from controller.reconcile.statebranch import load_state
from controller.sim.clock import Scheduler, SimClock
from controller.sim.control import ControllerActor
from controller.sim.fleet import FleetView, load_fleet
from controller.sim.model import Behaviour, Counters
from controller.sim.report import SimReport, summarize, wave_timings
from controller.sim.robot import Shared, VirtualRobot
from controller.sim.settings import VIRTUAL_TIME_FROM_ROBOTS, SimSettings
from controller.sim.verifier import CachingVerifier
from controller.sim.wire import RobotLink
from fleetcd.compat import UTC
from fleetcd.errors import SetupError
from fleetcd.shards import shard_of
from fleetcd.trust.gpg import Keyring


def run_simulation(settings: SimSettings, *, progress: Callable[[str], None] | None = None) -> SimReport:
    """Rehearse the rollouts on ``settings.url``'s main; ``progress`` gets a line per visible change."""
    source = Source.for_url(settings.url, settings.workdir / "controller")
    fleet = load_fleet(source)
    devices = _chosen(fleet, settings.robots)
    virtual = settings.virtual_time
    if virtual is None:
        virtual = len(devices) >= VIRTUAL_TIME_FROM_ROBOTS
    start = settings.start or datetime.now(UTC).replace(microsecond=0)
    clock = SimClock(start, virtual=virtual)
    scheduler = Scheduler(clock, workers=settings.workers)
    controller = ControllerSettings(
        source=source,
        gnupghome=settings.gnupghome,
        namespaces=settings.namespaces,
        notify=False,
        now=clock.now,
        cache=ReconcileCache(),  # the rehearsal runs one controller, as ``controller run`` does
        status_shards=tuple(StatusShard(s.name, s.url) for s in settings.status_shards),
    )
    shards = {s.name: s.push_url or s.url for s in settings.status_shards}
    poll_seconds = settings.poll_seconds or fleet.poll_seconds
    behaviour = Behaviour(
        poll_seconds=poll_seconds,
        jitter=settings.jitter_percent / 100.0,
        apply_seconds=settings.apply_seconds,
        failure_rate=settings.failure_rate,
        latency_seconds=settings.latency_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    began = time.perf_counter()
    with Keyring.from_armored(fleet.keys) as keyring:
        verifier = CachingVerifier(keyring)
        shared = Shared(
            scheduler, fleet.anchors, verifier, behaviour, skip_noop_polls=settings.skip_noop_polls
        )
        robots = []
        for index, device in enumerate(devices):
            rng = random.Random(f"{settings.seed}:{device}")  # noqa: S311 - a simulation, not a secret
            offline = rng.random() < settings.offline_rate
            link = RobotLink(
                device,
                settings.robots_url or settings.url,
                settings.workdir / "robots" / f"{device}.git",
                namespaces=settings.namespaces,
                push_url=shards[shard_of(device, shards)] if shards else settings.robots_push_url,
            )
            sample = settings.unmoved_poll_sample
            robots.append(
                VirtualRobot(
                    link,
                    shared,
                    rng,
                    offline=offline,
                    resume=fleet.reports.get(device),
                    samples_noop_polls=not sample or index % sample == 0,
                )
            )
        actor = ControllerActor(
            controller, scheduler, robots, settings.controller_seconds, settings.until_done, progress
        )
        shared.desired_epoch = lambda: actor.epoch
        if settings.unmoved_poll_sample:
            shared.published = lambda ref: actor.published.get(ref)
        actor.start()
        for robot in robots:
            robot.start()
        stopped = scheduler.run(settings.max_seconds)
        if actor.stats.last_at < clock.elapsed() and actor.stalled is None:
            actor.reconcile()  # ingest the reports pushed since the last reconcile
        simulated = clock.elapsed()
        state = load_state(open_mirror(source))
    wall = time.perf_counter() - began
    records = {r.id: r for device_file in state.devices.values() for r in device_file.records}
    traces = [t for robot in robots for t in robot.traces]
    counters, stats = Counters(), actor.stats
    for robot in robots:
        counters.add(robot.counters)
    return SimReport(
        settings=_described(settings, poll_seconds, len(devices), virtual),
        stopped="stalled" if actor.stalled else ("done" if stopped else "time limit"),
        stalled_reason=actor.stalled,
        simulated_seconds=round(simulated, 3),
        wall_seconds=round(wall, 3),
        rollouts={name: s.phase.value for name, s in state.rollouts.items()},
        waves=wave_timings(traces, records, state.rollouts, start),
        summary=summarize(traces, len(robots), sum(r.offline for r in robots), counters.rejected),
        costs={
            "polls": counters.polls,
            "skipped_polls": counters.skipped_polls,
            "skipped_unmoved_polls": counters.skipped_unmoved,
            "fetches": counters.fetches,
            "verifications": counters.verifications,
            "gpg_checks": verifier.calls,
            "gpg_cache_hits": verifier.hits,
            "pushes": counters.pushes,
            "transport_errors": counters.transport_errors,
            "reconciles": stats.reconciles,
            "idle_reconciles": stats.idle,
            "new_roots": stats.serials,
            "controller_wall_seconds": round(stats.wall_seconds, 3),
            "first_reconcile_wall_seconds": round(stats.first_wall_seconds, 3),
            "events": scheduler.events_run,
            "max_lag_seconds": round(clock.max_lag_seconds, 3),
        },
        traces=traces,
    )


def _chosen(fleet: FleetView, robots: int | None) -> tuple[str, ...]:
    if robots is None:
        return fleet.devices
    if robots > len(fleet.devices):
        raise SetupError(
            f"--robots {robots}: the fleet has {len(fleet.devices)} active devices on main; "
            "add devices/<id>.yaml files or simulate fewer robots"
        )
    return fleet.devices[:robots]


def _described(settings: SimSettings, poll_seconds: float, robots: int, virtual: bool) -> dict[str, Any]:
    return {
        "url": settings.url,
        "robots_url": settings.robots_url or settings.url,
        "robots_push_url": settings.robots_push_url or settings.robots_url or settings.url,
        "robots": robots,
        "offline_rate": settings.offline_rate,
        "failure_rate": settings.failure_rate,
        "latency_seconds": settings.latency_seconds,
        "poll_seconds": poll_seconds,
        "jitter_percent": settings.jitter_percent,
        "apply_seconds": settings.apply_seconds,
        "controller_seconds": settings.controller_seconds,
        "seed": settings.seed,
        "virtual_time": virtual,
        "until_done": settings.until_done,
        "max_seconds": settings.max_seconds,
        "namespaces": settings.namespaces,
        "skip_noop_polls": settings.skip_noop_polls,
        "unmoved_poll_sample": settings.unmoved_poll_sample,
        "workers": settings.workers,
        "status_shards": {s.name: s.push_url or s.url for s in settings.status_shards},
    }
