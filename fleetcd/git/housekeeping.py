"""Keeping a repository's object store bounded: git's own ``gc --auto``, at thresholds, in time.

Every fetch into the controller's mirror lands as loose objects or one more pack
(:func:`fleetcd.git.objects.object_batch`), and every push by hand into a local server as one more
pack (:mod:`fleetcd.git.localpush`). Nothing else ever repacks them: over a year of reconciles a
few seconds apart, packs and loose objects would pile up without bound, every object lookup
(which searches each pack's index in turn) would get slower and the disk would fill.

:func:`housekeep` is the one policy for both. It counts as ``git gc --auto`` does (packs without a
``.keep`` file; loose objects estimated from ``objects/17``, 1/256 of them) and, only past a
threshold, runs ``git gc --auto`` itself, under a timeout, which:

* repacks every reachable object into one pack (``repack -d -l -A``) once there are more than
  ``pack_limit`` packs or about ``loose_limit`` loose objects (git's defaults: 50 and 6,700);
* puts unreachable objects into one *cruft* pack (``gc.cruftPacks``) rather than exploding them
  into loose objects, which, younger than the grace period, would count towards the next
  ``gc --auto`` at once and repack again and again;
* prunes unreachable objects only after git's grace period (``gc.pruneExpire``, two weeks), so an
  object a concurrent writer has just written but not yet named by a ref is never lost;
* packs the refs (``pack-refs --all``), which the controller otherwise does at its own threshold.

Why git's own tool, and why all-into-one rather than ``repack --geometric``: measured with
``bench/git_housekeeping.py`` (docs/scaling.md, "Housekeeping"), and it is what ``receive-pack``
itself runs after every push (``receive.autogc``), so it is safe beside concurrent pushes into
the same repository. A kill at any instant is safe: git writes the new pack under a temporary
name, renames it into place, and only then deletes the packs it replaces; what a killed ``gc``
leaves is cleaned by the next run: git ignores a ``gc.pid`` whose process is gone, and
:func:`remove_dead_temporary_packs` removes its temporary pack (git itself never does: found by
``tests/test_git_housekeeping.py``'s kill -9 test, each kill left a copy of the whole pack) and
:func:`remove_stale_gc_locks` the commit-graph's lock, on which every later gc failed.

In the background, by default (:attr:`Policy.background`): a repack of a 10,000-robot mirror took
30–50 s on the 2-core machine, 50–70 s at 100,000 (docs/scaling.md), and a reconcile that waited for it
would hold a rollback or a pause back for that long. The controller starts ``git gc`` as a child
in a session of its own and goes on; a later :func:`housekeep` of the same repository reaps it and
returns what it did (or raises what went wrong, its stderr quoted), and one still running past
the policy's timeout is killed there. Git is built for that: ``receive-pack`` runs the same
``gc --auto`` detached after pushes, beside the next pushes and fetches (new packs written
meanwhile are not among those it deletes; objects it found unreachable go to the cruft pack, not
away). One thing is left out of a background run: packing the refs (``gc.packRefs=false``), so it
never holds ``packed-refs.lock``, which the controller's own ref writers take (and which a mirror
opened after an unclean release treats as stale); the controller packs refs itself at its own
thresholds. A controller that exits or is killed leaves the child to finish on its own; the next
one finds its ``gc.pid`` and git does not start a second.

What ``gc`` refuses to repack is a pack with a ``.keep`` file: a push by hand that was killed
before removing its own would pin its pack for ever, so :func:`remove_dead_keeps` removes the
ones whose process is gone (:mod:`fleetcd.git.localpush` writes who it is into them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import TransportError
from fleetcd.git import gitcli
from fleetcd.git.packfile import remove_stale_temp_files

log = logging.getLogger("fleetcd.git")
# git's own defaults (gc.autoPackLimit, gc.auto): the thresholds every git server runs at.
PACK_LIMIT = 50
LOOSE_LIMIT = 6700
# A repack of the mirror at 100,000 robots took 50-70 s on the 2-core machine at load 9-15 (see
# docs/scaling.md); a repack killed at its timeout changed nothing and is tried again next time.
HOUSEKEEPING_TIMEOUT_SECONDS = 1800.0
KEEP_MARK = "fleetcd push by hand"  # how a .keep file written by fleetcd.git.localpush starts
# A process that started this long after a file naming its pid was written did not write it: the
# pid was given again (after a reboot; a restarted service may get its killed predecessor's). Start
# times are read in clock ticks (10 ms) after a boot time known to 10 ms (/proc/uptime).
START_SLACK_S = 0.1
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Policy:
    """When to repack: more than ``pack_limit`` packs (not counting kept ones), or about more than
    ``loose_limit`` loose objects; ``timeout_seconds`` bounds one run; ``background``: the caller
    does not wait for it (reaped by a later :func:`housekeep`), else it returns when it is done."""

    pack_limit: int = PACK_LIMIT
    loose_limit: int = LOOSE_LIMIT
    timeout_seconds: float = HOUSEKEEPING_TIMEOUT_SECONDS
    background: bool = True

    def __post_init__(self) -> None:
        if not (1 <= self.pack_limit <= 100_000 and 256 <= self.loose_limit <= 10_000_000):
            raise ValueError(
                f"housekeeping thresholds out of bounds: {self.pack_limit} packs, {self.loose_limit} loose"
            )
        if not 0 < self.timeout_seconds <= 86_400:
            raise ValueError(f"housekeeping timeout out of bounds: {self.timeout_seconds} s")


@dataclass(frozen=True)
class Counts:
    packs: int  # packs gc may repack (with an index, without a .keep file)
    kept: int  # packs with a .keep file, which gc leaves alone
    loose: int  # loose objects, estimated as git does: those in objects/17, times 256

    def __str__(self) -> str:
        kept = f" ({self.kept} kept)" if self.kept else ""
        return f"{self.packs} packs{kept} and ~{self.loose} loose objects"


@dataclass(frozen=True)
class Housekept:
    """What one :func:`housekeep` did: the counts before and after, and how long it took."""

    where: Path
    before: Counts
    after: Counts
    seconds: float
    keeps_removed: int = 0

    def __str__(self) -> str:
        removed = f"; removed {self.keeps_removed} .keep file(s) of dead pushes" if self.keeps_removed else ""
        if self.after == self.before:  # git gc --auto saw another gc at work (gc.pid) and left it
            return f"{self.where}: {self.before}, left as they were: another git gc holds gc.pid{removed}"
        return f"{self.where}: repacked {self.before} into {self.after} in {self.seconds:.1f} s{removed}"


def count(git_dir: Path) -> Counts:
    """What ``git gc --auto`` looks at in ``git_dir``, read from two directory listings."""
    pack_dir = git_dir / "objects" / "pack"
    try:
        names = {path.name for path in pack_dir.iterdir()}
    except FileNotFoundError:
        names = set()
    packs = kept = 0
    for name in names:
        if name.startswith("pack-") and name.endswith(".idx") and name[:-4] + ".pack" in names:
            if name[:-4] + ".keep" in names:
                kept += 1
            else:
                packs += 1
    try:
        names17 = [path.name for path in (git_dir / "objects" / "17").iterdir()]
        loose = sum(1 for n in names17 if len(n) == 38 and set(n) <= _HEX)
    except FileNotFoundError:
        loose = 0
    return Counts(packs, kept, loose * 256)


def due(counts: Counts, policy: Policy) -> bool:
    """Whether ``git gc --auto`` at ``policy``'s thresholds would repack, compared as git does:
    more packs than the limit, or more loose objects in ``objects/17`` than 1/256 of the loose
    limit rounded up (at 6,700: 27 files, ~6,912 objects, is not yet due; 28 is)."""
    in_17 = -(-policy.loose_limit // 256)
    return counts.packs > policy.pack_limit or counts.loose // 256 > in_17


@dataclass
class _Running:
    """A ``git gc`` started in the background, until a later :func:`housekeep` reaps it."""

    process: subprocess.Popen[bytes]
    before: Counts
    started: float
    timeout_s: float
    keeps_removed: int
    stderr: Path


# git dir (resolved) -> the gc this process started there and has not reaped yet
_running: dict[Path, _Running] = {}
STDERR_FILE = "fleetcd-housekeeping.stderr"  # in the git dir: what a background gc said
# The lock files of the commit-graph gc writes after the repack; a live writer streams into its
# lock for seconds, so one this old was left by a gc killed (its timeout, a power cut) meanwhile.
GC_LOCKS = ("objects/info/commit-graph.lock", "objects/info/commit-graphs/commit-graph-chain.lock")
STALE_GC_LOCK_S = 600.0


def housekeep(git_dir: Path, policy: Policy) -> Housekept | None:
    """``git gc --auto`` in ``git_dir`` at ``policy``'s thresholds when they are passed; None when
    nothing was due, or a background run was started or is still running. A background run that
    has ended is reaped here first, and what it did returned. Dead pushes' ``.keep`` files are
    removed first (they count as kept packs). Raises :class:`~fleetcd.errors.TransportError` when
    git failed or ran out of time (a background run: when it is reaped)."""
    key = git_dir.resolve()
    running = _running.get(key)
    if running is not None:
        return _reap(key, running)
    keeps = remove_dead_keeps(git_dir)
    remove_dead_temporary_packs(git_dir)
    remove_stale_temp_files(git_dir / "objects" / "pack")  # a killed fetch's or pack writer's
    remove_dead_gc_pid(git_dir)
    remove_stale_gc_locks(git_dir)
    before = count(git_dir)
    if not due(before, policy):
        return None
    config = {
        "gc.autoPackLimit": str(policy.pack_limit),
        "gc.auto": str(policy.loose_limit),
        "gc.cruftPacks": "true",
    }
    started = time.monotonic()
    if not policy.background:
        gc(git_dir, timeout_s=policy.timeout_seconds, config=config)
        return Housekept(git_dir, before, count(git_dir), time.monotonic() - started, len(keeps))
    stderr = git_dir / STDERR_FILE
    argv = _gc_argv(git_dir, {**config, "gc.packRefs": "false"})
    try:
        with stderr.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                env=gitcli.git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,  # a signal to the controller's group does not stop it
            )
    except OSError as exc:
        raise TransportError(f"housekeeping (git gc --auto) in {git_dir}: cannot run git: {exc}") from exc
    _running[key] = _Running(process, before, started, policy.timeout_seconds, len(keeps), stderr)
    log.info(
        "%s: %s, past the thresholds: git gc started in the background (pid %d)", git_dir, before, process.pid
    )
    return None


def running(git_dir: Path) -> bool:
    """Whether a ``git gc`` this process started in the background in ``git_dir`` still runs."""
    run = _running.get(git_dir.resolve())
    return run is not None and run.process.poll() is None


def settle(git_dir: Path, timeout_s: float) -> Housekept | None:
    """Wait for the background ``git gc`` this process started in ``git_dir`` to end (at most
    ``timeout_s``) and reap it, as the next :func:`housekeep` would; None when none was running
    (or it still runs). For whoever needs the repack done before going on: a benchmark, a test."""
    key = git_dir.resolve()
    run = _running.get(key)
    if run is None:
        return None
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.process.wait(timeout=timeout_s)
    return _reap(key, run)


def _reap(key: Path, run: _Running) -> Housekept | None:
    """What the background run did once it has ended (None while it runs); killed past its timeout."""
    what = f"housekeeping (git gc --auto) in {key}"
    seconds = time.monotonic() - run.started
    if run.process.poll() is None:
        if seconds <= run.timeout_s:
            return None
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
        del _running[key]
        remove_dead_temporary_packs(key)
        remove_dead_gc_pid(key)
        raise TransportError(
            f"{what}: not done within {run.timeout_s:g} s (stopped; it is tried again later)"
        )
    del _running[key]
    try:
        said = run.stderr.read_bytes()[-2000:].decode("utf-8", "replace").strip()
        run.stderr.unlink(missing_ok=True)
    except OSError:
        said = ""
    if run.process.returncode != 0:
        raise TransportError(f"{what} failed: {said[-500:] or f'git exited {run.process.returncode}'}")
    return Housekept(key, run.before, count(key), seconds, run.keeps_removed)


def _gc_argv(git_dir: Path, config: dict[str, str]) -> list[str]:
    argv = [gitcli.git_binary(), "--git-dir", str(git_dir), "-c", "gc.autoDetach=false"]
    for key, value in sorted(config.items()):
        argv += ["-c", f"{key}={value}"]
    return [*argv, "gc", "--auto", "--quiet"]


def gc(git_dir: Path, *, timeout_s: float, config: dict[str, str] | None = None) -> None:
    """``git gc --auto --quiet`` in the foreground, with ``config`` on top of the repository's own."""
    argv = _gc_argv(git_dir, config or {})
    what = f"housekeeping (git gc --auto) in {git_dir}"
    try:
        done = subprocess.run(
            argv,
            env=gitcli.git_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransportError(
            f"{what}: not done within {timeout_s:g} s (stopped; it is tried again later)"
        ) from exc
    except OSError as exc:
        raise TransportError(f"{what}: cannot run git: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.strip()[-500:] or f"git exited {done.returncode}"
        raise TransportError(f"{what} failed: {said}")


def remove_dead_keeps(git_dir: Path) -> list[Path]:
    """Remove the ``.keep`` files a push by hand (:mod:`fleetcd.git.localpush`) on this host left
    when it was killed: they name their process, and one that no longer runs will never remove
    its own. Any other ``.keep`` (an operator's, git's own) is left alone. Returns those removed."""
    pack_dir = git_dir / "objects" / "pack"
    removed = []
    try:
        keeps = [path for path in pack_dir.iterdir() if path.name.endswith(".keep")]
    except FileNotFoundError:
        return []
    for keep in keeps:
        try:
            text = keep.read_bytes()[:300].decode("utf-8", "replace").strip()
            written = keep.stat().st_mtime
        except OSError:
            continue
        if _written_by_dead_push(text, written):
            keep.unlink(missing_ok=True)
            removed.append(keep)
            log.info("%s: removed; the push by hand that wrote it is gone (%s)", keep, text)
    return removed


def remove_dead_temporary_packs(git_dir: Path) -> list[Path]:
    """Remove what a killed ``git repack`` left in ``objects/pack``: its ``.tmp-<pid>-pack-*``
    files (a whole new pack, as large as the repository, when it was killed just before renaming
    it into place), once process ``<pid>`` no longer runs. git itself never removes them (``git
    prune`` only removes ``tmp_*``): every killed repack would leave one more. Returns those removed."""
    pack_dir = git_dir / "objects" / "pack"
    try:
        found = [path for path in pack_dir.iterdir() if path.name.startswith(".tmp-")]
    except FileNotFoundError:
        return []
    removed = []
    for path in found:
        pid, dash, _rest = path.name[len(".tmp-") :].partition("-")
        if dash and pid.isdigit() and _gone(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("%s: removed %d temporary file(s) a killed repack left", pack_dir, len(removed))
    return removed


def remove_stale_gc_locks(git_dir: Path, *, now: float | None = None) -> list[Path]:
    """Remove the commit-graph's lock files (:data:`GC_LOCKS`) a killed ``git gc`` left, once no gc
    holds ``gc.pid`` and they are :data:`STALE_GC_LOCK_S` old. git never does: with one there,
    every later ``gc`` repacked and then failed writing the commit-graph (``commit-graph.lock: File
    exists``), so housekeeping reported a failure after every repack, for good. Returns those removed."""
    if (git_dir / "gc.pid").exists():  # a gc at work (a dead one's was removed just before)
        return []
    cutoff = (time.time() if now is None else now) - STALE_GC_LOCK_S
    removed = []
    for name in GC_LOCKS:
        lock = git_dir / name
        try:
            if lock.lstat().st_mtime < cutoff:
                lock.unlink()
                removed.append(lock)
                log.warning("%s: removed; a git gc killed while writing the commit-graph left it", lock)
        except FileNotFoundError:
            continue
    return removed


def remove_dead_gc_pid(git_dir: Path) -> bool:
    """Remove ``gc.pid`` when it names a process on this host that is gone or a zombie; whether it
    was removed. ``git gc`` skips its run for 12 hours while ``gc.pid`` names a process that still
    answers a signal, which a killed, unreaped ``gc`` does (git itself takes over a dead one's)."""
    try:
        words = (git_dir / "gc.pid").read_bytes()[:300].decode("utf-8", "replace").split()
    except OSError:
        return False
    if len(words) != 2 or not words[0].isdigit() or words[1] != socket.gethostname():
        return False
    if not _gone(int(words[0])):
        return False
    (git_dir / "gc.pid").unlink(missing_ok=True)
    log.info("%s: removed gc.pid of a git gc that was killed (pid %s)", git_dir, words[0])
    return True


def keep_message() -> str:
    """What a push by hand writes into its pack's ``.keep`` file: who it is, for :func:`remove_dead_keeps`."""
    return f"{KEEP_MARK} from {socket.gethostname()} pid {os.getpid()}"


def _written_by_dead_push(text: str, written: float) -> bool:
    prefix = f"{KEEP_MARK} from {socket.gethostname()} pid "
    if not text.startswith(prefix) or not text[len(prefix) :].isdigit():
        return False
    return _gone(int(text[len(prefix) :]), written)


def _gone(pid: int, written: float | None = None) -> bool:
    """Whether no process ``pid`` runs on this host (never true of a pid the kernel could not have
    given). With ``written``, the time a file naming ``pid`` was written: also when the process
    running as ``pid`` (this one included) started after it (:func:`started_after`)."""
    if not 0 < pid < 2**22:
        return False
    if pid == os.getpid():
        return written is not None and started_after(pid, written)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return written is not None and started_after(pid, written)
    return _zombie(pid) or (written is not None and started_after(pid, written))


def gone(pid: int, written: float) -> bool:
    """Whether the process of this host that wrote a file naming ``pid`` at ``written`` is gone."""
    return _gone(pid, written)


def started_after(pid: int, written: float) -> bool:
    """Whether process ``pid`` started more than :data:`START_SLACK_S` after ``written`` (from
    ``/proc``; False where it cannot tell): then it is not the process a file written then names."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        ticks = int(stat[stat.rfind(b")") + 2 :].split()[19])  # field 22: starttime, since boot
        up = float(Path("/proc/uptime").read_bytes().split()[0])
        started = time.time() - up + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return False
    return started > written + START_SLACK_S


def _zombie(pid: int) -> bool:
    """A process killed but not yet reaped still answers ``kill(pid, 0)``: where nothing reaps
    orphans (a container whose first process does not), a killed ``git gc`` stays one for ever."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"
