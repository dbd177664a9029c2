"""The controller's mirror lock and self-healing (fleetcd.git.mirror), with real processes and real git.

Issue 10, point 2: a ``kill -9`` while the mirror held ref ``.lock`` files made every later run fail,
and two processes creating a fresh cache crashed on ``HEAD.lock``. Here a real second process holds
the flock (and is killed with SIGKILL, as an operator or the OOM killer would), lock files are left
where git leaves them, and the mirror is damaged on disk; each time the next :func:`open_locked_mirror`
must either wait and then say who holds the cache (:class:`MirrorBusy`), or heal and open.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from fleetcd.errors import SetupError
from fleetcd.git.mirror import (
    LOCK_SUFFIX,
    RELEASED,
    STALE_LOCK_FILES,
    LockedRepository,
    MirrorBusy,
    open_locked_mirror,
    remove_stale_lock_files,
)
from tests.gitrepos import bare_repo, git

HOLDER = """
import fcntl, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\\n".encode(), 0)
print("held", flush=True)
sys.stdin.read()
"""


class OtherProcess:
    """A real second process holding the mirror's flock until it exits or is killed."""

    def __init__(self, lock: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(lock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def kill_9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill_9()


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "mirror.git"


def lock_of(mirror: Path) -> Path:
    return mirror.with_name(mirror.name + LOCK_SUFFIX)


# --- creation -----------------------------------------------------------------------------------------


def test_a_missing_mirror_is_created_bare_and_empty(mirror: Path) -> None:
    with open_locked_mirror(mirror, wait_seconds=1) as repo:
        assert isinstance(repo, LockedRepository)
        assert repo.is_bare and list(repo.references) == []
    assert (mirror / "HEAD").exists()
    assert not (mirror / "HEAD.lock").exists()


def test_the_lock_says_who_holds_it_and_that_it_was_released(mirror: Path) -> None:
    repo = open_locked_mirror(mirror, wait_seconds=1)
    assert lock_of(mirror).read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"
    repo.close()
    assert lock_of(mirror).read_text() == RELEASED
    repo.close()  # idempotent
    assert lock_of(mirror).read_text() == RELEASED


def test_leftovers_of_a_creation_cut_short_are_removed(mirror: Path) -> None:
    mirror.parent.mkdir(parents=True)
    for leftover in (f".{mirror.name}.new-abc123", f".{mirror.name}.broken-xyz"):
        (mirror.parent / leftover / "objects").mkdir(parents=True)
    unrelated = mirror.parent / ".other.new-1"
    unrelated.mkdir()
    open_locked_mirror(mirror, wait_seconds=1).close()
    assert sorted(p.name for p in mirror.parent.iterdir()) == sorted(
        [".other.new-1", mirror.name, lock_of(mirror).name]
    )


def test_a_lock_file_that_cannot_be_created_is_a_setup_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SetupError, match="cannot create the cache's lock file"):
        open_locked_mirror(blocker / "mirror.git", wait_seconds=0.1)


# --- one process at a time ----------------------------------------------------------------------------


def test_another_live_holder_makes_us_wait_then_names_it(mirror: Path) -> None:
    open_locked_mirror(mirror, wait_seconds=1).close()
    other = OtherProcess(lock_of(mirror))
    try:
        started = time.monotonic()
        with pytest.raises(MirrorBusy) as caught:
            open_locked_mirror(mirror, wait_seconds=0.3)
        waited = time.monotonic() - started
    finally:
        other.close()
    assert 0.25 <= waited < 5
    assert f"pid {other.process.pid}" in caught.value.holder
    assert "two controllers need two --cache directories" in str(caught.value)
    assert caught.value.mirror == mirror


def test_a_holder_killed_with_sigkill_lets_the_next_process_in_at_once(mirror: Path) -> None:
    open_locked_mirror(mirror, wait_seconds=1).close()
    other = OtherProcess(lock_of(mirror))
    other.kill_9()
    started = time.monotonic()
    open_locked_mirror(mirror, wait_seconds=5).close()
    assert time.monotonic() - started < 2


def test_the_lock_is_re_entrant_within_one_process(mirror: Path) -> None:
    outer = open_locked_mirror(mirror, wait_seconds=1)
    inner = open_locked_mirror(mirror, wait_seconds=0)  # would raise MirrorBusy if not re-entrant
    inner.close()
    assert lock_of(mirror).read_text() != RELEASED, "the outer handle still holds it"
    outer.close()
    assert lock_of(mirror).read_text() == RELEASED


def test_a_handle_dropped_without_close_lets_go(mirror: Path) -> None:
    def use() -> None:
        repo = open_locked_mirror(mirror, wait_seconds=1)
        list(repo.references)  # the attribute that would make a reference cycle in plain pygit2

    use()
    gc.collect()
    assert lock_of(mirror).read_text() == RELEASED
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            HOLDER.replace("fcntl.LOCK_EX)", "fcntl.LOCK_EX | fcntl.LOCK_NB)"),
            str(lock_of(mirror)),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, "another process could not take the lock: " + done.stderr


# --- healing ------------------------------------------------------------------------------------------


def left_locks(mirror: Path) -> list[str]:
    """Lock files where a killed git or libgit2 leaves them."""
    made = ["HEAD.lock", "packed-refs.lock", "refs/heads/main.lock", "refs/fleetcd/status/r1/report.lock"]
    made += ["logs/refs/heads/main.lock", "refs/namespaces/r2/refs/fleetcd/desired/r2.lock"]
    for rel in made:
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_text("0" * 40 + "\n")
    return sorted(made)


def test_locks_a_killed_holder_left_are_removed_and_refs_can_be_written(mirror: Path) -> None:
    open_locked_mirror(mirror, wait_seconds=1).close()
    other = OtherProcess(lock_of(mirror))
    made = left_locks(mirror)
    other.kill_9()  # died holding the cache: its lock file does not say "released"

    with open_locked_mirror(mirror, wait_seconds=5) as repo:
        blob = repo.create_blob(b"x")
        tree = repo.TreeBuilder()
        tree.insert("x", blob, pygit2.enums.FileMode.BLOB)
        sig = pygit2.Signature("t", "t@t", 0, 0)
        commit = repo.create_commit(None, sig, sig, "m", tree.write(), [])
        repo.references.create("refs/heads/main", commit)
        repo.references.create("refs/fleetcd/status/r1/report", commit)

    assert not any((mirror / rel).exists() for rel in made)
    assert git("rev-parse", "refs/fleetcd/status/r1/report", cwd=mirror).strip() == str(commit)


def test_after_a_clean_release_the_mirror_is_not_searched(mirror: Path) -> None:
    # The search costs seconds on a large fleet; a clean release proves no writer died mid-update.
    open_locked_mirror(mirror, wait_seconds=1).close()
    marker = mirror / "refs" / "heads" / "keep.lock"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("someone else's business")
    open_locked_mirror(mirror, wait_seconds=1).close()
    assert marker.exists()


def test_a_cache_from_before_the_lock_existed_is_searched(mirror: Path) -> None:
    bare_repo(mirror)
    made = left_locks(mirror)
    open_locked_mirror(mirror, wait_seconds=1).close()
    assert not any((mirror / rel).exists() for rel in made)


@pytest.mark.parametrize(
    "damage",
    ["empty-head", "no-objects", "garbage-config", "head-is-a-directory"],
)
def test_a_mirror_that_cannot_be_opened_is_rebuilt_empty(mirror: Path, damage: str) -> None:
    bare_repo(mirror)
    if damage == "empty-head":
        (mirror / "HEAD").write_text("")
    elif damage == "no-objects":
        shutil.rmtree(mirror / "objects")
    elif damage == "garbage-config":
        (mirror / "config").write_bytes(b"[core\n\x00\xff garbage = = =\n")
    else:
        (mirror / "HEAD").unlink()
        (mirror / "HEAD").mkdir()
    with open_locked_mirror(mirror, wait_seconds=1) as repo:
        assert repo.is_bare
    assert [p.name for p in mirror.parent.iterdir() if ".broken-" in p.name] == []


def test_a_healthy_mirror_keeps_its_refs_through_many_opens(mirror: Path) -> None:
    with open_locked_mirror(mirror, wait_seconds=1) as repo:
        sig = pygit2.Signature("t", "t@t", 0, 0)
        tree = repo.TreeBuilder().write()
        commit = repo.create_commit("refs/heads/main", sig, sig, "m", tree, [])
    for _ in range(5):
        with open_locked_mirror(mirror, wait_seconds=1) as repo:
            assert repo.references["refs/heads/main"].target == commit


# --- remove_stale_lock_files --------------------------------------------------------------------------


def test_every_git_lock_file_is_removed_and_listed(tmp_path: Path) -> None:
    repo = bare_repo(tmp_path / "r.git")
    made = left_locks(repo)
    for name in STALE_LOCK_FILES:
        (repo / name).write_text("x")
    removed = remove_stale_lock_files(repo)
    assert removed == sorted(set(made) | set(STALE_LOCK_FILES))
    assert remove_stale_lock_files(repo) == []


def test_files_that_only_look_like_locks_outside_refs_and_logs_are_kept(tmp_path: Path) -> None:
    repo = bare_repo(tmp_path / "r.git")
    keep = [
        repo / "objects" / "ab" / "x.lock",
        repo / "hooks" / "pre-receive.lock",
        repo / "refs" / "heads" / "locksmith",
    ]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert remove_stale_lock_files(repo) == []
    assert all(path.exists() for path in keep)


def test_a_dangling_symlink_lock_is_removed_without_following_it(tmp_path: Path) -> None:
    repo = bare_repo(tmp_path / "r.git")
    precious = tmp_path / "precious"
    precious.write_text("must survive")
    (repo / "refs" / "heads" / "main.lock").symlink_to(precious)
    (repo / "HEAD.lock").symlink_to(tmp_path / "nowhere")
    assert remove_stale_lock_files(repo) == ["HEAD.lock", "refs/heads/main.lock"]
    assert precious.read_text() == "must survive"


def test_one_lock_among_two_thousand_loose_refs_is_found(tmp_path: Path) -> None:
    repo = bare_repo(tmp_path / "r.git")
    base = repo / "refs" / "fleetcd" / "status"
    for i in range(2_000):
        folder = base / f"r{i:05d}"
        folder.mkdir(parents=True)
        (folder / "report").write_text("0" * 40 + "\n")
    (base / "r01234" / "report.lock").write_text("x")
    assert remove_stale_lock_files(repo) == ["refs/fleetcd/status/r01234/report.lock"]
    assert (base / "r01234" / "report").exists()


STAMP_KILLER = r"""
import os, signal, sys
from pathlib import Path
from fleetcd.git.mirror import RELEASED, open_locked_mirror
instant = sys.argv[2]
real_pwrite = os.pwrite
def pwrite(fd, data, offset):
    if (instant == "releasing") is (data == RELEASED.encode()):  # the stamp emptied, not yet written
        os.kill(os.getpid(), signal.SIGKILL)
    return real_pwrite(fd, data, offset)
os.pwrite = pwrite
open_locked_mirror(Path(sys.argv[1]), wait_seconds=30).close()
"""


@pytest.mark.parametrize("instant", ["taking", "releasing"])
def test_attack_kill_9_between_emptying_and_writing_the_lock_s_stamp_reads_as_an_unclean_release(
    mirror: Path, instant: str
) -> None:
    """The lock file's stamp is emptied, then written: a kill in between leaves it empty, which must
    read as a holder that did not release cleanly (the mirror is searched), never as ``released``."""
    open_locked_mirror(mirror, wait_seconds=1).close()
    left = mirror / "refs" / "heads" / "main.lock"  # as a writer killed inside a ref update leaves it
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_text("0" * 40 + "\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", STAMP_KILLER, str(mirror), instant], env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    assert lock_of(mirror).read_bytes() == b""
    assert git("fsck", "--no-progress", cwd=mirror) == ""
    open_locked_mirror(mirror, wait_seconds=5).close()
    assert not left.exists()
    assert lock_of(mirror).read_text() == RELEASED
