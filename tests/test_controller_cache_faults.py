"""The controller's cache (``--cache``, its local mirror) heals itself, on real git, gpg and processes.

Issue 10: a controller killed while its mirror held ref ``.lock`` files (20, 58 and 974 of them in
a 1,206-robot fan-out) made every rerun exit 5 with "changed concurrently … locked by another
writer" until someone deleted the cache; two reconciles on a fresh cache crashed on
``HEAD.lock: File exists``. Now one process at a time holds a whole-cache lock
(:func:`fleetcd.git.mirror.open_locked_mirror`): whoever takes it removes what a dead holder left,
another process waits for it (bounded) or exits 4, and a live holder's locks are never touched.

Controllers here are real processes (:func:`controller_main`) that are ``SIGKILL``-ed, or paused, at
an exact instant inside the fan-out's ref transaction, when every robot's ref is locked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.notify.forge import Posted, already_posted, remember_posted
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.reconcile.steps import reconcile_once
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import guarded
from fleetcd.git import objects, packedrefs, packfile
from fleetcd.git.mirror import LOCK_SUFFIX, RELEASED, STALE_TEMPORARY_S, TEMPORARY_PREFIX, open_locked_mirror
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import NAMESPACES_PREFIX, STATE_BRANCH, status_ref
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, assert_no_duplicates, make_world
from tests.test_controller_faults import copy_world, desired, kinds, state_tree, to_canary_wave

ROOT = Path(__file__).resolve().parent.parent
MANY = 1000  # extra robots: the killed fan-out leaves about as many ref locks as the 974
WAIT_FOR_PROCESS_SECONDS = 180


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_controller_left_behind() -> Any:
    """A failed assertion must not leave a paused controller waiting for its 'go' file forever."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


# --- a controller process ---------------------------------------------------------------------------


def controller_main(argv: list[str]) -> None:
    """Subprocess entry: one reconcile, exit code as ``fleetcd controller reconcile --once`` maps it.

    ``mode`` is ``run``, ``kill`` (SIGKILL ourselves inside the fan-out's ref transaction, every
    robot's ref locked) or ``pause:DIR`` (at that instant, create DIR/paused and wait for DIR/go).
    ``start`` (``-`` for none) is a file to wait for before opening the cache, so several processes
    start together. Prints the result as JSON.
    """
    server, mirror, gnupghome, now, mode, wait, start = argv
    at = datetime.fromisoformat(now)
    if mode != "run":
        _stop_in_fan_out(mode)
    if start != "-":
        while not Path(start).exists():
            time.sleep(0.001)
    settings = ControllerSettings(
        source=Source(server, Path(mirror), lock_wait_seconds=float(wait)),
        gnupghome=Path(gnupghome),
        notify=False,
        now=lambda: at,
    )
    outcome: dict[str, Any] = {}

    def reconcile() -> None:
        result = reconcile_once(settings)
        outcome.update(desired_refs=result.desired_refs, idle=result.idle, stalled=result.stalled)

    try:
        code = guarded(reconcile)
    except Exception:  # a bug: what the real CLI reports as exit 70
        traceback.print_exc()
        code = int(Exit.INTERNAL)
    print(json.dumps(outcome))
    sys.exit(code)


