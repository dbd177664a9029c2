"""A controller world: a fleet repository merged to a bare server, the real controller reconciling it
on a virtual clock, and simulated robots reporting through real status refs (real git, real gpg).

:func:`make_world` builds the controller scenario's fleet (1 staging, 3 canary, 4 production
robots, nav 1.0.0 in three waves); ``configure`` edits it first, ``merge`` replaces the plain
commit. :func:`pass_wave` and :func:`pass_all_waves` take it through its waves, :func:`roll_out`
starts the next release. :meth:`ControllerWorld.create` puts any
:class:`tests.fleetrepo.FleetRepoBuilder` fleet on a server (the agent's one-robot fleet does).
:func:`controller_settings` is the controller's side alone, for worlds whose fleet comes from
elsewhere (the benchmarks' generated fleets).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.audit.chain import verify
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.reconcile.steps import ReconcileResult, reconcile_once
from controller.state.model import WavePhase
from fleetcd.compat import UTC
from fleetcd.desired import TrustAnchors
from fleetcd.models import TrustRoot
from fleetcd.trust.rootchain import Pin
from tests.fleetrepo import FleetRepoBuilder
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory
from tests.sim.robots import SimFleet

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
STAGING, CANARY, PRODUCTION = ["stg-1"], ["can-1", "can-2", "can-3"], ["prod-1", "prod-2", "prod-3", "prod-4"]
WAVES = [
    {"name": "staging", "cohort": "staging", "soak_seconds": 60},
    {"name": "canary", "cohort": "canary", "soak_seconds": 60, "failure_threshold": {"count": 0}},
    {"name": "production", "cohort": "production", "soak_seconds": 60},
]

Merge = Callable[[FleetRepoBuilder, str], None]


@dataclass
class Clock:
    """The virtual clock the controller (``settings.now``) and the simulated robots share."""

    now: datetime = START

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def controller_settings(
    server: Path, cache: Path, gnupghome: Path, clock: Clock, *, notify: bool = False
) -> ControllerSettings:
    """The real controller's settings for ``server``, its mirror under ``cache``, at ``clock.now``."""
    return ControllerSettings(
        source=Source.for_url(str(server), cache),
        gnupghome=gnupghome,
        notify=notify,
        now=lambda: clock.now,
    )


@dataclass
class ControllerWorld:
    """A fleet, its server, the controller's settings, the simulated robots and the shared clock."""

    fleet: FleetRepoBuilder
    server: Path
    settings: ControllerSettings
    sim: SimFleet
    clock: Clock
    committer: Merge | None = field(default=None)  # replaces the plain commit of :meth:`merge`

    @classmethod
    def create(
        cls,
        root: Path,
        fleet: FleetRepoBuilder,
        keys: KeyFactory,
        message: str,
        *,
        clock: Clock | None = None,
        cache: str = "cache",
        notify: bool = False,
        committer: Merge | None = None,
    ) -> ControllerWorld:
        """``fleet`` committed and merged (``message``) to a bare ``root/fleet.git``; nothing reconciled."""
        fleet.git_init()
        server = bare_repo(root / "fleet.git")
        clock = clock or Clock()
        settings = controller_settings(server, root / cache, keys.home, clock, notify=notify)
        first = TrustRoot.model_validate(fleet.trust_versions[0])
        anchors = TrustAnchors.from_trust_root(first)
        pin = Pin(first.version, first.root, fleet=first.fleet)
        world = cls(fleet, server, settings, SimFleet(server, anchors, {}, pin=pin), clock, committer)
        world.merge(message)
        world.sim.keys = {f"keys/{p.name}": p.read_bytes() for p in (fleet.root / "keys").glob("*.asc")}
        return world

    def reconcile(self) -> ReconcileResult:
        result = reconcile_once(self.settings)
        assert result.stalled is None, result.stalled
        return result

    @contextmanager
    def server_down(self) -> Iterator[None]:
        """The git server unreachable until the block ends (its repository moved away and back)."""
        away = self.server.with_name(f"{self.server.name}.away")
        self.server.rename(away)
        try:
            yield
        finally:
            away.rename(self.server)

    def merge(self, message: str) -> None:
        if self.committer is None:
            self.fleet.commit(message)
        else:
            self.committer(self.fleet, message)
        self.fleet.git("push", "-q", str(self.server), "main")

    def state(self) -> StateSnapshot:
        """The state branch as the server has it. Every audit day is read while the mirror's lock is
        held, which is then let go: the snapshot reads older days from git lazily, and kept the
        test's own process holding the lock (another controller on this cache then waited)."""
        with open_mirror(self.settings.source) as repo:
            fetch_all(repo, self.settings.source)
            snapshot = load_state(repo)
            return replace(snapshot, audit={path: snapshot.audit[path] for path in snapshot.audit})

    def wave(self, name: str, rollout: str = "nav") -> WavePhase:
        (found,) = [w for w in self.state().rollouts[rollout].waves if w.name == name]
        return found.phase

    def report_all(self, devices: list[str], activity: str) -> None:
        for device in devices:
            self.sim.report(device, "nav", activity, self.clock.now)


