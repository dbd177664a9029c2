"""Benchmark: the git server's CPU per robot status push at 1,000 / 10,000 / 100,000 robots.

Issue 12.3: a status push must cost the git server the same at any fleet size; goal at most 1.5x a
push into a repository holding only that robot's ref. The pushes are the agent's own
(:func:`agent.report.push.push_status`: the report :func:`agent.report.build.build_report` makes,
committed by :func:`fleetcd.wire.status_commit` through ``git hash-object``/``mktree``/
``commit-tree`` and sent with ``git push --porcelain``), over ``git://`` to a ``git daemon`` with
receive-pack enabled. What the push costs the robot in bytes is dominated by what receive-pack
advertises first (every ref it may see): those bytes are read from ``git receive-pack
--advertise-refs`` under the same configuration, just before the push.

**How the server's CPU is read.** ``git daemon`` starts each connection's service as
``git receive-pack .``, found on its ``PATH``; there the daemon finds a ``git`` that runs the real
one, waits for it with ``wait4`` and logs its rusage (:func:`bench.common.rusage_logging_git`):
the user + system CPU of receive-pack and of every process it waited for — unpack-objects or
index-pack, the connectivity check (``rev-list``), ``gc --auto``, hooks — with microsecond
resolution (``/proc``'s cutime counts 10 ms ticks, as much as a whole push). Each push is read on
its own, after the daemon has reaped the connection (``/proc/<pid>/task/<pid>/children`` empty).
Nothing of the client is in it; the robot's own CPU (its ``git push`` and Python) is reported
beside it.

**The world**, per size N, written with ``git fast-import`` (one pass, no Python commit per robot)
and its refs as one ``packed-refs`` file, as a gc'd server holds them:

* ``fleet.git``: main, and per robot a desired-state commit (namespaced layout, four files of
  bundle size) and its first status report — 2N + 1 refs, the controller's default repository;
* ``status.git``: the status refs alone (N refs) — status in its own repository (a shard);
* ``one-<id>.git``: only the pushing robot's status ref — the baseline of the goal.

**Server setups measured** (``--setups``; each is one server configuration, every other setting at
git's default), on ``fleet.git`` or on the status shard:

* ``default``: every ref is advertised to the pusher (2N + 1 refs);
* ``hiderefs``: the per-robot ``receive.hideRefs`` pair of docs/git-server.md (``refs/`` hidden,
  ``!refs/fleetcd/status/<id>/`` shown): the advertisement is the robot's own ref, and since git
  2.39 the connectivity check's ``rev-list --not --all`` skips hidden refs
  (``--exclude-hidden=receive``). It still passes ``--alternate-refs``, and during a push the
  repository's own object directory is an *alternate* of the quarantine directory receive-pack
  writes into: git runs ``for-each-ref`` over every ref of the repository and uses each as a
  boundary of the walk — O(fleet) per push (seen with ``GIT_TRACE2_PERF``);
* ``recommended``: ``hiderefs`` plus ``core.alternateRefsCommand=true`` (the alternate-refs list is
  empty; the fleet repository has no real alternates, and the check still proves every object the
  push needs is present, it only walks back to the robot's own ref instead of any ref);
* ``recommended_loose``: the same with every status ref loose, as N pushes leave them without a
  ``pack-refs``; ``recommended_refdirs``: packed again by ``git pack-refs --all``, which (git 2.39)
  deletes each loose ref file but leaves its directory, ``refs/fleetcd/status/<id>/``: one empty
  directory per robot that every push's ref listing reads; ``recommended_fsck`` plus
  ``receive.fsckObjects``; ``recommended_noautogc`` plus ``receive.autogc=false``. Every other setup
  runs on refs packed with no directory left (:func:`fleetcd.git.gitcli.remove_empty_ref_dirs`).

Maintenance (``git pack-refs --all``, ``git repack -d -l``, ``git gc``) is timed on ``fleet.git``
after the pushes, so its cost per push can be amortized.

    python -m bench.status_push [--sizes 1000 10000 100000] [--pushes 15]
"""

from __future__ import annotations

