"""fleetcd/git/log.py: walking a linear history back from a tip, as ``history --at`` does over the
state branch and robots' status refs (which robots write, so the walk must survive anything)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from controller.ops.instant import ReportWalk
from fleetcd.compat import UTC
from fleetcd.git.log import blob_at, blob_bytes, commit_subject, first_parent_log, full_commit_id
from fleetcd.git.objects import Identity, commit, write_tree
from fleetcd.reports import MAX_REPORT_BYTES, STATUS_FILE

WHO = Identity("t", "t@example.invalid")
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def chain(repo: pygit2.Repository, ref: str, blobs: list[bytes]) -> list[str]:
    """One commit per blob (``status.json``), a minute apart, each on the one before."""
    ids: list[str] = []
    for i, data in enumerate(blobs):
        tree = write_tree(repo, {STATUS_FILE: data})
        parents = [pygit2.Oid(hex=ids[-1])] if ids else []
        ids.append(str(commit(repo, ref, tree, f"report {i}", parents, WHO, T0 + timedelta(minutes=i))))
    return ids


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "r.git"), bare=True)


def test_the_walk_goes_newest_first_by_first_parents_and_stops_at_the_limit(repo: pygit2.Repository) -> None:
    ids = chain(repo, "refs/heads/x", [b"a", b"b", b"c", b"d"])
    walked = list(first_parent_log(repo, ids[-1], 10))
    assert [e.commit for e in walked] == ids[::-1]
    assert [e.when for e in walked] == [T0 + timedelta(minutes=i) for i in (3, 2, 1, 0)]
    assert [e.commit for e in first_parent_log(repo, ids[-1], 2)] == [ids[3], ids[2]]
    assert commit_subject(repo, ids[0]) == "report 0"
    assert full_commit_id(repo, ids[1][:10]) == ids[1]
    assert full_commit_id(repo, "f" * 12) is None


def test_a_start_that_is_no_commit_yields_nothing(repo: pygit2.Repository) -> None:
    blob = repo.create_blob(b"not a commit")
    assert list(first_parent_log(repo, blob, 10)) == []
    assert list(first_parent_log(repo, "0" * 40, 10)) == []


def test_blobs_are_read_by_id_after_their_size(repo: pygit2.Repository) -> None:
    (only,) = chain(repo, "refs/heads/x", [b"hello"])
    found = blob_at(repo, only, STATUS_FILE)
    assert found is not None and found.size == 5 and blob_bytes(repo, found.blob) == b"hello"
    assert blob_at(repo, only, "missing.json") is None


def test_a_robot_report_over_the_cap_or_not_json_is_skipped_and_counted(repo: pygit2.Repository) -> None:
    good = (
        b'{"format": "fleetcd.dev/status/v1", "device": "r1", "seq": 1, "agent_version": "t", '
        b'"reported_at": "2026-05-04T09:00:00Z"}'
    )
    ids = chain(repo, "refs/fleetcd/status/r1/report", [good, b"{" * 10, b" " * (MAX_REPORT_BYTES + 1)])
    walk = ReportWalk(repo, "r1", T0 + timedelta(hours=1), pygit2.Oid(hex=ids[-1]))
    assert [r.report.seq for r in walk] == [1]
    assert walk.unreadable == 2


def _report(seq: int, at: datetime, device: str = "r1") -> bytes:
    doc = {"format": "fleetcd.dev/status/v1", "device": device, "seq": seq, "agent_version": "t"}
    return json.dumps({**doc, "reported_at": at.isoformat()}).encode()


def test_reports_dated_after_the_instant_are_passed_over(repo: pygit2.Repository) -> None:
    reports = [_report(i, T0 + timedelta(minutes=i)) for i in range(3)]
    ids = chain(repo, "refs/fleetcd/status/r1/report", reports)
    at = T0 + timedelta(minutes=1, seconds=30)  # after the second report, before the third
    assert [r.report.seq for r in ReportWalk(repo, "r1", at, pygit2.Oid(hex=ids[-1]))] == [1, 0]


def test_a_report_naming_another_robot_is_not_this_robots_word(repo: pygit2.Repository) -> None:
    ids = chain(repo, "refs/fleetcd/status/r1/report", [_report(0, T0), _report(1, T0, device="r2")])
    assert [r.report.seq for r in ReportWalk(repo, "r1", T0, pygit2.Oid(hex=ids[-1]))] == [0]
