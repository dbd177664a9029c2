"""Benchmark: end to end, a rollout in waves with soak from the merge to every robot ``applied``.

By default 10,000 simulated robots and five waves of 1, 9, 20, 30 and 40 % of them, each wave
soaking ``--soak-seconds`` (300) before the next starts; ``--wave-percents 100`` is one
``all_at_once`` rollout instead (no waves, no soak: poll latency and the protocol's cost alone).
The fleet is :mod:`bench.fleetgen`'s (devices over four sites, two families, three hardware
revisions), plus one signed release every robot is compatible with; wave k is a cohort listing
the next robots in id order (so every wave spans every site); maintenance windows off, approvals 0.
The robots are ``fleetcd sim``'s virtual robots (``controller/sim/``): each has its own
repository, polls its own desired-state ref every T seconds ±20 % (git CLI, protocol v2, one ref
listed), verifies every new bundle with the real verifier and real gpg, "applies" for
``--apply-seconds`` and pushes real status commits (one when it starts, one when it is done, and a
heartbeat every ``--heartbeat-seconds``: 3,600 by default, sized to the fleet, so that what is
measured is the rollout's own reports). A poll when no desired-state ref of the whole repository
moved since the robot's last poll is counted, not run (``--run-noop-polls`` runs it), so soaks
cost no real time; so is a poll that would find the robot's own ref where the controller's last
push left it, the commit it holds (a wave moves a few robots' refs, and the rest of the fleet's next
polls are no-ops), except on every ``--unmoved-poll-sample``-th robot (10), whose polls keep the
first rule: those no-op polls run, a measured sample of what they cost the server. Skipping changes
no robot's state (nothing is fetched, verified or pushed by a no-op poll) and no simulated instant
(``tests/test_sim_unmoved_polls.py``); every poll that brings a commit runs git, every bundle is
verified. The controller reconciles in this process at the merge and every
``--controller-seconds``, as ``fleetcd controller run --watch --repo /srv/fleet.git`` would.

Latency: merge→applied per robot is the instant its ``deployed`` report reached the server, in
simulated seconds since the merge (the simulator's virtual clock: an event takes no simulated
time, however long its real git and gpg work takes). Per wave: when the controller started it,
when its first robot applied, p50 and p99 applied. Goal: each wave's p99 since its start <= 1.2·T
+ 2·apply. The real processing that delays a wave's robots — the reconcile that started it, which
signs a root and writes desired state — is measured in real time and reported added to that p99
as well, the conservative figure.

Per wave, also: the bundles each robot downloaded (a poll that brought a commit it had not seen,
verified) against the changes of its own (a verified bundle whose deployments differ from the ones
it held; its first bundle counts as one): goal <= 1.1 downloads per change, which holds only when a
reconcile leaves the refs of robots whose bundle did not change where they were. And the
controller's real time per reconcile in the wave's window (from the reconcile that started the wave
to the one that started the next), and the git server's CPU for polls and for pushes in it.
The simulator is not changed for this: the bench wraps the controller actor's reconcile and the
robots' verify step (:class:`Probe`), which also samples the machine's 1-minute load average.

The served repository gets the settings docs/git-server.md recommends for a fleet repository
("Server settings worth setting", read from the page by the tests): ``core.alternateRefsCommand
true`` above all, without which every status push walks from every ref (docs/scaling.md, "Status
pushes"). Runs recorded before 2026-12-07 served git's defaults. Every repository of the run (the
server's, the controller's mirror, each robot's) is on tmpfs (``/dev/shm``) unless ``--scratch``
says otherwise: the shared machine's disk took 2 to 3 ms per unlink under load, in the real time of
every git transaction. The git daemons' CPU is measured either way; on tmpfs the kernel's share of
it is the memory file system's, a little below a disk's. Results
are written before the repositories are removed.

Git server CPU, and why it is measured this way: the repository is served to the robots by two ``git
daemon`` processes on loopback — one answers polls (upload-pack), the other status pushes
(receive-pack) — so the server's work happens in processes of its own, split by kind. A daemon's CPU
is its user + system time plus that of every process it forked and reaped (``/proc/<pid>/stat``
utime, stime, cutime, cstime), sampled before the merge, at every reconcile and after the run:
everything the server did for the robots and nothing of the clients. Timing server-side functions
inside this process would not be honest: robots and server would share one interpreter and the
clients' fetch and push work would be counted too. The controller's own git work (libgit2 reading
the local path, ``git push``/``ls-remote``/``pack-refs`` children) is reported separately as its
wall time. Server CPU per simulated second says whether one real server keeps up with the fleet at
this poll rate (below 1.0: one core does). Polls list one ref (protocol v2 ref-prefix); a push is
advertised every ref of the repository, since a daemon cannot narrow the view per robot. The
gitolite trigger of docs/git-server.md narrows it to the robot's own ref (``receive.hideRefs``), so
after the run ``--push-samples`` robots push once more into the final repository, one at a time,
first as in the run and then with that per-robot setting in the server's config: the server CPU of a
push in the recommended setup, measured on the same repository.

Status shards (``--status-shards``, 5 by default): robots push their status to shard repositories
``status-s1.git`` ... beside the fleet repository, each robot to the one :func:`fleetcd.shards.shard_of`
gives it (about 2,000 robots a shard at 10,000), served by the same receive-pack daemon, and the
controller reads every shard each reconcile, as ``fleetcd controller run --status-shard NAME=URL``
does (docs/git-server.md, "Status shards"). A push's server CPU grows with the refs of the
repository it lands in: a shard holds its robots' status refs only, the fleet repository every
robot's desired and status refs. Each shard gets the same server settings. ``--status-shards 0``
is the setup of the runs recorded before 2026-12-07 06:00: status pushed into the fleet
repository. Sharding changes no outcome nor instant of the rehearsal
(``tests/test_sim_status_shards.py``), only where each report lands. Nothing packs a shard's refs
(the controller packs only its local fleet repository), so the server's cron of docs/git-server.md
(``git pack-refs --all && find refs -mindepth 2 -type d -empty -delete``, every 10 minutes) runs
on each shard every ``--server-pack-seconds`` (600) simulated seconds, at a reconcile; its CPU is
reported apart from the daemons'. Without it, each push's ref advertisement read every loose ref
file of its shard (12.5 ms of CPU per advertisement at 623 loose refs, 1 ms packed).

    python -m bench.e2e_rollout [--robots 10000] [--wave-percents 1 9 20 30 40] [--soak-seconds 300]
        [--poll-seconds 60] [--apply-seconds 30] [--controller-seconds 30] [--heartbeat-seconds 3600]
        [--status-shards 5] [--server-pack-seconds 600] [--workers N] [--max-wall-seconds S]
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import fleetgen
from bench.common import base_parser, free_port, start_listener, table, write_results
from controller.sim import SimReport, SimSettings, SimShard, control, run_simulation
from controller.sim.control import ControllerActor
from controller.sim.model import Counters
from controller.sim.report import APPLIED, percentile
from controller.sim.robot import VirtualRobot
from controller.sim.settings import DEFAULT_WORKERS
from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.refs import status_prefix, status_ref
from fleetcd.git.remote import push
from fleetcd.git.repo import open_or_init_bare
from fleetcd.reports import STATUS_FILE
from fleetcd.shards import MAX_SHARDS, shard_of
from fleetcd.trust.gpg import Signer

NAME = "e2e_rollout"
DEFAULT_ROBOTS = 10_000
DEFAULT_WAVE_PERCENTS = (1.0, 9.0, 20.0, 30.0, 40.0)
DEFAULT_SOAK_SECONDS = 300
# Sized to the fleet (issue 12): the agent's 300 s default would be 10,000 robots x 7 heartbeats in
# a 40-minute rollout, more pushes than the rollout's own; a rollout's reports are what is measured.
DEFAULT_HEARTBEAT_SECONDS = 3600.0
GOAL_DOWNLOADS_PER_CHANGE = 1.1
TRANSPORT_RETRIES = 3
DEFAULT_POLL_SECONDS = 60.0
DEFAULT_UNMOVED_POLL_SAMPLE = 10  # every 10th robot runs its no-op polls after a wave started
DEFAULT_APPLY_SECONDS = 30.0
# Status in 5 shard repositories of ~2,000 robots each at 10,000 (docs/git-server.md "Status shards"):
# a push's server CPU grows with the refs of the repository it lands in (docs/scaling.md).
DEFAULT_STATUS_SHARDS = 5
# docs/git-server.md's cron for a server's repository (*/10: pack-refs, empty directories removed),
# on each shard: nothing else packs them (the controller packs only its local fleet repository).
DEFAULT_SERVER_PACK_SECONDS = 600.0
DEFAULT_CONTROLLER_SECONDS = 30.0
JITTER_PERCENT = 20.0
START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
APP, VERSION = "telemetry", "2.0.0"
BENCH = Identity("bench robot", "robot@bench.invalid")
# docs/git-server.md "Server settings worth setting", set on the served repository as the page
# says (tests/test_e2e_bench.py reads them from the page): above all core.alternateRefsCommand,
# without which a status push walks from every ref of the repository (docs/scaling.md, "Status
# pushes": 214 ms of server CPU a push at 10,000 robots with git's defaults, 27 ms with it).
SERVER_SETTINGS = (
    ("receive.maxInputSize", "64m"),
    ("core.alternateRefsCommand", "true"),
    ("uploadpack.allowAnySHA1InWant", "false"),
    ("uploadpack.allowReachableSHA1InWant", "false"),
    ("uploadpack.allowTipSHA1InWant", "false"),
)
SHM = Path("/dev/shm")
REAP_SETTLE_S = 0.5  # let the daemon reap its last children before the final sample
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@bench.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@bench.invalid",
}
COHORT = b"""apiVersion: fleetcd.dev/v1
kind: Cohort
name: everyone
stage: production
selector:
  families: [amr, arm]