import functools
import hashlib
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.report.build import build_report
from agent.report.push import push_status
from bench.agent_poll import agent_config
from bench.common import base_parser, read_rusage_log, table, wait_reaped, write_results
from bench.fleetgen import device_id
from bench.git_poll_bytes import git_daemon
from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git.gitcli import remove_empty_ref_dirs
from fleetcd.git.refs import desired_ref, namespaced, status_prefix, status_ref
from fleetcd.reports import DeploymentReport, InstalledApp, ReportEvent, StatusReport
from fleetcd.wire import StatusCommit, status_commit

NAME = "status_push"
DEFAULT_SIZES = (1000, 10_000, 100_000)
DEFAULT_PUSHES = 15
GOAL_RATIO = 1.5
GOAL_SETUP = "fleet_recommended"
START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
FINGERPRINT = "A" * 40  # agent.yaml needs a pinned root key; a push never verifies anything
BUNDLE_BYTES = 1500  # a desired-state bundle of one deployment is about this size (docs/git-server.md)
PROOF_BYTES = 1200  # an inclusion proof at 100,000 robots: 17 sibling hashes and their sides
_AUTHOR = "fleetcd controller <controller@fleet.invalid> 1777885200 +0000"

# A push that fails on the way, or whose server CPU log shows another client's connection too (a
# port another benchmark on the machine was also handed), is measured again from the server's
# state, its sample dropped, and counted ("retried_pushes").
PUSH_ATTEMPTS = 4
RETRIED: list[str] = []
LOOSE, REF_DIRS, PACKED = "loose", "refdirs", "packed"  # the state of the status refs
# name -> (repository, receive.hideRefs per robot, status refs' state, extra server config)
NO_ALTERNATE_REFS = ("core.alternateRefsCommand", "true")  # see the module docstring
SETUPS: dict[str, tuple[str, bool, str, tuple[tuple[str, str], ...]]] = {
    "one_ref": ("one", False, PACKED, ()),
    "fleet_default": ("fleet", False, PACKED, ()),
    "fleet_hiderefs": ("fleet", True, PACKED, ()),
    GOAL_SETUP: ("fleet", True, PACKED, (NO_ALTERNATE_REFS,)),
    "fleet_recommended_loose": ("fleet", True, LOOSE, (NO_ALTERNATE_REFS,)),
    "fleet_recommended_refdirs": ("fleet", True, REF_DIRS, (NO_ALTERNATE_REFS,)),
    "fleet_recommended_fsck": ("fleet", True, PACKED, (NO_ALTERNATE_REFS, ("receive.fsckObjects", "true"))),
    "fleet_recommended_noautogc": ("fleet", True, PACKED, (NO_ALTERNATE_REFS, ("receive.autogc", "false"))),
    "status_shard_default": ("status", False, PACKED, ()),
    "status_shard_hiderefs": ("status", True, PACKED, ()),
    "status_shard_recommended": ("status", True, PACKED, (NO_ALTERNATE_REFS,)),
}


def robot_report(device: str, seq: int, at: datetime) -> StatusReport:
    """What a robot running one deployed release reports (built by the agent's own code)."""
    dep_id = "dep-" + hashlib.sha256(device.encode()).hexdigest()[:24]
    deployed = DeploymentReport(
        deployment_id=dep_id,
        app="navigator",
        version="2.1.0",
        activity="deployed",
        updated_at=at,
        events=[
            ReportEvent(at=at - timedelta(seconds=90), activity="applying"),
            ReportEvent(at=at, activity="deployed", message="health watch passed"),
        ],
    )
    return build_report(
        device,
        seq,
        at,
        bundle_serial=7,
        trust_version=1,
        stale=False,
        apps=[InstalledApp(app="navigator", current="2.1.0", previous="2.0.0")],
        deployments=[deployed],
        last_error=None,
        drift=[],
    )


# --- the world: git fast-import, refs written as one packed-refs file ---------------------------------


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


@functools.lru_cache(maxsize=1)
def _template_report() -> StatusReport:
    return robot_report(device_id(0), 1, START)