def pass_wave(world: ControllerWorld, devices: list[str], name: str) -> None:
    """Every robot of the wave reports ``deployed``; the wave soaks, then passes (asserted)."""
    world.report_all(devices, "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave(name) is WavePhase.SOAKING
    world.clock.tick(61)
    world.reconcile()
    assert world.wave(name) is WavePhase.PASSED


def pass_all_waves(world: ControllerWorld) -> None:
    """The scenario's three waves pass in turn: staging, canary, production (:func:`pass_wave`)."""
    for devices, name in ((STAGING, "staging"), (CANARY, "canary"), (PRODUCTION, "production")):
        pass_wave(world, devices, name)


def fail_the_canary(world: ControllerWorld) -> None:
    """can-1 reports its install failed, can-2 and can-3 deployed; the controller reconciles and the
    canary wave fails (asserted): the scenario's halt."""
    world.sim.report("can-1", "nav", "failed", world.clock.now, error="failed", message="probe failed")
    world.report_all(["can-2", "can-3"], "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("canary") is WavePhase.FAILED


def roll_out(world: ControllerWorld, version: str, **rollout: Any) -> None:
    """nav ``version`` released and rolled out to the whole scenario fleet in its three waves
    (``rollout`` adds fields, e.g. ``on_halt``), merged as ``nav <version>`` and reconciled."""
    world.fleet.release("nav", version)
    world.fleet.rollout(
        "nav",
        app="nav",
        release=version,
        cohorts=["staging", "canary", "production"],
        strategy={"type": "waves", "waves": WAVES},
        **rollout,
    )
    world.merge(f"nav {version}")
    world.reconcile()


def scenario_fleet(
    root: Path,
    keys: KeyFactory,
    *,
    name: str = "faults",
    waves: list[dict[str, Any]] | None = None,
    configure: Callable[[FleetRepoBuilder], None] | None = None,
) -> FleetRepoBuilder:
    """The scenario's fleet in ``root``: 1 staging, 3 canary, 4 production robots, nav 1.0.0 to all
    of them in three waves; ``configure`` edits it before it is committed."""
    fleet = FleetRepoBuilder(root, keys=keys, name=name)
    for device in STAGING + CANARY + PRODUCTION:
        fleet.device(device)
    fleet.cohort("staging", STAGING, stage="staging")
    fleet.cohort("canary", CANARY, stage="canary")
    fleet.cohort("production", PRODUCTION, stage="production")
    fleet.release("nav", "1.0.0")
    fleet.rollout(
        "nav",
        app="nav",
        release="1.0.0",
        cohorts=["staging", "canary", "production"],
        strategy={"type": "waves", "waves": waves or WAVES},
    )
    if configure is not None:
        configure(fleet)
    return fleet


def make_world(
    root: Path,
    keys: KeyFactory,
    *,
    name: str = "faults",
    start: datetime = START,
    waves: list[dict[str, Any]] | None = None,
    configure: Callable[[FleetRepoBuilder], None] | None = None,
    merge: Merge | None = None,
    notify: bool = False,
) -> ControllerWorld:
    """The scenario's fleet (:func:`scenario_fleet`) merged to a bare server at ``start``."""
    fleet = scenario_fleet(root / "work", keys, name=name, waves=waves, configure=configure)
    return ControllerWorld.create(
        root, fleet, keys, "nav 1.0.0 to the whole fleet", clock=Clock(start), notify=notify, committer=merge
    )


# --- what the state branch holds ----------------------------------------------------------------


def audit_lines(state: StateSnapshot) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(state.audit) for line in state.audit[path].splitlines()]


def assert_no_duplicates(state: StateSnapshot) -> None:
    """The audit chain verifies, no event is logged twice, no robot holds a record twice."""
    lines = audit_lines(state)
    assert verify(state.audit).lines == len(lines)
    keys = [line["key"] for line in lines]
    assert len(keys) == len(set(keys)), "an audit event was logged twice"
    for device, data in state.devices.items():
        ids = [r.id for r in data.records]
        assert len(ids) == len(set(ids)), f"{device} holds a record twice"
