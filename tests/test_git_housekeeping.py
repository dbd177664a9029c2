"""Housekeeping of the mirror and of a server pushed into by hand (fleetcd.git.housekeeping).

Packs and loose objects must not pile up without bound over a year of reconciles: past git's own
thresholds, ``git gc --auto`` repacks them, and nothing a ref names is ever lost. On top: a kill -9
at any instant of a repack leaves a repository the next reconcile uses as if nothing happened; the
mirror's lock covers the repack, so a concurrent reconcile waits for it; a full disk fails the
repack, never the reconcile, and changes nothing; and ``.keep`` files, which ``gc`` never repacks,
are never left behind by a push by hand, even a killed one. Real git throughout.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.source import housekeep_repository
from fleetcd.compat import UTC
from fleetcd.errors import TransportError
from fleetcd.git.housekeeping import (
    KEEP_MARK,
    STALE_GC_LOCK_S,
    Counts,
    Policy,
    count,
    due,
    housekeep,
    keep_message,
    remove_dead_keeps,
)
from fleetcd.git.localpush import push_by_hand
from fleetcd.git.mirror import MirrorBusy, open_locked_mirror
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.packfile import STALE_AFTER_S
from fleetcd.git.remote import fetch
from tests.disks import fill, mounted
from tests.gitrepos import git

WHEN = datetime(2026, 5, 1, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
ROOT = Path(__file__).resolve().parent.parent


def refs_of(path: Path) -> dict[str, str]:
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)
    return {ref: oid for oid, ref in (line.split(" ", 1) for line in listed.splitlines())}


def add_packs(path: Path, packs: int, *, blobs: int = 20, size: int = 64, seed: int = 0) -> None:
    """``packs`` more packs in the repository at ``path``, each a commit of ``blobs`` incompressible
    files on its own ref ``refs/heads/filler-<n>`` (``git repack -d`` packs only the loose ones)."""
    repo = pygit2.Repository(str(path))
    rng = random.Random(seed)
    start = len([r for r in refs_of(path) if r.startswith("refs/heads/filler-")])
    for n in range(start, start + packs):
        files = {f"f{i}.bin": rng.randbytes(size) for i in range(blobs)}
        commit(repo, f"refs/heads/filler-{n}", write_tree(repo, files), f"filler {n}", [], AUTHOR, WHEN)
        git("repack", "-d", "-q", cwd=path)


def bare(path: Path) -> Path:
    git("init", "-q", "--bare", str(path), cwd=path.parent)
    return path


def fsck(path: Path) -> str:
    return git("fsck", "--no-progress", "--no-dangling", "--connectivity-only", cwd=path)


# --- the policy ---------------------------------------------------------------------------------


def test_counts_are_what_git_gc_auto_looks_at(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    assert count(repo) == Counts(0, 0, 0)
    add_packs(repo, 3)
    keep = next((repo / "objects" / "pack").glob("*.pack")).with_suffix(".keep")
    keep.write_text("an operator's\n")
    for n in range(3):  # loose objects whose ids start with 17 (git estimates from that directory)
        (repo / "objects" / "17").mkdir(exist_ok=True)
        (repo / "objects" / "17" / f"{n:038x}").write_bytes(b"")
    (repo / "objects" / "17" / "tmp_obj_xyz").write_bytes(b"")  # not an object name
    assert count(repo) == Counts(packs=2, kept=1, loose=3 * 256)
    assert str(count(repo)) == "2 packs (1 kept) and ~768 loose objects"


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (Counts(50, 0, 6700), False),
        (Counts(51, 0, 0), True),
        (Counts(0, 0, 27 * 256), False),  # git: 27 files in objects/17 are not > ceil(6700 / 256)
        (Counts(0, 0, 28 * 256), True),
        (Counts(50, 900, 0), False),  # kept packs are not gc's to repack
    ],
    ids=[
        "at-both-limits",
        "one-pack-over",
        "loose-at-gits-rounding",
        "loose-over",
        "kept-packs-do-not-count",
    ],
)
def test_a_repack_is_due_only_past_gits_own_thresholds(counts: Counts, expected: bool) -> None:
    assert due(counts, Policy()) is expected


@pytest.mark.parametrize(
    "bad",
    [
        {"pack_limit": 0},
        {"pack_limit": 10**6},
        {"loose_limit": 10},
        {"timeout_seconds": 0},
        {"timeout_seconds": -1.0},
        {"timeout_seconds": 10**6},
    ],
)
def test_out_of_bounds_thresholds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        Policy(**bad)  # type: ignore[arg-type]


def test_below_the_thresholds_nothing_is_run_or_changed(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 4)
    before = sorted(p.name for p in (repo / "objects" / "pack").iterdir())
    assert housekeep(repo, Policy(background=False, pack_limit=4)) is None
    assert sorted(p.name for p in (repo / "objects" / "pack").iterdir()) == before


def test_packs_past_the_limit_are_repacked_into_one_and_every_ref_still_resolves(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 7)
    refs = refs_of(repo)
    done = housekeep(repo, Policy(background=False, pack_limit=4))
    assert done is not None
    assert (done.before.packs, done.after.packs) == (7, 1)
    assert refs_of(repo) == refs
    assert fsck(repo) == ""
    assert "repacked 7 packs and ~0 loose objects into 1 packs" in str(done)


def test_loose_objects_past_the_limit_are_packed(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    handle = pygit2.Repository(str(repo))
    files = {f"f{n}.txt": handle.create_blob(f"file {n}\n".encode()) for n in range(3000)}  # loose
    commit(handle, "refs/heads/main", write_tree(handle, files), "many", [], AUTHOR, WHEN)
    assert count(repo).loose > 256
    done = housekeep(repo, Policy(background=False, loose_limit=256))
    assert done is not None and done.after.loose == 0 and done.after.packs == 1
    assert fsck(repo) == ""


def test_unreachable_objects_go_to_a_cruft_pack_not_loose_and_are_kept_for_the_grace_period(
    tmp_path: Path,
) -> None:
    """Exploded into loose objects, unreachable ones younger than two weeks would count towards the
    next ``gc --auto`` at once: a repack every reconcile. In a cruft pack they count as one pack."""
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 6, blobs=400)
    dropped = refs_of(repo)["refs/heads/filler-0"]
    git("update-ref", "-d", "refs/heads/filler-0", cwd=repo)
    done = housekeep(repo, Policy(background=False, pack_limit=4))
    assert done is not None and done.after.loose == 0 and done.after.packs == 2  # one + the cruft
    assert list((repo / "objects" / "pack").glob("*.mtimes"))  # git's cruft pack
    assert git("cat-file", "-t", dropped, cwd=repo).strip() == "commit"  # still there: not two weeks old
    assert housekeep(repo, Policy(background=False, pack_limit=4)) is None  # nothing due again


# --- kill -9 and a concurrent reconcile ---------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from fleetcd.git.housekeeping import Policy
from fleetcd.git.mirror import open_locked_mirror
from controller.reconcile.source import housekeep_repository

mirror = Path(sys.argv[1])
with open_locked_mirror(mirror, wait_seconds=30) as repo:
    print("locked", flush=True)
    print(housekeep_repository(Path(repo.path), "mirror", Policy(background=False, pack_limit=2)), flush=True)
"""


