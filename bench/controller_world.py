"""A controller world for the controller benchmarks (a helper, not a benchmark itself).

:func:`build_world` (``bench/controller_reconcile.py``): a fleet of any size from
:mod:`bench.fleetgen` — devices, the trust root, a throwaway key that signs releases and is also
the controller's key — plus two releases every family runs and two rollouts that fall due after
the first reconcile (one wave of ``WAVE_ROBOTS`` robots, then one release to every robot),
written to a bare "server" repository's main by one ``git fast-import``; the simulator's controller
settings on its virtual clock (:func:`tests.sim.world.controller_settings`, starting at ``START``).
Robots' status reports are the simulator's (:func:`tests.sim.robots.push_reports`: real commits on
real status refs, one pack for all of them). Here too: a counter of every gpg signature the
controller makes and, for the delivery benchmarks, one bundle per robot and the controller's
desired-state write into a fresh repository.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2

from bench import fleetgen
from controller.delivery import DeliverySource, bundle_for, write_desired_state
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.settings import ControllerSettings
from controller.records.model import Action, TargetStatus
from controller.records.transitions import new_deployment
from fleetcd.desired import Bundle
from fleetcd.loading.fleetspec import load_spec
from fleetcd.trust import gpg
from tests.sim.world import START, Clock, controller_settings

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@bench.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@bench.invalid",
}
RELEASES = 8  # two of each generated app: both rollouts have a release to ship
SERIAL = 1
ROLLOUT = "navigator-rollout"


@dataclass
class BenchWorld:
    root: Path
    server: Path
    gnupghome: Path
    settings: ControllerSettings
    clock: Clock
    active: tuple[str, ...]  # the robots that get desired state (fleetgen retires 1 in 500)
    wave: tuple[str, ...]  # the wave rollout's robots: the first WAVE_ROBOTS active ones


# The scaled world's two rollouts, both due after the bootstrap reconcile at START: at WAVE_AT a
# rollout of one wave dispatches navigator to WAVE_ROBOTS robots; at FAN_OUT_AT a rollout sends
# telemetry to every robot at once. Maintenance windows are off: what is measured is the reconcile.
WAVE_ROBOTS = 1_000
WAVE_AT = START + timedelta(hours=1)
FAN_OUT_AT = START + timedelta(hours=3)
WAVE_ROLLOUT, FAN_OUT_ROLLOUT = "wave", "fan-out"
_NAVIGATOR, _TELEMETRY = ("navigator", "2.0.0"), ("telemetry", "2.0.0")
_COHORT = "apiVersion: fleetcd.dev/v1\nkind: Cohort\nname: {name}\nstage: production\n"
_ROLLOUT = """apiVersion: fleetcd.dev/v1
kind: Rollout
name: {name}
app: {app}
release: {version}
targets:
  cohorts: [{cohort}]
strategy:
{strategy}schedule:
  not_before: "{at}"
  respect_maintenance_windows: false
