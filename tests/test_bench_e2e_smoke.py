"""The end-to-end rollout benchmark still runs: a tiny fleet, every key the issue note quotes.

Speed is never asserted here (the benchmark reports it); only that every simulated robot applied
the release through the real controller, real git served by ``git daemon`` and real gpg, and that
the git server's CPU was actually measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_smoke import run_bench


@pytest.mark.slow
def test_e2e_bench_takes_every_robot_from_merge_to_applied_and_measures_the_server(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench(
        "e2e_rollout", tmp_path, "--robots", "8", "--poll-seconds", "20", "--apply-seconds", "5"
    )

    assert result["stopped"] == "done"
    assert result["summary"]["applied"] == 8 and result["summary"]["failed"] == 0
    assert 0 < result["merge_to_applied_p50_s"] <= result["merge_to_applied_p99_s"]
    # Nobody applies before one apply has passed after the merge, nor later than a poll plus apply.
    assert 5 <= result["merge_to_applied_p99_s"] <= 1.2 * 20 + 5
    assert result["goal_p99_s"] == 1.2 * 20 + 2 * 5
    assert result["server_cpu_s"] > 0  # the daemon served real polls and pushes
    assert result["costs"]["pushes"] >= 16  # applying + deployed from every robot
    assert result["costs"]["gpg_checks"] < result["costs"]["verifications"]
    assert {"goal_met", "goal_met_with_first_reconcile", "first_reconcile_wall_s"} <= set(result)
    assert [w["action"] for w in result["waves"]] == ["deploy"]
