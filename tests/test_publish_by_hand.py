"""The controller's publish into a local server holding many refs (controller.reconcile.source.publish).

A push of the state branch alone (an ingest) goes by hand once the server's packed-refs is large
(fleetcd.git.localpush.by_hand_pays): receive-pack would advertise every robot's refs first. The
contract is the real push's: the lease on the state branch holds or nothing moves, a server that
runs a hook (even one added later) or a lock held by someone else gets the real push, and robots'
status pushes racing it keep every value they wrote. The loose refs robots' pushes leave are packed
after either path. A kill -9 halfway through writing the spliced packed-refs leaves every ref old,
and the next push heals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.source import PACK_FROM_LOOSE_REFS, Source, publish
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git import refs
from fleetcd.git.localpush import DIRECT_FROM_PACKED_BYTES, by_hand_pays
from fleetcd.git.objects import commit, update_refs, write_tree
from tests.gitrepos import git
from tests.test_git_local_push import (
    AUTHOR,
    STATE,
    WHEN,
    World,
    as_strings,
    git_refs,
    loose_files,
    namespaced,
)

ROBOTS = 40
# enough robots' status refs packed on the server that its packed-refs passes the by-hand threshold
STATUS_ROBOTS = DIRECT_FROM_PACKED_BYTES // 75 + 50


def update_ref_stdin(git_dir: Path, lines: str) -> None:
    subprocess.run(["git", "update-ref", "--stdin"], cwd=git_dir, input=lines, text=True, check=True)


def status(n: int) -> str:
    return refs.status_ref(f"amr-{n:05d}")


class Fleet(World):
    """The World of test_git_local_push, its first wave published and its server holding every
    robot's status report, packed, as a server that has run for a while does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, robots=ROBOTS)
        self.source = Source(str(self.server), root / "cache")
        publish(self.mirror, self.source, state_base=None, desired=self.desired())
        self.report = str(self.desired()[namespaced(0)])
        lines = "".join(f"create {status(n)} {self.report}\n" for n in range(STATUS_ROBOTS))
        update_ref_stdin(self.server, lines)
        git("pack-refs", "--all", cwd=self.server)
        assert loose_files(self.server) == []

    def new_state(self, version: str) -> pygit2.Oid:
        """A new state commit in the mirror (nothing else moves); returns the base it replaced."""
        base = self.state
        assert base is not None
        tree = write_tree(self.mirror, {"state.json": version.encode()})
        self.state = commit(self.mirror, None, tree, f"state {version}", [base], AUTHOR, WHEN)
        update_refs(self.mirror, {STATE: (base, self.state)})
        return base

    def robots_report(self, robots: range, value: str) -> None:
        """What robots' status pushes leave on the server: a loose ref file each (receive-pack)."""
        lines = "".join(f"update {status(n)} {value}\n" for n in robots)
        update_ref_stdin(self.server, lines)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def server_state(fleet: Fleet) -> str:
    return git("rev-parse", STATE, cwd=fleet.server).strip()


def test_a_state_push_into_a_server_holding_many_refs_goes_by_hand_and_leaves_no_loose_ref(
    fleet: Fleet,
) -> None:
    assert by_hand_pays(fleet.server, 0)
    before = git_refs(fleet.server)
    base = fleet.new_state("2.0")
    publish(fleet.mirror, fleet.source, state_base=base, desired={})
    assert server_state(fleet) == str(fleet.state)
    assert loose_files(fleet.server) == []  # receive-pack would have written refs/heads/fleetcd/state
    assert git_refs(fleet.server) == {**before, STATE: str(fleet.state)}
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=fleet.server) == ""


def test_a_small_server_gets_the_state_push_through_receive_pack(tmp_path: Path) -> None:
    world = World(tmp_path, robots=3)
    source = Source(str(world.server), tmp_path / "cache")
    publish(world.mirror, source, state_base=None, desired={})
    assert not by_hand_pays(world.server, 0)
    assert (world.server / STATE).is_file()  # receive-pack's loose file: the real push ran
    assert git_refs(world.server) == {STATE: str(world.state)}


