"""Keeping a repository's object store bounded: git's own ``gc --auto``, at thresholds, in time.

Every fetch into the controller's mirror lands as loose objects or one more pack
(:func:`fleetcd.git.objects.object_batch`), and every push by hand into a local server as one more
pack (:mod:`fleetcd.git.localpush`). Nothing else ever repacks them: over a year of reconciles a
few seconds apart, packs and loose objects would pile up without bound, every object lookup
(which searches each pack's index in turn) would get slower and the disk would fill.

:func:`housekeep` is the one policy for both. It counts as ``git gc --auto`` does (packs without a
``.keep`` file; loose objects estimated from ``objects/17``, 1/256 of them) and, only past a
threshold, runs ``git gc --auto`` itself, in the foreground (``gc.autoDetach=false``) and under a
timeout, which:

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
``tests/test_git_housekeeping.py``'s kill -9 test, each kill left a copy of the whole pack).

What ``gc`` refuses to repack is a pack with a ``.keep`` file: a push by hand that was killed
before removing its own would pin its pack for ever, so :func:`remove_dead_keeps` removes the
ones whose process is gone (:mod:`fleetcd.git.localpush` writes who it is into them).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import TransportError
from fleetcd.git import gitcli

log = logging.getLogger("fleetcd.git")
# git's own defaults (gc.autoPackLimit, gc.auto): the thresholds every git server runs at.
PACK_LIMIT = 50
LOOSE_LIMIT = 6700
# A repack of the mirror at 100,000 robots took tens of seconds on the 2-core machine (see
# docs/scaling.md); a repack killed at its timeout changed nothing and is tried again next time.
HOUSEKEEPING_TIMEOUT_SECONDS = 1800.0
KEEP_MARK = "fleetcd push by hand"  # how a .keep file written by fleetcd.git.localpush starts
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Policy:
    """When to repack: more than ``pack_limit`` packs (not counting kept ones), or about more than
    ``loose_limit`` loose objects; ``timeout_seconds`` bounds one run."""

    pack_limit: int = PACK_LIMIT
    loose_limit: int = LOOSE_LIMIT
    timeout_seconds: float = HOUSEKEEPING_TIMEOUT_SECONDS

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


def housekeep(git_dir: Path, policy: Policy) -> Housekept | None:
    """``git gc --auto`` in ``git_dir`` at ``policy``'s thresholds when they are passed; None when
    nothing was due. Dead pushes' ``.keep`` files are removed first (they count as kept packs).
    Raises :class:`~fleetcd.errors.TransportError` when git fails or runs out of time."""
    keeps = remove_dead_keeps(git_dir)
    remove_dead_temporary_packs(git_dir)
    remove_dead_gc_pid(git_dir)
    before = count(git_dir)
    if not due(before, policy):
        return None
    started = time.monotonic()
    gc(
        git_dir,
        timeout_s=policy.timeout_seconds,
        config={
            "gc.autoPackLimit": str(policy.pack_limit),
            "gc.auto": str(policy.loose_limit),
            "gc.cruftPacks": "true",
        },
    )
    return Housekept(git_dir, before, count(git_dir), time.monotonic() - started, len(keeps))


def gc(git_dir: Path, *, timeout_s: float, config: dict[str, str] | None = None) -> None:
    """``git gc --auto --quiet`` in the foreground, with ``config`` on top of the repository's own."""
    argv = [gitcli.git_binary(), "--git-dir", str(git_dir), "-c", "gc.autoDetach=false"]
    for key, value in sorted((config or {}).items()):
        argv += ["-c", f"{key}={value}"]
    argv += ["gc", "--auto", "--quiet"]
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
        except OSError:
            continue
        if _written_by_dead_push(text):
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


def _written_by_dead_push(text: str) -> bool:
    prefix = f"{KEEP_MARK} from {socket.gethostname()} pid "
    if not text.startswith(prefix) or not text[len(prefix) :].isdigit():
        return False
    return _gone(int(text[len(prefix) :]))


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (never true of this process, or of a pid the
    kernel could not have given)."""
    if pid == os.getpid() or not 0 < pid < 2**22:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process killed but not yet reaped still answers ``kill(pid, 0)``: where nothing reaps
    orphans (a container whose first process does not), a killed ``git gc`` stays one for ever."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"
