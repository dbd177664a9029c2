"""The status-push benchmark still runs: a tiny fleet, every key the issue note and docs/scaling.md quote.

Speed is never asserted (the benchmark reports it); only that each push measured is the agent's
real push of a real report, that the server's CPU was read from receive-pack itself, and that the
server setups differ where they must: what a pusher is advertised.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.fleetgen import device_id
from bench.status_push import SETUPS, build_world, robot_report
from fleetcd.git.refs import desired_ref, namespaced, status_ref
from fleetcd.reports import STATUS_FILE, StatusReport
from fleetcd.wire import status_commit
from tests.test_bench_smoke import run_bench


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_status_push_bench_measures_every_server_setup_against_a_one_ref_repository(
    tmp_path: Path,
) -> None:
    result = run_bench("status_push", tmp_path, "--sizes", "6", "30", "--pushes", "2")

    assert result["sizes"] == [6, 30] and result["retried_pushes"] == 0
    for size in ("6", "30"):
        measured = result["results"][size]
        assert set(measured["setups"]) == set(SETUPS)
        for setup in measured["setups"].values():
            assert setup["pushes"] == 2  # the warm-up push is not counted
            assert setup["server_cpu_ms_median"] > 0  # receive-pack's own CPU was logged
        assert measured["ratio_vs_one_ref"]["one_ref"] == 1.0
        assert set(measured["maintenance_cpu_s"]) == {"pack_refs", "repack_incremental", "gc_full"}
    small, large = result["results"]["6"]["setups"], result["results"]["30"]["setups"]
    # Every ref is advertised to the pusher by default; the per-robot hideRefs show only its own.
    assert (
        large["fleet_default"]["advertised_bytes_median"]
        > 3 * small["fleet_default"]["advertised_bytes_median"]  # 61 refs against 13
    )
    for hidden in ("fleet_hiderefs", "fleet_recommended", "fleet_recommended_loose", "status_shard_hiderefs"):
        assert large[hidden]["advertised_bytes_median"] == large["one_ref"]["advertised_bytes_median"]
    assert result["goal_setup"] == "fleet_recommended" and "goal_met" in result
    assert json.loads((tmp_path / "status_push.json").read_text())["git_version"].startswith("git version")


@pytest.mark.slow
def test_status_push_bench_measures_a_status_shard_smaller_than_the_fleet(tmp_path: Path) -> None:
    result = run_bench(
        "status_push", tmp_path, "--sizes", "40", "--pushes", "2", "--shard-robots", "10",
        "--setups", "status_shard_recommended", "--goal-setup", "status_shard_recommended",
    )  # fmt: skip

    measured = result["results"]["40"]
    assert measured["status_shard_robots"] == 10 and result["shard_robots"] == 10
    assert list(measured["setups"]) == ["one_ref", "status_shard_recommended"]  # the baseline always
    assert "maintenance_cpu_s" not in measured  # no fleet repository was built or measured
    assert result["goal_setup"] == "status_shard_recommended"


def test_the_world_holds_each_robots_status_report_as_the_agent_commits_it(tmp_path: Path) -> None:
    world = build_world(tmp_path, 3, [device_id(i) for i in range(3)])

    fleet, status = tmp_path / "fleet.git", tmp_path / "status.git"
    listed = git(fleet, "for-each-ref", "--format=%(refname)").split()
    assert len(listed) == 2 * 3 + 1  # main, and each robot's desired state and status
    assert git(status, "for-each-ref", "--format=%(refname)").split() == [
        status_ref(d) for d in world.devices
    ]
    assert not list((fleet / "refs").rglob("report"))  # packed, as on a gc'd server
    device = world.devices[1]
    assert namespaced(device, desired_ref(device)) in listed
    report = StatusReport.model_validate_json(git(fleet, "show", f"{status_ref(device)}:{STATUS_FILE}"))
    assert report == robot_report(device, 1, report.reported_at)
    made = status_commit(report)
    assert git(fleet, "log", "-1", "--format=%an <%ae>%n%s", status_ref(device)).splitlines() == [
        f"{made.author_name} <{made.author_email}>",
        made.message,
    ]
    assert git(fleet, "fsck", "--no-progress") == ""
