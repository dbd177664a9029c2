"""Benchmark: ingesting every robot's new status report in one reconcile (goal at most 5 s at 10,000).

A bare repository holds one status commit per robot on ``refs/fleetcd/status/<id>/report`` (as the
controller's mirror holds them after its fetch), and each robot's device file holds one deployment
record, dispatched and not yet picked up; every report says it is deployed. Timed, median of
``--runs`` on fresh copies of the device files: :func:`controller.ingest.read_reports` (ref lookup,
size check from the object header, strict JSON, the typed model, the device name) plus
:func:`controller.ingest.ingest` of each report (record transitions, connectivity, audit events),
the two halves of the reconcile's ingest step; and each half on its own.

    python -m bench.controller_ingest [--robots 10000] [--runs 3]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pygit2

from bench.common import base_parser, measure, table, write_results
from controller.ingest import ingest, read_reports
from controller.records.model import Action, DeviceState, TargetStatus
from controller.records.transitions import new_deployment
from controller.state.model import DeviceFile
from fleetcd.git.repo import Repository
from tests.sim.robots import push_reports, reports_for
from tests.sim.world import START

NAME = "controller_ingest"
DEFAULT_ROBOTS = 10_000
DEFAULT_RUNS = 3
GOAL_S = 5.0
OFFLINE_AFTER_S = 900.0
RELEASE_SHA256 = "ab" * 32


def device_files(robots: int) -> dict[str, DeviceFile]:
    files = {}
    for index in range(robots):
        device = f"robot-{index:05d}"
        record = new_deployment(
            rollout="navigator-rollout",
            generation=1,
            device=device,
            app="navigator",
            version="1.0.0",
            release_sha256=RELEASE_SHA256,
            wave=0,
            action=Action.DEPLOY,
            target_status=TargetStatus.DEPLOYED,
            at=START,
            deadline_at=START + timedelta(hours=1),
        )
        files[device] = DeviceFile(state=DeviceState(device=device), records=(record,))
    return files


def ingest_all(repo: Repository, files: dict[str, DeviceFile]) -> tuple[int, int]:
    """The reconcile's ingest step: (records moved to deployed, audit events)."""
    now = START + timedelta(seconds=30)
    owners = {r.id: d for d, f in files.items() for r in f.records}
    moved = events = 0
    for device, (report, problem) in read_reports(repo, files).items():
        if problem is not None:
            raise RuntimeError(f"{device}: {problem}")
        if report is not None:
            updated, emitted, _ = ingest(files[device], report, now, OFFLINE_AFTER_S, owners=owners)
            moved += sum(1 for r in updated.records if r.activity.value == "deployed")
            events += len(emitted)
    return moved, events


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--robots", type=int, default=DEFAULT_ROBOTS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    args = parser.parse_args()
    files = device_files(args.robots)
    with tempfile.TemporaryDirectory(prefix="fleetcd-ingest-") as tmp:
        path = Path(tmp) / "mirror.git"
        repo = pygit2.init_repository(str(path), bare=True)
        start = time.perf_counter()
        push_reports(
            path,
            reports_for(files, 1, "deployed", START + timedelta(seconds=20), agent_version="bench"),
            START,
        )
        setup_s = time.perf_counter() - start
        moved, events = ingest_all(repo, dict(files))
        if moved != args.robots:
            raise RuntimeError(f"{moved} of {args.robots} records moved to deployed")
        reports = read_reports(repo, files)
        now = START + timedelta(seconds=30)

        def ingest_only() -> None:
            for device, (report, _) in reports.items():
                if report is not None:
                    ingest(files[device], report, now, OFFLINE_AFTER_S)

        jobs: dict[str, Callable[[], object]] = {
            "read_reports_plus_ingest": lambda: ingest_all(repo, dict(files)),
            "read_reports": lambda: read_reports(repo, files),
            "ingest": ingest_only,
        }
        timings = {name: measure(job, runs=args.runs, warmups=0) for name, job in jobs.items()}
    total = timings["read_reports_plus_ingest"].median_s
    per_robot_us = round(total / args.robots * 1e6, 1)
    lines = [
        f"ingest of {args.robots} robots' new status reports (median of {args.runs}; goal <= {GOAL_S} s)"
    ]
    lines += table(
        ["step", "median s", "runs s"],
        [[k, f"{t.median_s:.3f}", " ".join(f"{r:.3f}" for r in t.runs_s)] for k, t in timings.items()],
    )
    lines += [
        f"per robot: {per_robot_us} us; {events} audit events; writing the reports took {setup_s:.1f} s"
    ]
    payload: dict[str, Any] = {
        "robots": args.robots,
        "runs": args.runs,
        "timings": {k: t.as_dict() for k, t in timings.items()},
        "per_robot_us": per_robot_us,
        "audit_events": events,
        "goal_s": GOAL_S,
        "goal_met": total <= GOAL_S,
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
