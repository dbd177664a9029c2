"""The robot's git (``fleetcd.git.robotgit``) against real bare repositories over local paths.

The robot never has pygit2: every ref, blob and commit goes through the ``git`` CLI. What a robot
relies on here: commits it writes are deterministic (the same report on two robots has one id), a
ref moved under it is a conflict and never silently overwritten, a path that is a tree or missing
reads as nothing, a fetch of refs the server lacks fetches the rest, a pattern fetch with prune
makes local refs say what the server holds, a byte cap leaves no partial pack, and a server that
refuses a push is never success.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, RefConflict, SetupError, TransportError
from fleetcd.git.gitcli import TransferTooLarge
from fleetcd.git.packfile import STALE_AFTER_S
from fleetcd.git.robotgit import STALE_LOCK_S, RobotRemote, RobotRepository

WHEN = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
AUTHOR = ("amr-00001", "amr-00001@fleet.invalid")


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True, timeout=60
    )
    return done.stdout.decode().strip()


@pytest.fixture
def robot(tmp_path: Path) -> RobotRepository:
    return RobotRepository(tmp_path / "robot.git")


@pytest.fixture
def server(tmp_path: Path) -> Path:
    path = tmp_path / "server.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, timeout=60)
    return path


def commit_on(repo: RobotRepository, name: str, data: bytes, parent: str | None = None) -> str:
    return repo.commit_file(name, data, parent=parent, message="m", author=AUTHOR, when=WHEN)


# --- the repository itself ------------------------------------------------------------------------


def test_the_repository_is_created_bare_on_first_use_and_reused_after(tmp_path: Path) -> None:
    first = RobotRepository(tmp_path / "deep" / "robot.git")
    assert (tmp_path / "deep" / "robot.git" / "HEAD").is_file()
    oid = commit_on(first, "status.json", b"{}")
    first.update_ref("refs/heads/x", oid, None, message="m")
    again = RobotRepository(tmp_path / "deep" / "robot.git")
    assert again.ref_target("refs/heads/x") == oid


def test_the_same_report_committed_on_two_robots_has_one_id(tmp_path: Path) -> None:
    a, b = RobotRepository(tmp_path / "a.git"), RobotRepository(tmp_path / "b.git")
    assert commit_on(a, "status.json", b'{"x":1}') == commit_on(b, "status.json", b'{"x":1}')
    assert commit_on(a, "status.json", b'{"x":1}') != commit_on(a, "status.json", b'{"x":2}')


def test_a_commit_keeps_its_time_zone_and_its_one_file(robot: RobotRepository) -> None:
    tz = timezone(-timedelta(hours=2, minutes=30))
    oid = robot.commit_file(
        "status.json", b"{}\n", parent=None, message="report", author=AUTHOR, when=WHEN.astimezone(tz)
    )
    text = git(robot.path, "cat-file", "-p", oid)
    assert f"{int(WHEN.timestamp())} -0230" in text
    assert "amr-00001 <amr-00001@fleet.invalid>" in text
    assert git(robot.path, "ls-tree", "--name-only", oid) == "status.json"
    child = commit_on(robot, "status.json", b"{}", parent=oid)
    assert git(robot.path, "rev-parse", f"{child}^") == oid


@pytest.mark.parametrize("name", ["a/b.json", "", ".", "..", "tab\tname", "new\nline"])
def test_a_file_name_that_is_not_plain_is_refused_before_anything_is_written(
    robot: RobotRepository, name: str
) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        commit_on(robot, name, b"{}")
    assert git(robot.path, "count-objects") == "0 objects, 0 kilobytes"


def test_a_commit_time_without_a_zone_is_refused(robot: RobotRepository) -> None:
    with pytest.raises(ValueError, match="time zone"):
        robot.commit_file("s.json", b"{}", parent=None, message="m", author=AUTHOR, when=datetime(2026, 5, 4))


# --- refs: compare and swap -------------------------------------------------------------------------


def test_a_ref_moved_under_the_robot_is_a_conflict_naming_what_was_found(robot: RobotRepository) -> None:
    one, two, three = (commit_on(robot, "s.json", str(n).encode()) for n in range(3))
    ref = "refs/fleetcd/status"
    robot.update_ref(ref, one, None, message="create")
    robot.update_ref(ref, one, None, message="again")  # already there: done, not a conflict
    with pytest.raises(RefConflict) as caught:
        robot.update_ref(ref, three, two, message="stale view")
    assert (caught.value.ref, caught.value.expected, caught.value.actual) == (ref, two, one)
    assert robot.ref_target(ref) == one  # left as it was
    with pytest.raises(RefConflict) as created:
        robot.update_ref(ref, three, None, message="thought it absent")
    assert created.value.actual == one
    robot.update_ref(ref, two, one, message="move")
    assert robot.ref_target(ref) == two


def test_deleting_an_absent_ref_is_done(robot: RobotRepository) -> None:
    robot.delete_ref("refs/fleetcd/never")
    oid = commit_on(robot, "s.json", b"{}")
    robot.update_ref("refs/fleetcd/x", oid, None, message="m")
    robot.delete_ref("refs/fleetcd/x")
    assert robot.refs(["refs/fleetcd/x"]) == {}


def test_refs_are_matched_exactly_not_by_prefix(robot: RobotRepository) -> None:
    oid = commit_on(robot, "s.json", b"{}")
    robot.update_ref("refs/fleetcd/amr-1", oid, None, message="m")
    robot.update_ref("refs/fleetcd/amr-10", oid, None, message="m")
    assert robot.refs(["refs/fleetcd/amr-1"]) == {"refs/fleetcd/amr-1": oid}
    assert robot.refs([]) == {}
    assert robot.has_loose_ref("refs/fleetcd/amr-10")


# --- blobs ------------------------------------------------------------------------------------------


def test_blob_reads_say_nothing_for_a_missing_path_a_tree_or_an_unknown_commit(
    robot: RobotRepository,
) -> None:
    blob = git(robot.path, "hash-object", "-w", "--stdin", stdin=b"desired\n")
    sub = git(robot.path, "mktree", stdin=f"100644 blob {blob}\tinner.json\n".encode())
    tree = git(
        robot.path, "mktree", stdin=f"100644 blob {blob}\tbundle.json\n040000 tree {sub}\tdir\n".encode()
    )
    commit = git(robot.path, "commit-tree", tree, "-m", "c")
    found, sizes = robot.blob_sizes(commit, ["bundle.json", "dir", "missing.json", "dir/inner.json"])
    assert found == commit
    assert sizes == {"bundle.json": (blob, 8), "dir": None, "missing.json": None, "dir/inner.json": (blob, 8)}
    assert robot.read_blobs([(blob, 8), (blob, 8)]) == [b"desired\n", b"desired\n"]
    assert robot.read_blob(commit, "bundle.json", max_bytes=8) == b"desired\n"
    assert robot.read_blob(commit, "bundle.json", max_bytes=7) is None  # over the cap: not read at all
    assert robot.read_blob(commit, "dir", max_bytes=1000) is None
    gone = "f" * 40
    assert robot.blob_sizes(gone, ["bundle.json"]) == (None, {"bundle.json": None})
    assert robot.blob_sizes(blob, ["x"]) == (None, {"x": None})  # a blob is not a commit


@pytest.mark.parametrize("rev", ["", "-p", "a b", "HEAD:bundle.json", "main\n"])
def test_a_revision_that_could_smuggle_an_option_or_a_path_is_refused(
    robot: RobotRepository, rev: str
) -> None:
    with pytest.raises(ValueError):
        robot.blob_sizes(rev, ["bundle.json"])


# --- fetch ------------------------------------------------------------------------------------------


def seed(server: Path, refs: dict[str, bytes]) -> dict[str, str]:
    """Commits on ``server``, one per ref, each holding ``bundle.json`` with the given bytes."""
    made = {}
    for ref, data in refs.items():
        blob = git(server, "hash-object", "-w", "--stdin", stdin=data)
        tree = git(server, "mktree", stdin=f"100644 blob {blob}\tbundle.json\n".encode())
        made[ref] = git(server, "commit-tree", tree, "-m", ref)
        git(server, "update-ref", ref, made[ref])
    return made


def test_a_fetch_of_refs_the_server_lacks_still_fetches_the_rest(
    robot: RobotRepository, server: Path
) -> None:
    made = seed(server, {"refs/desired/amr-1": b"one"})
    got = robot.fetch(
        RobotRemote(str(server)),
        ["+refs/desired/amr-1:refs/remote/desired", "+refs/desired/gone:refs/remote/gone"],
        max_bytes=1 << 20,
    )
    assert got == ["refs/remote/desired"]
    assert robot.refs(["refs/remote/desired", "refs/remote/gone"]) == {
        "refs/remote/desired": made["refs/desired/amr-1"]
    }
    assert robot.read_blob(made["refs/desired/amr-1"], "bundle.json", 100) == b"one"


def test_a_fetch_of_nothing_the_server_has_is_empty_not_an_error(
    robot: RobotRepository, server: Path
) -> None:
    assert robot.fetch(RobotRemote(str(server)), ["+refs/a/x:refs/b/x"], max_bytes=1 << 20) == []


def test_a_pattern_fetch_with_prune_drops_refs_the_server_no_longer_has(
    robot: RobotRepository, server: Path
) -> None:
    # the shape the agent fetches: one '*' component, e.g. refs/namespaces/<id>/*/fleetcd/desired/<id>
    spec = "+refs/ns/*/desired:refs/remote/ns/*/desired"
    local = ["refs/remote/ns/a/desired", "refs/remote/ns/b/desired"]
    seed(server, {"refs/ns/a/desired": b"1", "refs/ns/b/desired": b"2", "refs/ns/a/other": b"3"})
    remote = RobotRemote(f"file://{server}")
    assert robot.fetch(remote, [spec], max_bytes=1 << 20, prune=True) == []  # patterns name no dst
    assert set(robot.refs(local)) == set(local)
    assert robot.refs(["refs/remote/ns/a/other"]) == {}
    git(server, "update-ref", "-d", "refs/ns/a/desired")
    robot.fetch(remote, [spec], max_bytes=1 << 20, prune=True)
    assert set(robot.refs(local)) == {"refs/remote/ns/b/desired"}


def test_a_fetch_over_its_byte_cap_fails_and_leaves_no_partial_pack(
    robot: RobotRepository, server: Path
) -> None:
    seed(server, {"refs/desired/amr-1": os.urandom(512 * 1024)})  # incompressible
    with pytest.raises(TransferTooLarge) as caught:
        robot.fetch(RobotRemote(str(server)), ["+refs/desired/amr-1:refs/remote/d"], max_bytes=64 * 1024)
    assert caught.value.limit_bytes == 64 * 1024
    assert list((robot.path / "objects" / "pack").glob("tmp_*")) == []
    assert robot.refs(["refs/remote/d"]) == {}


def test_a_fetch_from_a_path_with_no_repository_is_a_transport_error(
    robot: RobotRepository, tmp_path: Path
) -> None:
    with pytest.raises(TransportError, match="no repository"):
        robot.fetch(RobotRemote(str(tmp_path / "nowhere")), ["+refs/a/b:refs/c/d"], max_bytes=1 << 20)


def test_a_fetch_from_a_directory_that_is_not_a_repository_is_a_transport_error(
    robot: RobotRepository, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TransportError):
        robot.fetch(RobotRemote(str(tmp_path / "empty")), ["+refs/a/b:refs/c/d"], max_bytes=1 << 20)


@pytest.mark.parametrize(
    "refspec",
    [
        "refs/a/b",  # no destination
        "main:refs/c/d",  # not a full ref name
        "+refs/a/b:HEAD",
        "+refs/a/*:refs/c/d",  # pattern on one side only
        "+refs/a*:refs/c/*",  # a '*' that is not a whole component: would match refs/abc too
        "+refs/a/*/*/b:refs/c/*/*/d",  # two patterns
        "+refs/trust/*:refs/remote/trust/*",  # a trailing '*': only an inner component is a pattern here
        "+refs/a/../b:refs/c/d",
        "+refs/a/b c:refs/c/d",
        "+refs/a/b~1:refs/c/d",
        "+refs/a/[ab]:refs/c/d",
    ],
)
def test_a_refspec_a_server_could_widen_is_refused_before_any_fetch(
    robot: RobotRepository, server: Path, refspec: str
) -> None:
    with pytest.raises(ValueError):
        robot.fetch(RobotRemote(str(server)), [refspec], max_bytes=1 << 20)


def test_a_remote_url_that_git_would_read_as_an_option_is_refused(robot: RobotRepository) -> None:
    with pytest.raises(ValueError):
        robot.fetch(RobotRemote("--upload-pack=touch /tmp/x"), ["+refs/a/b:refs/c/d"], max_bytes=1 << 20)


# --- push -------------------------------------------------------------------------------------------


def test_a_push_lands_and_a_non_fast_forward_is_refused_naming_the_ref(
    robot: RobotRepository, server: Path
) -> None:
    remote = RobotRemote(str(server))
    first = commit_on(robot, "status.json", b"1")
    robot.update_ref("refs/heads/status", first, None, message="m")
    robot.push(remote, ["refs/heads/status:refs/status/amr-1"])
    assert git(server, "rev-parse", "refs/status/amr-1") == first
    unrelated = commit_on(robot, "status.json", b"2")  # no parent: not a fast-forward
    robot.update_ref("refs/heads/status", unrelated, first, message="m")
    with pytest.raises(PushRejected) as caught:
        robot.push(remote, ["refs/heads/status:refs/status/amr-1"])
    assert caught.value.ref == "refs/status/amr-1"
    assert git(server, "rev-parse", "refs/status/amr-1") == first


def test_a_push_a_server_hook_refuses_is_never_success(robot: RobotRepository, server: Path) -> None:
    hook = server / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\necho 'status refs are written by robots in their own namespace' >&2\nexit 1\n"
    )
    hook.chmod(0o755)
    oid = commit_on(robot, "status.json", b"1")
    robot.update_ref("refs/heads/status", oid, None, message="m")
    with pytest.raises(PushRejected) as caught:
        robot.push(RobotRemote(str(server)), ["refs/heads/status:refs/status/amr-1"])
    assert caught.value.ref == "refs/status/amr-1"
    assert (
        subprocess.run(
            ["git", "--git-dir", str(server), "rev-parse", "--verify", "-q", "refs/status/amr-1"],
            capture_output=True,
        ).returncode
        != 0
    )


def test_a_push_to_a_path_with_no_repository_is_a_transport_error(
    robot: RobotRepository, tmp_path: Path
) -> None:
    oid = commit_on(robot, "status.json", b"1")
    robot.update_ref("refs/heads/status", oid, None, message="m")
    with pytest.raises(TransportError, match="no repository"):
        robot.push(RobotRemote(str(tmp_path / "nowhere")), ["refs/heads/status:refs/status/amr-1"])


# --- how ssh is asked to log in -------------------------------------------------------------------


def test_a_local_remote_sets_no_ssh_command_and_an_ssh_remote_never_prompts() -> None:
    assert RobotRemote("/srv/fleet.git").env() == {}
    assert RobotRemote("file:///srv/fleet.git").env() == {}
    command = RobotRemote("git@fleet.example:fleet.git", timeout_s=300).env()["GIT_SSH_COMMAND"]
    assert "BatchMode=yes" in command and "StrictHostKeyChecking=yes" in command
    assert "ConnectTimeout=15" in command  # bounded even when the whole command may take longer
    assert "ConnectTimeout=3" in RobotRemote("ssh://fleet.example/fleet.git", timeout_s=3.5).ssh_command()


# --- what a git killed with the robot leaves --------------------------------------------------------


def killed_holding_the_lock_of(robot: RobotRepository, ref: str) -> Path:
    """A real ``git update-ref --stdin`` in the robot's repository, SIGKILLed once it holds ``ref``'s
    lock (it says ``prepare: ok`` then), as a power cut or the agent's cgroup being killed leaves it."""
    value = robot.ref_target(ref)
    assert value is not None
    holder = subprocess.Popen(
        ["git", "--git-dir", str(robot.path), "update-ref", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(f"start\nupdate {ref} {value} {value}\nprepare\n")
    holder.stdin.flush()
    assert [holder.stdout.readline().strip() for _ in range(2)] == ["start: ok", "prepare: ok"]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    lock = robot.path / f"{ref}.lock"
    assert holder.returncode == -signal.SIGKILL and lock.is_file()
    return lock


@pytest.mark.parametrize("clock", ["ran-on", "set-back"])
@pytest.mark.parametrize("write", ["fetch", "update_ref"])
def test_attack_a_git_killed_holding_a_ref_lock_blocks_the_robots_git_only_until_the_lock_is_stale(
    robot: RobotRepository, server: Path, write: str, clock: str
) -> None:
    """git never removes a lock its killed process left: every later fetch of the robot's desired
    ref (or move of its status ref) failed on it, and the robot stayed where it was for good. A
    young lock may be a live git's and is left (the write fails as before); one older than
    :data:`STALE_LOCK_S`, or newer (the clock set back after a power cut), is removed and the write
    goes through."""
    ref = "refs/remote/desired"
    first = seed(server, {"refs/desired/amr-1": b"one"})["refs/desired/amr-1"]
    spec = ["+refs/desired/amr-1:refs/remote/desired"]
    robot.fetch(RobotRemote(str(server)), spec, max_bytes=1 << 20)
    second = seed(server, {"refs/desired/amr-1": b"two"})["refs/desired/amr-1"]
    if write == "update_ref":  # the report's commit, made in the robot's repository
        second = commit_on(robot, "status.json", b"two", parent=first)
    lock = killed_holding_the_lock_of(robot, ref)

    def again() -> None:
        if write == "fetch":
            robot.fetch(RobotRemote(str(server)), spec, max_bytes=1 << 20)
        else:
            robot.update_ref(ref, second, first, message="m")

    with pytest.raises((TransportError, SetupError, RefConflict)):
        again()  # a lock this young could be a live git's
    assert lock.exists() and robot.ref_target(ref) == first
    shift = 2 * STALE_LOCK_S * (1 if clock == "ran-on" else -1)
    os.utime(lock, (time.time() - shift,) * 2)
    again()
    assert robot.ref_target(ref) == second
    assert not lock.exists()
    git(robot.path, "fsck", "--no-progress")


def test_attack_an_index_pack_killed_mid_fetch_leaves_a_partial_pack_the_next_fetch_removes_once_stale(
    robot: RobotRepository, server: Path
) -> None:
    """A fetch killed with the robot (a power cut) leaves index-pack's ``tmp_pack_*``, as large as
    what had arrived; only a fetch that failed removed such files, so a robot whose fetches went on
    succeeding kept every one. The next fetch removes them once they are older than any live fetch's."""
    made = seed(server, {"refs/desired/amr-1": os.urandom(256 * 1024)})  # incompressible
    pack = subprocess.run(
        ["git", "--git-dir", str(server), "pack-objects", "--revs", "--stdout", "-q"],
        input=f"{made['refs/desired/amr-1']}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout
    pack_dir = robot.path / "objects" / "pack"
    indexer = subprocess.Popen(
        ["git", "--git-dir", str(robot.path), "index-pack", "--stdin", "--fix-thin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert indexer.stdin is not None
    indexer.stdin.write(pack[: len(pack) // 2])  # half of it arrived; the rest never will
    indexer.stdin.flush()
    deadline = time.monotonic() + 60
    while not [p for p in pack_dir.glob("tmp_pack_*") if p.stat().st_size]:
        assert time.monotonic() < deadline and indexer.poll() is None
        time.sleep(0.01)
    indexer.kill()
    indexer.wait(timeout=30)
    left = list(pack_dir.glob("tmp_*"))
    spec = ["+refs/desired/amr-1:refs/remote/d"]
    assert robot.fetch(RobotRemote(str(server)), spec, max_bytes=1 << 20) == ["refs/remote/d"]
    assert all(p.exists() for p in left)  # young: it could be a fetch at work (agent once beside run)
    for path in left:
        os.utime(path, (time.time() - 2 * STALE_AFTER_S,) * 2)
    robot.fetch(RobotRemote(str(server)), spec, max_bytes=1 << 20)
    assert list(pack_dir.glob("tmp_*")) == []
    assert robot.read_blob(made["refs/desired/amr-1"], "bundle.json", 1 << 20) is not None
    git(robot.path, "fsck", "--no-progress")