def start_housekeeping(mirror: Path) -> subprocess.Popen[str]:
    """A process that takes the mirror's lock and housekeeps it, as a reconcile ends; in its own
    process group with its git children, so one killpg kills all of them at once."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(mirror)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "locked\n"
    return child


def kill_9(child: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


def heavy_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror.git"
    open_locked_mirror(mirror, wait_seconds=5).close()
    add_packs(mirror, 8, blobs=1000, size=1024)  # 8,000 incompressible objects: seconds to repack
    return mirror


def timed_full_run(mirror: Path, tmp_path: Path) -> float:
    """How long the child's whole housekeeping takes on a copy of ``mirror``."""
    copy = tmp_path / "timing" / "mirror.git"
    copy.parent.mkdir()
    git("clone", "-q", "--mirror", "--no-local", str(mirror), str(copy), cwd=tmp_path)
    add_packs(copy, 3)  # a clone is one pack: give it as many again as the mirror has
    add_packs(copy, 5, blobs=1000, size=1024, seed=1)
    started = time.monotonic()
    child = start_housekeeping(copy)
    child.communicate(timeout=600)
    return time.monotonic() - started


def test_kill_9_at_any_instant_of_a_repack_loses_nothing_and_the_next_run_finishes_it(
    tmp_path: Path,
) -> None:
    mirror = heavy_mirror(tmp_path)
    refs = refs_of(mirror)
    full = timed_full_run(mirror, tmp_path)
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
        child = start_housekeeping(mirror)
        time.sleep(full * fraction)
        kill_9(child)
        assert refs_of(mirror) == refs, fraction
        assert fsck(mirror) == "", fraction
        for ref, oid in refs.items():  # every object a ref names is still readable
            assert git("cat-file", "-t", oid, cwd=mirror).strip() == "commit", (fraction, ref)
    child = start_housekeeping(mirror)  # healed: the lock, gc.pid, temporary packs
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 0
    assert count(mirror).packs <= 2, out
    assert refs_of(mirror) == refs
    assert fsck(mirror) == ""
    assert not [p for p in (mirror / "objects" / "pack").iterdir() if p.name.startswith(".tmp")]


