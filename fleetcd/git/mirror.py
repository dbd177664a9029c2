"""The controller's local mirror (its ``--cache``): one process at a time, healed when taken.

The mirror is a cache that must heal itself, so :func:`open_locked_mirror` hands it out under a
whole-cache lock:

* one process at a time: an exclusive ``flock`` on ``<mirror>.fleetcd-lock`` beside the mirror,
  held while the returned :class:`LockedRepository` lives (``with`` it, or :meth:`~LockedRepository.close`
  it; a handle dropped without either lets go when it is freed). Another process waits up to
  ``wait_seconds``, then gets :class:`MirrorBusy`. The kernel drops a flock when its process dies,
  ``kill -9`` included, so a dead holder never keeps the cache. Within one process the lock is
  re-entrant: nested handles on one mirror share it.
* so whoever takes the lock is the mirror's only writer, and any git lock file still in it
  (:data:`STALE_LOCK_FILES`, ``*.lock`` under ``refs/`` and ``logs/``) was left by a process that
  died holding it: removed before anything else runs. A killed fan-out left up to 974 of them, and
  every later ref update failed with "locked by another writer". The lock file says who holds it,
  and :data:`RELEASED` once its holder let go cleanly; only after a holder that did not (killed,
  or a cache from before this lock) is the mirror searched, because walking 10,000 robots' loose
  refs takes 1-2 s on the 2-core machine, more than an idle reconcile may cost.
* a mirror that cannot be opened at all is deleted and created again, empty: the next fetch fills
  it from the server, which is the truth.
* a new mirror is initialised in a temporary directory and renamed into place, so two processes
  creating it at once (or one killed halfway) never leave a half-made repository or a ``HEAD.lock``.
* the controller's own files kept in the mirror beside git's (``fleetcd-*.json``: caches, whose loss
  costs a full reconcile) are replaced atomically (:func:`replace_file`); the temporary a kill
  leaves before the rename is removed when the lock is next taken, once it is
  :data:`STALE_TEMPORARY_S` old (before, each kill left one for good).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from pygit2.branches import Branches
from pygit2.references import References
from pygit2.remotes import RemoteCollection
from pygit2.submodules import SubmoduleCollection

from fleetcd.compat import Self
from fleetcd.errors import SetupError
from fleetcd.git.repo import init_bare_atomically

log = logging.getLogger("fleetcd.git")
LOCK_SUFFIX = ".fleetcd-lock"  # <mirror>.fleetcd-lock, beside the mirror so a rebuild keeps it
# git's and libgit2's lock files at a repository's top level (refs/ and logs/ are searched whole),
# and git's packed-refs.new: the new file it writes under packed-refs.lock (a ref deletion, a
# pack-refs), created exclusively too, so every later one failed on it ("File exists").
STALE_LOCK_FILES = (
    "HEAD.lock",
    "packed-refs.lock",
    "packed-refs.new",
    "config.lock",
    "index.lock",
    "shallow.lock",
    "FETCH_HEAD.lock",
)
_POLL_SECONDS = 0.05  # how often a waiting process retries the lock
RELEASED = "released\n"  # what the lock file holds after a clean release; anything else: search
TEMPORARY_PREFIX = ".fleetcd-tmp-"  # a file of replace_file's being written in the mirror
# A temporary older than this is a killed writer's: a live one renames its own within milliseconds
# (and one that does not hold the lock, such as an idle check, must not lose it meanwhile).
STALE_TEMPORARY_S = 300.0


class MirrorBusy(SetupError):
    """Another live process has held the mirror's lock for longer than we were willing to wait."""

    def __init__(self, mirror: Path, holder: str, waited_seconds: float) -> None:
        self.mirror, self.holder, self.waited_seconds = mirror, holder, waited_seconds
        super().__init__(
            f"{mirror}: the cache is in use by another fleetcd process ({holder or 'holder unknown'}) "
            f"and stayed so for {waited_seconds:g} s; two controllers need two --cache directories"
        )


class LockedRepository(pygit2.Repository):
    """A mirror handle that holds the mirror's lock until :meth:`close` (or until it is freed).

    pygit2 keeps ``references``, ``branches``, ``remotes`` and ``submodules`` as attributes that point
    back at the repository: a reference cycle, so a handle dropped without ``close`` would hold the
    lock until the garbage collector happened to run. Here they are made on each use instead, and
    a dropped handle lets go as soon as its last reference goes.
    """

    _release: weakref.finalize[[], LockedRepository]

    @property
    def references(self) -> References:
        return References(self)

    @references.setter
    def references(self, _value: Any) -> None:
        pass  # pygit2's _common_init assigns it: made on each use instead (see the class docstring)

    @property
    def branches(self) -> Branches:
        return Branches(self)

    @branches.setter
    def branches(self, _value: Any) -> None:
        pass

    @property
    def remotes(self) -> RemoteCollection:
        return RemoteCollection(self)

    @remotes.setter
    def remotes(self, _value: Any) -> None:
        pass

    @property
    def submodules(self) -> SubmoduleCollection:
        return SubmoduleCollection(self)

    @submodules.setter
    def submodules(self, _value: Any) -> None:
        pass

    def close(self) -> None:
        """Let go of the mirror's lock (idempotent); the handle must not be used afterwards."""
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Hold:
    fd: int
    count: int


_holds: dict[Path, _Hold] = {}  # lock file -> this process's hold (re-entrant within the process)
_holds_guard = threading.Lock()


