"""A virtual robot: the agent's cycle — sync, verify, converge, report — with only converge simulated.

Place in the flow: the robot side of ``fleetcd sim``. Every poll is a real fetch of the robot's own
desired-state ref (:mod:`controller.sim.wire`); every new commit is checked by the real verifier,
:func:`fleetcd.desired.verify_bundle`, against the robot's pinned trust anchors, with the serial and
time floor a real agent keeps; every report is a real commit pushed to the robot's own status ref.
What is simulated is the converge step: a deployment "applies" for ``apply_seconds`` and then fails
its health watch with the failure rate — reported ``rolled_back`` when an earlier version of the app
was running to return to, ``failed`` when there was none — or succeeds (``deployed``; ``staged`` for
a blue/green stage). Rollback deployments from the controller always succeed: they return to a
version that ran. Like the agent, a robot does not poll while it converges; it reports when it
starts (``applying``), when it is done, and at least every ``heartbeat_seconds``. The second half of
applying stands for the health watch: when it is longer than an agent's ``poll.progress_seconds``
(30), the robot also reports ``watching`` with the seconds left as ``progress`` that far into it,
as an agent's live progress does (once; an agent repeats it every 30 s).

Two shortcuts for runs at scale, both off by default and neither changing a robot's state or any
simulated instant: a poll when no desired-state ref moved since the robot's last one is counted,
not run (``skip_noop_polls``), and so is one that would find the robot's own ref at the commit it
holds, except on a sample of robots that keep running theirs (``unmoved_poll_sample``).

Robot side only: imports ``fleetcd`` and the simulator's own clock, model and wire, never the agent
or the rest of the controller.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.sim.clock import Scheduler
from controller.sim.model import Behaviour, Counters, Installed, Trace
from controller.sim.wire import RobotLink
from fleetcd.desired import BundleDeployment, BundleRejected, TrustAnchors, verify_bundle
from fleetcd.desired.bundle import Bundle
from fleetcd.errors import TransportError
from fleetcd.models.agent import PollSettings
from fleetcd.models.release import MAX_WATCH_SECONDS
from fleetcd.reports import MAX_DEPLOYMENTS, MESSAGE_MAX, StatusReport
from fleetcd.trust.policy import Verifier
from fleetcd.vocabulary import Activity

AGENT_VERSION = "fleetcd-sim"
FAILURE_MESSAGE = "simulated: the health watch failed"
SETTLED = frozenset({"deployed", "rolled_back", "failed", "drifted", "archived"})
# An agent's first progress report comes this far into a long step (poll.progress_seconds' default).
PROGRESS_SECONDS = int(PollSettings.model_fields["progress_seconds"].default)


@dataclass
class Shared:
    """What every robot of one simulation uses: the scheduler, trust and behaviour."""

    scheduler: Scheduler
    anchors: TrustAnchors
    verifier: Verifier
    behaviour: Behaviour
    desired_epoch: Callable[[], int] = lambda: 0  # grows whenever the controller moved desired refs
    skip_noop_polls: bool = False
    # The commit the controller last pushed to a desired ref (None: none); set when unmoved polls
    # are skipped too (SimSettings.unmoved_poll_sample).
    published: Callable[[str], str | None] | None = None


class VirtualRobot:
    """One robot's agent loop as a chain of scheduler events: poll → (begin → finish)* → poll …

    Exactly one of its events is pending at any time, which is what lets robots run on several
    threads (:mod:`controller.sim.clock`). ``resume`` is the robot's last report on the server.
    """

    def __init__(
        self,
        link: RobotLink,
        shared: Shared,
        rng: random.Random,
        *,
        offline: bool,
        resume: StatusReport | None = None,
        samples_noop_polls: bool = True,
    ) -> None:
        self.device = link.device
        self.link = link
        self.shared = shared
        self.rng = rng
        self.offline = offline
        self.counters = Counters()
        self.seq = 0
        self.last_commit: str | None = None
        self.last_serial: int | None = None
        self.last_sha256: str | None = None
        self.time_floor = None if resume is None else resume.reported_at
        self.bundle: Bundle | None = None
        self.handled: set[tuple[str, str]] = set()
        self.reports: dict[str, dict[str, Any]] = {}  # deployment id -> DeploymentReport fields
        self.installed: dict[str, Installed] = {}
        self.traces: list[Trace] = []
        self.busy = False
        self.last_error: str | None = None
        # Robots have been running before the merge: their last heartbeat is at a random phase.
        self.last_push_s = -rng.uniform(0.0, shared.behaviour.heartbeat_seconds)
        self.epoch_seen = -1
        # False: a poll that would find this robot's own ref unmoved is counted, not run (when the
        # simulation skips those); True: the robot runs them, a sample of what no-op polls cost.
        self.samples_noop_polls = samples_noop_polls
        if resume is not None:
            self._resume(resume)

    def _resume(self, report: StatusReport) -> None:
        self.seq = report.seq
        self.last_serial = report.bundle_serial
        self.installed = {a.app: Installed(a.current, a.previous) for a in report.apps}
        self.link.adopt_server_report = True
        for d in report.deployments:
            self.reports[d.deployment_id] = d.model_dump(mode="json", exclude={"events"})
            # What the robot already finished is not redone; a staged one still waits for its switch.
            if d.activity is Activity.STAGED:
                self.handled.add((d.deployment_id, "stage"))
            elif d.activity in SETTLED:
                self.handled.update((d.deployment_id, action) for action in ("deploy", "stage", "rollback"))

    # --- the cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Join the simulation mid-cycle: the merge lands at a random point of a poll interval.

        That interval is length-biased (a long interval is more likely to contain the merge): its
        length has density proportional to itself over [T(1-j), T(1+j)], and the first poll comes
        a uniform fraction of it later.
        """
        if self.offline:
            return
        behaviour = self.shared.behaviour
        low, high = (
            behaviour.poll_seconds * (1 - behaviour.jitter),
            behaviour.poll_seconds * (1 + behaviour.jitter),
        )
        interval = math.sqrt(low * low + self.rng.random() * (high * high - low * low))
        self.shared.scheduler.after(interval * self.rng.random(), self.poll)

    def poll(self) -> None:
        shared, counters = self.shared, self.counters
        counters.polls += 1
        epoch = shared.desired_epoch()
        if shared.skip_noop_polls and epoch == self.epoch_seen and self.last_commit is not None:
            counters.skipped_polls += 1
        elif self._unmoved():
            counters.skipped_polls += 1
            counters.skipped_unmoved += 1
            self.epoch_seen = epoch
        else:
            try:
                commit = self.link.fetch_desired()
            except TransportError:
                counters.transport_errors += 1
                commit = self.last_commit
            self.epoch_seen = epoch
            if commit is not None and commit != self.last_commit:
                counters.fetches += 1
                self._verify(commit)
        work = self._due_work()
        if work:
            polled_s = self._elapsed()
            shared.scheduler.after(shared.behaviour.latency_seconds, lambda: self._begin(work, polled_s))
            return
        if self._elapsed() - self.last_push_s >= shared.behaviour.heartbeat_seconds:
            self._push()
        self._next_poll()

    def _unmoved(self) -> bool:
        """Whether this poll would find the robot's own desired ref at the commit it holds (and the
        simulation counts such polls without running them)."""
        published = self.shared.published
        if published is None or self.samples_noop_polls or self.last_commit is None:
            return False
        return published(self.link.desired_ref) == self.last_commit

    def _verify(self, commit: str) -> None:
        shared = self.shared
        self.counters.verifications += 1
        self.last_commit = commit  # a refused commit is not checked again; a new one will be
        now = shared.scheduler.clock.now()
        try:
            files = self.link.read_desired(commit)
            verified = verify_bundle(
                self.device,
                files.bundle,
                files.root,
                files.root_signature,
                files.proof,
                shared.anchors,
                self.last_serial,
                now,
                shared.verifier,
                last_bundle_sha256=self.last_sha256,
                time_floor=self.time_floor,
            )
        except BundleRejected as exc:
            self.counters.rejected += 1
            self.last_error = f"{exc.reason.value}: {exc}"[:MESSAGE_MAX]
            self._push()
            return
        self.last_serial, self.last_sha256 = verified.root.serial, verified.bundle_sha256
        self.time_floor = max(self.time_floor or now, verified.root.issued_at, now)
        self.bundle, self.last_error = verified.bundle, None

    def _due_work(self) -> list[BundleDeployment]:
        if self.bundle is None:
            return []
        now = self.shared.scheduler.clock.now()
        return [
            d
            for d in self.bundle.deployments
            if (d.deployment_id, d.action) not in self.handled
            and (d.not_before is None or d.not_before <= now)
        ]

    def _begin(self, work: list[BundleDeployment], polled_s: float) -> None:
        deployment, rest = work[0], work[1:]
        self.handled.add((deployment.deployment_id, deployment.action))
        self.busy = True
        trace = Trace(
            self.device,
            deployment.deployment_id,
            deployment.app,
            deployment.version,
            deployment.action,
            received_s=polled_s,
            started_s=self._elapsed(),
        )
        self.traces.append(trace)
        fails = self.rng.random() < self.shared.behaviour.failure_rate and deployment.action != "rollback"
        self._record(deployment, "applying")
        self._push()
        behaviour = self.shared.behaviour
        window = min(MAX_WATCH_SECONDS, int(behaviour.apply_seconds / 2))
        if window <= PROGRESS_SECONDS or deployment.action == "stage":  # an agent would say nothing
            done_in = behaviour.apply_seconds + behaviour.latency_seconds
            self.shared.scheduler.after(
                done_in, lambda: self._finish(deployment, trace, fails, rest, polled_s)
            )
            return
        # The second half of applying is its health watch: like an agent, the robot says how far it is
        # poll.progress_seconds into it (once; an agent repeats it). Still one pending event at a time.
        watched = behaviour.apply_seconds - window
        self.shared.scheduler.after(
            watched + PROGRESS_SECONDS,
            lambda: self._watching(deployment, trace, fails, rest, polled_s, window),
        )

    def _watching(
        self,
        deployment: BundleDeployment,
        trace: Trace,
        fails: bool,
        rest: list[BundleDeployment],
        polled_s: float,
        window: int,
    ) -> None:
        left = window - PROGRESS_SECONDS
        self._record(deployment, "watching")
        self._push(
            {
                "deployment_id": deployment.deployment_id,
                "phase": "watching",
                "seconds_left": left,
                "window_seconds": window,
            }
        )
        done_in = left + self.shared.behaviour.latency_seconds
        self.shared.scheduler.after(done_in, lambda: self._finish(deployment, trace, fails, rest, polled_s))

    def _finish(
        self,
        deployment: BundleDeployment,
        trace: Trace,
        fails: bool,
        rest: list[BundleDeployment],
        polled_s: float,
    ) -> None:
        installed = self.installed.setdefault(deployment.app, Installed())
        if fails:
            outcome = "rolled_back" if installed.current is not None else "failed"
            self._record(
                deployment, outcome, error="none" if installed.current else "failed", message=FAILURE_MESSAGE
            )
        elif deployment.action == "stage":
            outcome = "staged"
            self._record(deployment, outcome)
        else:
            outcome = "deployed"
            if installed.current != deployment.version:
                installed.previous, installed.current = installed.current, deployment.version
            self._record(deployment, outcome)
        trace.outcome = outcome
        if self._push():
            trace.finished_s = self._elapsed()
        if rest:
            self._begin(rest, polled_s)
            return
        self.busy = False
        self._next_poll()

    # --- reports -----------------------------------------------------------------------------------
    def _record(self, d: BundleDeployment, activity: str, *, error: str = "none", message: str = "") -> None:
        self.reports[d.deployment_id] = {
            "deployment_id": d.deployment_id,
            "app": d.app,
            "version": d.version,
            "activity": activity,
            "error": error,
            "message": message,
            "updated_at": self.shared.scheduler.clock.now(),
        }

    def _push(self, progress: dict[str, Any] | None = None) -> bool:
        """Push the robot's whole current report (with ``progress`` mid-watch); a failed push is
        counted and retried by the next one (a progress report is not: the next report says more)."""
        self.seq += 1
        current = [d.deployment_id for d in self.bundle.deployments] if self.bundle else list(self.reports)
        report = StatusReport.model_validate(
            {
                "format": "fleetcd.dev/status/v1",
                "device": self.device,
                "seq": self.seq,
                "agent_version": AGENT_VERSION,
                "reported_at": self.shared.scheduler.clock.now(),
                "bundle_serial": self.last_serial,
                "apps": [
                    {"app": app, "current": i.current, "previous": i.previous}
                    for app, i in sorted(self.installed.items())
                    if i.current is not None
                ],
                "deployments": [self.reports[i] for i in current if i in self.reports][:MAX_DEPLOYMENTS],
                "last_error": self.last_error,
                **({"progress": progress} if progress is not None else {}),
            }
        )
        try:
            self.link.push_report(report)
        except TransportError:
            self.counters.transport_errors += 1
            return False
        self.counters.pushes += 1
        self.last_push_s = self._elapsed()
        return True

    # --- helpers -----------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.shared.scheduler.clock.elapsed()

    def _next_poll(self) -> None:
        behaviour = self.shared.behaviour
        interval = behaviour.poll_seconds * self.rng.uniform(1.0 - behaviour.jitter, 1.0 + behaviour.jitter)
        self.shared.scheduler.after(interval, self.poll)

    def pending(self) -> bool:
        """Converging, or holding a deployment it has not started (e.g. its not_before is ahead)."""
        return (
            self.busy
            or bool(self._due_work())
            or (
                self.bundle is not None
                and any((d.deployment_id, d.action) not in self.handled for d in self.bundle.deployments)
            )
        )