def test_a_reconcile_on_the_same_cache_waits_for_the_repack_and_then_finds_it_whole(
    tmp_path: Path,
) -> None:
    mirror = heavy_mirror(tmp_path)
    refs = refs_of(mirror)
    child = start_housekeeping(mirror)
    try:
        with pytest.raises(MirrorBusy):  # the repack holds the mirror's lock
            open_locked_mirror(mirror, wait_seconds=0.2)
        started = time.monotonic()
        with open_locked_mirror(mirror, wait_seconds=600) as repo:  # waits, then writes
            waited = time.monotonic() - started
            assert count(mirror).packs <= 2  # only once the repack was done
            tip = ref_target(repo, "refs/heads/filler-0")
            assert tip is not None
            tree = write_tree(repo, {"after.txt": b"after the repack\n"})
            update_refs(
                repo, {"refs/heads/after": (None, commit(repo, None, tree, "after", [tip], AUTHOR, WHEN))}
            )
        child.wait(timeout=600)
    finally:
        if child.poll() is None:
            kill_9(child)
    assert child.returncode == 0 and waited > 0
    assert count(mirror).packs <= 2
    assert {**refs, "refs/heads/after": refs_of(mirror)["refs/heads/after"]} == refs_of(mirror)
    assert fsck(mirror) == ""


# --- a full disk --------------------------------------------------------------------------------


def test_a_full_disk_fails_the_repack_not_the_reconcile_and_changes_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=6m", "tmpfs"):
        repo = bare(disk / "r.git")
        add_packs(repo, 6, blobs=300, size=1024)
        refs, before = refs_of(repo), count(repo)
        assert before.packs > 4
        filler = fill(disk)
        repack = housekeep_repository(repo, "mirror", Policy(background=False, pack_limit=4))
        assert repack is not None and not repack.ok
        assert "housekeeping (git gc --auto)" in repack.message
        assert refs_of(repo) == refs
        assert fsck(repo) == ""
        assert count(repo) == before
        assert not [p for p in (repo / "objects" / "pack").iterdir() if p.name.startswith((".tmp", "tmp_"))]
        filler.unlink()  # space is back: the next run repacks
        again = housekeep_repository(repo, "mirror", Policy(background=False, pack_limit=4))
        assert again is not None and again.ok, again
        assert count(repo).packs == 1
        assert refs_of(repo) == refs
        assert fsck(repo) == ""