def _stop_in_fan_out(mode: str) -> None:
    """Wrap ref transactions so the fan-out's (more than one ref) stops once all its refs are locked.

    In the mirror a fan-out of :data:`~fleetcd.git.objects.PACKED_REFS_FROM` refs or more rewrites
    packed-refs (see :func:`_stop_in_packed_rewrite`), and one over ``LOCKED_REFS_MAX`` elsewhere
    goes through ``git update-ref --stdin``; here every size takes libgit2's transaction, so the
    process dies holding a lock file per robot, as the issue's killed controller did (974 of them).
    A killed ``git update-ref`` leaves the same ``.lock`` files, which the same cache lock removes."""
    if mode.startswith("kill-packed:"):
        _stop_in_packed_rewrite(mode.removeprefix("kill-packed:"))
        return
    if mode == "kill-pack-index":
        _stop_before_pack_index()
        return
    objects.PACKED_REFS_FROM = objects.LOCKED_REFS_MAX = 1 << 30
    original = pygit2.transaction.ReferenceTransaction.set_target
    stopped: list[bool] = []

    def set_target(self: Any, ref: str, *args: Any, **kwargs: Any) -> None:
        if ref.startswith(NAMESPACES_PREFIX) and not stopped:
            stopped.append(True)
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            where = Path(mode.removeprefix("pause:"))
            (where / "paused").touch()
            while not (where / "go").exists():
                time.sleep(0.01)
        original(self, ref, *args, **kwargs)

    pygit2.transaction.ReferenceTransaction.set_target = set_target  # type: ignore[method-assign,assignment]