@functools.cache  # both repositories of a world use it; cleared once the world is written
def first_status(device: str) -> StatusCommit:
    """The commit of ``device``'s first report: :func:`robot_report`'s, built once and given each
    robot's id (its ``build_report`` costs 4 ms, mostly reading the installed version: 7 minutes
    for 100,000 robots)."""
    template = _template_report()
    (dep,) = template.deployments
    dep_id = "dep-" + hashlib.sha256(device.encode()).hexdigest()[:24]
    report = template.model_copy(
        update={"device": device, "deployments": [dep.model_copy(update={"deployment_id": dep_id})]}
    )
    return status_commit(report)


def _status_commands(device: str, mark: int) -> bytes:
    made = first_status(device)
    when = int(made.when.timestamp())
    who = f"{made.author_name} <{made.author_email}> {when} +0000".encode()
    return b"".join(
        [
            b"reset refs/bench/tmp\ncommit refs/bench/tmp\nmark :%d\n" % mark,
            b"author %s\ncommitter %s\n" % (who, who),
            _data(made.message.encode()),
            b"M 100644 inline %s\n" % made.path.encode(),
            _data(made.data),
        ]
    )


def _desired_commands(device: str, mark: int) -> bytes:
    digest = hashlib.sha256(device.encode()).hexdigest()
    bundle = (f'{{"device": "{device}", "digest": "{digest}", "pad": "' + "x" * BUNDLE_BYTES + '"}').encode()
    proof = (f'{{"device": "{device}", "siblings": "' + digest * (PROOF_BYTES // 64) + '"}').encode()
    files = [(b"bundle.json", bundle), (b"proof.json", proof)]
    return b"".join(
        [
            b"reset refs/bench/tmp\ncommit refs/bench/tmp\nmark :%d\n" % mark,
            b"committer %s\n" % _AUTHOR.encode(),
            _data(f"desired state of {device}".encode()),
            *(b"M 100644 inline %s\n%s" % (name, _data(data)) for name, data in files),
            b"M 100644 :1 root.json\nM 100644 :2 root.json.asc\n",
        ]
    )


def fast_import(repo: Path, devices: Sequence[str], *, desired: bool) -> dict[str, str]:
    """Write every robot's first status commit (and, with ``desired``, its desired-state commit)
    into the bare ``repo`` with one ``git fast-import``; returns ref -> commit, refs not yet written."""
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    marks = repo / "bench-marks"
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet", f"--export-marks={marks}"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    wanted: dict[str, int] = {}
    mark = 10
    header = b"blob\nmark :1\n" + _data(b'{"root": "signed once per reconcile"}' * 20)
    header += b"blob\nmark :2\n" + _data(b"-----BEGIN PGP SIGNATURE-----\n" + b"A" * 600)
    proc.stdin.write(header)
    if desired:  # the fleet repository's main; a status shard holds status refs alone
        main = b"commit refs/bench/tmp\nmark :3\ncommitter %s\n" % _AUTHOR.encode()
        proc.stdin.write(main + _data(b"fleet") + b"M 100644 :1 fleet.yaml\n")
        wanted["refs/heads/main"] = 3
    for device in devices:
        mark += 1
        proc.stdin.write(_status_commands(device, mark))
        wanted[status_ref(device)] = mark
        if desired:
            mark += 1
            proc.stdin.write(_desired_commands(device, mark))
            wanted[namespaced(device, desired_ref(device))] = mark
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import into {repo} failed ({proc.returncode})")
    by_mark = {}
    for line in marks.read_text(encoding="ascii").splitlines():
        name, oid = line.split()
        by_mark[int(name.lstrip(":"))] = oid
    marks.unlink()
    subprocess.run(["git", "-C", str(repo), "update-ref", "-d", "refs/bench/tmp"], check=True)
    return {ref: by_mark[m] for ref, m in wanted.items()}


def write_packed_refs(repo: Path, refs: dict[str, str]) -> None:
    """Every ref into ``packed-refs`` at once (sorted, as ``git pack-refs`` writes it); no loose one."""
    lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
    lines += [f"{refs[name]} {name}\n" for name in sorted(refs)]
    (repo / "packed-refs").write_text("".join(lines), encoding="ascii")


def make_loose(repo: Path, refs: Iterable[str], commits: dict[str, str]) -> None:
    """Write each of ``refs`` as a loose ref file too, as a push leaves the ref it updated."""
    stdin = "".join(f"update {ref} {commits[ref]}\n" for ref in refs).encode()
    subprocess.run(["git", "-C", str(repo), "update-ref", "--stdin"], input=stdin, check=True)


@dataclass
class World:
    root: Path
    devices: list[str]
    fleet_refs: dict[str, str]
    status_refs: dict[str, str]
    build_s: float


def build_world(root: Path, count: int, shard: Sequence[str], *, fleet: bool = True) -> World:
    """``fleet.git`` with all ``count`` robots (unless not ``fleet``) and ``status.git`` with the
    status refs of the robots in ``shard`` only."""
    start = time.perf_counter()
    devices = [device_id(i) for i in range(count)]
    fleet_refs: dict[str, str] = {}
    if fleet:
        fleet_refs = fast_import(root / "fleet.git", devices, desired=True)
        write_packed_refs(root / "fleet.git", fleet_refs)
    status_refs = fast_import(root / "status.git", sorted(shard), desired=False)
    write_packed_refs(root / "status.git", status_refs)
    first_status.cache_clear()
    return World(root, devices, fleet_refs, status_refs, time.perf_counter() - start)


# --- one push, measured ---------------------------------------------------------------------------------


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def git_config(repo: Path, *args: str) -> None:
    subprocess.run(["git", "--git-dir", str(repo), "config", *args], check=True)


class ForeignConnection(RuntimeError):
    """The daemon served more than the measured push meanwhile."""


@dataclass(frozen=True)
class Push:
    server_cpu_s: float
    client_cpu_s: float
    wall_s: float
    advertised_bytes: int


def one_push(
    daemon_pid: int,
    cpu_log: Path,
    server: Path,
    url: str,
    robot_repo: Path,
    device: str,
    seq: int,
    hide: bool,
) -> Push:
    """The agent's push of its next report; the server's CPU for it and what it cost the robot."""
    config = agent_config(device, url, FINGERPRINT)
    report = robot_report(device, seq, START + timedelta(minutes=5 * seq))
    if hide:  # docs/git-server.md: what the gitolite trigger sets for this robot's receive-pack
        git_config(server, "--add", "receive.hideRefs", "refs/")
        git_config(server, "--add", "receive.hideRefs", f"!{status_prefix(device)}")
    advertised = advertisement_bytes(server)
    pid = daemon_pid
    wait_reaped(pid)
    logged = len(read_rusage_log(cpu_log))
    client_before = children_cpu_s() + time.process_time()
    start = time.perf_counter()
    push_status(config, robot_repo, report)
    wall = time.perf_counter() - start
    client_cpu = children_cpu_s() + time.process_time() - client_before
    wait_reaped(pid)
    served = read_rusage_log(cpu_log, logged)
    if [service for _, service in served] != ["receive-pack"]:
        # Another process on this machine reached the daemon (a port it was also handed): this
        # sample is not one push; it is measured again.
        raise ForeignConnection(f"one push, yet the server ran {served}")
    server_cpu = served[0][0]
    if hide:
        git_config(server, "--unset-all", "receive.hideRefs")
    return Push(server_cpu, client_cpu, wall, advertised)


def advertisement_bytes(server: Path) -> int:
    """Bytes receive-pack sends a pusher before anything else, as the server is configured now."""
    done = subprocess.run(
        ["git", "receive-pack", "--advertise-refs", str(server)], capture_output=True, check=True
    )
    return len(done.stdout)


def sync_robot(robot_repo: Path, server: Path, device: str) -> None:
    """The robot's status ref at the server's (untimed): each push is one report on top of it."""
    if not robot_repo.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(robot_repo)], check=True)
    ref = status_ref(device)
    subprocess.run(
        ["git", "--git-dir", str(robot_repo), "fetch", "-q", "--no-tags", str(server), f"+{ref}:{ref}"],
        check=True,
    )


