"""Robots' loose status refs folded into the state push's own rewrite of the server's packed-refs.

An ingest at 100,000 robots pushes the state branch by hand (one splice of an 18 MB packed-refs)
and then packed the 1,000 loose status refs robots' pushes had left with ``git pack-refs --all``,
which wrote those 18 MB a second time. Now the push by hand packs them in its own write at the
values their files hold (no ref changes by that), then deletes each file under its own
``<ref>.lock``, and only while it still holds the packed value, as git's pack-refs prunes. These
tests race real robots' ``git push`` (receive-pack) against each instant of that, hold a robot's
ref lock, kill the controller with SIGKILL while it holds one, and check what git itself reads.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.reconcile.source import PACK_FROM_LOOSE_REFS, publish
from fleetcd.git import localpush
from fleetcd.git.localpush import fold_loose_refs, loose_refs
from tests.gitrepos import git
from tests.test_git_local_push import git_refs, loose_files, namespaced
from tests.test_publish_by_hand import STATE, STATUS_ROBOTS, Fleet, server_state, status

FOLDED = range(PACK_FROM_LOOSE_REFS + 4)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def new_report(fleet: Fleet, n: int = 1) -> str:
    return str(fleet.desired()[namespaced(n)])


def robot_clone(fleet: Fleet, tmp_path: Path) -> Path:
    robot = tmp_path / "robot.git"
    git("clone", "-q", "--bare", str(fleet.server), str(robot), cwd=tmp_path)
    return robot


def robot_push(robot: Path, server: Path, value: str, ref: str) -> subprocess.CompletedProcess[bytes]:
    """A robot's status push through receive-pack (a loose file on the server)."""
    argv = ["git", "push", "-q", "--force", str(server), f"{value}:{ref}"]
    return subprocess.run(argv, cwd=robot, capture_output=True, check=False)


def test_loose_status_refs_are_packed_in_the_state_push_and_git_would_write_the_same_file(
    fleet: Fleet,
) -> None:
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    before = git_refs(fleet.server)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert loose_files(fleet.server) == []
    assert git_refs(fleet.server) == {**before, STATE: str(fleet.state)}
    # no robot's directory is left behind for every later listing to read
    assert not (fleet.server / "refs" / "fleetcd" / "status").exists() or not any(
        (fleet.server / "refs" / "fleetcd" / "status").iterdir()
    )
    spliced = (fleet.server / "packed-refs").read_bytes()
    git("pack-refs", "--all", cwd=fleet.server)
    assert (fleet.server / "packed-refs").read_bytes() == spliced  # byte for byte git's own file
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=fleet.server) == ""


def test_fewer_loose_refs_than_the_threshold_stay_loose_until_more_come(fleet: Fleet) -> None:
    report = new_report(fleet)
    fleet.robots_report(range(3), report)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert len(loose_files(fleet.server)) == 3
    fleet.robots_report(FOLDED, report)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("3.0"), desired={})
    assert loose_files(fleet.server) == []
    assert all(git_refs(fleet.server)[status(n)] == report for n in FOLDED)


RACE_AFTER_WRITE = r"""
import subprocess, sys
import pygit2
from pathlib import Path
from fleetcd.git import localpush
from controller.reconcile.source import Source, publish
mirror_path, server, cache, base, robot, value, ref = sys.argv[1:8]
real = localpush._write_packed
def then_a_robot_pushes(git_dir, chunks):
    real(git_dir, chunks)  # the loose refs are packed; none is pruned yet
    argv = ["git", "push", "-q", "--force", server, f"{value}:{ref}"]
    subprocess.run(argv, cwd=robot, check=True, capture_output=True)
localpush._write_packed = then_a_robot_pushes
mirror = pygit2.Repository(mirror_path)
publish(mirror, Source(server, Path(cache)), state_base=pygit2.Oid(hex=base), desired={})
"""


def run_script(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    script = tmp_path / "script.py"
    script.write_text(body)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, check=False)


def test_attack_a_robot_status_push_landing_between_the_fold_and_the_prune_keeps_its_report(
    fleet: Fleet, tmp_path: Path
) -> None:
    """receive-pack moves a ref the fold just packed at its older value: the prune finds the file
    changed and leaves it, so the robot's newer report is what git reads."""
    robot = robot_clone(fleet, tmp_path)
    older, newer = new_report(fleet, 1), new_report(fleet, 2)
    fleet.robots_report(FOLDED, older)
    base = fleet.new_state("2.0")
    args = [fleet.mirror.path, str(fleet.server), str(tmp_path / "c"), str(base), str(robot)]
    args += [newer, status(7)]
    done = run_script(tmp_path, RACE_AFTER_WRITE, *args)
    assert done.returncode == 0, done.stderr
    listed = git_refs(fleet.server)
    assert listed[status(7)] == newer
    assert (fleet.server / status(7)).read_text().strip() == newer  # still loose, shadowing the pack
    assert all(listed[status(n)] == older for n in FOLDED if n != 7)
    assert server_state(fleet) == str(fleet.state)
    assert [p.relative_to(fleet.server).as_posix() for p in loose_files(fleet.server)] == [status(7)]


