"""The controller beside the virtual robots: the real reconcile on its own interval, on the sim clock.

Place in the flow: the controller side of ``fleetcd sim``. :class:`ControllerActor` calls
:func:`controller.reconcile.steps.reconcile_once` — fetch, verify, load, ingest the robots' reports,
plan, write desired state and the state branch, push — at the merge (as ``controller run --watch``
would) and then every ``controller_seconds``, with the simulation's clock as its ``now``, so soak
times and timeouts pass in simulated time. After each reconcile it tells whether the run is done:
every rollout finished (completed, halted, aborted, removed or stalled), and every robot that is
online idle and holding the desired-state commit the controller last published for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import open_mirror
from controller.reconcile.steps import reconcile_once
from controller.sim.clock import Scheduler
from controller.sim.robot import VirtualRobot
from controller.state.model import RolloutPhase, RolloutState
from fleetcd.git.objects import list_refs, ref_target
from fleetcd.git.refs import DESIRED_PREFIX, NAMESPACES_PREFIX, STATE_BRANCH
from fleetcd.git.trees import read_files

FINISHED = frozenset(
    {
        RolloutPhase.COMPLETED,
        RolloutPhase.HALTED,
        RolloutPhase.ABORTED,
        RolloutPhase.REMOVED,
        RolloutPhase.STALLED,
    }
)


@dataclass
class ControllerStats:
    reconciles: int = 0
    idle: int = 0  # reconciles that found nothing new and nothing due
    serials: int = 0  # reconciles that moved robots' desired state (a new signed root)
    signatures: int = 0
    wall_seconds: float = 0.0  # real time spent reconciling
    first_wall_seconds: float = 0.0  # the reconcile at the merge: real time until robots could see it
    last_at: float = -1.0  # sim seconds of the latest reconcile


@dataclass
class ControllerActor:
    settings: ControllerSettings
    scheduler: Scheduler
    robots: Sequence[VirtualRobot]
    interval_seconds: float
    until_done: bool
    progress: Callable[[str], None] | None = None
    stats: ControllerStats = field(default_factory=ControllerStats)
    epoch: int = 0  # grows whenever a reconcile moved desired-state refs
    stalled: str | None = None
    done_at: float | None = None
    # Each desired ref as the controller's last push left it, listed after every reconcile that
    # moved some (robots skipping unmoved polls read it; the run's barriers keep them apart).
    published: dict[str, str] = field(default_factory=dict)
    _last_lines: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.scheduler.at(0.0, self.tick, barrier=True)

    def tick(self) -> None:
        self.reconcile()
        if self.stalled is not None:
            self.scheduler.stop()
        elif self.until_done and self.done():
            self.done_at = self.scheduler.clock.elapsed()
            self.scheduler.stop()
        else:
            self.scheduler.after(self.interval_seconds, self.tick, barrier=True)

    def reconcile(self) -> None:
        began = time.perf_counter()
        result = reconcile_once(self.settings)
        took = time.perf_counter() - began
        self.stats.wall_seconds += took
        if self.stats.reconciles == 0:
            self.stats.first_wall_seconds = took
        self.stats.reconciles += 1
        self.stats.last_at = self.scheduler.clock.elapsed()
        self.stats.idle += int(result.idle)
        self.stats.signatures += result.signatures
        if result.desired_refs:
            self.epoch += 1
            self.stats.serials += 1
            self.published = self._published()
        self.stalled = result.stalled
        if self.progress is not None and not result.idle:
            self._show_progress()

    def rollouts(self) -> dict[str, RolloutState]:
        repo = open_mirror(self.settings.source)
        head = ref_target(repo, STATE_BRANCH)
        if head is None:
            return {}
        files = read_files(repo, head, ("rollouts/",))
        states = (
            RolloutState.model_validate_json(data) for path, data in files.items() if path.endswith(".json")
        )
        return {state.name: state for state in states}

    def _published(self) -> dict[str, str]:
        repo = open_mirror(self.settings.source)
        listed = list_refs(repo, NAMESPACES_PREFIX if self.settings.namespaces else DESIRED_PREFIX)
        return {ref: str(target) for ref, target in listed.items()}

    def done(self) -> bool:
        if any(state.phase not in FINISHED for state in self.rollouts().values()):
            return False
        repo = open_mirror(self.settings.source)
        published = list_refs(repo, NAMESPACES_PREFIX if self.settings.namespaces else DESIRED_PREFIX)
        for robot in self.robots:
            if robot.offline:
                continue
            target = published.get(robot.link.desired_ref)
            if robot.pending() or (target is not None and str(target) != robot.last_commit):
                return False
        return True

    def _show_progress(self) -> None:
        assert self.progress is not None
        at = self.scheduler.clock.elapsed()
        for name, state in sorted(self.rollouts().items()):
            line = f"{name}: {state.phase.value}"
            active = next((w for w in state.waves if w.phase.value not in ("pending", "passed")), None)
            if active is not None:
                c = active.counts
                line += (
                    f", wave {active.name} {active.phase.value} "
                    f"({c.succeeded}/{c.total} ok, {c.failed + c.rolled_back + c.timed_out} failed)"
                )
            if self._last_lines.get(name) != line:
                self._last_lines[name] = line
                self.progress(f"{at:8.0f} s  {line}")