def _stop_in_packed_rewrite(instant: str) -> None:
    """SIGKILL ourselves inside the mirror's packed-refs rewrite (:mod:`fleetcd.git.packedrefs`):
    ``before-rename`` with the new file written in full as ``packed-refs.lock``, ``after-rename``
    with the new values in place (loose files not yet dropped) and nothing pushed."""
    if instant == "before-rename":
        replace_file = os.replace

        def replace_unless_packed_refs(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if str(dst).endswith("/packed-refs"):
                os.kill(os.getpid(), signal.SIGKILL)
            replace_file(src, dst, *args, **kwargs)

        os.replace = replace_unless_packed_refs
        return

    def killed(*_args: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    packedrefs.remove_loose = killed  # type: ignore[assignment]


def _stop_before_pack_index() -> None:
    """SIGKILL ourselves as the first object pack (:mod:`fleetcd.git.packfile`) is complete and
    renamed into ``objects/pack`` but its ``.idx`` is not: the pack no reader sees yet."""
    replace_path = Path.replace

    def replace_unless_index(self: Path, target: Any) -> Path:
        if str(target).endswith(".idx"):
            os.kill(os.getpid(), signal.SIGKILL)
        return replace_path(self, target)

    Path.replace = replace_unless_index  # type: ignore[method-assign]


def start_controller(
    settings: ControllerSettings,
    now: datetime,
    mode: str = "run",
    *,
    wait: float = 120,
    start: Path | None = None,
) -> subprocess.Popen[str]:
    """A controller process reconciling once at ``now`` (see :func:`controller_main`)."""
    script = f"import sys; from {__name__} import controller_main as m; m(sys.argv[1:])"
    source = settings.source
    args = [source.url, str(source.mirror), str(settings.gnupghome), now.isoformat(), mode, str(wait)]
    args.append(str(start) if start is not None else "-")
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(process)
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = process.communicate(timeout=WAIT_FOR_PROCESS_SECONDS)
    lines = out.strip().splitlines()
    return process.returncode, json.loads(lines[-1]) if lines else {}, err


def lock_files(mirror: Path) -> list[Path]:
    return sorted(p for p in mirror.rglob("*.lock") if p.is_file())


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_FOR_PROCESS_SECONDS
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def many_robots(fleet: FleetRepoBuilder) -> None:
    extra = [f"fill-{index:03d}" for index in range(MANY)]
    for device in extra:
        fleet.device(device)
    fleet.cohort("fill", extra, stage="production")


# --- kill -9 leaves lock files ------------------------------------------------------------------------


def lock_of(mirror: Path) -> Path:
    return mirror.with_name(mirror.name + LOCK_SUFFIX)


def plant_git_locks(mirror: Path) -> list[Path]:
    """Lock files as a controller killed mid-write leaves them: a ref lock holds the new value
    (written before the rename that never came), a top-level lock is empty or partial, and the
    cache's own lock file still names the dead holder."""
    lock_of(mirror).write_text("pid 4242 on a-controller-that-was-killed\n")
    repo = pygit2.Repository(str(mirror))
    refs = sorted(list_refs(repo, NAMESPACES_PREFIX).items())
    main = repo.references["refs/heads/main"].target
    planted = {mirror / f"{ref}.lock": f"{oid}\n" for ref, oid in refs}
    planted |= {
        mirror / "refs/heads/main.lock": f"{main}\n",
        mirror / f"{STATE_BRANCH}.lock": "",
        mirror / f"{status_ref('stg-1')}.lock": f"{main}\n",
        mirror / "packed-refs.lock": "# pack-refs with: peeled fully-peeled sorted \n",
        mirror / "HEAD.lock": "ref: refs/heads/ma",
        mirror / "config.lock": "[core]\n",
        mirror / "index.lock": "",
        mirror / "shallow.lock": "",
    }
    for path, text in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(planted)


def assert_the_next_run_heals(world: ControllerWorld, crashing: ControllerSettings, now: datetime) -> None:
    """A controller started on the crashed cache does every robot's ref, leaves no lock behind and
    ends with the server the uncrashed ``world`` reached: same state branch, same desired refs, each
    event once."""
    code, result, err = finish(start_controller(crashing, now))
    assert code == 0, err[-3000:]
    assert result["desired_refs"] == len(STAGING + CANARY + PRODUCTION) + MANY
    assert lock_files(crashing.source.mirror) == []
    server = Path(crashing.source.url)
    assert state_tree(server) == state_tree(world.server)
    assert desired(server) == desired(world.server)
    healed = ControllerWorld(world.fleet, server, crashing, replace(world.sim, server=server), world.clock)
    assert_no_duplicates(healed.state())
    assert kinds(healed.state()).count("rollout_created") == 1


def killed_in_a_fan_out_to_many_robots(
    tmp_path: Path, keys: KeyFactory, mode: str
) -> tuple[ControllerWorld, ControllerSettings, datetime, int]:
    """A reference world that fanned out to every robot (:func:`many_robots`'s too), and a copy of it
    whose controller, started with ``mode`` on the same change, was SIGKILLed: the reference, the
    copy's settings, the instant and the killed controller's pid."""
    world = make_world(tmp_path / "reference", keys, configure=many_robots)
    crashing = copy_world(world, tmp_path / "crash")
    now = world.clock.now
    assert world.reconcile().desired_refs == len(STAGING + CANARY + PRODUCTION) + MANY
    killed = start_controller(crashing, now, mode)
    code, _result, err = finish(killed)
    assert code == -signal.SIGKILL, err[-3000:]
    return world, crashing, now, killed.pid


def test_kill_9_leaving_ref_locks_in_the_cache_heals_on_the_next_run(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path / "reference", keys)
    to_canary_wave(world)  # the next reconcile moves the canary robots' desired state, fetches reports
    world.report_all(STAGING, "deployed")
    crashing = copy_world(world, tmp_path / "crash")
    now = world.clock.now
    world.reconcile()  # the same reconcile, without the crash
    planted = plant_git_locks(crashing.source.mirror)
    assert len(planted) == len(STAGING + CANARY + PRODUCTION) + 8

    rerun = start_controller(crashing, now)
    code, result, err = finish(rerun)

    assert code == 0, err[-3000:]
    assert result["stalled"] is None and result["desired_refs"] == len(CANARY)
    assert lock_files(crashing.source.mirror) == []
    assert lock_of(crashing.source.mirror).read_text() == RELEASED
    server = Path(crashing.source.url)
    assert state_tree(server) == state_tree(world.server)
    assert desired(server) == desired(world.server)


def test_kill_9_in_the_middle_of_a_fan_out_to_many_robots_heals_on_the_next_run(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, crashing, now, pid = killed_in_a_fan_out_to_many_robots(tmp_path, keys, "kill")
    left = lock_files(crashing.source.mirror)
    assert len(left) == len(STAGING + CANARY + PRODUCTION) + MANY  # every robot's ref was locked
    assert lock_of(crashing.source.mirror).read_text().startswith(f"pid {pid} on ")

    assert_the_next_run_heals(world, crashing, now)


@pytest.mark.parametrize("instant", ["before-rename", "after-rename"])
def test_kill_9_inside_the_mirror_s_packed_refs_rewrite_heals_on_the_next_run(
    tmp_path: Path, keys: KeyFactory, instant: str
) -> None:
    world, crashing, now, pid = killed_in_a_fan_out_to_many_robots(tmp_path, keys, f"kill-packed:{instant}")
    mirror = crashing.source.mirror
    assert (mirror / "packed-refs.lock").exists() is (instant == "before-rename")
    assert desired(Path(crashing.source.url)) == {}  # nothing reached the server
    assert lock_of(crashing.source.mirror).read_text().startswith(f"pid {pid} on ")

    assert_the_next_run_heals(world, crashing, now)


def test_kill_9_between_an_object_pack_and_its_index_heals_on_the_next_run(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, crashing, now, _pid = killed_in_a_fan_out_to_many_robots(tmp_path, keys, "kill-pack-index")
    pack_dir = crashing.source.mirror / "objects" / "pack"
    unindexed = [p for p in pack_dir.glob("*.pack") if not p.with_suffix(".idx").exists()]
    left = unindexed + list(pack_dir.glob("tmp_idx_*"))
    assert unindexed and len(left) == 2
    subprocess.run(["git", "fsck", "--connectivity-only"], cwd=crashing.source.mirror, check=True)
    for path in left:  # as if the next run came minutes later: what was left is now stale
        os.utime(path, (time.time() - 2 * packfile.STALE_AFTER_S,) * 2)

    assert_the_next_run_heals(world, crashing, now)
    assert not list(pack_dir.glob("tmp_*"))
    assert all(p.with_suffix(".idx").exists() for p in pack_dir.glob("*.pack"))
    subprocess.run(["git", "fsck", "--full"], cwd=crashing.source.mirror, check=True, capture_output=True)


def test_a_mirror_that_cannot_be_opened_is_rebuilt_from_the_server(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    mirror = world.settings.source.mirror
    (mirror / "HEAD").write_bytes(b"\x00garbage")
    (mirror / "config").write_bytes(b"[core\n")
    world.clock.tick(30)
    world.report_all(STAGING, "deployed")

    result = reconcile_once(world.settings)

    assert result.stalled is None and not result.idle
    assert pygit2.Repository(str(mirror)).is_bare
    assert_no_duplicates(world.state())


# --- two processes, one cache ---------------------------------------------------------------------------


def test_two_reconciles_on_a_fresh_shared_cache_do_not_crash(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    now = world.clock.now
    for attempt in range(3):  # the race was lost about every other time with 2, nearly always with 4
        fresh = replace(
            world.settings, source=Source.for_url(world.settings.source.url, tmp_path / f"c{attempt}")
        )
        go = tmp_path / f"go-{attempt}"
        running = [start_controller(fresh, now, start=go) for _ in range(4)]
        time.sleep(2.0)  # every process imported and waiting
        go.touch()
        outcomes = [finish(process) for process in running]
        assert [code for code, _, _ in outcomes] == [0, 0, 0, 0], [err[-2000:] for _, _, err in outcomes]
        assert pygit2.Repository(str(fresh.source.mirror)).is_bare
    state = world.state()
    assert_no_duplicates(state)
    assert kinds(state).count("rollout_created") == 1


def test_concurrent_controllers_on_one_cache_one_waits_or_exits_with_the_documented_code(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    now = world.clock.now
    mirror = world.settings.source.mirror
    pause = tmp_path / "pause"
    pause.mkdir()

    first = start_controller(world.settings, now, f"pause:{pause}")
    wait_for(pause / "paused", first)  # inside the fan-out's transaction: every robot's ref locked
    held = lock_files(mirror)
    assert len(held) == len(STAGING + CANARY + PRODUCTION)

    impatient = start_controller(world.settings, now, wait=1)
    code, _result, err = finish(impatient)
    assert code == Exit.SETUP, err[-3000:]
    assert f"{mirror}: the cache is in use by another fleetcd process (pid {first.pid} on" in err
    assert "two controllers need two --cache directories" in err
    assert lock_files(mirror) == held, "a live controller's ref locks were touched"

    patient = start_controller(world.settings, now, wait=120)
    time.sleep(1.5)
    assert patient.poll() is None, "the second controller did not wait for the first"
    assert lock_files(mirror) == held
    (pause / "go").touch()

    code, result, err = finish(first)
    assert code == 0, err[-3000:]
    assert result["desired_refs"] == len(STAGING + CANARY + PRODUCTION)
    code, result, err = finish(patient)
    assert code == 0, err[-3000:]
    assert result["desired_refs"] == 0 and result["stalled"] is None  # it saw the first one's work
    assert lock_files(mirror) == []
    state = world.state()
    assert_no_duplicates(state)
    assert kinds(state).count("rollout_created") == 1
    assert lock_of(mirror).read_text() == RELEASED  # the file stays; the next holder skips the search


def test_a_reconcile_lets_go_of_the_cache_when_it_returns(tmp_path: Path, keys: KeyFactory) -> None:
    """In one process the lock is re-entrant and held only while a handle lives, so a test (or
    ``controller run`` between passes) never keeps another process waiting."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.clock.tick(30)
    world.report_all(STAGING, "deployed")
    code, result, err = finish(start_controller(world.settings, world.clock.now, wait=0))
    assert code == 0, err[-3000:]
    assert result["stalled"] is None


# --- the controller's own files in the mirror ------------------------------------------------------------

KEPT_KILLER = r"""
import os, signal, sys
from pathlib import Path
from controller.notify.forge import Posted, remember_posted
from fleetcd.git.mirror import open_locked_mirror
instant = sys.argv[2]
real_write = os.write
def write(fd, data):
    if instant == "writing":  # the temporary made, nothing in it yet
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(fd, data)
def replace(self, target):  # the temporary whole, not yet renamed over the kept file
    os.kill(os.getpid(), signal.SIGKILL)
os.write, Path.replace = write, replace
with open_locked_mirror(Path(sys.argv[1]), wait_seconds=30):  # as a reconcile holds it
    remember_posted(Path(sys.argv[1]), Posted("b" * 40, "success", "applied; no rollout in progress"))
"""


@pytest.mark.parametrize("instant", ["writing", "before-rename"])
def test_attack_kill_9_while_keeping_a_file_in_the_mirror_leaves_a_temporary_the_next_run_removes(
    tmp_path: Path, instant: str
) -> None:
    """The controller keeps files of its own in the mirror (what it posted, notified, verified, an
    idle mark), each written to a temporary there and renamed over the old one. A kill before the
    rename leaves the old file whole and the temporary, which nothing removed (one more per kill)
    until the mirror's next holder did: it removes those old enough to be no live writer's."""
    path = tmp_path / "mirror.git"
    first = Posted("a" * 40, "pending", "rollout a progressing")
    with open_locked_mirror(path, wait_seconds=30):
        remember_posted(path, first)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", KEPT_KILLER, str(path), instant], env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    left = [p for p in path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
    assert len(left) == 1
    assert (left[0].read_bytes() == b"") is (instant == "writing")
    assert already_posted(path, first)  # the kept file as it was
    subprocess.run(["git", "fsck", "--no-progress"], cwd=path, check=True, capture_output=True)
    with open_locked_mirror(path, wait_seconds=30):
        assert left[0].exists()  # young: it could be a live writer's (an idle check holds no lock)
    os.utime(left[0], (time.time() - 2 * STALE_TEMPORARY_S,) * 2)
    second = Posted("c" * 40, "success", "applied; no rollout in progress")
    with open_locked_mirror(path, wait_seconds=30):  # the next run
        assert not left[0].exists()
        remember_posted(path, second)
    assert already_posted(path, second)
    assert [p.name for p in path.iterdir() if p.name.startswith((TEMPORARY_PREFIX, "."))] == []
