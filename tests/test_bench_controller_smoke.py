"""The controller benchmarks still run: each at a tiny size, writing its result files with the keys
the README and the issue note quote.

Speed is never asserted (that is what the benchmarks report); only that they run end to end on
real git and real gpg and that what they count is what the controller promises (two signatures per
fan-out, identical objects from both writers, idle reconciles that write nothing). The reconcile
benchmark's goals and slopes are judged by pure functions, tested here on made-up timings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest

from bench.controller_reconcile import PHASES, RECONCILES, _slopes, summarize
from bench.controller_world import fast_import_commit
from fleetcd.git.objects import read_blob
from tests.sim.world import START
from tests.test_bench_smoke import run_bench


@pytest.mark.slow
def test_fanout_bench_writes_the_same_objects_as_git_fast_import(tmp_path: Path, gpg_available: str) -> None:
    result = run_bench("controller_fanout", tmp_path, "--robots", "20", "--runs", "1")

    assert result["identical_commit_ids"] is True
    assert {"controller_median_s", "git_median_s", "ratio", "goal_met"} <= set(result)
    assert result["push"]["refs"] == 20
    assert {"git_push_one_wildcard_refspec_s", "publish_local_s", "publish_git_daemon_s"} < set(
        result["push"]
    )


@pytest.mark.slow
def test_reconcile_bench_times_each_whole_reconcile_per_size_in_a_process_of_its_own(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench("controller_reconcile", tmp_path, "--sizes", "15", "6", "--runs", "2")

    assert result["sizes"] == [6, 15] and result["not_run"] == []
    for size in (6, 15):
        phases = result["results"][str(size)]
        assert list(phases) == list(PHASES)
        assert phases["world"]["active"] == size == phases["world"]["wave_robots"]
        # The first reconcile gives every robot desired state; the fan-out moves every robot's ref.
        assert phases["bootstrap"]["desired_refs_moved"] == size
        assert phases["wave"]["desired_refs_moved"] >= size
        assert phases["fan-out"]["desired_refs_moved"] == size
        # git's floor wrote the commits the controller wrote for the same robots.
        assert phases["wave-git"]["commits"] == size == phases["fan-out-git"]["commits"]
        for idle in ("no-change", "no-change-packed"):
            assert phases[idle]["idle"] is True and phases[idle]["signatures"] == 0
            assert len(phases[idle]["runs_s"]) == 2
        for name in RECONCILES:
            reconcile = phases[name]
            assert {"fetch", "load", "ingest", "plan", "deliver", "write"} <= set(reconcile["steps_s"])
            assert sum(reconcile["steps_s"].values()) > 0
            # The child's own peak during that reconcile, reset before it: at least what it held then.
            assert reconcile["peak_rss_mib"] >= reconcile["rss_before_mib"] > 0
    goals = result["goals"]
    for name in ("wave", "fan_out", "ingest", "no_change"):
        assert set(goals[name]) >= {"6", "15"}
        assert all(isinstance(goals[name][n]["met"], bool) for n in ("6", "15"))
    assert goals["ingest"]["against_size"] == 6 and goals["ingest"]["6"]["ratio"] == 1.0
    assert goals["wave"]["15"]["ratio"] == round(
        goals["wave"]["15"]["seconds"] / goals["wave"]["15"]["git_s"], 2
    )
    # A fan-out signs the desired-state root and the audit head whatever the fleet size.
    assert goals["signatures"]["fan-out"]["6"] == goals["signatures"]["fan-out"]["15"] >= 2
    assert all(goals["peak_rss_mib"][n] > 0 for n in ("6", "15"))
    for name in ("no-change-packed", *RECONCILES):
        (slope,) = result["slopes"][name]
        assert (slope["from"], slope["to"]) == (6, 15)


@pytest.mark.slow
def test_reconcile_bench_reports_a_size_that_does_not_fit_and_skips_the_larger_ones(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench("controller_reconcile", tmp_path, "--sizes", "5", "8", "--phase-timeout", "0.01")

    (stopped, skipped) = result["not_run"]
    assert stopped["robots"] == 5 and "did not finish within" in stopped["why"]
    assert skipped == {"robots": 8, "why": "skipped: an earlier size was stopped"}
    assert "8" not in result["results"]
    text = (tmp_path / "controller_reconcile.txt").read_text(encoding="utf-8")
    assert "NOT RUN at 5 robots" in text and "NOT RUN at 8 robots" in text


@pytest.mark.slow
def test_reconcile_bench_stops_at_its_wall_budget_and_keeps_what_finished(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench("controller_reconcile", tmp_path, "--sizes", "5", "8", "--max-wall-seconds", "0.01")

    (stopped, skipped) = result["not_run"]
    assert stopped["robots"] == 5 and "--max-wall-seconds ran out" in stopped["why"]
    assert skipped["robots"] == 8
    assert result["max_wall_s"] == 0.01


def test_slope_between_sizes_is_seconds_per_thousand_robots_and_the_log_log_exponent() -> None:
    linear = _slopes([1_000, 10_000, 100_000], {1_000: 1.0, 10_000: 10.0, 100_000: 100.0})
    assert [(s["from"], s["to"], s["exponent"]) for s in linear] == [
        (1_000, 10_000, 1.0),
        (10_000, 100_000, 1.0),
    ]
    assert [s["s_per_1000_robots"] for s in linear] == [1.0, 1.0]
    flat = _slopes([1_000, 10_000], {1_000: 0.2, 10_000: 0.2})
    assert flat[0]["exponent"] == 0.0 and flat[0]["s_per_1000_robots"] == 0.0
    # A size that was not measured is left out, not treated as zero.
    assert [(s["from"], s["to"]) for s in _slopes([1_000, 10_000, 100_000], {1_000: 1.0, 100_000: 5.0})] == [
        (1_000, 100_000)
    ]


def _phases(seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    return {p: {"seconds": s, "signatures": 2, "peak_rss_mib": 100.0} for p, s in seconds.items()}


def test_goals_judge_wave_and_fan_out_against_git_and_ingest_against_the_smallest_size() -> None:
    small = {
        "wave": 1.0,
        "wave-git": 0.6,
        "ingest": 2.0,
        "fan-out": 1.0,
        "fan-out-git": 0.6,
        "no-change-packed": 0.1,
    }
    large = {
        "wave": 1.3,
        "wave-git": 0.6,
        "ingest": 4.2,
        "fan-out": 30.0,
        "fan-out-git": 10.0,
        "no-change-packed": 0.6,
    }
    goals = summarize([1_000, 100_000], {1_000: _phases(small), 100_000: _phases(large)})["goals"]

    assert goals["wave"]["1000"] == {"seconds": 1.0, "git_s": 0.6, "ratio": 1.67, "met": True}
    assert goals["wave"]["100000"]["met"] is False  # 1.3 s is more than twice 0.6 s
    assert goals["fan_out"]["100000"] == {"seconds": 30.0, "git_s": 10.0, "ratio": 3.0, "met": False}
    assert goals["ingest"]["100000"] == {"seconds": 4.2, "ratio": 2.1, "met": False}
    assert goals["ingest"]["against_size"] == 1_000
    assert goals["no_change"]["1000"]["met"] is True and goals["no_change"]["100000"]["met"] is False
    assert goals["peak_rss_mib"] == {"1000": 100.0, "100000": 100.0}


@pytest.mark.slow
def test_ingest_bench_moves_every_robots_record(tmp_path: Path) -> None:
    result = run_bench("controller_ingest", tmp_path, "--robots", "30", "--runs", "1")

    assert set(result["timings"]) == {"read_reports_plus_ingest", "read_reports", "ingest"}
    assert result["audit_events"] == 30
    assert "goal_met" in result


@pytest.mark.slow
def test_poll_bench_measures_the_namespaced_poll_at_each_size(tmp_path: Path, gpg_available: str) -> None:
    result = run_bench("controller_poll", tmp_path, "--sizes", "2", "15", "--runs", "1")

    assert set(result["results"]) == {"2", "15"}
    assert {"pygit2_v0", "git_cli_v2", "pygit2_v0_git_namespace"} == set(result["ratios"])
    assert result["results"]["15"]["no_op_poll"]["pygit2_v0_git_namespace"]["bytes_down"] > 0


def test_fleet_written_by_fast_import_and_mktree_holds_every_file_byte_for_byte(tmp_path: Path) -> None:
    files = {
        "fleet.yaml": b"name: x\n",
        "devices/robot-00001.yaml": b"id: robot-00001\n",
        "devices/robot-00000.yaml": b"id: robot-00000\n",
        "releases/nav/1.0.0.yaml.d/ABC.asc": b"-----BEGIN PGP SIGNATURE-----\n",
        "releases/nav/1.0.0.yaml": b"\x00binary\xff",
    }
    server = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(server)], check=True)

    fast_import_commit(server, files, "fleet", START)

    repo = pygit2.Repository(str(server))
    head = repo.revparse_single("main")
    assert isinstance(head, pygit2.Commit) and head.parents == [] and head.message == "fleet\n"
    assert head.commit_time == int(START.timestamp())
    assert {path: read_blob(repo, "refs/heads/main", path) for path in files} == files
    listed = subprocess.run(
        ["git", "--git-dir", str(server), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(listed.stdout.split()) == sorted(files)  # nothing more, nothing less
    fsck = subprocess.run(
        ["git", "--git-dir", str(server), "fsck", "--strict"], capture_output=True, check=False
    )
    assert fsck.returncode == 0, fsck.stderr