"""
ROLLOUT = f"""apiVersion: fleetcd.dev/v1
kind: Rollout
name: {APP}-everywhere
app: {APP}
release: {VERSION}
targets:
  cohorts: [everyone]
strategy:
  type: all_at_once
schedule:
  respect_maintenance_windows: false
""".encode()


@dataclass(frozen=True)
class Fleet:
    files: dict[str, bytes]
    waves: list[tuple[str, ...]]  # each wave's robots (empty: one all_at_once rollout)


def fleet_devices(robots: int) -> int:
    """How many generated devices give ``robots`` active ones (fleetgen decommissions 1 in 500)."""
    total = robots
    while total - total // 500 < robots:
        total += 1
    return total


def wave_sizes(robots: int, percents: Sequence[float]) -> list[int]:
    """How many robots each wave gets: ``percents`` of ``robots``, rounded, the last takes the rest."""
    sizes = [max(1, round(robots * p / 100)) for p in percents[:-1]]
    sizes.append(robots - sum(sizes))
    if any(n < 1 for n in sizes):
        raise ValueError(f"{robots} robots cannot fill {len(percents)} waves of {list(percents)} %")
    return sizes


def fleet_files(
    robots: int, home: Path, percents: Sequence[float] = (100.0,), soak_seconds: int = 0
) -> Fleet:
    """fleetgen's devices and keys, one signed release for all, one rollout to ``robots`` robots.

    One wave of 100 %: an ``all_at_once`` rollout to a cohort of everyone. Several: a ``waves``
    rollout, wave k a cohort listing the next ``percents[k]`` % of the active robots in id order
    (each wave spans every site), each wave soaking ``soak_seconds`` before the next starts.
    """
    generated = fleetgen.generate(fleet_devices(robots), 0, home)
    files = {p: d for p, d in generated.signed_files.items() if not p.startswith(("cohorts/", "rollouts/"))}
    release = fleetgen.release_yaml(APP, VERSION)
    assert b"families: [amr]" in release, "fleetgen's release format changed"
    release = release.replace(b"families: [amr]", b"families: [amr, arm]")
    path = f"releases/{APP}/{VERSION}.yaml"
    with Signer(home) as signer:
        signature = signer.sign_detached(release, generated.fingerprint)
    files.update({path: release, f"{path}.d/{generated.fingerprint}.asc": signature})
    waves: list[tuple[str, ...]] = []
    if len(percents) == 1:
        files["cohorts/everyone.yaml"] = COHORT
        files[f"rollouts/{APP}-everywhere.yaml"] = ROLLOUT
        return Fleet(files, waves)
    active = [fleetgen.device_id(i) for i in range(fleet_devices(robots))]
    active = [d for i, d in enumerate(active) if i % 500 != 499][:robots]  # fleetgen retires 1 in 500
    strategy, start = "  type: waves\n  waves:\n", 0
    for k, size in enumerate(wave_sizes(robots, percents)):
        waves.append(tuple(active[start : start + size]))
        start += size
        name = f"wave-{k + 1}"
        files[f"cohorts/{name}.yaml"] = (
            f"apiVersion: fleetcd.dev/v1\nkind: Cohort\nname: {name}\nstage: production\n"
            f"devices: [{', '.join(waves[-1])}]\n"
        ).encode()
        strategy += f"    - name: {name}\n      cohort: {name}\n      soak_seconds: {soak_seconds}\n"
    cohorts = ", ".join(f"wave-{k + 1}" for k in range(len(waves)))
    rollout = ROLLOUT.decode().replace("cohorts: [everyone]", f"cohorts: [{cohorts}]")
    files[f"rollouts/{APP}-everywhere.yaml"] = rollout.replace("  type: all_at_once\n", strategy).encode()
    return Fleet(files, waves)


def publish(root: Path, files: dict[str, bytes]) -> Path:
    """The merge: the fleet with the rollout committed on main of a bare server repository."""
    work = root / "work"
    fleetgen.write_tree(work, files)
    env = {**os.environ, **_GIT_ENV}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "merge"],
    ):
        subprocess.run(argv, cwd=work, env=env, check=True)
    server = served_repository(root / "fleet.git")
    subprocess.run(["git", "push", "-q", str(server), "main"], cwd=work, check=True)
    return server


def served_repository(path: Path) -> Path:
    """A bare repository at ``path`` with docs/git-server.md's server settings."""
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    for key, value in SERVER_SETTINGS:
        subprocess.run(["git", "--git-dir", str(path), "config", key, value], check=True)
    return path


