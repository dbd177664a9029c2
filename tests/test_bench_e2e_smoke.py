"""The end-to-end rollout benchmark still runs: a tiny fleet, every key the issue note quotes.

Speed is never asserted here (the benchmark reports it); only that every simulated robot applied
the release through the real controller, real git served by ``git daemon`` and real gpg, and that
the git server's CPU was actually measured.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.test_bench_smoke import run_bench


@pytest.mark.slow
def test_e2e_bench_takes_every_robot_from_merge_to_applied_and_measures_the_server(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench(
        "e2e_rollout",
        tmp_path,
        *("--robots", "8", "--wave-percents", "100", "--poll-seconds", "20", "--apply-seconds", "5"),
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
    (wave,) = result["per_wave"]
    assert wave["robots"] == 8 and wave["start_s"] == 0.0
    assert wave["reconcile_wall_s"]["dispatching"] == result["first_reconcile_wall_s"]


@pytest.mark.slow
def test_e2e_bench_reports_each_wave_of_a_rollout_with_soak(tmp_path: Path, gpg_available: str) -> None:
    soak, apply = 30, 5
    result = run_bench(
        "e2e_rollout",
        tmp_path,
        *("--robots", "10", "--wave-percents", "20", "30", "50", "--soak-seconds", str(soak)),
        *("--poll-seconds", "20", "--apply-seconds", str(apply), "--controller-seconds", "10"),
        *("--push-samples", "1"),
    )

    assert result["stopped"] == "done" and result["summary"]["applied"] == 10
    waves = result["per_wave"]
    assert [(w["wave"], w["robots"], w["applied"]) for w in waves] == [
        ("wave-1", 2, 2),
        ("wave-2", 3, 3),
        ("wave-3", 5, 5),
    ]
    for earlier, later in itertools.pairwise(waves):
        # A wave starts only after the one before it applied everywhere and soaked.
        assert later["start_s"] >= earlier["p99_applied_s"] + soak
    for wave in waves:
        # Nobody applies before its wave started plus one apply, p50 <= p99, both since the merge.
        assert (
            wave["start_s"] + apply
            <= wave["first_applied_s"]
            <= wave["p50_applied_s"]
            <= wave["p99_applied_s"]
        )
        assert wave["p99_since_start_s"] == round(wave["p99_applied_s"] - wave["start_s"], 3)
        # Every change of a robot's own reached it as a download; a wave's robots each had one at least.
        assert wave["downloads_per_robot"] >= wave["own_changes_per_robot"] >= 1
        assert wave["downloads_per_own_change"] >= 1
        assert wave["reconcile_wall_s"]["dispatching"] is not None
        assert wave["server_push_cpu_s"] > 0 and wave["pushes"] >= 2 * wave["robots"]
    # Every reconcile of the run is in one wave's window; the downloads add up.
    assert sum(w["reconciles"] for w in waves) == result["costs"]["reconciles"]
    assert result["downloads"] == result["costs"]["verifications"]
    assert {"goal_met", "downloads_goal_met", "goal_downloads_per_own_change"} <= set(result)