def test_attack_a_robot_holding_its_status_ref_lock_keeps_its_loose_ref_and_its_lock(fleet: Fleet) -> None:
    """receive-pack holds ``<ref>.lock`` (it is writing that robot's report): the fold packs the ref
    but does not delete its file nor touch the lock; the next fold, the lock gone, prunes it."""
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    lock = fleet.server / f"{status(5)}.lock"
    lock.write_bytes(b"")  # git's own lock: not ours to remove, whoever left it
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert lock.read_bytes() == b""
    assert (fleet.server / status(5)).read_text().strip() == report
    assert git_refs(fleet.server)[status(5)] == report
    lock.unlink()
    assert fold_loose_refs(fleet.server, loose_refs(fleet.server)) == 1
    assert loose_files(fleet.server) == []
    assert git_refs(fleet.server)[status(5)] == report


def test_a_disk_refusing_the_prune_still_publishes_and_the_refs_stay_loose_at_their_values(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prune is tidying: with its lock mark refused (the disk full when the prune writes it),
    the state push still succeeds, every report keeps its
    value (packed, and loose holding the same), and a later fold prunes them."""
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    made = localpush._own_mark
    asked: list[str] = []

    def full_disk_for_the_prune(git_dir: Path, purpose: str) -> Path:
        asked.append(purpose)
        if purpose == "ref-locks":
            raise OSError(errno.ENOSPC, "No space left on device")
        return made(git_dir, purpose)

    monkeypatch.setattr(localpush, "_own_mark", full_disk_for_the_prune)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    monkeypatch.undo()
    assert "ref-locks" in asked  # the prune asked for its mark, and was refused
    assert server_state(fleet) == str(fleet.state)
    assert len(loose_files(fleet.server)) == len(FOLDED)
    assert all(git_refs(fleet.server)[status(n)] == report for n in FOLDED)
    assert list((fleet.server / "refs").rglob("*.lock")) == []
    assert fold_loose_refs(fleet.server, loose_refs(fleet.server)) == len(FOLDED)
    assert loose_files(fleet.server) == []
    assert all(git_refs(fleet.server)[status(n)] == report for n in FOLDED)


KILLED_WHILE_PRUNING = r"""
import os, signal, sys
import pygit2
from pathlib import Path
from fleetcd.git import localpush
from controller.reconcile.source import Source, publish
real_link = os.link
count = [0]
def link_then_die(src, dst):
    real_link(src, dst)
    dst = str(dst)
    if dst.endswith(".lock") and "/refs/fleetcd/status/" in dst:
        count[0] += 1
        if count[0] == int(sys.argv[5]):
            os.kill(os.getpid(), signal.SIGKILL)  # holding that robot's ref lock
os.link = link_then_die
mirror = pygit2.Repository(sys.argv[1])
publish(mirror, Source(sys.argv[2], Path(sys.argv[3])), state_base=pygit2.Oid(hex=sys.argv[4]), desired={})
"""


def test_attack_kill_9_holding_a_robots_ref_lock_changes_no_ref_and_the_next_publish_frees_the_robot(
    fleet: Fleet, tmp_path: Path
) -> None:
    robot = robot_clone(fleet, tmp_path)
    report, later = new_report(fleet, 1), new_report(fleet, 3)
    fleet.robots_report(FOLDED, report)
    before = git_refs(fleet.server)
    base = fleet.new_state("2.0")
    args = [fleet.mirror.path, str(fleet.server), str(tmp_path / "c"), str(base), "40"]
    done = run_script(tmp_path, KILLED_WHILE_PRUNING, *args)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert git_refs(fleet.server) == {**before, STATE: str(fleet.state)}  # the push was done
    held = [p for p in (fleet.server / "refs").rglob("*.lock")]
    assert len(held) == 1  # the dead controller's lock on one robot's ref
    held_ref = held[0].relative_to(fleet.server).as_posix().removesuffix(".lock")
    assert robot_push(robot, fleet.server, later, held_ref).returncode != 0  # that robot is locked out
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("3.0"), desired={})
    assert list((fleet.server / "refs").rglob("*.lock")) == []  # removed though too few to fold
    assert [p for p in fleet.server.iterdir() if p.name.endswith(".fleetcd")] == []
    assert robot_push(robot, fleet.server, later, held_ref).returncode == 0
    assert git_refs(fleet.server)[held_ref] == later
    assert all(git_refs(fleet.server)[status(n)] == report for n in FOLDED if status(n) != held_ref)


@pytest.mark.parametrize("at", [1, PACK_FROM_LOOSE_REFS // 2, len(FOLDED)])
def test_attack_kill_9_at_any_prune_leaves_every_robots_report(fleet: Fleet, tmp_path: Path, at: int) -> None:
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    expected = {**git_refs(fleet.server)}
    base = fleet.new_state("2.0")
    args = [fleet.mirror.path, str(fleet.server), str(tmp_path / "c"), str(base), str(at)]
    done = run_script(tmp_path, KILLED_WHILE_PRUNING, *args)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert git_refs(fleet.server) == {**expected, STATE: str(fleet.state)}
    assert len(ref_files(fleet.server)) == len(FOLDED) - at + 1  # those not pruned yet, one held
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("3.0"), desired={})
    assert git_refs(fleet.server) == {**expected, STATE: str(fleet.state)}
    assert list((fleet.server / "refs").rglob("*.lock")) == []
    later = new_report(fleet, 4)
    fleet.robots_report(FOLDED, later)  # enough loose again: the next push folds them all
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("4.0"), desired={})
    assert loose_files(fleet.server) == []
    reported = {status(n): later for n in FOLDED}
    assert git_refs(fleet.server) == {**expected, **reported, STATE: str(fleet.state)}


def ref_files(git_dir: Path) -> list[Path]:
    return [p for p in loose_files(git_dir) if not p.name.endswith(".lock")]


def test_attack_a_robot_pointing_its_status_ref_at_an_annotated_tag_is_left_loose_and_peels(
    fleet: Fleet,
) -> None:
    """packed-refs says 'fully-peeled': a tag packed without its ^peeled line would make git say the
    ref peels to nothing. Such a ref stays loose; git peels it as before."""
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    made = subprocess.run(
        ["git", "mktag"], cwd=fleet.server, input=tag_text(report), text=True, capture_output=True, check=True
    )
    tag = made.stdout.strip()
    git("update-ref", status(9), tag, cwd=fleet.server)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert [p.relative_to(fleet.server).as_posix() for p in loose_files(fleet.server)] == [status(9)]
    peeled = git("for-each-ref", "--format=%(objectname) %(*objectname)", status(9), cwd=fleet.server)
    assert peeled.split() == [tag, report]


def tag_text(target: str) -> str:
    return f"object {target}\ntype commit\ntag report\ntagger Robot <r@fleet.test> 1700000000 +0000\n\nmine\n"


def test_attack_symbolic_and_garbled_loose_refs_are_never_packed_nor_deleted(fleet: Fleet) -> None:
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    symbolic = fleet.server / status(11)
    symbolic.write_text(f"ref: {status(12)}\n")
    garbled = fleet.server / status(13)
    garbled.write_text("not an object id\n")
    missing = fleet.server / status(14)
    missing.write_text("1" * 40 + "\n")  # an object the server lacks
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    left = sorted(p.relative_to(fleet.server).as_posix() for p in loose_files(fleet.server))
    assert left == sorted([status(11), status(13), status(14)])
    assert symbolic.read_text() == f"ref: {status(12)}\n"
    assert garbled.read_text() == "not an object id\n"
    packed = (fleet.server / "packed-refs").read_bytes()  # each still at the value packed before
    assert all(f"{fleet.report} {status(n)}\n".encode() in packed for n in (11, 13, 14))


def test_a_replayed_publish_moving_nothing_still_folds_the_loose_refs(fleet: Fleet) -> None:
    base = fleet.new_state("2.0")
    publish(fleet.mirror, fleet.source, state_base=base, desired={})
    report = new_report(fleet)
    fleet.robots_report(FOLDED, report)
    # a controller killed after its push reruns it: the server already holds the state commit
    moved = localpush.push_by_hand(
        fleet.mirror,
        fleet.server,
        {STATE: fleet.state},
        leases={STATE: fleet.state},
        timeout_s=60,
        fold=loose_refs(fleet.server),
    )
    assert moved == 0
    assert loose_files(fleet.server) == []
    assert all(git_refs(fleet.server)[status(n)] == report for n in FOLDED)
    assert all(git_refs(fleet.server)[status(n)] == fleet.report for n in range(len(FOLDED), STATUS_ROBOTS))


def test_a_state_branch_left_loose_is_moved_not_folded_back_to_its_old_value(fleet: Fleet) -> None:
    """The state branch written loose by receive-pack (a push while a lock was held) is among the
    loose refs; the push moves it, and the fold must not pack its old value over the new one."""
    report = new_report(fleet)
    loose_state = fleet.server / STATE
    loose_state.parent.mkdir(parents=True, exist_ok=True)
    loose_state.write_text(f"{fleet.state}\n")  # loose now, the same value as packed
    fleet.robots_report(FOLDED, report)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert server_state(fleet) == str(fleet.state)
    assert loose_files(fleet.server) == []
    packed = (fleet.server / "packed-refs").read_bytes()
    assert packed.count(f" {STATE}\n".encode()) == 1
    assert f"{fleet.state} {STATE}\n".encode() in packed
