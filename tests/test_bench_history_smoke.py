"""The history benchmark still runs, and the bytes it attributes are the objects the reconciles made.

``bench.git_history`` at a tiny size, both kinds of report: heartbeats (robots already online
report again) write a device file and no audit line; first reports bring each robot online, which
is an audit line. Every report is one commit on the robot's status ref, and no object is counted
twice (the state branch's first, then the reports'). :func:`bench.git_history.weigh` is checked
against a repository built here, object by object. Speed is never asserted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.git_history import REPORTS, STATE, classify, report, weigh
from tests.test_bench_smoke import run_bench


def _classes(result: dict[str, Any], group: str) -> dict[str, list[int]]:
    classes: dict[str, list[int]] = result["classes"][group]
    return classes


@pytest.mark.slow
def test_heartbeats_rewrite_device_files_and_add_no_audit_line(tmp_path: Path, gpg_available: str) -> None:
    result = run_bench(
        "git_history",
        tmp_path,
        *("--robots", "200", "--reconciles", "3", "--reporting", "0.1", "--heartbeat-period", "2"),
    )

    assert result["reports_per_reconcile"] == 20 and result["heartbeat_period"] == 2
    state, reports = _classes(result, STATE), _classes(result, REPORTS)
    # One state commit a reconcile, each rewriting the pages and one device file a report.
    assert state["commit"][0] == 3
    assert state["status.html"][0] == 3 and state["STATUS.md"][0] == 3
    assert state["device file"][0] == 3 * 20
    # Already online: nothing to audit.
    assert "audit day file" not in state and "audit-heads file" not in state
    # Each report is a commit whose parent is the robot's previous report: new commits only.
    assert reports["commit"][0] == 3 * 20 and reports["status.json"][0] == 3 * 20
    assert result["moved_refs"][REPORTS] == 2 * 20  # the two sets of robots that took turns
    # Bytes on disk are a delta or a compressed whole: a 55 KB page costs far less than its size.
    assert 0 < state["status.html"][2] < state["status.html"][1] // 4
    assert result["disk_bytes"] == sum(c[2] for g in result["classes"].values() for c in g.values())
    text = (tmp_path / "git_history.txt").read_text()
    assert "each robot again every 2" in text and "device file" in text


@pytest.mark.slow
def test_first_reports_bring_robots_online_with_an_audit_line(tmp_path: Path, gpg_available: str) -> None:
    result = run_bench(
        "git_history", tmp_path, *("--robots", "200", "--reconciles", "2", "--reporting", "0.1")
    )

    state, reports = _classes(result, STATE), _classes(result, REPORTS)
    assert state["commit"][0] == 2 and state["device file"][0] == 2 * 20
    assert state["audit day file"][0] == 2  # the day file rewritten once a reconcile
    assert state["audit-heads file"][0] == 2 * 2  # a signed head (json and asc) a reconcile
    # First reports: root commits, one per robot, each its own ref.
    assert reports["commit"][0] == 2 * 20 and result["moved_refs"][REPORTS] == 2 * 20
    assert report(result)[0].startswith("200 robots, 2 reconciles of 20 reports (first)")


def _git(repo: Path, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *argv], input=stdin, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_weigh_counts_only_what_is_new_since_the_known_commits(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "user.email", "t@t.invalid")
    (repo / "devices" / "ab").mkdir(parents=True)
    (repo / "devices" / "ab" / "r1.json").write_text('{"seq": 1}\n' * 50)
    (repo / "status.html").write_text("<p>page</p>\n" * 200)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    old = _git(repo, "rev-parse", "HEAD")
    (repo / "devices" / "ab" / "r1.json").write_text('{"seq": 2}\n' + '{"seq": 1}\n' * 49)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "two")
    new = _git(repo, "rev-parse", "HEAD")
    _git(repo, "repack", "-adfq")

    weighed = weigh(repo / ".git", [new], [old])

    # The second commit added a commit, three trees (root, devices, devices/ab) and one blob:
    # the unchanged status.html is not counted again.
    assert set(weighed) == {"commit", "root tree", "devices top tree", "devices bucket tree", "device file"}
    assert all(count == 1 for count, _, _ in weighed.values())
    assert weighed["device file"][1] == len('{"seq": 2}\n' + '{"seq": 1}\n' * 49)
    assert 0 < weighed["device file"][2] < weighed["device file"][1]
    assert weigh(repo / ".git", [], [old]) == {}
    assert set(weigh(repo / ".git", [old], [])) == {
        "commit",
        "root tree",
        "devices top tree",
        "devices bucket tree",
        "device file",
        "status.html",
    }


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("commit", "", "commit"),
        ("tree", "", "root tree"),
        ("tree", "devices", "devices top tree"),
        ("tree", "devices/ab", "devices bucket tree"),
        ("blob", "devices/ab/robot-1.json", "device file"),
        ("blob", "audit/2026/05/04.jsonl", "audit day file"),
        ("tree", "audit/2026/05", "audit trees"),
        ("blob", "audit-heads/2026/05/04/3.json.asc", "audit-heads file"),
        ("blob", "rollouts/wave.json", "rollouts file"),
        ("blob", "receipts/wave/1.json", "receipts file"),
        ("blob", "status.html", "status.html"),
        ("blob", "STATUS.md", "STATUS.md"),
        ("blob", "status.json", "status.json"),
    ],
    ids=lambda v: str(v) or "-",
)
def test_an_object_is_classed_by_its_type_and_first_path(kind: str, path: str, expected: str) -> None:
    assert classify(kind, path) == expected