def test_attack_a_lost_race_for_the_state_branch_by_hand_moves_nothing(fleet: Fleet) -> None:
    base = fleet.new_state("2.0")
    # another controller moved the server's state branch meanwhile
    git("update-ref", STATE, fleet.report, cwd=fleet.server)
    before = git_refs(fleet.server)
    with pytest.raises(PushRejected) as raised:
        publish(fleet.mirror, fleet.source, state_base=base, desired={})
    assert raised.value.ref == STATE
    assert git_refs(fleet.server) == before


def install_hook(server: Path, name: str, body: str) -> Path:
    hook = server / "hooks" / name
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o755)
    return hook


def test_a_hook_added_after_pushes_by_hand_runs_on_the_next_state_push(fleet: Fleet, tmp_path: Path) -> None:
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert loose_files(fleet.server) == []  # by hand so far
    seen = tmp_path / "pre-receive.seen"
    install_hook(fleet.server, "pre-receive", f"cat >> {seen}")
    base = fleet.new_state("3.0")
    publish(fleet.mirror, fleet.source, state_base=base, desired={})
    assert seen.read_text() == f"{base} {fleet.state} {STATE}\n"
    assert server_state(fleet) == str(fleet.state)


def test_attack_a_hook_that_refuses_the_state_push_is_obeyed_not_bypassed(fleet: Fleet) -> None:
    install_hook(fleet.server, "pre-receive", "echo 'frozen by the operator' >&2; exit 1")
    before = git_refs(fleet.server)
    with pytest.raises((PushRejected, TransportError), match="frozen by the operator"):
        publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert git_refs(fleet.server) == before


def test_a_packed_refs_lock_held_by_someone_else_sends_the_state_push_through_receive_pack(
    fleet: Fleet,
) -> None:
    lock = fleet.server / "packed-refs.lock"
    lock.write_bytes(b"")  # git pack-refs at work (or killed: not ours to remove)
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert server_state(fleet) == str(fleet.state)
    assert (fleet.server / STATE).is_file()  # receive-pack wrote it
    assert lock.read_bytes() == b""


def test_robots_loose_status_refs_are_packed_after_a_state_push_by_hand(fleet: Fleet) -> None:
    new_report = str(fleet.desired()[namespaced(1)])
    fleet.robots_report(range(PACK_FROM_LOOSE_REFS), new_report)
    assert len(loose_files(fleet.server)) == PACK_FROM_LOOSE_REFS
    publish(fleet.mirror, fleet.source, state_base=fleet.new_state("2.0"), desired={})
    assert loose_files(fleet.server) == []
    listed = git_refs(fleet.server)
    assert all(listed[status(n)] == new_report for n in range(PACK_FROM_LOOSE_REFS))
    assert all(listed[status(n)] == fleet.report for n in range(PACK_FROM_LOOSE_REFS, STATUS_ROBOTS))