def shard_names(count: int) -> list[str]:
    """The names of ``count`` status shards: s1, s2, ... (fleetcd.shards decides who goes where)."""
    return [f"s{k + 1}" for k in range(count)]


def status_repositories(root: Path, shards: int, server: Path) -> dict[str, Path]:
    """Each status shard's repository under ``root`` by shard name ({"": server} without shards),
    each with the server settings, as docs/git-server.md "Status shards" asks of a shard."""
    if not shards:
        return {"": server}
    return {name: served_repository(root / f"status-{name}.git") for name in shard_names(shards)}


def scratch_parent(given: Path | None) -> Path | None:
    """Where the run's repositories go: ``given``, else /dev/shm when it is a writable directory.

    None: the system's temporary directory. tmpfs keeps the shared machine's disk (a file's unlink
    took 2 to 3 ms there while other benchmarks ran) out of the real time of every git transaction,
    on the server as on the robots; the CPU the git daemons spend is measured either way.
    """
    if given is not None:
        return given
    return SHM if SHM.is_dir() and os.access(SHM, os.W_OK | os.X_OK) else None


@contextmanager
def git_daemon(base: Path, *services: str) -> Iterator[tuple[int, int]]:
    """``git daemon`` serving ``base`` on loopback with ``services`` enabled: (pid, port)."""
    port = free_port()
    # The daemon binary itself: `git daemon` would run it as a child of a `git` wrapper process,
    # whose /proc counters see none of the serving.
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    argv = [str(Path(exec_path) / "git-daemon"), "--reuseaddr", "--export-all",
            *(f"--{'enable' if s in services else 'disable'}={s}" for s in ("upload-pack", "receive-pack")),
            "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}", str(base)]  # fmt: skip
    daemon = start_listener(argv, port)
    try:
        yield daemon.pid, port
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and of every descendant it reaped (utime + stime + cutime + cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": fields 3.. of proc(5)
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def push_cpu_ms(targets: Sequence[tuple[str, Path, str]], robots: Path, pid: int, *, narrowed: bool) -> float:
    """Server CPU of one more status push per robot, one at a time (ms per push): ``targets`` are
    (robot, the repository its status goes to, its URL through the push daemon)."""
    before = tree_cpu_seconds(pid)
    for n, (device, server, url) in enumerate(targets):
        config = ["git", "--git-dir", str(server), "config"]
        repo = open_or_init_bare(robots / f"{device}.git")
        ref = status_ref(device)
        parent = ref_target(repo, ref)
        tree = write_tree(
            repo, {STATUS_FILE: f'{{"bench": {n}, "narrowed": {str(narrowed).lower()}}}'.encode()}
        )
        new = commit(repo, None, tree, "bench: one more report", [parent] if parent else [], BENCH, START)
        if narrowed:
            subprocess.run([*config, "--add", "receive.hideRefs", "refs/"], check=True)
            subprocess.run([*config, "--add", "receive.hideRefs", f"!{status_prefix(device)}"], check=True)
        push(repo, url, [f"{new}:{ref}"])
        update_refs(repo, {ref: (parent, new)})
        if narrowed:
            subprocess.run([*config, "--unset-all", "receive.hideRefs"], check=True)
    time.sleep(REAP_SETTLE_S)
    return (tree_cpu_seconds(pid) - before) / max(len(targets), 1) * 1000


def pack_server_refs(repo: Path) -> float:
    """docs/git-server.md's cron line for a server's repository, run on ``repo``: ``git pack-refs
    --all && find refs -mindepth 2 -type d -empty -delete``. Returns the CPU it took (the shell's
    and its children's, from wait4)."""
    line = "git pack-refs --all && find refs -mindepth 2 -type d -empty -delete"
    child = subprocess.Popen(["sh", "-c", line], cwd=repo)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"{repo}: {line!r} exited with {child.returncode}")
    return usage.ru_utime + usage.ru_stime


