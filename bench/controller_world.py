"""A controller world for the controller benchmarks (a helper, not a benchmark itself).

Built on the tests' fleet simulator (:mod:`tests.sim`): a fleet from :mod:`bench.fleetgen`
(releases signed by a throwaway key that is also the controller's key) committed and pushed to a
bare "server" repository; the simulator's controller settings on its virtual clock
(:func:`tests.sim.world.controller_settings`, starting at ``START``, after the generated rollouts'
``not_before``); the robots' status reports are the simulator's (:func:`tests.sim.robots.reports_for`
and :func:`~tests.sim.robots.push_reports`: real commits on real status refs, one pack for all of
them). Here: a counter of every gpg signature the controller makes and, for the delivery
benchmarks, one bundle per robot and the controller's desired-state write into a fresh repository.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pygit2

from bench import fleetgen
from controller.delivery import DeliverySource, bundle_for, write_desired_state
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import load_state
from controller.records.model import Action, TargetStatus
from controller.records.transitions import new_deployment
from controller.state.model import DeviceFile
from fleetcd.desired import Bundle
from fleetcd.loading.fleetspec import load_spec
from fleetcd.trust import gpg
from tests.sim.world import START, Clock, controller_settings

RELEASES = 8  # two of each generated app: both rollouts have a release to ship
SERIAL = 1
ROLLOUT = "navigator-rollout"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@bench.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@bench.invalid",
}


@dataclass
class BenchWorld:
    root: Path
    server: Path
    gnupghome: Path
    fleet: fleetgen.GeneratedFleet
    settings: ControllerSettings
    clock: Clock


def build_world(root: Path, devices: int, releases: int = RELEASES) -> BenchWorld:
    """The generated fleet of ``devices`` robots on ``root/server.git``, nothing reconciled yet."""
    home = root / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    fleet = fleetgen.generate(devices, releases, home)
    work = root / "work"
    work.mkdir()
    fleetgen.write_tree(work, fleet.signed_files)
    env = {**os.environ, **_GIT_ENV}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "fleet"],
    ):
        subprocess.run(argv, cwd=work, env=env, check=True)
    server = root / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    subprocess.run(["git", "push", "-q", str(server), "main"], cwd=work, check=True)
    clock = Clock()
    settings = controller_settings(server, root / "cache", home, clock)
    return BenchWorld(root, server, home, fleet, settings, clock)


def device_files(world: BenchWorld) -> dict[str, DeviceFile]:
    """The device files on the state branch, as the controller's mirror holds them after a fetch."""
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    return load_state(repo).devices


@contextmanager
def counting_signatures() -> Iterator[Callable[[], int]]:
    """Count every detached signature any :class:`fleetcd.trust.gpg.Signer` makes (real gpg runs)."""
    calls = 0
    real = gpg.Signer.sign_detached

    def counted(self: gpg.Signer, data: bytes, fingerprint: str) -> bytes:
        nonlocal calls
        calls += 1
        return real(self, data, fingerprint)

    gpg.Signer.sign_detached = counted  # type: ignore[method-assign]
    try:
        yield lambda: calls
    finally:
        gpg.Signer.sign_detached = real  # type: ignore[method-assign]


def make_bundles(fleet: fleetgen.GeneratedFleet) -> dict[str, Bundle]:
    """One deployment of the navigator rollout's release per robot, as the controller builds it."""
    spec, _ = load_spec(fleet.signed_files)
    source = DeliverySource(spec)
    evidence = source.evidence(ROLLOUT)
    expires = START + timedelta(days=7)
    bundles = {}
    for device in sorted(spec.devices):
        record = new_deployment(
            rollout=ROLLOUT,
            generation=1,
            device=device,
            app=evidence.app,
            version=evidence.version,
            release_sha256=evidence.release_sha256,
            wave=0,
            action=Action.DEPLOY,
            target_status=TargetStatus.DEPLOYED,
            at=START,
            deadline_at=START + timedelta(hours=1),
        )
        bundles[device] = bundle_for(device, [record], source, SERIAL, START, expires)
    return bundles


def controller_write(
    path: Path, bundles: Mapping[str, Bundle], sign: Callable[[bytes], bytes], *, namespaces: bool
) -> float:
    """Seconds :func:`controller.delivery.write_desired_state` takes into a fresh bare repository."""
    repo = pygit2.init_repository(str(path), bare=True)
    start = time.perf_counter()
    write_desired_state(
        repo,
        bundles,
        fleet="bench-fleet",
        serial=SERIAL,
        issued_at=START,
        expires_at=START + timedelta(days=7),
        sign=sign,
        namespaces=namespaces,
        trust=b"{}",  # the trust chain is one shared blob; its content does not change the timing
    )
    return time.perf_counter() - start


@dataclass(frozen=True)
class SignedFleet:
    """Bundles of the largest size asked for, and the one key that signs roots and releases."""

    root: Path  # a scratch directory for the benchmark's repositories
    bundles: dict[str, Bundle]
    fingerprint: str
    sign: Callable[[bytes], bytes]

    def first(self, n: int) -> dict[str, Bundle]:
        """The bundles of the first ``n`` robots (by id): the fleet of one size of a size sweep."""
        return {d: self.bundles[d] for d in sorted(self.bundles)[:n]}


@contextmanager
def signed_fleet(robots: int, prefix: str) -> Iterator[SignedFleet]:
    """A generated fleet of ``robots`` with one deployment each, signing ready, in a temp dir."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        home = root / "gnupg"
        home.mkdir(mode=0o700)
        fleet = fleetgen.generate(robots, RELEASES, home)
        with gpg.Signer(home) as signer:

            def sign(data: bytes) -> bytes:
                return signer.sign_detached(data, fleet.fingerprint)

            yield SignedFleet(root, make_bundles(fleet), fleet.fingerprint, sign)