def open_locked_mirror(path: Path, *, wait_seconds: float) -> LockedRepository:
    """The bare mirror at ``path`` under its whole-cache lock, healed and created as needed.

    Waits up to ``wait_seconds`` for another process's hold; raises :class:`MirrorBusy` after that.
    """
    lock = path.with_name(path.name + LOCK_SUFFIX)
    first, unclean = _acquire(lock, path, wait_seconds)
    release = _Releaser(lock)
    try:
        if first:  # the only user now: lock files are stale, a broken mirror can go
            _heal(path, search=unclean)
        repo = LockedRepository(str(path))
    except BaseException:
        release()
        raise
    repo._release = weakref.finalize(repo, release)
    return repo


class _Releaser:
    """Drops one of this process's holds on ``lock``; the last one unlocks the file."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock

    def __call__(self) -> None:
        with _holds_guard:
            hold = _holds.get(self.lock)
            if hold is None:
                return
            hold.count -= 1
            if hold.count == 0:
                del _holds[self.lock]
                try:
                    _stamp(hold.fd, RELEASED)  # still held: the next holder reads it, or nobody
                finally:
                    os.close(hold.fd)  # closing the only fd on it releases the flock


def _acquire(lock: Path, mirror: Path, wait_seconds: float) -> tuple[bool, bool]:
    """Hold ``lock``. Returns (first, unclean): this process did not hold it already (the caller
    heals), and the previous holder did not release it cleanly (the caller searches for locks)."""
    with _holds_guard:
        hold = _holds.get(lock)
        if hold is not None:
            hold.count += 1
            return False, False
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SetupError(f"{lock}: cannot create the cache's lock file: {exc}") from exc
        try:
            _wait_for_flock(fd, lock, mirror, wait_seconds)
            unclean = os.pread(fd, len(RELEASED) + 1, 0) != RELEASED.encode()
            _stamp(fd, f"pid {os.getpid()} on {socket.gethostname()}\n")
        except BaseException:
            os.close(fd)
            raise
        _holds[lock] = _Hold(fd, 1)
        return True, unclean


def _stamp(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _wait_for_flock(fd: int, lock: Path, mirror: Path, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = _holder(lock)
        if time.monotonic() >= deadline:
            raise MirrorBusy(mirror, holder, wait_seconds)
        if not announced:
            log.info("%s: waiting up to %g s for %s, which uses this cache", mirror, wait_seconds, holder)
            announced = True
        time.sleep(_POLL_SECONDS)


def _holder(lock: Path) -> str:
    try:
        return lock.read_text(encoding="utf-8", errors="replace").strip()[:200]
    except OSError:
        return ""


def _heal(path: Path, *, search: bool) -> None:
    """Under the lock: stale lock files removed (when ``search``: the last holder did not release
    cleanly); an unopenable mirror rebuilt; a missing one made."""
    for leftover in path.parent.glob(f".{path.name}.*-*"):  # a creation or rebuild cut short
        if leftover.name.startswith((f".{path.name}.new-", f".{path.name}.broken-")):
            shutil.rmtree(leftover, ignore_errors=True)
    if path.is_dir():
        _remove_stale_temporaries(path)
    if path.exists() and search:
        removed = remove_stale_lock_files(path)
        if removed:
            shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
            log.warning("%s: removed %d lock file(s) a killed process left: %s", path, len(removed), shown)
    if path.exists():
        try:
            pygit2.Repository(str(path))
        except (pygit2.GitError, KeyError, ValueError) as exc:
            log.warning("%s: cannot be opened (%s); rebuilding it from the server (it is a cache)", path, exc)
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.broken-", dir=path.parent))
            path.rename(aside / "mirror")
            shutil.rmtree(aside, ignore_errors=True)
    if not (path / "HEAD").exists():
        init_bare_atomically(path)


def remove_stale_lock_files(path: Path) -> list[str]:
    """Remove git's lock files from the repository at ``path``; returns their relative paths.

    Only safe while no other process can be writing to it: the caller holds the mirror's lock.
    """
    found = [path / name for name in STALE_LOCK_FILES]
    for area in ("refs", "logs"):
        for folder, _dirs, files in os.walk(path / area):  # about twice as fast as Path.rglob
            found += (Path(folder, name) for name in files if name.endswith(".lock"))
    removed: list[str] = []
    for file in found:
        if file.is_symlink() or file.is_file():
            file.unlink()
            removed.append(str(file.relative_to(path)))
    return sorted(removed)


def replace_file(mirror: Path, name: str, data: bytes) -> None:
    """``mirror/name``, a file of the controller's own beside git's, replaced by ``data`` atomically:
    written to a temporary in the mirror and renamed over it. A kill in between leaves the old file
    and the temporary, which the next :func:`open_locked_mirror` removes (:func:`_heal`)."""
    fd, temporary = tempfile.mkstemp(dir=mirror, prefix=TEMPORARY_PREFIX)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        Path(temporary).replace(mirror / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(mirror: Path) -> None:
    """Remove :func:`replace_file`'s temporaries in ``mirror`` older than :data:`STALE_TEMPORARY_S`."""
    cutoff = time.time() - STALE_TEMPORARY_S
    for path in mirror.iterdir():
        if path.name.startswith(TEMPORARY_PREFIX):
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:  # its writer renamed it meanwhile
                continue