@dataclass
class Probe:
    """What the bench records during a simulation, beside the simulator's own report.

    At every reconcile (a barrier: every robot event due before it has run) the git daemons'
    CPU and the robots' summed counters are sampled, then the reconcile's real time and whether it
    moved desired refs are recorded. Every bundle a robot downloads and verifies is counted, and
    whether its deployments differed from the bundle it held before (a change of its own).
    """

    poll_pid: int
    push_pid: int
    reconciles: list[dict[str, Any]] = field(default_factory=list)
    downloads: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    moved: int = 0
    transport_retries: list[str] = field(default_factory=list)
    deadline: float = math.inf  # perf_counter() after which the run stops at its next reconcile
    wall_limited: bool = False
    # The server's cron (docs/git-server.md): the status repositories' refs packed every
    # pack_seconds of simulated time, at the first reconcile past each multiple of it.
    pack_repos: tuple[Path, ...] = ()
    pack_seconds: float = 0.0
    packs: int = 0  # rounds run (each packs every status repository)
    pack_cpu_s: float = 0.0
    pack_slot: int = 0  # the last multiple of pack_seconds a round ran for

    def cron(self, at: float) -> None:
        if not self.pack_repos or not self.pack_seconds or at < (self.pack_slot + 1) * self.pack_seconds:
            return
        self.pack_slot, self.packs = int(at // self.pack_seconds), self.packs + 1
        self.pack_cpu_s += sum(pack_server_refs(repo) for repo in self.pack_repos)

    def sample(self, at: float, robots: Sequence[VirtualRobot]) -> dict[str, Any]:
        totals = Counters()
        for robot in robots:
            totals.add(robot.counters)
        return {
            "at_s": round(at, 3),
            "poll_cpu_s": tree_cpu_seconds(self.poll_pid),
            "push_cpu_s": tree_cpu_seconds(self.push_pid),
            "git_polls": totals.polls - totals.skipped_polls,
            "skipped_polls": totals.skipped_polls,
            "pushes": totals.pushes,
            "load_1m": round(os.getloadavg()[0], 2),
        }


@contextmanager
def probing(
    poll_pid: int,
    push_pid: int,
    max_wall_seconds: float = math.inf,
    pack_repos: Sequence[Path] = (),
    pack_seconds: float = 0.0,
) -> Iterator[Probe]:
    """Wrap the simulator's controller actor and robots' verify step with :class:`Probe` records.

    The simulator is not changed: two methods and the actor's ``reconcile_once`` are swapped for
    wrappers calling the originals, and put back afterwards.
    """
    probe = Probe(
        poll_pid,
        push_pid,
        deadline=time.perf_counter() + max_wall_seconds,
        pack_repos=tuple(pack_repos),
        pack_seconds=pack_seconds,
    )
    real_reconcile, real_verify, real_once = (
        ControllerActor.reconcile,
        VirtualRobot._verify,
        control.reconcile_once,
    )

    def once(settings: Any) -> Any:
        # As `fleetcd controller run` does, a transport error (a git command past its timeout on a
        # loaded machine) is retried; the sim alone would end the run. Counted and reported.
        for attempt in range(TRANSPORT_RETRIES + 1):
            try:
                result = real_once(settings)
                break
            except TransportError as exc:
                if attempt == TRANSPORT_RETRIES:
                    raise
                probe.transport_retries.append(str(exc)[:200])
                print(f"e2e: reconcile retried after: {exc}", file=sys.stderr, flush=True)
        probe.moved = result.desired_refs
        return result

    def reconcile(actor: ControllerActor) -> None:
        probe.cron(actor.scheduler.clock.elapsed())  # between robots' events, as a cron job would run
        sample = probe.sample(actor.scheduler.clock.elapsed(), actor.robots)
        wall, probe.moved = actor.stats.wall_seconds, 0
        real_reconcile(actor)
        sample.update(wall_s=round(actor.stats.wall_seconds - wall, 3), desired_refs_moved=probe.moved)
        probe.reconciles.append(sample)
        if time.perf_counter() > probe.deadline and not probe.wall_limited:
            probe.wall_limited = True  # the largest part of the rollout that fits: report it
            actor.scheduler.stop()
            print("e2e: --max-wall-seconds reached: the run stops here", file=sys.stderr, flush=True)
        print(  # a run stopped early still leaves its reconciles in the log
            f"e2e: {sample['at_s']:8.0f} s simulated: reconcile {sample['wall_s']:.1f} s real, "
            f"{probe.moved} desired refs moved; so far {sample['git_polls']} polls run, "
            f"{sample['pushes']} pushes, server CPU {sample['poll_cpu_s']:.1f} s polls / "
            f"{sample['push_cpu_s']:.1f} s pushes; load {sample['load_1m']:.1f}",
            file=sys.stderr,
            flush=True,
        )

    def verify(robot: VirtualRobot, commit: str) -> None:
        held = robot.bundle.deployments if robot.bundle is not None else None
        real_verify(robot, commit)
        now = robot.bundle.deployments if robot.bundle is not None else None
        probe.downloads[robot.device] = probe.downloads.get(robot.device, 0) + 1
        if now is not None and now != held:
            probe.changes[robot.device] = probe.changes.get(robot.device, 0) + 1

    ControllerActor.reconcile = reconcile  # type: ignore[method-assign]
    VirtualRobot._verify = verify  # type: ignore[method-assign]
    control.reconcile_once = once
    try:
        yield probe
    finally:
        ControllerActor.reconcile = real_reconcile  # type: ignore[method-assign]
        VirtualRobot._verify = real_verify  # type: ignore[method-assign]
        control.reconcile_once = real_once


def run(args: Any, root: Path) -> dict[str, Any]:
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    fleet = fleet_files(args.robots, home, args.wave_percents, args.soak_seconds)
    server = publish(root, fleet.files)
    with (
        git_daemon(root, "upload-pack") as (polls, poll_port),
        git_daemon(root, "receive-pack") as (pushes, push_port),
    ):
        before = tree_cpu_seconds(polls), tree_cpu_seconds(pushes)
        status = status_repositories(root, args.status_shards, server)
        push_urls = {name: f"git://127.0.0.1:{push_port}/{path.name}" for name, path in status.items()}
        settings = SimSettings(
            url=str(server),
            robots_url=f"git://127.0.0.1:{poll_port}/{server.name}",
            robots_push_url=push_urls[""] if "" in status else None,
            status_shards=tuple(
                SimShard(name, str(path), push_urls[name]) for name, path in status.items() if name
            ),
            gnupghome=home,
            workdir=root / "sim",
            poll_seconds=args.poll_seconds,
            jitter_percent=JITTER_PERCENT,
            apply_seconds=args.apply_seconds,
            controller_seconds=args.controller_seconds,
            seed=args.seed,
            virtual_time=True,
            start=START,
            until_done=True,
            max_seconds=args.max_seconds,
            heartbeat_seconds=args.heartbeat_seconds,
            skip_noop_polls=args.skip_noop_polls,
            unmoved_poll_sample=args.unmoved_poll_sample if args.skip_noop_polls else 0,
            workers=args.workers,
        )
        # The fleet repository is the controller's local repository: it packs its refs itself.
        shards = [path for name, path in status.items() if name]
        with probing(polls, pushes, args.max_wall_seconds, shards, args.server_pack_seconds) as probe:
            report = run_simulation(settings, progress=lambda line: print(f"e2e: {line}", file=sys.stderr))
        time.sleep(REAP_SETTLE_S)
        poll_cpu, push_cpu = tree_cpu_seconds(polls) - before[0], tree_cpu_seconds(pushes) - before[1]
        costs = report.costs
        probe.reconciles.append(
            {
                "at_s": report.simulated_seconds,
                "poll_cpu_s": tree_cpu_seconds(polls),
                "push_cpu_s": tree_cpu_seconds(pushes),
                "git_polls": int(costs["polls"]) - int(costs["skipped_polls"]),
                "skipped_polls": int(costs["skipped_polls"]),
                "pushes": int(costs["pushes"]),
                "end": True,
            }
        )
        sampled = [fleetgen.device_id(i) for i in range(min(args.push_samples, args.robots))]
        own = {d: shard_of(d, status) if args.status_shards else "" for d in sampled}
        targets = [(d, status[own[d]], push_urls[own[d]]) for d in sampled]
        robots = root / "sim" / "robots"
        one_push = {
            kind: push_cpu_ms(targets, robots, pushes, narrowed=kind == "narrowed")
            for kind in ("unfiltered", "narrowed")
        }
    return {
        "report": report,
        "poll_cpu_s": poll_cpu,
        "push_cpu_s": push_cpu,
        "one_push_ms": one_push,
        "per_wave": per_wave(report, probe, fleet.waves or [tuple(report_devices(report))]),
        "reconciles": probe.reconciles,
        "downloads": probe.downloads,
        "changes": probe.changes,
        "transport_retries": probe.transport_retries,
        "wall_limited": probe.wall_limited,
        "server_packs": probe.packs,
        "server_pack_cpu_s": probe.pack_cpu_s,
    }


def report_devices(report: SimReport) -> list[str]:
    return sorted({t.device for t in report.traces})


def per_wave(report: SimReport, probe: Probe, waves: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
    """Each wave's timings, downloads, reconciles and git server CPU.

    A wave's window runs from the reconcile that started it to the one that started the next (the
    last: to the end of the run); reconciles and server CPU between two samples belong to the window
    the interval began in. Times are simulated seconds since the merge, except reconcile wall time.
    """
    rows = sorted((w for w in report.waves if w.action != "rollback"), key=lambda w: w.index)
    if len(rows) != len(waves):
        raise RuntimeError(f"{len(rows)} waves in the report, {len(waves)} generated")
    # A wave the run did not reach (stopped at --max-wall-seconds) has no window.
    bounds = [
        *(math.inf if w.controller_started_s is None else w.controller_started_s for w in rows),
        math.inf,
    ]
    samples = sorted(probe.reconciles, key=lambda r: r["at_s"])

    def window(at: float) -> int:
        return max(k for k in range(len(rows)) if bounds[k] <= at) if at >= bounds[0] else 0

    cpu = [{"poll_cpu_s": 0.0, "push_cpu_s": 0.0, "git_polls": 0, "pushes": 0} for _ in rows]
    for a, b in itertools.pairwise(samples):
        for key in cpu[window(a["at_s"])]:
            cpu[window(a["at_s"])][key] += b[key] - a[key]
    out = []
    for k, (row, devices) in enumerate(zip(rows, waves, strict=True)):
        mine = set(devices)
        applied = [
            t.finished_s
            for t in report.traces
            if t.device in mine and t.outcome in APPLIED and t.finished_s is not None
        ]
        start = None if bounds[k] == math.inf else bounds[k]
        reconciles = [r for r in samples if not r.get("end") and start is not None and window(r["at_s"]) == k]
        dispatching = next(
            (r for r in samples if start is not None and abs(r["at_s"] - start) < 1e-6 and not r.get("end")),
            None,
        )
        walls = [r["wall_s"] for r in reconciles]
        downloads = sum(probe.downloads.get(d, 0) for d in devices)
        changes = sum(probe.changes.get(d, 0) for d in devices)
        p50, p99 = percentile(applied, 50), percentile(applied, 99)
        out.append(
            {
                "wave": row.wave,
                "robots": len(devices),
                "applied": row.applied,
                "failed": row.failed,
                "pending": row.pending,
                "start_s": start,
                "first_applied_s": min(applied, default=None),
                "p50_applied_s": p50,
                "p99_applied_s": p99,
                "p99_since_start_s": None if p99 is None or start is None else round(p99 - start, 3),
                "downloads_per_robot": round(downloads / max(len(devices), 1), 3),
                "own_changes_per_robot": round(changes / max(len(devices), 1), 3),
                "downloads_per_own_change": round(downloads / changes, 3) if changes else None,
                "reconciles": len(reconciles),
                "reconcile_wall_s": {
                    "total": round(sum(walls), 3),
                    "mean": round(sum(walls) / len(walls), 3) if walls else None,
                    "max": max(walls, default=None),
                    "dispatching": dispatching["wall_s"] if dispatching else None,
                },
                "new_roots": sum(1 for r in reconciles if r.get("desired_refs_moved")),
                "desired_refs_moved": sum(r.get("desired_refs_moved", 0) for r in reconciles),
                "server_poll_cpu_s": round(cpu[k]["poll_cpu_s"], 3),
                "server_push_cpu_s": round(cpu[k]["push_cpu_s"], 3),
                "git_polls": cpu[k]["git_polls"],
                "pushes": cpu[k]["pushes"],
            }
        )
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--robots", type=int, default=DEFAULT_ROBOTS)
    parser.add_argument(
        "--wave-percents",
        type=float,
        nargs="+",
        default=list(DEFAULT_WAVE_PERCENTS),
        help="share of the robots in each wave, summing to 100; one value 100: all_at_once "
        "(default: %(default)s)",
    )
    parser.add_argument("--soak-seconds", type=int, default=DEFAULT_SOAK_SECONDS, help="each wave's soak")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS, help="T")
    parser.add_argument("--apply-seconds", type=float, default=DEFAULT_APPLY_SECONDS)
    parser.add_argument("--controller-seconds", type=float, default=DEFAULT_CONTROLLER_SECONDS)
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="a robot with nothing to report pushes at least this often (default: %(default)s)",
    )
    parser.add_argument(
        "--run-noop-polls",
        dest="skip_noop_polls",
        action="store_false",
        help="run every poll with git, also when no desired ref moved since the robot's last one "
        "(default: such polls are counted, not run, and their server CPU is not in the numbers)",
    )
    parser.add_argument(
        "--unmoved-poll-sample",
        type=int,
        default=DEFAULT_UNMOVED_POLL_SAMPLE,
        help="with no-op polls skipped, also count, not run, a poll that would find the robot's own "
        "ref unmoved, except on every N-th robot (a sample of no-op polls, run); 0: only polls when no "
        "ref of the repository moved are skipped (default: %(default)s)",
    )
    parser.add_argument("--max-seconds", type=float, default=7200.0, help="simulated time limit")
    parser.add_argument(
        "--max-wall-seconds",
        type=float,
        default=math.inf,
        help="stop at the first reconcile after this much real time and report the waves so far",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="threads running the robots' events between two reconciles (default: %(default)s)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="directory for the run's repositories and temporary files (default: /dev/shm when "
        "writable, else the system's temporary directory); keep its path short: gpg-agent's socket "
        "goes under it",
    )
    parser.add_argument("--push-samples", type=int, default=20, help="pushes per kind after the run")
    parser.add_argument(
        "--server-pack-seconds",
        type=float,
        default=DEFAULT_SERVER_PACK_SECONDS,
        help="every this many simulated seconds, the server's cron of docs/git-server.md packs each "
        "status shard's refs and removes the empty directories (its CPU reported apart); 0: never "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--status-shards",
        type=int,
        default=DEFAULT_STATUS_SHARDS,
        help="robots push status to this many shard repositories (s1..sN, served by the push daemon; "
        "the controller reads them all, as `controller run --status-shard` does); 0: status goes to "
        "the fleet repository, as in runs before 2026-12-07 06:00 (default: %(default)s)",
    )
    args = parser.parse_args()
    if abs(sum(args.wave_percents) - 100.0) > 1e-6 or any(p <= 0 for p in args.wave_percents):
        parser.error(f"--wave-percents must be positive and sum to 100, not {args.wave_percents}")
    try:
        wave_sizes(args.robots, args.wave_percents)
    except ValueError as exc:
        parser.error(str(exc))
    if args.unmoved_poll_sample < 0:
        parser.error(f"--unmoved-poll-sample must not be negative, not {args.unmoved_poll_sample}")
    if not 0 <= args.server_pack_seconds <= args.max_seconds or not math.isfinite(args.server_pack_seconds):
        parser.error(
            f"--server-pack-seconds must be within [0, --max-seconds], not {args.server_pack_seconds}"
        )
    if not 0 <= args.status_shards <= MAX_SHARDS:
        parser.error(f"--status-shards must be within [0, {MAX_SHARDS}], not {args.status_shards}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    parent = scratch_parent(args.scratch)
    if parent is not None:
        tempfile.tempdir = str(parent)  # the robots' fetch traces too (fleetcd.git.gitcli)
    with tempfile.TemporaryDirectory(prefix="fleetcd-e2e-", dir=parent) as tmp:
        measured = run(args, Path(tmp))
        # Written before the repositories are removed: at 10,000 robots that takes minutes on disk.
        lines, payload = results(args, measured)
        target = write_results(NAME, payload, lines, args.out)
        print("\n".join(lines))
        print(f"\nwritten: {target}", flush=True)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def results(args: Any, measured: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    report, poll_cpu, push_cpu = measured["report"], measured["poll_cpu_s"], measured["push_cpu_s"]
    waves: list[dict[str, Any]] = measured["per_wave"]
    one_push = {kind: round(ms, 3) for kind, ms in measured["one_push_ms"].items()}
    server_cpu = poll_cpu + push_cpu
    summary, costs = report.summary, report.costs
    t, apply = args.poll_seconds, args.apply_seconds
    goal = 1.2 * t + 2 * apply
    p50, p99 = summary.merge_to_applied_p50_s, summary.merge_to_applied_p99_s
    stopped = (
        f"wall-clock limit ({args.max_wall_seconds:g} s)" if measured["wall_limited"] else report.stopped
    )
    done = stopped == "done" and summary.applied == args.robots
    fanout = float(costs["first_reconcile_wall_seconds"])
    # Each wave's p99 since the reconcile that started it; plus that reconcile's real time, the
    # conservative figure (an event takes no simulated time, however long its real work took).
    since = [w["p99_since_start_s"] for w in waves]
    latency_met = done and all(s is not None and s <= goal for s in since)
    conservative = [
        (s if s is not None else math.inf) + (w["reconcile_wall_s"]["dispatching"] or 0.0)
        for s, w in zip(since, waves, strict=True)
    ]
    downloads = [w["downloads_per_own_change"] for w in waves]
    downloads_met = all(d is not None and d <= GOAL_DOWNLOADS_PER_CHANGE for d in downloads)
    total_downloads = sum(measured["downloads"].values())
    total_changes = sum(measured["changes"].values())
    polls = int(costs["polls"]) - int(costs["skipped_polls"])
    pushes = int(costs["pushes"])
    per_sim_second = server_cpu / max(report.simulated_seconds, 1e-9)
    strategy = (
        "all_at_once"
        if len(args.wave_percents) == 1
        else f"{len(args.wave_percents)} waves of {'/'.join(f'{p:g}' for p in args.wave_percents)} %, "
        f"soak {args.soak_seconds} s"
    )
    noop = "counted, not run" if args.skip_noop_polls else "run"
    if args.skip_noop_polls and args.unmoved_poll_sample:
        noop += f", also when its own ref had not moved (run by 1 robot in {args.unmoved_poll_sample})"
    where = f"{args.status_shards} shard repositories" if args.status_shards else "the fleet repository"
    worst = max((x for x in since if x is not None), default=math.inf)
    loads = sorted(r["load_1m"] for r in measured["reconciles"] if "load_1m" in r)
    load = (
        {"min": loads[0], "median": loads[len(loads) // 2], "max": loads[-1]}
        if loads
        else {"min": None, "median": None, "max": None}
    )
    lines = [
        f"{args.robots} robots, {strategy}, poll T={t:g} s ±{JITTER_PERCENT:g} %, apply {apply:g} s, "
        f"controller every {args.controller_seconds:g} s, heartbeat {args.heartbeat_seconds:g} s; "
        f"virtual clock, seed {args.seed}; no-op polls {noop}; status in {where}",
        *table(
            ["metric", "value"],
            [
                ["stopped", f"{stopped} at {report.simulated_seconds:.0f} s simulated"],
                ["applied / failed / pending", f"{summary.applied} / {summary.failed} / {summary.pending}"],
                ["merge→applied p50", f"{p50:.1f} s" if p50 is not None else "-"],
                ["merge→applied p99", f"{p99:.1f} s" if p99 is not None else "-"],
                [
                    "goal: each wave's p99 since its start <= 1.2T + 2apply",
                    f"{goal:g} s: {'met' if latency_met else 'NOT met'} (worst {worst:.1f} s"
                    + ("" if done else "; not judged: the run did not finish")
                    + ")",
                ],
                ["  plus the real time of the reconcile that started it", f"worst {max(conservative):.1f} s"],
                [
                    f"goal: bundles downloaded per change of a robot's own <= {GOAL_DOWNLOADS_PER_CHANGE}",
                    f"{total_downloads / max(total_changes, 1):.2f} ({total_downloads} downloads, "
                    f"{total_changes} changes): {'met' if downloads_met else 'NOT met'} in every wave",
                ],
                ["reconcile at the merge (real)", f"{fanout:.1f} s"],
                ["git server CPU (/proc of the git daemons)", f"{server_cpu:.2f} s"],
                [
                    "  polls (upload-pack)",
                    f"{poll_cpu:.2f} s, {poll_cpu / max(polls, 1) * 1000:.1f} ms per poll run",
                ],
                [
                    "  pushes (receive-pack)",
                    f"{push_cpu:.2f} s, {push_cpu / max(pushes, 1) * 1000:.1f} ms per push",
                ],
                ["  per simulated second", f"{per_sim_second:.3f} cores"],
                [
                    "  the server's pack-refs cron on the shards (not in the above)",
                    f"{measured['server_pack_cpu_s']:.2f} s in {measured['server_packs']} rounds, "
                    f"every {args.server_pack_seconds:g} simulated s"
                    if args.status_shards
                    else "-",
                ],
                ["one more push, as in the run", f"{one_push['unfiltered']:.1f} ms server CPU"],
                ["  with per-robot hideRefs", f"{one_push['narrowed']:.1f} ms (docs/git-server.md setup)"],
                [
                    "polls skipped because the robot's own ref had not moved",
                    str(costs.get("skipped_unmoved_polls", 0)),
                ],
                [
                    "polls (run with git) / new commits / pushes",
                    f"{costs['polls']} ({polls}) / {costs['fetches']} / {costs['pushes']}",
                ],
                ["bundles verified / gpg checks", f"{costs['verifications']} / {costs['gpg_checks']}"],
                [
                    "reconciles (idle) / new roots",
                    f"{costs['reconciles']} ({costs['idle_reconciles']}) / {costs['new_roots']}",
                ],
                ["controller wall", f"{costs['controller_wall_seconds']:.1f} s"],
                ["  reconciles retried after a transport error", str(len(measured["transport_retries"]))],
                ["wall", f"{report.wall_seconds:.1f} s ({args.workers} worker threads)"],
                [
                    "machine load (1 min) at the reconciles",
                    f"{load['min']} / {load['median']} / {load['max']} (min / median / max)",
                ],
            ],
        ),
        "",
        "per wave (simulated s since the merge; reconcile s are real; server CPU from /proc of the "
        "git daemons, polls = upload-pack, pushes = receive-pack, in the wave's window)",
        *table(
            [
                "wave",
                "robots",
                "start",
                "first applied",
                "p50",
                "p99",
                "p99-start",
                "downloads/robot",
                "per own change",
                "reconciles",
                "real s each (mean/max)",
                "dispatch s",
                "poll CPU s (polls)",
                "push CPU s (pushes)",
            ],
            [
                [
                    w["wave"],
                    w["robots"],
                    _s(w["start_s"]),
                    _s(w["first_applied_s"]),
                    _s(w["p50_applied_s"]),
                    _s(w["p99_applied_s"]),
                    _s(w["p99_since_start_s"]),
                    w["downloads_per_robot"],
                    w["downloads_per_own_change"],
                    w["reconciles"],
                    f"{_s(w['reconcile_wall_s']['mean'])}/{_s(w['reconcile_wall_s']['max'])}",
                    _s(w["reconcile_wall_s"]["dispatching"]),
                    f"{w['server_poll_cpu_s']:.1f} ({w['git_polls']})",
                    f"{w['server_push_cpu_s']:.1f} ({w['pushes']})",
                ]
                for w in waves
            ],
        ),
    ]
    payload = {
        "robots": args.robots,
        "wave_percents": args.wave_percents,
        "soak_seconds": args.soak_seconds,
        "poll_seconds": t,
        "jitter_percent": JITTER_PERCENT,
        "apply_seconds": apply,
        "controller_seconds": args.controller_seconds,
        "heartbeat_seconds": args.heartbeat_seconds,
        "skip_noop_polls": args.skip_noop_polls,
        "unmoved_poll_sample": args.unmoved_poll_sample if args.skip_noop_polls else 0,
        "seed": args.seed,
        "stopped": stopped,
        "simulated_seconds": report.simulated_seconds,
        "wall_seconds": report.wall_seconds,
        "workers": args.workers,
        "status_shards": args.status_shards,
        "status_shard_urls": report.settings.get("status_shards", {}),
        "server_pack_seconds": args.server_pack_seconds if args.status_shards else 0,
        "server_packs": measured["server_packs"],
        "server_pack_cpu_s": round(measured["server_pack_cpu_s"], 3),
        "load_1m_during_run": load,
        "server_settings": dict(SERVER_SETTINGS),
        "merge_to_applied_p50_s": p50,
        "merge_to_applied_p99_s": p99,
        "goal_p99_s": goal,
        "goal_met": latency_met,
        "first_reconcile_wall_s": fanout,
        "goal_met_with_first_reconcile": bool(latency_met and max(conservative) <= goal),
        "goal_downloads_per_own_change": GOAL_DOWNLOADS_PER_CHANGE,
        "downloads_goal_met": downloads_met,
        "downloads": total_downloads,
        "own_changes": total_changes,
        "per_wave": waves,
        "server_cpu_s": round(server_cpu, 3),
        "server_poll_cpu_s": round(poll_cpu, 3),
        "server_push_cpu_s": round(push_cpu, 3),
        "server_cpu_per_poll_ms": round(poll_cpu / max(polls, 1) * 1000, 3),
        "server_cpu_per_push_ms": round(push_cpu / max(pushes, 1) * 1000, 3),
        "one_more_push_server_cpu_ms": one_push,
        "server_cpu_per_simulated_second": round(per_sim_second, 4),
        "summary": report.as_dict()["summary"],
        "waves": report.as_dict()["waves"],
        "costs": costs,
        "reconciles": measured["reconciles"],
        "controller_transport_retries": measured["transport_retries"],
    }
    return lines, payload


if __name__ == "__main__":
    main()