def one_ref_repo(world: World, device: str) -> Path:
    """A repository holding only ``device``'s status ref (the goal's baseline)."""
    path = world.root / f"one-{device}.git"
    if not path.exists():
        sync_robot(path, world.root / "status.git", device)
    return path


def measure_setup(world: World, setup: str, samples: list[str], seq: int) -> dict[str, Any]:
    repo_kind, hide, refs_state, extra = SETUPS[setup]
    fleet = repo_kind != "one"
    base = world.root / "fleet.git" if repo_kind == "fleet" else world.root / "status.git"
    if refs_state != PACKED:
        make_loose(base, [status_ref(d) for d in world.devices], world.fleet_refs)
    if refs_state == REF_DIRS:
        subprocess.run(["git", "-C", str(base), "pack-refs", "--all"], check=True)
    for key, value in extra:
        git_config(base, key, value)
    pushes: list[Push] = []
    try:
        cpu_log = world.root / "server-cpu" / f"{setup}.log"
        with git_daemon(world.root, receive_pack=True, cpu_log=cpu_log) as proxy:
            for n, device in enumerate(samples):
                server = base if fleet else one_ref_repo(world, device)
                robot = world.root / "robots" / f"{device}.git"
                url = f"git://127.0.0.1:{proxy.upstream_port}/{server.name}"  # no proxy: no bytes
                measured = None
                for attempt in range(PUSH_ATTEMPTS):
                    sync_robot(robot, server, device)
                    try:
                        measured = one_push(
                            proxy.server_pid, cpu_log, server, url, robot, device, seq + attempt, hide
                        )
                        break
                    except (TransportError, ForeignConnection):
                        RETRIED.append(setup)
                        if hide:
                            git_config(server, "--unset-all", "receive.hideRefs")
                if measured is None:
                    raise RuntimeError(f"{setup}: {device}'s push failed {PUSH_ATTEMPTS} times")
                if n:  # the first push of each setup warms the caches; it is not counted
                    pushes.append(measured)
    finally:
        for key, _ in extra:
            git_config(base, "--unset-all", key)
        if refs_state != PACKED:
            subprocess.run(["git", "-C", str(base), "pack-refs", "--all"], check=True)
            remove_empty_ref_dirs(base / "refs")
    return summarize(pushes)


