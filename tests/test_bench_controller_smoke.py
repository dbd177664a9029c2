"""The controller benchmarks still run: each at a tiny size, writing its result files with the keys
the README and the issue note quote.

Speed is never asserted (that is what the benchmarks report); only that they run end to end on
real git and real gpg and that what they count is what the controller promises (one signature per
fan-out, identical objects from both writers, idle reconciles that write nothing).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
def test_reconcile_bench_counts_two_signatures_per_fan_out_and_idle_no_change(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench("controller_reconcile", tmp_path, "--sizes", "5", "12", "--runs", "2")

    # One over the desired-state root, one over the audit log's new head: the same at every size.
    assert result["goals"]["signatures_per_fan_out"] == {"5": 2, "12": 2}
    assert result["goals"]["signatures_constant"] is True
    for size in ("5", "12"):
        by_size = result["results"][size]
        assert [r["name"] for r in by_size["reconciles"]] == ["fan-out", "ingest", "steady"]
        assert by_size["no_change"]["idle"] is True and by_size["no_change"]["signatures"] == 0
        assert len(by_size["no_change"]["runs_s"]) == 2
        assert {"full_path_s", "fetch_s", "list_remote_s"} <= set(by_size)
    assert result["results"]["12"]["idle_profile"]


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