def test_git_that_fails_is_a_transport_error_naming_the_repository(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 3)
    (repo / "gc.pid.lock").write_text("")  # git gc dies on a lock it cannot take
    with pytest.raises(TransportError, match=r"housekeeping \(git gc --auto\) in .*r\.git failed"):
        housekeep(repo, Policy(background=False, pack_limit=1))
    assert housekeep_repository(repo, "server", None) is None  # no policy: never runs


# --- .keep files --------------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_git_gc_never_repacks_a_pack_with_a_keep_file(tmp_path: Path) -> None:
    """Why a killed push by hand must not leave its ``.keep``: that pack would stay for ever."""
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 6)
    kept = next((repo / "objects" / "pack").glob("*.pack"))
    kept.with_suffix(".keep").write_text("kept\n")
    done = housekeep(repo, Policy(background=False, pack_limit=3))
    assert done is not None and done.after == Counts(packs=1, kept=1, loose=0)
    assert kept.exists()


def test_a_keep_file_a_killed_push_left_is_removed_and_its_pack_repacked(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 6)
    packs = sorted((repo / "objects" / "pack").glob("*.pack"))
    host = socket.gethostname()
    dead = packs[0].with_suffix(".keep")
    dead.write_text(f"{KEEP_MARK} from {host} pid {dead_pid()}\n")
    live = packs[1].with_suffix(".keep")
    live.write_text(keep_message() + "\n")  # this process: a push still running
    elsewhere = packs[2].with_suffix(".keep")
    elsewhere.write_text(f"{KEEP_MARK} from another-host.invalid pid {dead_pid()}\n")
    operator = packs[3].with_suffix(".keep")
    operator.write_text("keep: the operator's archive\n")
    done = housekeep(repo, Policy(background=False, pack_limit=1))
    assert done is not None and done.keeps_removed == 1
    assert not dead.exists() and live.exists() and elsewhere.exists() and operator.exists()
    assert done.after.kept == 3 and done.after.packs == 1
    assert "removed 1 .keep file(s) of dead pushes" in str(done)
    assert remove_dead_keeps(repo) == []


@pytest.mark.parametrize("whose", ["this-process", "another-process"])
def test_attack_a_keep_naming_a_pid_given_again_since_it_was_written_is_removed(
    tmp_path: Path, whose: str
) -> None:
    """A push killed holding its .keep, then a reboot or a restarted service: its pid now belongs to
    a process that started after the .keep was written (this very one, when a container or a boot
    hands the same pid to the next controller), which never wrote it. It pinned its pack for good."""
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 2)
    packs = sorted((repo / "objects" / "pack").glob("*.pack"))
    other = subprocess.Popen(["sleep", "300"])
    try:
        pid = os.getpid() if whose == "this-process" else other.pid
        old = packs[0].with_suffix(".keep")
        old.write_text(f"{KEEP_MARK} from {socket.gethostname()} pid {pid}\n")
        os.utime(old, (time.time() - 3600,) * 2)  # before that process started
        young = packs[1].with_suffix(".keep")
        young.write_text(f"{KEEP_MARK} from {socket.gethostname()} pid {pid}\n")  # a push at work
        assert remove_dead_keeps(repo) == [old]
        assert young.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"{KEEP_MARK} from HOST pid",
        f"{KEEP_MARK} from HOST pid -5",
        f"{KEEP_MARK} from HOST pid 99999999999",
    ],
    ids=["empty", "no-pid", "negative", "huge"],
)
def test_a_keep_file_that_does_not_name_a_dead_push_is_never_removed(tmp_path: Path, text: str) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 1)
    keep = next((repo / "objects" / "pack").glob("*.pack")).with_suffix(".keep")
    keep.write_text(text.replace("HOST", socket.gethostname()))
    assert remove_dead_keeps(repo) == []
    assert keep.exists()


