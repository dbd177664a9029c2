"""A push of many refs into a local server done by hand (fleetcd.git.localpush), as receive-pack would.

The contract is the wildcard ``git push --atomic --force-with-lease`` it replaces: every ref moves or
none does, a lease that no longer holds refuses the whole push, git itself reads back every object
and ref afterwards, and a server that would run a hook or enforce a policy is pushed to for real.
On top: no loose ref file is left behind (that was the point), a kill -9 at any instant leaves all
refs old or all new, and a lock the killed push left is healed by the next one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git import refs
from fleetcd.git.localpush import DIRECT_FROM_REFS, LocalPushBusy, loose_refs, push_by_hand, refused
from fleetcd.git.objects import Identity, commit, update_refs, write_tree
from tests.gitrepos import git
from tests.test_git_packed_splice import reference_rewrite

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
MANY = DIRECT_FROM_REFS + 36
STATE = refs.STATE_BRANCH


def namespaced(n: int) -> str:
    device = f"amr-{n:05d}"
    return f"refs/namespaces/{device}/{refs.desired_ref(device)}"


def git_refs(git_dir: Path) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=git_dir)
    return {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}


def loose_files(git_dir: Path) -> list[Path]:
    return [p for p in (git_dir / "refs").rglob("*") if p.is_file()]


class World:
    """A mirror holding one bundle commit per robot plus a state commit, and an empty bare server."""

    def __init__(self, root: Path, robots: int = MANY, version: str = "1.0") -> None:
        self.mirror = pygit2.init_repository(str(root / "mirror.git"), bare=True)
        self.server = root / "server.git"
        git("init", "-q", "--bare", str(self.server), cwd=root)
        self.robots = robots
        self.state: pygit2.Oid | None = None
        self.wave(version)

    def wave(self, version: str, robots: range | None = None) -> dict[str, pygit2.Oid]:
        """New bundles for ``robots`` (default: all) and a new state commit, in the mirror only."""
        moved = {}
        for n in robots if robots is not None else range(self.robots):
            tree = write_tree(
                self.mirror, {"bundle.json": f'{{"robot": {n}, "version": "{version}"}}'.encode()}
            )
            moved[namespaced(n)] = commit(self.mirror, None, tree, f"robot {n} {version}", [], AUTHOR, WHEN)
        tree = write_tree(self.mirror, {"state.json": version.encode()})
        parents = [self.state] if self.state is not None else []
        self.state = commit(self.mirror, None, tree, f"state {version}", parents, AUTHOR, WHEN)
        current = {ref: self.mirror.references[ref].target for ref in moved if ref in self.mirror.references}
        updates = {ref: (current.get(ref), oid) for ref, oid in moved.items()}
        state_old = self.mirror.references[STATE].target if STATE in self.mirror.references else None
        updates[STATE] = (state_old, self.state)  # type: ignore[assignment]
        update_refs(self.mirror, updates)  # type: ignore[arg-type]
        return moved

    def desired(self) -> dict[str, pygit2.Oid]:
        wanted = {
            ref: self.mirror.references[ref].target for ref in (namespaced(n) for n in range(self.robots))
        }
        assert self.state is not None
        return {**wanted, STATE: self.state}  # type: ignore[dict-item]

    def push(self, base: pygit2.Oid | None) -> int:
        return push_by_hand(self.mirror, self.server, self.desired(), leases={STATE: base}, timeout_s=60)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def as_strings(found: dict[str, pygit2.Oid]) -> dict[str, str]:
    return {ref: str(oid) for ref, oid in found.items()}


def test_a_first_push_by_hand_leaves_what_git_push_would_and_no_loose_ref(
    world: World, tmp_path: Path
) -> None:
    assert refused(world.server) is None
    assert world.push(None) == MANY + 1
    assert git_refs(world.server) == as_strings(world.desired())
    assert loose_files(world.server) == []
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""
    # the same as a real atomic wildcard push into another server
    other = tmp_path / "pushed.git"
    git("init", "-q", "--bare", str(other), cwd=tmp_path)
    git(
        "push",
        "-q",
        "--atomic",
        str(other),
        "+refs/namespaces/*:refs/namespaces/*",
        f"{STATE}:{STATE}",
        cwd=Path(world.mirror.path),
    )
    assert git_refs(other) == git_refs(world.server)
    assert not list((world.server / "objects" / "pack").glob("*.keep"))  # released once the refs name it


def test_a_second_wave_moves_only_its_refs_and_sends_only_new_objects(world: World) -> None:
    world.push(None)
    packs_before = set((world.server / "objects" / "pack").glob("*.pack"))
    base = world.state
    moved = world.wave("2.0", range(0, MANY, 3))
    assert world.push(base) == len(moved) + 1
    assert git_refs(world.server) == as_strings(world.desired())
    new_packs = set((world.server / "objects" / "pack").glob("*.pack")) - packs_before
    assert len(new_packs) == 1
    listed = git("verify-pack", "-v", str(new_packs.pop().with_suffix(".idx")), cwd=world.server)
    objects = [
        line for line in listed.splitlines() if line.split(" ")[1:2] in (["commit"], ["tree"], ["blob"])
    ]
    # each moved robot: commit, tree, blob; plus the state commit, tree and blob; nothing already there
    assert len(objects) == 3 * len(moved) + 3


def test_a_replayed_push_by_hand_moves_nothing(world: World) -> None:
    world.push(None)
    packed = (world.server / "packed-refs").read_bytes()
    assert world.push(world.state) == 0
    assert (world.server / "packed-refs").read_bytes() == packed


def test_attack_a_lost_race_for_the_state_branch_moves_no_ref(world: World) -> None:
    world.push(None)
    before = git_refs(world.server)
    base = world.state
    world.wave("2.0")
    # someone else moved the server's state branch meanwhile (another controller, by receive-pack)
    git("update-ref", STATE, before[namespaced(0)], cwd=world.server)
    moved_by_them = git_refs(world.server)
    with pytest.raises(PushRejected, match="no longer the value this push expected") as raised:
        world.push(base)
    assert raised.value.ref == STATE
    assert git_refs(world.server) == moved_by_them  # not one robot's ref moved
    assert not (world.server / "packed-refs.lock").exists()
    assert not (world.server / f"{STATE}.lock").exists()


def test_a_state_branch_that_must_not_exist_yet_is_refused_when_it_does(world: World) -> None:
    world.push(None)
    world.wave("2.0")
    with pytest.raises(PushRejected):
        world.push(None)


def test_loose_refs_on_the_server_are_folded_and_moved_with_the_rest(world: World) -> None:
    world.push(None)
    # receive-pack (a small push, a robot's status) leaves loose files, the state branch among them
    earlier = world.desired()[namespaced(2)]
    git("update-ref", STATE, str(earlier), cwd=world.server)
    git("update-ref", namespaced(1), str(earlier), cwd=world.server)
    status = f"{refs.STATUS_PREFIX}amr-00001/{refs.STATUS_LEAF}"
    git("update-ref", status, str(earlier), cwd=world.server)
    assert (world.server / STATE).is_file() and (world.server / namespaced(1)).is_file()
    world.wave("2.0")
    assert world.push(earlier) == MANY + 1
    listed = git_refs(world.server)
    assert listed.pop(status) == str(earlier)  # a ref the push does not name keeps its value
    assert listed == as_strings(world.desired())
    assert not (world.server / STATE).exists() and not (world.server / namespaced(1)).exists()
    assert (world.server / status).is_file()  # and stays as git wrote it


def test_a_robots_status_ref_the_push_does_not_name_keeps_its_value(world: World) -> None:
    world.push(None)
    status = f"{refs.STATUS_PREFIX}amr-00007/{refs.STATUS_LEAF}"
    target = str(world.desired()[namespaced(7)])
    git("update-ref", status, target, cwd=world.server)
    git("pack-refs", "--all", cwd=world.server)
    base = world.state
    world.wave("2.0")
    world.push(base)
    assert git_refs(world.server)[status] == target


@pytest.mark.parametrize("hook", ["pre-receive", "update", "post-receive", "reference-transaction"])
def test_a_server_that_runs_a_hook_is_refused_by_name(world: World, hook: str) -> None:
    path = world.server / "hooks" / hook
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    assert refused(world.server) == f"it runs a {hook} hook"
    path.chmod(0o644)  # not executable: git would not run it either
    assert refused(world.server) is None


def test_hooks_found_through_core_hookspath_refuse_too(world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "shared-hooks"
    hooks.mkdir()
    (hooks / "update").write_text("#!/bin/sh\nexit 1\n")
    (hooks / "update").chmod(0o755)
    git("config", "core.hooksPath", str(hooks), cwd=world.server)
    assert refused(world.server) == "it runs a update hook"


@pytest.mark.parametrize(
    "key", ["receive.denyNonFastForwards", "receive.fsckObjects", "transfer.fsckObjects"]
)
def test_a_server_policy_refuses_the_push_by_hand(world: World, key: str) -> None:
    git("config", key, "true", cwd=world.server)
    assert refused(world.server) == f"{key.lower()} is set"


def test_a_lock_held_by_git_is_busy_and_changes_nothing(world: World) -> None:
    world.push(None)
    before = (world.server / "packed-refs").read_bytes()
    base = world.state
    world.wave("2.0")
    (world.server / "packed-refs.lock").write_bytes(b"")  # git pack-refs at work, or killed
    with pytest.raises(LocalPushBusy):
        world.push(base)
    assert (world.server / "packed-refs").read_bytes() == before
    assert (world.server / "packed-refs.lock").exists()  # not ours to remove
    assert not (world.server / f"{STATE}.lock").exists()


def test_a_lock_left_by_a_killed_push_by_hand_is_healed(world: World) -> None:
    world.push(None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    mark = b"fleetcd-localpush %s %d\n" % (socket.gethostname().encode(), int(dead.stdout))
    (world.server / "packed-refs.lock").write_bytes(mark)
    base = world.state
    world.wave("2.0")
    assert world.push(base) == MANY + 1
    assert not (world.server / "packed-refs.lock").exists()


KILLER = r"""
import sys
import pygit2
from pathlib import Path
from fleetcd.git.localpush import push_by_hand
mirror = pygit2.Repository(sys.argv[1])
server = Path(sys.argv[2])
state = sys.argv[3]
base = pygit2.Oid(hex=sys.argv[4]) if sys.argv[4] != "-" else None
names = [line for line in Path(sys.argv[5]).read_text().splitlines() if line]
refs = {name: mirror.references[name].target for name in names}
print("ready", flush=True)
push_by_hand(mirror, server, refs, leases={state: base}, timeout_s=60)
print("done", flush=True)
"""


def test_attack_kill_9_at_any_instant_leaves_all_refs_old_or_all_new_and_the_next_push_heals(
    world: World, tmp_path: Path
) -> None:
    world.push(None)
    old = git_refs(world.server)
    base = world.state
    world.wave("2.0")
    new = as_strings(world.desired())
    names = tmp_path / "names.txt"
    names.write_text("\n".join(new))
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, str(script), world.mirror.path, str(world.server), STATE, str(base), str(names)]
    outcomes = set()
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        listed = git_refs(world.server)
        moved = {ref: oid for ref, oid in listed.items() if ref in new}
        assert moved in (old, new), f"a kill after {delay} s left a mix of old and new refs"
        outcomes.add("new" if moved == new else "old")
        if moved == new:
            break
    # the next push heals whatever the kill left (its locks included) and ends with every new value
    current = git_refs(world.server)[STATE]
    assert push_by_hand(
        world.mirror, world.server, world.desired(), leases={STATE: pygit2.Oid(hex=current)}, timeout_s=60
    ) in (0, MANY + 1)
    assert git_refs(world.server) == new
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""
    # what the kills left for themselves is gone too (temporary packs are housekeeping's)
    assert [name for name in fleetcd_files(world.server) if not name.startswith("objects/")] == []
    assert outcomes


def test_a_server_whose_pack_directory_cannot_take_a_pack_fails_loudly_and_moves_no_ref(world: World) -> None:
    """index-pack cannot store the pack (a file where the server's pack directory belongs, which root
    cannot write through either): a TransportError saying so, and not one ref moved (the refs go only
    after the objects they name are on the server's disk)."""
    world.push(None)
    before = git_refs(world.server)
    base = world.state
    world.wave("2.0")
    packs = world.server / "objects" / "pack"
    aside = packs.with_name("pack.aside")
    packs.rename(aside)
    packs.write_bytes(b"not a directory")
    try:
        with pytest.raises(TransportError, match="sending objects to"):
            world.push(base)
    finally:
        packs.unlink()
        aside.rename(packs)
    assert git_refs(world.server) == before


def test_an_object_the_mirror_lacks_fails_the_push_and_moves_no_ref(world: World, tmp_path: Path) -> None:
    """A ref naming an object the mirror does not have (a damaged cache) is a TransportError from
    pack-objects, never a server ref at a missing object."""
    world.push(None)
    before = git_refs(world.server)
    ghost = pygit2.Oid(hex="1" * 40)
    refs_now = {**world.desired(), namespaced(0): ghost}
    with pytest.raises(TransportError):
        push_by_hand(world.mirror, world.server, refs_now, leases={STATE: world.state}, timeout_s=60)
    assert git_refs(world.server) == before
    assert not (world.server / "packed-refs.lock").exists()


def test_a_symbolic_ref_where_a_robots_ref_goes_is_refused_not_overwritten(world: World) -> None:
    world.push(None)
    base = world.state
    world.wave("2.0")
    (world.server / namespaced(5)).parent.mkdir(parents=True, exist_ok=True)
    (world.server / namespaced(5)).write_text(f"ref: {STATE}\n")
    before = (world.server / "packed-refs").read_bytes()
    with pytest.raises(TransportError, match="symbolic ref"):
        world.push(base)
    assert (world.server / "packed-refs").read_bytes() == before
    assert (world.server / namespaced(5)).read_text() == f"ref: {STATE}\n"


def test_a_server_with_a_work_tree_gets_its_refs_in_its_git_directory(tmp_path: Path) -> None:
    """A push URL may name a repository with a work tree (the embedded demo's layout allows it): the
    refs land in its .git, and git there reads every one."""
    world = World(tmp_path)
    work = tmp_path / "work"
    git("init", "-q", str(work), cwd=tmp_path)
    refused_why = refused(work / ".git")
    assert refused_why is None
    assert (
        push_by_hand(world.mirror, work / ".git", world.desired(), leases={STATE: None}, timeout_s=60)
        == MANY + 1
    )
    assert git_refs(work / ".git") == as_strings(world.desired())


def test_a_pack_sent_by_hand_holds_no_object_twice_across_waves(world: World) -> None:
    """Objects the server has through the old values of the moved refs are not sent again: after
    three waves, git counts each object once and finds nothing missing."""
    world.push(None)
    for version in ("2.0", "3.0"):
        base = world.state
        world.wave(version, range(0, MANY, 2))
        world.push(base)
    found = git("count-objects", "-v", cwd=world.server)
    assert "count: 0" in found  # nothing loose: every object came in a pack
    listed = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=world.server).split()
    assert len(listed) == len(set(listed))
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""


