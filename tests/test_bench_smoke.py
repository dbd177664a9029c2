"""The benchmarks still run: each one at a tiny size, writing its result files with the expected keys.

Speed is never asserted here (that is what the benchmarks report); only that they run end to end,
that the generated fleet is valid, and that every hostile file is rejected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_bench(name: str, out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / f"{name}.txt").read_text(encoding="utf-8")
    assert text.startswith(f"== {name} "), text[:200]
    result: dict[str, Any] = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert result["bench"] == name
    assert {"cpu_model", "cores", "python"} <= set(result["machine"])
    return result


@pytest.mark.slow
def test_validate_fleet_bench_writes_timings_ratios_and_memory(tmp_path: Path) -> None:
    result = run_bench("validate_fleet", tmp_path, "--devices", "50", "--releases", "3", "--runs", "1")

    timings = result["timings"]
    assert isinstance(timings, dict)
    assert {"raw_yaml", "load_spec", "validate_snapshot", "read_directory"} <= set(timings)
    assert all(t["median_s"] > 0 for t in timings.values())
    assert {"load_spec/raw_yaml", "validate_snapshot/raw_yaml"} <= set(result["ratios"])
    fleet, trust_root, devices, cohorts, releases, rollouts, configs = 1, 1, 50, 4, 3, 2, 2
    assert result["yaml_files"] == fleet + trust_root + devices + cohorts + releases + rollouts + configs
    assert result["unexpected_errors"] == []
    assert {"baseline_after_imports", "growth_read_and_validate"} <= set(result["peak_rss_mib"])


@pytest.mark.slow
def test_hostile_inputs_bench_rejects_every_classic_file_and_reports_each(tmp_path: Path) -> None:
    result = run_bench(
        "hostile_inputs",
        tmp_path,
        "--depth",
        "2000",
        "--scalar-mb",
        "2",
        "--fill-kib",
        "20",
        "--repeats",
        "1",
    )

    cases = result["cases"]
    assert isinstance(cases, list)
    assert [c["name"] for c in cases] == [
        "billion_laughs",
        "deep_flow_nesting",
        "deep_block_nesting",
        "huge_scalar",
        "node_flood_under_size_cap",
        "wide_mapping_under_size_cap",
        "duplicate_sha256",
        "version_1_10_unquoted",
        "binary_with_nul",
        "latin1_not_utf8",
        "unknown_field",
        "path_traversal_id",
    ]
    # The flood cases are measured, not judged: whether a wide but small document is too wide is the
    # loader's policy. Every classic hostile file must be rejected, and nothing may crash the loader.
    floods = {"node_flood_under_size_cap", "wide_mapping_under_size_cap"}
    not_rejected = {
        c["name"]: (c["outcome"], c["reason"])
        for c in cases
        if c["outcome"] != "rejected" and c["name"] not in floods
    }
    assert not_rejected == {}
    assert all(c["outcome"] in ("rejected", "accepted") for c in cases)
    assert all({"ms", "mib", "reason", "goal_met"} <= set(c) for c in cases)
    assert result["warmup_errors"] == []


def test_audit_day_bench_grows_one_day_and_reports_each_reconciles_cpu(tmp_path: Path) -> None:
    result = run_bench("audit_day", tmp_path, "--reconciles", "3", "--per", "20")
    rows = result["rows"]
    assert [row["reconcile"] for row in rows] == [1, 2, 3]
    assert rows[0]["bytes"] < rows[1]["bytes"] < rows[2]["bytes"]  # one day file, appended to
    assert all(row["verify_s"] >= 0 and row["append_s"] >= 0 for row in rows)
