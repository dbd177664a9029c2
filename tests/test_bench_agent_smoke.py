"""The agent benchmarks still run: each at a tiny size, writing the result keys the issue note quotes.

Speed and memory are never asserted here (the benchmarks report them); only that the poll really is
a no-op poll of the robot's own ref on controller-written state, measured for both the agent and
``git fetch``, that the RSS bench measures a real daemon that updates and then idles, and that the
agent does not import at start what only some cycles need (what the RSS bench found costly).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_bench_smoke import REPO, run_bench


@pytest.mark.slow
def test_poll_bench_measures_agent_git_fetch_and_server_with_and_without_namespaces(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench("agent_poll", tmp_path, "--sizes", "3", "25", "--runs", "2")

    assert set(result["results"]) == {"3", "25"}
    for size in ("3", "25"):
        by_method = result["results"][size]
        assert set(by_method) == {"robots", "agent_fetch_desired", "git_fetch", "plain_server"}
        # A no-op poll downloads the ref advertisement only: a few hundred bytes, no pack.
        assert 0 < by_method["agent_fetch_desired"]["bytes_down"] < 1000
        assert by_method["git_fetch"]["median_cpu_s"] > 0
    assert set(result["cpu_ratio_vs_git_fetch"]) == {"3", "25"}
    assert "goal_met" in result
    # Hosted git (no GIT_NAMESPACE): the same agent poll against a plain server, both layouts.
    for size in ("3", "25"):
        served = {"git_namespace": result["results"][size]["agent_fetch_desired"]}
        served |= result["results"][size]["plain_server"]
        assert set(served) == {"git_namespace", "plain_flat", "plain_namespaced"}
        for poll in served.values():
            assert poll["server_cpu_ms"] > 0  # upload-pack's own CPU was logged for every poll
            assert 0 < poll["bytes_down"] < 2000  # ref-prefix: no other robot's ref, no pack
        # One fetch where the served name exists; the namespaced layout on a plain server takes
        # two (the flat name is absent, the agent asks again without it), as docs/git-server.md says.
        assert served["git_namespace"]["server_connections"] == 1
        assert served["plain_flat"]["server_connections"] == 1
        assert served["plain_namespaced"]["server_connections"] == 2
    assert set(result["server_ratios"]) == {"git_namespace", "plain_flat", "plain_namespaced"}
    assert "server_goal_met" in result


@pytest.mark.slow
def test_rss_bench_measures_a_real_agent_daemon_updating_and_idle(tmp_path: Path, gpg_available: str) -> None:
    payload = run_bench("agent_rss", tmp_path, "--cycles", "3")
    (result,) = payload["by_python"].values()  # one interpreter: this one

    for run in ("updating", "idle"):
        measured = result[run]
        assert measured["cycles"] >= 3
        assert measured["vmhwm_bytes"] >= measured["vmrss_bytes"] > 0
        assert measured["rssanon_bytes"] > 0 and measured["rssfile_bytes"] > 0
        assert measured["exit_code_after_sigterm"] == 0  # SIGTERM stops `run` cleanly
        assert measured["running_version"] == "1.1.0"
    assert result["updating"]["upgraded_at_cycle"] is not None
    assert result["agent_peak_vmhwm_bytes"] == max(result[r]["vmhwm_bytes"] for r in ("updating", "idle"))
    assert result["python_bare_vmhwm_bytes"] > 0 and result["agent_cli_imported_vmhwm_bytes"] > 0
    assert "goal_met" in payload


IDLE_NEVER_IMPORTS = ("requests", "jsonschema", "docker", "watchfiles")


def test_the_agent_daemon_imports_no_library_that_only_an_update_or_a_bad_document_needs() -> None:
    """bench/agent_rss.py: these cost a robot ~9 MB resident; they load when a cycle needs them."""
    code = f"import sys, agent.cli; print([m for m in {IDLE_NEVER_IMPORTS!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[]"


HTTP_NEVER_IMPORTS = ("requests", "charset_normalizer")


def test_the_agent_http_adapters_fetch_and_probe_without_requests(tmp_path: Path) -> None:
    """bench/agent_rss.py: one GET through requests costs +8.2 MiB resident, urllib3 alone 4.0 MiB."""
    code = textwrap.dedent(
        f"""
        import socket, sys
        from pathlib import Path
        from agent.errors import DownloadFailed
        from agent.fetch.http import download
        from agent.health.http import get_status
        from fleetcd.errors import TransportError
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{{sock.getsockname()[1]}}/a"
        try:
            get_status(url, timeout_seconds=5)
        except TransportError:
            pass
        try:
            download(url, Path({str(tmp_path / "a")!r}), sha256="0" * 64, size=1)
        except DownloadFailed:
            pass
        print(["urllib3" in sys.modules] + [m for m in {HTTP_NEVER_IMPORTS!r} if m in sys.modules])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[True]"  # both adapters ran a real request, through urllib3 only