def summarize(pushes: list[Push]) -> dict[str, Any]:
    def median(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    return {
        "pushes": len(pushes),
        "server_cpu_ms_median": round(median(p.server_cpu_s for p in pushes) * 1000, 2),
        "server_cpu_ms_mean": round(statistics.fmean(p.server_cpu_s for p in pushes) * 1000, 2),
        "server_cpu_ms_max": round(max(p.server_cpu_s for p in pushes) * 1000, 2),
        "client_cpu_ms_median": round(median(p.client_cpu_s for p in pushes) * 1000, 2),
        "wall_ms_median": round(median(p.wall_s for p in pushes) * 1000, 2),
        "advertised_bytes_median": int(median(p.advertised_bytes for p in pushes)),
    }


def maintenance_cpu_s(repo: Path) -> dict[str, float]:
    """CPU of what keeps a server's pushes cheap, run on ``repo`` after its pushes."""
    out = {}
    for name, argv in (
        ("pack_refs", ["pack-refs", "--all"]),
        ("repack_incremental", ["repack", "-d", "-l", "-q"]),
        ("gc_full", ["gc", "--quiet", "--prune=now"]),
    ):
        before = children_cpu_s()
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
        out[name] = round(children_cpu_s() - before, 3)
    return out


def run_size(
    root: Path, count: int, pushes: int, setups: list[str], shard_robots: int | None = None
) -> dict[str, Any]:
    """Every setup at ``count`` robots; the status shard holds ``shard_robots`` of them (all by
    default), the pushing robots among them."""
    step = max(count // (pushes + 1), 1)
    samples = sorted({device_id(min(i * step, count - 1)) for i in range(pushes + 1)})
    size = count if shard_robots is None else min(shard_robots, count)
    shard = set(samples)
    others = [d for d in (device_id(i) for i in range(count)) if d not in shard]
    shard.update(others[: max(size - len(shard), 0)])
    fleet = any(SETUPS[s][0] == "fleet" for s in setups)
    world = build_world(root, count, sorted(shard), fleet=fleet)
    results: dict[str, Any] = {
        "robots": count,
        "status_shard_robots": len(shard),
        "world_build_s": round(world.build_s, 2),
        "setups": {},
    }
    for index, setup in enumerate(setups, start=1):  # seqs 10, 20, ...: retries never repeat one
        results["setups"][setup] = measure_setup(world, setup, samples, 10 * index)
    if fleet:
        results["maintenance_cpu_s"] = maintenance_cpu_s(root / "fleet.git")
    return results


def ratios(result: dict[str, Any]) -> dict[str, float]:
    setups = result["setups"]
    base = setups.get("one_ref", {}).get("server_cpu_ms_median")
    if not base:
        return {}
    return {name: round(s["server_cpu_ms_median"] / base, 2) for name, s in setups.items()}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="robots per run")
    parser.add_argument("--pushes", type=int, default=DEFAULT_PUSHES, help="measured pushes per setup")
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--goal-setup", choices=list(SETUPS), default=GOAL_SETUP, help="the setup judged")
    parser.add_argument(
        "--shard-robots",
        type=int,
        default=None,
        help="robots whose status refs the status shard holds (default: every robot of the size)",
    )
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    setups = ["one_ref", *(s for s in args.setups if s != "one_ref")]
    by_size: dict[int, dict[str, Any]] = {}
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix=f"fleetcd-status-push-{count}-") as tmp:
            by_size[count] = run_size(Path(tmp), count, args.pushes, setups, args.shard_robots)
            by_size[count]["ratio_vs_one_ref"] = ratios(by_size[count])
    lines = [
        f"server CPU per status push (receive-pack and its children, wait4 rusage); median of {args.pushes} "
        "pushes by different robots; ratio = setup / one_ref at the same size"
    ]
    rows = []
    for setup in setups:
        row: list[object] = [setup]
        for n in sizes:
            s = by_size[n]["setups"][setup]
            r = by_size[n]["ratio_vs_one_ref"].get(setup, 0.0)
            row.append(f"{s['server_cpu_ms_median']:.0f} ms ({r}x) {s['advertised_bytes_median']} B")
        rows.append(row)
    lines += table(["setup", *(f"N={n}: CPU (ratio) advertised" for n in sizes)], rows)
    lines += ["", "robot side (client CPU median, wall median)"]
    lines += table(
        ["setup", *(f"N={n}" for n in sizes)],
        [
            [setup, *(
                f"{by_size[n]['setups'][setup]['client_cpu_ms_median']:.0f} ms, "
                f"{by_size[n]['setups'][setup]['wall_ms_median']:.0f} ms" for n in sizes)]
            for setup in setups
        ],
    )  # fmt: skip
    maintained = [n for n in sizes if "maintenance_cpu_s" in by_size[n]]
    if maintained:
        lines += ["", "maintenance on fleet.git (CPU s): pack-refs --all, repack -d -l, gc"]
        lines += table(
            ["robots", "pack_refs", "repack_incremental", "gc_full", "world build s"],
            [[n, *by_size[n]["maintenance_cpu_s"].values(), by_size[n]["world_build_s"]] for n in maintained],
        )
    goal_ratios = {n: by_size[n]["ratio_vs_one_ref"].get(args.goal_setup) for n in sizes}
    lines += [f"pushes that failed and were measured again: {len(RETRIED)}"]
    shard_sizes = {n: by_size[n]["status_shard_robots"] for n in sizes}
    lines += [f"status shard robots by size: {shard_sizes}"]
    lines += ["", f"goal ({args.goal_setup} / one_ref <= {GOAL_RATIO}): {goal_ratios}"]
    payload = {
        "sizes": sizes,
        "pushes": args.pushes,
        "setups": setups,
        "results": {str(n): by_size[n] for n in sizes},
        "shard_robots": args.shard_robots,
        "goal_setup": args.goal_setup,
        "goal_ratio": GOAL_RATIO,
        "retried_pushes": len(RETRIED),
        "goal_met": all(r is not None and r <= GOAL_RATIO for r in goal_ratios.values()),
        "git_version": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