class HandPushed:
    """A mirror with one commit per robot, pushed by hand into an empty local server, wave by wave."""

    def __init__(self, root: Path, robots: int = 80) -> None:
        self.mirror = pygit2.init_repository(str(root / "mirror.git"), bare=True)
        self.server = bare(root / "server.git")
        self.robots = robots
        self.state: pygit2.Oid | None = None

    def wave(self, version: int) -> dict[str, pygit2.Oid]:
        refs = {}
        for n in range(self.robots):
            tree = write_tree(self.mirror, {"bundle.json": f'{{"robot": {n}, "v": {version}}}'.encode()})
            refs[f"refs/fleetcd/desired/amr-{n:03d}"] = commit(
                self.mirror, None, tree, f"robot {n} v{version}", [], AUTHOR, WHEN
            )
        tree = write_tree(self.mirror, {"state.json": str(version).encode()})
        state = commit(self.mirror, None, tree, "state", [self.state] if self.state else [], AUTHOR, WHEN)
        update_refs(self.mirror, {"refs/heads/fleetcd/state": (self.state, state)})
        base, self.state = self.state, state
        refs["refs/heads/fleetcd/state"] = state
        push_by_hand(self.mirror, self.server, refs, leases={"refs/heads/fleetcd/state": base}, timeout_s=60)
        return refs


def test_a_push_by_hand_leaves_no_keep_file(tmp_path: Path) -> None:
    pushed = HandPushed(tmp_path)
    pushed.wave(1)
    pushed.wave(2)
    assert not list((pushed.server / "objects" / "pack").glob("*.keep"))
    assert count(pushed.server) == Counts(packs=2, kept=0, loose=0)


def test_packs_pushed_by_hand_into_a_server_stay_bounded(tmp_path: Path) -> None:
    pushed = HandPushed(tmp_path)
    most = 0
    for version in range(1, 25):
        refs = pushed.wave(version)
        housekeep_repository(
            pushed.server, "server", Policy(background=False, pack_limit=5)
        )  # what publish does after
        most = max(most, count(pushed.server).packs)
    assert most <= 6  # without housekeeping: 24 packs, one per push
    assert {ref: str(oid) for ref, oid in refs.items()}.items() <= refs_of(pushed.server).items()
    assert fsck(pushed.server) == ""


# --- gc.pid -------------------------------------------------------------------------------------


def test_a_gc_pid_naming_a_killed_unreaped_gc_is_removed_so_gc_runs(tmp_path: Path) -> None:
    """A killed ``git gc`` that nothing reaps answers ``kill(pid, 0)``: git then skips every
    ``gc --auto`` for 12 hours. Found by the reconcile-level kill -9 test: no repack after it."""
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 4)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; never waited for: a zombie
    deadline = time.monotonic() + 30
    while Path(f"/proc/{zombie.pid}/stat").read_bytes().split(b") ")[1][:1] != b"Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(zombie.pid, 0)  # still answers, as git's check asks
    (repo / "gc.pid").write_text(f"{zombie.pid} {socket.gethostname()}")
    done = housekeep(repo, Policy(background=False, pack_limit=2))
    zombie.wait()
    assert done is not None and done.after.packs == 1
    assert not (repo / "gc.pid").exists()


@pytest.mark.parametrize("who", ["live", "other-host", "garbage"])
def test_a_gc_pid_of_a_running_gc_or_another_host_is_left_and_nothing_is_repacked(
    tmp_path: Path, who: str
) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 4)
    text = {
        "live": f"{os.getppid()} {socket.gethostname()}",
        "other-host": f"{dead_pid()} another-host.invalid",
        "garbage": "not a pid file at all",
    }[who]
    (repo / "gc.pid").write_text(text)
    done = housekeep(repo, Policy(background=False, pack_limit=2))
    assert done is not None
    if who == "garbage":  # not ours to judge: git reads it as no gc at work, and runs
        assert done.after.packs == 1
        return
    assert (repo / "gc.pid").read_text() == text
    assert done.after == done.before
    assert "left as they were: another git gc holds gc.pid" in str(done)


