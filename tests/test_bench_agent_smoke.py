"""The agent benchmarks still run: each at a tiny size, writing the result keys the issue note quotes.

Speed is never asserted here (the benchmarks report it); only that the poll really is a no-op poll of
the robot's own ref on controller-written state, measured for both the agent and ``git fetch``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_smoke import run_bench


@pytest.mark.slow
def test_poll_bench_measures_bytes_and_cpu_of_agent_and_git_fetch(tmp_path: Path, gpg_available: str) -> None:
    result = run_bench("agent_poll", tmp_path, "--sizes", "3", "25", "--runs", "2")

    assert set(result["results"]) == {"3", "25"}
    for size in ("3", "25"):
        by_method = result["results"][size]
        assert set(by_method) == {"robots", "agent_fetch_desired", "git_fetch"}
        # A no-op poll downloads the ref advertisement only: a few hundred bytes, no pack.
        assert 0 < by_method["agent_fetch_desired"]["bytes_down"] < 1000
        assert by_method["git_fetch"]["median_cpu_s"] > 0
    assert set(result["cpu_ratio_vs_git_fetch"]) == {"3", "25"}
    assert "goal_met" in result