def test_attack_robots_pushing_status_while_the_controller_publishes_by_hand_lose_no_report(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Real ``git push`` of robots' status refs (receive-pack, loose files) racing state pushes by
    hand: every report a robot was told was accepted is on the server afterwards, and so is the
    last state. The push by hand never deletes a loose file of a ref it does not move."""
    robot = tmp_path / "robot.git"
    git("clone", "-q", "--bare", str(fleet.server), str(robot), cwd=tmp_path)
    values = [str(oid) for oid in list(fleet.desired().values())[:6]]
    accepted: dict[str, str] = {}
    stop = threading.Event()

    def robots() -> None:
        n = 0
        while not stop.is_set() or n < 20:
            ref, value = status(n % 50), values[n % len(values)]
            done = subprocess.run(
                ["git", "push", "-q", "--force", str(fleet.server), f"{value}:{ref}"],
                cwd=robot,
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                accepted[ref] = value
            n += 1

    pusher = threading.Thread(target=robots)
    pusher.start()
    try:
        for version in range(8):
            publish(fleet.mirror, fleet.source, state_base=fleet.new_state(f"race {version}"), desired={})
    finally:
        stop.set()
        pusher.join()
    listed = git_refs(fleet.server)
    assert accepted
    assert {ref: listed[ref] for ref in accepted} == accepted
    assert listed[STATE] == str(fleet.state)


def test_attack_a_concurrent_state_push_through_git_and_one_by_hand_never_both_win(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Another controller pushes the state branch with git's own lease while this one pushes by
    hand from the same base, many times over: each time exactly one wins, and the server holds
    the winner's commit."""
    other = tmp_path / "other.git"
    git("clone", "-q", "--bare", str(fleet.server), str(other), cwd=tmp_path)
    theirs = fleet.report  # any commit the server has
    for round_ in range(6):
        base = fleet.new_state(f"ours {round_}")
        server_base = server_state(fleet)
        assert server_base == str(base)
        lease = f"--force-with-lease={STATE}:{server_base}"
        argv = ["git", "push", "-q", lease, str(fleet.server), f"{theirs}:{STATE}"]
        results: dict[str, bool] = {}

        def by_git(argv: list[str] = argv, results: dict[str, bool] = results) -> None:
            results["git"] = subprocess.run(argv, cwd=other, capture_output=True, check=False).returncode == 0

        racer = threading.Thread(target=by_git)
        racer.start()
        try:
            publish(fleet.mirror, fleet.source, state_base=base, desired={})
            results["ours"] = True
        except (PushRejected, TransportError):
            results["ours"] = False
        racer.join()
        assert sorted(results.values()) == [False, True], results
        winner = str(fleet.state) if results["ours"] else theirs
        assert server_state(fleet) == winner
        if not results["ours"]:  # the next round starts again from this round's base
            git("update-ref", STATE, str(base), cwd=fleet.server)
            update_refs(fleet.mirror, {STATE: (fleet.state, base)})
            fleet.state = base


HALFWAY = r"""
import os, signal, sys
import pygit2
from pathlib import Path
from fleetcd.git import localpush
from controller.reconcile.source import Source, publish
real = localpush._write_packed
def halfway(git_dir, chunks):
    chunks = list(chunks)
    def cut():
        for n, chunk in enumerate(chunks):
            yield chunk
            if n == len(chunks) // 2:
                os.kill(os.getpid(), signal.SIGKILL)
    real(git_dir, cut())
localpush._write_packed = halfway
mirror = pygit2.Repository(sys.argv[1])
publish(mirror, Source(sys.argv[2], Path(sys.argv[3])), state_base=pygit2.Oid(hex=sys.argv[4]), desired={})
"""


def test_attack_kill_9_halfway_through_the_spliced_packed_refs_leaves_every_ref_old_and_heals(
    fleet: Fleet, tmp_path: Path
) -> None:
    before = git_refs(fleet.server)
    base = fleet.new_state("2.0")
    script = tmp_path / "halfway.py"
    script.write_text(HALFWAY)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, str(script), fleet.mirror.path, str(fleet.server), str(tmp_path / "c"), str(base)]
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert git_refs(fleet.server) == before
    assert (fleet.server / "packed-refs.lock").exists()  # the killed push's, naming its dead process
    half = fleet.server / "packed-refs.fleetcd-new"  # the new file, cut short: git never reads it
    assert 0 < half.stat().st_size < (fleet.server / "packed-refs").stat().st_size
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=fleet.server) == ""
    publish(fleet.mirror, fleet.source, state_base=base, desired={})
    assert git_refs(fleet.server) == {**before, STATE: str(fleet.state)}
    assert not (fleet.server / "packed-refs.lock").exists()
    assert not (fleet.server / f"{STATE}.lock").exists()
    assert not half.exists()  # the next rewrite went through it


def test_a_wave_by_hand_sends_only_the_refs_that_moved_and_the_server_ends_equal_to_git_push(
    fleet: Fleet, tmp_path: Path
) -> None:
    base = fleet.state
    moved = fleet.wave("2.0", range(0, ROBOTS, 4))
    assert len(moved) < 64 and by_hand_pays(fleet.server, len(moved))
    publish(fleet.mirror, fleet.source, state_base=base, desired=moved)
    assert loose_files(fleet.server) == []
    listed = git_refs(fleet.server)
    assert {ref: listed[ref] for ref in fleet.desired()} == as_strings(fleet.desired())
    assert all(listed[status(n)] == fleet.report for n in range(STATUS_ROBOTS))
