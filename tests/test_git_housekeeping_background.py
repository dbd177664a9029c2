"""Housekeeping in the background (``Policy.background``, the controller's default), on real git.

A repack of a 10,000-robot mirror takes tens of seconds on two cores and a reconcile that waited
for it would hold a rollback back that long. So ``housekeep`` starts ``git gc`` and returns at
once; a later ``housekeep`` of the same repository reaps it and says what it did, or raises what
went wrong; one still running past its timeout is killed there. Writers go on beside the running
gc and lose nothing, and it never takes ``packed-refs.lock`` (the controller's own ref writers
take it, and a mirror opened after an unclean release treats a left one as stale).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.reconcile.source import housekeep_repository
from fleetcd.errors import TransportError
from fleetcd.git.housekeeping import STDERR_FILE, Policy, count, housekeep, running, settle
from fleetcd.git.mirror import open_locked_mirror
from fleetcd.git.objects import commit, ref_target, update_refs, write_tree
from tests.gitrepos import git
from tests.test_git_housekeeping import AUTHOR, WHEN, add_packs, bare, fsck, refs_of

BACKGROUND = Policy(pack_limit=4)


def wait_until_ended(repo: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while running(repo):
        assert time.monotonic() < deadline, "the background gc did not end"
        time.sleep(0.05)


def heavy(tmp_path: Path) -> Path:
    repo = tmp_path / "mirror.git"
    open_locked_mirror(repo, wait_seconds=5).close()
    add_packs(repo, 8, blobs=1000, size=1024)  # 8,000 incompressible objects: seconds to repack
    return repo


def test_the_background_is_the_default() -> None:
    assert Policy().background is True


def test_a_due_repack_returns_at_once_and_the_next_call_reports_what_it_did(tmp_path: Path) -> None:
    repo = heavy(tmp_path)
    refs, before = refs_of(repo), count(repo)
    started = time.monotonic()
    assert housekeep(repo, BACKGROUND) is None  # started, not waited for
    returned = time.monotonic() - started
    assert running(repo) or count(repo).packs == 1
    wait_until_ended(repo)
    done = housekeep(repo, BACKGROUND)
    assert done is not None and done.before == before and done.after.packs == 1
    assert done.seconds >= returned
    assert "repacked" in str(done)
    assert refs_of(repo) == refs and fsck(repo) == ""
    assert not (repo / STDERR_FILE).exists()
    assert housekeep(repo, BACKGROUND) is None  # nothing due, nothing left to report


def test_a_second_call_while_the_repack_runs_starts_no_second_one(tmp_path: Path) -> None:
    repo = heavy(tmp_path)
    assert housekeep(repo, BACKGROUND) is None
    if running(repo):
        assert housekeep(repo, BACKGROUND) is None  # still running: nothing reported, nothing started
    done = settle(repo, 300)
    assert done is not None and done.after.packs == 1
    assert settle(repo, 1) is None  # reaped once


def test_a_writer_beside_the_background_repack_loses_nothing(tmp_path: Path) -> None:
    """What a reconcile does while the gc it started runs: new objects, new packs, moved refs."""
    repo = heavy(tmp_path)
    assert housekeep(repo, BACKGROUND) is None
    written: dict[str, str] = {}
    with open_locked_mirror(repo, wait_seconds=5) as mirror:  # not held by the gc: no wait
        for n in range(5):
            tip = ref_target(mirror, "refs/heads/filler-0")
            assert tip is not None
            tree = write_tree(mirror, {"during.txt": f"written during the repack {n}\n".encode()})
            made = commit(mirror, None, tree, f"during {n}", [tip], AUTHOR, WHEN)
            update_refs(mirror, {f"refs/heads/during-{n}": (None, made)})
            written[f"refs/heads/during-{n}"] = str(made)
        add_packs(repo, 2, seed=7)  # packs written while it runs are not among those it deletes
    settle(repo, 300)
    found = refs_of(repo)
    assert {ref: found[ref] for ref in written} == written
    assert fsck(repo) == ""


def test_a_background_repack_never_takes_packed_refs_lock(tmp_path: Path) -> None:
    repo = heavy(tmp_path)
    for n in range(300):  # loose refs a foreground gc would pack
        git("update-ref", f"refs/heads/loose-{n}", "refs/heads/filler-0", cwd=repo)
    assert housekeep(repo, BACKGROUND) is None
    seen_lock = False
    while running(repo):
        seen_lock = seen_lock or (repo / "packed-refs.lock").exists()
        time.sleep(0.005)
    assert not seen_lock
    assert (repo / "refs" / "heads" / "loose-0").exists()  # left loose: the controller packs refs
    assert settle(repo, 1) is not None


def test_a_failed_background_repack_is_raised_by_the_next_call_quoting_git(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 6)
    git("config", "gc.pruneExpire", "not-a-date", cwd=repo)  # git gc refuses to run
    assert housekeep(repo, BACKGROUND) is None
    wait_until_ended(repo)
    with pytest.raises(TransportError, match=r"r\.git failed: .*pruneexpire"):
        housekeep(repo, BACKGROUND)
    assert not (repo / STDERR_FILE).exists()
    git("config", "--unset", "gc.pruneExpire", cwd=repo)
    assert housekeep(repo, BACKGROUND) is None  # tried again: due as before
    done = settle(repo, 300)
    assert done is not None and done.after.packs == 1


def test_a_failure_reaches_the_reconcile_as_a_failed_repack_not_an_error(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 6)
    git("config", "gc.pruneExpire", "not-a-date", cwd=repo)
    assert housekeep_repository(repo, "mirror", BACKGROUND) is None
    wait_until_ended(repo)
    repack = housekeep_repository(repo, "mirror", BACKGROUND)
    assert repack is not None and not repack.ok and "pruneexpire" in repack.message.lower()


def test_a_background_repack_past_its_timeout_is_killed_and_leaves_nothing_behind(tmp_path: Path) -> None:
    repo = heavy(tmp_path)
    refs, before = refs_of(repo), count(repo)
    hurried = Policy(pack_limit=4, timeout_seconds=0.05)
    assert housekeep(repo, hurried) is None
    time.sleep(0.08)  # past the timeout; a repack of 8 MB takes longer than this on any machine
    if not running(repo):
        pytest.skip("the repack ended within 0.08 s: nothing left to kill on this machine")
    with pytest.raises(TransportError, match=r"not done within 0.05 s"):
        housekeep(repo, hurried)
    assert not running(repo)
    assert refs_of(repo) == refs and fsck(repo) == ""
    assert not [p for p in (repo / "objects" / "pack").iterdir() if p.name.startswith(".tmp-")]
    assert not (repo / "gc.pid").exists()
    assert count(repo).packs in (before.packs, 1)  # killed before or after its rename: never lost
    assert housekeep(repo, BACKGROUND) is None or count(repo).packs == 1  # due again, started again
    settle(repo, 300)
    assert count(repo).packs == 1 and fsck(repo) == ""