def killed_writing_the_commit_graph(repo: Path) -> Path:
    """A real ``git commit-graph write``, the step ``gc`` runs after its repack, killed by the kernel
    (SIGXFSZ under ``ulimit -f``, which git does not catch: no cleanup, as with SIGKILL) once its
    first 512 bytes are in ``commit-graph.lock``."""
    done = subprocess.run(
        ["sh", "-c", 'ulimit -f 1; exec git --git-dir "$0" commit-graph write --reachable', str(repo)],
        capture_output=True,
        check=False,
    )
    lock = repo / "objects" / "info" / "commit-graph.lock"
    assert done.returncode == -signal.SIGXFSZ or done.returncode == 128 + signal.SIGXFSZ, done.stderr
    assert lock.stat().st_size > 0 and not (repo / "objects" / "info" / "commit-graph").exists()
    return lock


@pytest.mark.parametrize("age", ["young", "stale"])
def test_attack_a_gc_killed_writing_the_commit_graph_fails_every_later_gc_only_until_its_lock_is_stale(
    tmp_path: Path, age: str
) -> None:
    """git never removes the lock a killed gc left: every later gc repacked, then failed on it, and
    housekeeping reported a failure after every repack for good. A lock a live gc could hold is left."""
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 4)
    lock = killed_writing_the_commit_graph(repo)
    if age == "stale":
        os.utime(lock, (time.time() - 2 * STALE_GC_LOCK_S,) * 2)
        done = housekeep(repo, Policy(background=False, pack_limit=2))
        assert done is not None and done.after.packs == 1
        assert not lock.exists()
        git("commit-graph", "verify", cwd=repo)
    else:
        with pytest.raises(TransportError, match=r"commit-graph\.lock"):
            housekeep(repo, Policy(background=False, pack_limit=2))
        assert lock.exists()
    assert fsck(repo) == ""


FETCH_KILLER = r"""
import os, signal, sys
import pygit2
from fleetcd.git import remote
class KilledAsItArrives(remote._Callbacks):
    def transfer_progress(self, stats):
        if stats.received_bytes:  # libgit2 is writing the pack into objects/pack/pack_git2_*
            os.kill(os.getpid(), signal.SIGKILL)
remote._Callbacks = KilledAsItArrives
remote.fetch(pygit2.Repository(sys.argv[1]), sys.argv[2], ["+refs/heads/*:refs/heads/*"])
"""


def test_attack_a_controller_killed_mid_fetch_leaves_a_partial_pack_its_housekeeping_removes_once_stale(
    tmp_path: Path,
) -> None:
    """libgit2 writes a fetched pack to ``objects/pack/pack_git2_*`` as it arrives; killed then, it
    stays: neither git (which prunes only ``tmp_*``) nor anything of ours removed it, one more per
    kill, as large as what had arrived. The mirror's housekeeping after each reconcile removes it
    once it is older than any live fetch's, and the next fetch goes through."""
    server = bare(tmp_path / "server.git")
    add_packs(server, 1, blobs=64, size=16 * 1024)
    mirror = bare(tmp_path / "mirror.git")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", FETCH_KILLER, str(mirror), f"file://{server}"], env=env, check=False
    )
    assert done.returncode == -signal.SIGKILL
    pack_dir = mirror / "objects" / "pack"
    left = list(pack_dir.glob("pack_git2_*"))
    assert len(left) == 1
    assert fsck(mirror) == ""
    assert housekeep(mirror, Policy(background=False)) is None  # nothing due
    assert left[0].exists()  # young: it could be a fetch at work
    os.utime(left[0], (time.time() - 2 * STALE_AFTER_S,) * 2)
    assert housekeep(mirror, Policy(background=False)) is None
    assert list(pack_dir.iterdir()) == []
    assert "garbage: 0" in git("count-objects", "-v", cwd=mirror)
    fetch(pygit2.Repository(str(mirror)), f"file://{server}", ["+refs/heads/*:refs/heads/*"])
    assert refs_of(mirror) == refs_of(server)