LOCK_KILLER = r"""
import os, signal, sys
from pathlib import Path
from fleetcd.git import localpush
instant = sys.argv[3]
real_link, real_write = os.link, os.write
def link(src, dst, *args, **kwargs):
    if instant == "before-link":
        os.kill(os.getpid(), signal.SIGKILL)
    real_link(src, dst, *args, **kwargs)
    if instant == "after-link":
        os.kill(os.getpid(), signal.SIGKILL)
def write(fd, data):
    if instant == "writing-the-mark":  # the lock's own file made, its mark not yet in it
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(fd, data)
os.link, os.write = link, write
with localpush._lock(Path(sys.argv[1]), sys.argv[2]):
    pass
"""


def fleetcd_files(git_dir: Path) -> list[str]:
    """Every file of ``git_dir`` this module made for itself (marks, locks' own files)."""
    return sorted(p.relative_to(git_dir).as_posix() for p in git_dir.rglob("*.fleetcd"))


@pytest.mark.parametrize("lock", ["packed-refs.lock", f"{STATE}.lock"])
@pytest.mark.parametrize("instant", ["writing-the-mark", "before-link", "after-link"])
def test_attack_kill_9_while_taking_a_lock_never_leaves_one_that_blocks_the_next_push(
    world: World, tmp_path: Path, instant: str, lock: str
) -> None:
    """The lock is created already naming its holder (a hard link of a file holding the mark): a
    kill just before leaves no lock, a kill just after leaves one naming a dead process, which the
    next push removes. An empty lock (git's own, at work) would block it for good. The file the
    lock is linked from lives outside ``refs/``: a kill while writing it once left an empty file
    beside the state branch's lock, which git reads as a broken ref (CI, 2026-12-07)."""
    world.push(None)
    base = world.state
    world.wave("2.0")
    script = tmp_path / "lock_killer.py"
    script.write_text(LOCK_KILLER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, str(script), str(world.server), lock, instant]
    done = subprocess.run(argv, env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    assert (world.server / lock).exists() is (instant == "after-link")
    assert fleetcd_files(world.server)  # the killed process's own file, left where git does not look
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""
    assert world.push(base) == MANY + 1
    assert git_refs(world.server) == as_strings(world.desired())
    assert not (world.server / lock).exists()
    assert fleetcd_files(world.server) == []


@pytest.mark.parametrize("content", ["empty", "half", "whole"])
def test_an_earlier_versions_lock_file_left_under_refs_is_removed_by_the_next_push(
    world: World, content: str
) -> None:
    """Earlier versions wrote a lock's own file beside the lock (``<ref>.lock.<pid>.fleetcd``): killed
    while it was written, it stays as a file git reads as a ref that points nowhere, failing ``git
    fsck``. The next push's look at the loose refs removes it, whole or cut short, once its process
    is gone."""
    world.push(None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    mark = b"fleetcd-localpush %s %d\n" % (socket.gethostname().encode(), pid)
    left = world.server / f"{STATE}.lock.{pid}.fleetcd"
    left.write_bytes({"empty": b"", "half": mark[:20], "whole": mark}[content])
    with pytest.raises(AssertionError, match="fleetcd"):
        git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server)
    assert loose_refs(world.server) == []
    assert not left.exists()
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""


def test_attack_a_ref_named_like_a_lock_file_is_a_ref_and_stays(world: World) -> None:
    """A robot can push a ref of any name: one named as an earlier version's lock file, holding an
    object id, is a ref (listed, kept), whatever process its name seems to name."""
    world.push(None)
    assert world.state is not None
    name = f"refs/heads/robot.lock.{2**22 + 17}.fleetcd"
    (world.server / name).write_text(f"{world.state}\n")
    assert loose_refs(world.server) == [name]
    assert git_refs(world.server)[name] == str(world.state)


def test_the_spliced_packed_refs_is_the_whole_rewrite_with_tags_and_loose_only_refs(world: World) -> None:
    """The server holds an annotated tag (a peeled line), refs packed and refs that are only loose
    files (never packed): after the push by hand its packed-refs is byte for byte what rewriting
    the whole file wrote (tests/test_git_packed_splice.py's reference), with every moved ref's line."""
    world.push(None)
    some = str(world.desired()[namespaced(3)])
    git("tag", "-a", "-m", "a release", "v1", some, cwd=world.server)
    git("pack-refs", "--all", cwd=world.server)
    base = world.state
    moved = world.wave("2.0", range(0, MANY, 2))
    for n in (1, 2, 5):  # receive-pack left these loose, and 1 and 5 were never packed
        if n != 2:
            git("update-ref", "-d", namespaced(n), cwd=world.server)
        git("update-ref", namespaced(n), some, cwd=world.server)
    assert (world.server / namespaced(1)).is_file()
    before = (world.server / "packed-refs").read_bytes()
    assert b"\n^" in before
    assert world.push(base) == len(moved) + 3  # the moved robots, 1 and 5 (not the mirror's), state
    lines = {ref.encode(): f"{oid} {ref}\n".encode() for ref, oid in world.desired().items()}
    assert (world.server / "packed-refs").read_bytes() == reference_rewrite(before, lines)
    assert loose_files(world.server) == []
    assert git("rev-parse", "v1^{}", cwd=world.server).strip() == some


NEXT_PUSH = r"""
import sys
from pathlib import Path
import pygit2
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.refs import STATE_BRANCH
mirror = pygit2.Repository(sys.argv[1])
names = [line for line in Path(sys.argv[3]).read_text().splitlines() if line]
refs = {name: mirror.references[name].target for name in names}
base = pygit2.Oid(hex=sys.argv[4])
print(push_by_hand(mirror, Path(sys.argv[2]), refs, leases={STATE_BRANCH: base}, timeout_s=60))
"""


def as_pid_2(argv: list[str]) -> list[str]:
    """``argv`` as the second process of a new pid namespace (the first, a shell, waits for it): pid
    2 every time, as a service restarted in a container, or at the same point of every boot, gets
    its killed predecessor's pid."""
    return ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", '"$@"; exit $?', "sh", *argv]


def pid_namespaces() -> bool:
    done = subprocess.run(as_pid_2(["true"]), capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("lock", ["packed-refs.lock", f"{STATE}.lock"])
def test_attack_a_push_killed_holding_a_lock_and_restarted_with_the_same_pid_removes_it(
    world: World, tmp_path: Path, lock: str
) -> None:
    """The lock names a process that runs: the new push itself, started after the lock was written.
    It took the lock for its own and refused it for good (a busy lock, every push through
    receive-pack, which the state branch's lock blocks too). A process that started after a lock
    naming its pid was written did not write it."""
    if not pid_namespaces():
        pytest.skip("unshare --pid needs root (or user namespaces) here")
    world.push(None)
    base = world.state
    world.wave("2.0")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killer = tmp_path / "lock_killer.py"
    killer.write_text(LOCK_KILLER)
    argv = [sys.executable, str(killer), str(world.server), lock, "after-link"]
    done = subprocess.run(as_pid_2(argv), env=env, capture_output=True, check=False)
    assert done.returncode == 128 + signal.SIGKILL, done.stderr
    assert (world.server / lock).read_bytes().split()[2] == b"2"
    for left in (world.server / lock, *world.server.glob("*.fleetcd")):  # restarted a minute later
        os.utime(left, (time.time() - 60,) * 2)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(world.desired()))
    script = tmp_path / "next_push.py"
    script.write_text(NEXT_PUSH)
    argv = [sys.executable, str(script), world.mirror.path, str(world.server), str(names), str(base)]
    done = subprocess.run(as_pid_2(argv), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(MANY + 1)
    assert git_refs(world.server) == as_strings(world.desired())
    assert not (world.server / lock).exists()
    assert fleetcd_files(world.server) == []
    assert git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=world.server) == ""


@pytest.mark.parametrize("written", ["before-it-started", "after-it-started"])
def test_attack_a_lock_naming_a_live_process_is_removed_only_if_that_process_started_after_it(
    world: World, written: str
) -> None:
    """After a reboot a killed push's pid may belong to any process: one that started after the lock
    was written is not its holder. One that started before may be (a push at work): its lock stays."""
    world.push(None)
    base = world.state
    world.wave("2.0")
    other = subprocess.Popen(["sleep", "300"])
    try:
        lock = world.server / "packed-refs.lock"
        lock.write_bytes(b"fleetcd-localpush %s %d\n" % (socket.gethostname().encode(), other.pid))
        if written == "before-it-started":
            os.utime(lock, (time.time() - 3600,) * 2)
            assert world.push(base) == MANY + 1
            assert not lock.exists()
        else:
            with pytest.raises(LocalPushBusy):
                world.push(base)
            assert lock.exists()
    finally:
        other.kill()
        other.wait()