"""
_ONE_WAVE = "  type: waves\n  waves:\n    - name: first\n      cohort: wave\n      soak_seconds: 3600\n"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def scaled_fleet(devices: int, home: Path) -> tuple[fleetgen.GeneratedFleet, dict[str, bytes], list[str]]:
    """fleetgen's devices, trust root and key; two releases every family runs; the two rollouts.

    Returns the generated fleet, every file of main, and the active robots in id order.
    """
    fleet = fleetgen.generate(devices, 0, home)
    active = [
        fleetgen.device_id(i)
        for i in range(devices)
        if b"decommissioned: true" not in fleetgen.device_yaml(i)
    ]
    files = {p: d for p, d in fleet.signed_files.items() if not p.startswith(("cohorts/", "rollouts/"))}
    wave = ", ".join(active[:WAVE_ROBOTS])
    files["cohorts/wave.yaml"] = (_COHORT.format(name="wave") + f"devices: [{wave}]\n").encode()
    everyone = "selector:\n  families: [amr, arm]\n"
    files["cohorts/everyone.yaml"] = (_COHORT.format(name="everyone") + everyone).encode()
    with gpg.Signer(home) as signer:
        for app, version in (_NAVIGATOR, _TELEMETRY):
            release = fleetgen.release_yaml(app, version).replace(b"families: [amr]", b"families: [amr, arm]")
            if b"families: [amr, arm]" not in release:
                raise RuntimeError("fleetgen's release format changed: no 'families: [amr]' to widen")
            path = f"releases/{app}/{version}.yaml"
            files[path] = release
            files[f"{path}.d/{fleet.fingerprint}.asc"] = signer.sign_detached(release, fleet.fingerprint)
    for name, (app, version), cohort, strategy, at in (
        (WAVE_ROLLOUT, _NAVIGATOR, "wave", _ONE_WAVE, WAVE_AT),
        (FAN_OUT_ROLLOUT, _TELEMETRY, "everyone", "  type: all_at_once\n", FAN_OUT_AT),
    ):
        text = _ROLLOUT.format(
            name=name, app=app, version=version, cohort=cohort, strategy=strategy, at=_stamp(at)
        )
        files[f"rollouts/{name}.yaml"] = text.encode()
    return fleet, files, active


def fast_import_commit(repo: Path, files: Mapping[str, bytes], message: str, at: datetime) -> None:
    """One commit of ``files`` on ``main`` of ``repo``: seconds at 100,000 files, not minutes.

    The blobs go in one ``git fast-import`` stream; each directory's tree is one ``git mktree``
    (fast-import looks a path up among its directory's entries one by one, which at 100,000 files
    in ``devices/`` is quadratic: 550 s), then ``git commit-tree`` and ``git update-ref``.
    """
    paths = sorted(files)
    stream = b"".join(
        b"blob\nmark :%d\ndata %d\n%s\n" % (i + 1, len(files[p]), files[p]) for i, p in enumerate(paths)
    )
    marks = repo / "bench-fleet-marks"
    git = ["git", "--git-dir", str(repo)]
    subprocess.run([*git, "fast-import", "--quiet", f"--export-marks={marks}"], input=stream, check=True)
    blob_ids = dict(line.split() for line in marks.read_text(encoding="ascii").splitlines())
    marks.unlink()
    root: dict[str, Any] = {}
    for i, path in enumerate(paths):
        *dirs, name = path.split("/")
        node = root
        for part in dirs:
            node = node.setdefault(part, {})
        node[name] = blob_ids[f":{i + 1}"]

    def mktree(node: dict[str, Any]) -> str:
        lines = [
            f"040000 tree {mktree(child)}\t{name}"
            if isinstance(child, dict)
            else f"100644 blob {child}\t{name}"
            for name, child in node.items()
        ]
        done = subprocess.run(
            [*git, "mktree"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    stamp = f"{int(at.timestamp())} +0000"
    env = {**os.environ, **_GIT_IDENTITY, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    made = subprocess.run(
        [*git, "commit-tree", mktree(root), "-m", message],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    subprocess.run([*git, "update-ref", "refs/heads/main", made.stdout.strip()], check=True)


def build_world(root: Path, devices: int, *, cache: bool = True) -> BenchWorld:
    """The scaled fleet of ``devices`` robots on ``root/server.git``'s main, nothing reconciled yet.

    The controller's settings carry one :class:`~controller.reconcile.cache.ReconcileCache` for every
    reconcile, as ``fleetcd controller run`` hands one to every pass; ``cache=False`` reads and
    parses everything each time, as ``controller reconcile --once`` does.

    The fleet is written by :func:`fast_import_commit` (no working tree, no 100,000-file ``git add``).
    """
    home = root / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    _, files, active = scaled_fleet(devices, home)  # the file contents are not kept (the RSS)
    server = root / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(server)], check=True)
    fast_import_commit(server, files, "fleet", START)
    clock = Clock()
    settings = controller_settings(server, root / "cache", home, clock)
    if cache:
        settings = replace(settings, cache=ReconcileCache())
    wave = tuple(active[:WAVE_ROBOTS])
    return BenchWorld(root, server, home, settings, clock, tuple(active), wave)


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
