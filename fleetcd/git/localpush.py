"""A push of many refs into a local server that runs no hooks: one pack, one ``packed-refs`` rewrite.

``git push`` into a local bare repository starts receive-pack, which writes one loose file per ref
(four directories each for a namespaced robot ref), and the controller then packs them again
(:func:`fleetcd.git.gitcli.pack_refs`) so that ref listings stay cheap. Measured on this machine
(2 cores, load 10) with 20,000 robots' refs: the push took 11.2 s and the ``pack-refs`` after it
117.7 s (3.5 s of CPU; the rest waiting on the disk while 80,000 directories were made and
removed). Sending the same objects as one pack (``git pack-objects | git index-pack``) took 3.8 s,
and rewriting ``packed-refs`` is one sequential file write.

So a push of :data:`DIRECT_FROM_REFS` refs or more, or any push into a server whose
``packed-refs`` holds :data:`DIRECT_FROM_PACKED_BYTES` (receive-pack advertises every ref before it
takes one: 3.6 s for the state branch alone at 200,000 refs), is done by hand (:func:`by_hand_pays`),
when that server would do nothing more than store what it is sent:

* no hook would run (``pre-receive``, ``update``, ``post-receive``, ``reference-transaction``, ...;
  ``core.hooksPath`` is honoured), no ``receive.denyNonFastForwards`` or ``fsckObjects`` policy,
  and refs are files (not reftable). Otherwise :func:`refused` says why and the caller pushes.
* The objects go first, as receive-pack sends them: ``pack-objects`` in the mirror piped into the
  server's ``index-pack --keep`` (the ``.keep`` file protects the pack from a concurrent ``gc``
  until the refs name its objects; it is removed after, and one a killed push left is removed by
  :func:`fleetcd.git.housekeeping.remove_dead_keeps`, which the controller runs after each push
  by hand together with git's own ``gc --auto``: the housekeeping receive-pack would have done).
  A state commit whose tree was written as one pack on its parent's tree, the parent being the
  server's (:func:`fleetcd.git.objects.landed_tree`), needs exactly that pack: it is linked into
  the server as it is, ``.keep`` first and index last, and the commit written there loose
  (:func:`_send_landed`), without walking both trees again; anything else is walked.
* The refs then move in one atomic rename of ``packed-refs`` (the old bytes with the moved refs'
  lines spliced in: :class:`~fleetcd.git.packedrefs.PackedFile`), under git's own ``packed-refs.lock``
  and a ``<ref>.lock`` on each ref with a lease (the state branch), which is what receive-pack
  would take for that ref: a concurrent push of the same ref fails instead of interleaving. A lease
  that no longer holds raises :class:`~fleetcd.errors.PushRejected` before anything moves, as
  ``--force-with-lease`` would.
* A moved ref that is also a loose file would shadow its new packed value, so such files are first
  folded into ``packed-refs`` with their current values (a rename that changes no ref) and
  deleted; only then does the rename that moves the refs happen. A ``kill -9`` at any instant
  leaves every ref either at its old value or all of them at their new ones.
* Robots' loose status refs are packed in the same rewrite at the values their files hold (a
  rename that moves no ref), then each file is deleted under its ``<ref>.lock`` while it still
  holds that value (:func:`fold_loose_refs`), as ``git pack-refs`` prunes: a status push racing
  it keeps its newer value. ``git pack-refs --all`` after the push wrote the 18 MB file of a
  100,000-robot server a second time (ingest publish 0.84-1.52 s -> 0.48-1.00 s at load 5).
* A lock held by someone else is :class:`LocalPushBusy` (the caller pushes the usual way). A lock
  this code left behind when it was killed names its process (it is created with that name in it,
  by a hard link), and is removed once that process is gone, so a crash heals on the next run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pygit2

from fleetcd.errors import PushRejected, TransportError
from fleetcd.git import gitcli
from fleetcd.git.housekeeping import gone, keep_message
from fleetcd.git.objects import beside_prune, landed_tree
from fleetcd.git.packedrefs import PACKED_REFS, PackedFile, remove_loose
from fleetcd.git.packfile import remove_stale_temp_files

DIRECT_FROM_REFS = 64
# A push of fewer refs (the state branch alone, after robots reported) still goes by hand once the
# server's packed-refs holds this many bytes (about 90 per ref, so some 700 refs or 350 robots);
# measured in by_hand_pays.
DIRECT_FROM_PACKED_BYTES = 64 * 1024
HOOKS = (
    "pre-receive",
    "update",
    "post-receive",
    "post-update",
    "reference-transaction",
    "proc-receive",
    "push-to-checkout",
)
_POLICY = ("receive.denynonfastforwards", "receive.fsckobjects", "transfer.fsckobjects")
_LOCK_MARK = b"fleetcd-localpush"


class LocalPushBusy(TransportError):
    """Another writer holds a lock this push needs; push through receive-pack instead."""


def by_hand_pays(git_dir: Path, refs: int) -> bool:
    """Whether a push of ``refs`` desired-state refs and the state branch into the local server at
    ``git_dir`` costs less by hand than through receive-pack (if :func:`refused` allows it at all).

    receive-pack's cost grows with the refs it sends and the refs the server holds (it advertises
    every one); by hand it is three processes and one splice of ``packed-refs``. The state branch
    alone into a packed server, seconds (``bench/publish_refs.py``, 2 cores at load 7-14):

    ========  ==========  =======
    refs      git push    by hand
    ========  ==========  =======
    62        0.16        0.10
    602       0.14        0.04
    2,002     0.17-0.52   0.05-0.11
    20,002    0.53-0.65   0.09
    200,002   3.6-4.3     0.12-0.20
    ========  ==========  =======

    By hand is cheaper at every size; below the threshold both are a fraction of a second, and
    small fleets (most tests among them) keep git's own path.
    """
    if refs >= DIRECT_FROM_REFS:
        return True
    try:
        return (git_dir / PACKED_REFS).stat().st_size >= DIRECT_FROM_PACKED_BYTES
    except OSError:
        return False


def refused(git_dir: Path, *, timeout_s: float = gitcli.DEFAULT_TIMEOUT_S) -> str | None:
    """Why a push into ``git_dir`` must go through receive-pack (None: it may be done by hand)."""
    if (git_dir / "reftable").exists() or not (git_dir / "objects" / "pack").is_dir():
        return "its refs are not files or it has no pack directory"
    argv = [gitcli.git_binary(), "--git-dir", str(git_dir), "config", "--get-regexp"]
    argv.append(
        r"^(core\.hookspath|receive\.denynonfastforwards|receive\.fsckobjects|transfer\.fsckobjects)$"
    )
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, env=gitcli.git_env(), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"its config could not be read: {exc}"
    hooks = git_dir / "hooks"
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key.lower() == "core.hookspath":
            hooks = Path(value).expanduser()
            hooks = hooks if hooks.is_absolute() else git_dir / hooks
        elif key.lower() in _POLICY and value.lower() in ("true", "yes", "on", "1"):
            return f"{key} is set"
    for name in HOOKS:
        hook = hooks / name
        if hook.is_file() and os.access(hook, os.X_OK):
            return f"it runs a {name} hook"
    return None


def push_by_hand(
    repo: pygit2.Repository,
    git_dir: Path,
    refs: Mapping[str, pygit2.Oid],
    *,
    leases: Mapping[str, pygit2.Oid | None],
    timeout_s: float,
    fold: Iterable[str] = (),
) -> int:
    """Set ``refs`` (forced) in the local server at ``git_dir``, objects from ``repo``; every ref in
    ``leases`` must still hold its value there (None: absent). All or none. Returns refs moved.

    ``fold``: loose refs (:func:`loose_refs`) packed in the same rewrite of ``packed-refs`` at the
    values their files hold, then pruned as :func:`fold_loose_refs` prunes them: at 100,000 robots
    that file is 18 MB, and ``git pack-refs`` after the push wrote it a second time."""
    _remove_dead_marks(git_dir)
    remove_stale_temp_files(git_dir / "objects" / "pack")  # what a push killed while linking left
    before, _ = _current(git_dir, PackedFile.read(git_dir), refs)
    moving = {ref: oid for ref, oid in refs.items() if before.get(ref) != str(oid)}
    if not moving:  # a replay: the refs are there already
        fold_loose_refs(git_dir, fold)
        return 0
    have = {before[ref] for ref in moving if ref in before}
    have |= {str(oid) for oid in leases.values() if oid is not None}
    keeps = _send_landed(repo, git_dir, moving.values(), have)
    if keeps is None:
        keeps = [_send_objects(repo, git_dir, moving.values(), have, timeout_s)]
    folding = sorted(set(fold).difference(moving, leases))
    odb = pygit2.Repository(str(git_dir)).odb if folding else None
    values: dict[str, str] = {}
    try:
        with _locked(git_dir, [*sorted(leases), PACKED_REFS]):
            packed = PackedFile.read(git_dir)
            current, loose = _current(git_dir, packed, {**moving, **leases})
            for ref, expected in sorted(leases.items()):
                if current.get(ref) != (None if expected is None else str(expected)):
                    found = current.get(ref) or "(absent)"
                    raise PushRejected(
                        ref, f"the server's {ref} is no longer the value this push expected (it is {found})"
                    )
            if loose:  # fold them into packed-refs at their current values, then delete them
                folded = {ref.encode(): f"{current[ref]} {ref}\n".encode() for ref in loose}
                _write_packed(git_dir, packed.changed(folded))
                for ref in sorted(loose):
                    remove_loose(git_dir, ref)
                packed = PackedFile.read(git_dir)
            if odb is not None:  # read under packed-refs.lock, which a ref's deletion takes
                values = {ref: value for ref in folding if (value := _plain_value(git_dir, odb, ref))}
            moved = {ref.encode(): f"{value} {ref}\n".encode() for ref, value in values.items()}
            moved |= {ref.encode(): f"{oid} {ref}\n".encode() for ref, oid in moving.items()}
            _write_packed(git_dir, packed.changed(moved))
    finally:
        for keep in keeps:
            if keep is not None:
                keep.unlink(missing_ok=True)
    _prune(git_dir, values)
    return len(moving)


def _current(git_dir: Path, packed: PackedFile, refs: Iterable[str]) -> tuple[dict[str, str], set[str]]:
    """What each of ``refs`` points at in ``git_dir`` (its loose file, else packed; absent: left out),
    and which of them are loose files. Plain string paths: pathlib cost 1.1 s per 30,000 refs here."""
    found: dict[str, str] = {}
    loose: set[str] = set()
    base = f"{os.fspath(git_dir)}/"
    for ref in refs:
        try:
            with open(base + ref, "rb") as file:  # noqa: PTH123 - see the docstring
                text = file.read(100).decode("ascii", "replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            value = packed.value(ref.encode())
            if value is not None:
                found[ref] = value.decode()
            continue
        except IsADirectoryError:
            continue
        if text.startswith("ref:"):
            raise TransportError(f"{git_dir}: {ref} is a symbolic ref; refusing to overwrite it by hand")
        found[ref] = text
        loose.add(ref)
    return found, loose


def _send_objects(
    repo: pygit2.Repository, git_dir: Path, tips: Iterable[pygit2.Oid], have: set[str], timeout_s: float
) -> Path | None:
    """Every object reachable from ``tips`` but not from ``have``, as one pack kept in ``git_dir``
    (``pack-objects`` here piped into ``index-pack`` there); returns the pack's ``.keep`` file, to be
    removed once refs name the objects."""
    revs = [f"{oid}\n" for oid in tips]
    revs += [f"^{oid}\n" for oid in sorted(have) if pygit2.Oid(hex=oid) in repo]
    what = f"sending objects to {git_dir}"
    git, env = gitcli.git_binary(), gitcli.git_env()
    keep = f"--keep={keep_message()}"  # names this process: a dead one's is removed (housekeeping)
    pipe = subprocess.PIPE
    try:
        packer = subprocess.Popen(
            [git, "--git-dir", repo.path, "pack-objects", "--revs", "--stdout", "-q"],
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
            env=env,
        )
        indexer = subprocess.Popen(
            [git, "--git-dir", str(git_dir), "index-pack", "--stdin", "--fix-thin", keep],
            stdin=packer.stdout,
            stdout=pipe,
            stderr=pipe,
            env=env,
        )
    except OSError as exc:
        raise TransportError(f"{what}: cannot run git: {exc}") from exc
    with packer, indexer:
        assert packer.stdin is not None and packer.stdout is not None and packer.stderr is not None
        packer.stdout.close()  # the indexer reads it now
        try:
            try:  # pack-objects reads every rev before it writes: this cannot block on its output
                packer.stdin.write("".join(revs).encode())
                packer.stdin.close()
            except BrokenPipeError:
                pass  # it stopped early; its exit code and message say why
            out, index_said = indexer.communicate(timeout=timeout_s)
            packer.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            packer.kill()
            indexer.kill()
            raise TransportError(f"{what}: no answer within {timeout_s:g} s") from exc
        pack_said = packer.stderr.read()
    if packer.returncode != 0 or indexer.returncode != 0:
        said = (pack_said if packer.returncode != 0 else index_said).decode(errors="replace").strip()
        raise TransportError(f"{what} failed: {said or 'git exited non-zero'}")
    kind, _, name = out.decode().strip().partition("\t")
    return git_dir / "objects" / "pack" / f"pack-{name}.keep" if kind == "keep" else None


def _send_landed(
    repo: pygit2.Repository, git_dir: Path, tips: Iterable[pygit2.Oid], have: set[str]
) -> list[Path | None] | None:
    """What :func:`_send_objects` sends, without walking trees, when every tip is a commit on one
    parent in ``have`` whose tree is its parent's or was written as one pack on that parent's tree
    (:func:`fleetcd.git.objects.landed_tree`): that pack holds every object the tree has and the
    parent's lacks, and the server has the parent's. The pack and its index are linked (else
    copied) into the server, its ``.keep`` first, and the commits written there loose; returns the
    ``.keep`` files to remove once refs name the objects. None (nothing sent): any other tip, or a
    pack no longer in the mirror; the caller walks then. The state branch of an ingest at 100,000
    robots: 256 new directories of ~390 robots each, 4.3 MB of trees that ``pack-objects`` found by
    reading both versions of each (0.05 s) and ``index-pack`` hashed again (0.04 s)."""
    commits: list[tuple[int, bytes]] = []
    indexes: set[Path] = set()
    for tip in tips:
        found = repo.get(tip)
        if not isinstance(found, pygit2.Commit) or len(found.parent_ids) != 1:
            return None
        parent = found.parent_ids[0]
        if str(parent) not in have or parent not in repo:
            return None
        base = repo[parent].peel(pygit2.Tree).id
        if found.tree_id != base:
            landed = landed_tree(repo, found.tree_id)
            if landed is None or landed.base != base:
                return None
            if not (landed.index.is_file() and landed.index.with_suffix(".pack").is_file()):
                return None
            indexes.add(landed.index)
        commits.append(repo.odb.read(tip))
    pack_dir = git_dir / "objects" / "pack"
    keeps: list[Path | None] = []
    try:
        for index in sorted(indexes):
            keeps.append(_link_pack(index, pack_dir))
        odb = pygit2.Repository(str(git_dir)).odb
        for kind, data in commits:
            beside_prune(lambda: odb.write(kind, data))  # noqa: B023 (called at once)
    except (OSError, pygit2.GitError) as exc:
        for keep in keeps:
            if keep is not None:
                keep.unlink(missing_ok=True)
        raise TransportError(f"sending objects to {git_dir} failed: {exc}") from exc
    return keeps


def _link_pack(index: Path, pack_dir: Path) -> Path | None:
    """The pack of ``index`` (and the index) in ``pack_dir``, as ``index-pack --keep`` leaves one:
    its ``.keep`` (naming this process) written first, then the pack and last the index, each
    linked (else copied) to a ``tmp_`` name and renamed, so a kill leaves no index without its
    pack. Returns the ``.keep`` written (None: one was there, not ours to remove)."""
    name = index.name.removesuffix(".idx")
    keep = _new_keep(pack_dir, name)
    for suffix, kind in ((".pack", "pack"), (".idx", "idx")):
        source, target = index.with_suffix(suffix), pack_dir / f"{name}{suffix}"
        if target.exists():
            continue
        temporary = pack_dir / f"tmp_{kind}_{name}.{os.getpid()}.fleetcd"
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:  # another file system, or links refused: a copy, on disk before the rename
            shutil.copyfile(source, temporary)
            with temporary.open("rb+") as file:
                os.fsync(file.fileno())
        temporary.chmod(0o444)  # as git leaves a pack (read-only; a link shares the mirror's mode)
        temporary.replace(target)
    with suppress(OSError):
        fd = os.open(pack_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return keep


def _new_keep(pack_dir: Path, name: str) -> Path | None:
    """``pack_dir/<name>.keep`` made already naming this process, as a lock is (:func:`_lock`): the
    message written to a ``tmp_`` file and hard-linked into place. None: one was there, not ours.

    Created empty and then written, a kill in between left an empty ``.keep``, which names no
    process: :func:`~fleetcd.git.housekeeping.remove_dead_keeps` rightly leaves those (``git
    index-pack --keep`` and operators write them), and ``gc`` never repacked that pack again. The
    ``tmp_`` file a kill leaves is :func:`~fleetcd.git.packfile.remove_stale_temp_files`'."""
    keep = pack_dir / f"{name}.keep"
    temporary = pack_dir / f"tmp_keep_{name}.{os.getpid()}.fleetcd"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{keep_message()}\n".encode())
        finally:
            os.close(fd)
        os.link(temporary, keep)
    except FileExistsError:
        return None
    finally:
        temporary.unlink(missing_ok=True)
    return keep


@contextmanager
def _locked(git_dir: Path, names: list[str]) -> Iterator[None]:
    """git's ``<name>.lock`` for each of ``names`` (in order), created exclusively and marked as ours."""
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(_lock(git_dir, f"{name}.lock"))
        yield


@contextmanager
def _lock(git_dir: Path, name: str) -> Iterator[None]:
    """``git_dir/name`` created exclusively, already holding our mark: the mark is written to a file
    of this process's own (:func:`_own_mark`) and hard-linked into place (``link`` fails if the lock
    exists), so a kill at any instant leaves either no lock or one that names its dead holder, never
    an empty one."""
    path = git_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    own = _own_mark(git_dir, "lock")
    try:
        for attempt in (1, 2):
            try:
                os.link(own, path)
            except FileExistsError as exc:
                if attempt == 1 and _left_by_dead_process(path):
                    path.unlink(missing_ok=True)
                    continue
                raise LocalPushBusy(f"{path} exists: another writer holds it") from exc
            break
    finally:
        own.unlink(missing_ok=True)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


_MARKS = itertools.count()


def _own_mark(git_dir: Path, purpose: str) -> Path:
    """A new file in ``git_dir`` itself holding this process's mark, for locks to be linked from.

    It is never under ``refs/``: git reads every file there that does not end in ``.lock`` as a
    ref, and one a kill left empty (between its creation and its write) broke ``git fsck`` and every
    listing of the server until removed. Its name says which host and process made it, so
    :func:`loose_refs` removes it once that process is gone, even empty."""
    path = git_dir / f"{purpose}.{next(_MARKS)}.{socket.gethostname()}.{os.getpid()}.fleetcd"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"%s %s %d\n" % (_LOCK_MARK, socket.gethostname().encode(), os.getpid()))
        finally:
            os.close(fd)
    except BaseException:
        with suppress(OSError):
            path.unlink(missing_ok=True)
        raise
    return path


def _named_for_dead_process(path: Path) -> bool:
    """Whether ``path`` is an :func:`_own_mark` of this host whose process no longer runs."""
    stem, _, pid = path.name.removesuffix(".fleetcd").rpartition(".")
    return stem.endswith(f".{socket.gethostname()}") and _dead(pid, path)


def _left_by_dead_process(path: Path) -> bool:
    """Whether ``path`` is a lock this module wrote on this host for a process that no longer runs."""
    try:
        words = path.read_bytes()[:300].split()
    except OSError:
        return False
    if len(words) != 3 or words[0] != _LOCK_MARK or words[1] != socket.gethostname().encode():
        return False
    return _dead(words[2].decode("ascii", "replace"), path)


def _dead(pid: str, path: Path) -> bool:
    """Whether ``pid`` (text from ``path``: a mark, or its name) names a process of this host that
    no longer runs, or whose pid a process started since ``path`` was written now has (this one
    included: a service restarted in a container, or at the same point of a boot, may get its
    killed predecessor's pid, and took that lock for one it held itself, for good)."""
    if not pid.isascii() or not pid.isdigit() or len(pid) > 10:
        return False
    try:
        written = path.lstat().st_mtime
    except OSError:
        return False
    return gone(int(pid), written)


def _write_packed(git_dir: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """``chunks`` (:meth:`PackedFile.changed`) as ``packed-refs``, through a temporary file and one
    rename; the caller holds ``packed-refs.lock``."""
    temporary = git_dir / f"{PACKED_REFS}.fleetcd-new"
    with temporary.open("wb") as out:
        out.writelines(chunks)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(git_dir / PACKED_REFS)


def loose_refs(git_dir: Path) -> list[str]:
    """Every loose ref file of ``git_dir`` (names, sorted). On the way, what this module's locks left
    when it was killed is removed: ``<ref>.lock`` files (a robot's status push fails on one until
    then) and the files a lock is linked from (:func:`_own_mark`, and :func:`_old_own_mark`), each
    naming a process of this host that no longer runs."""
    _remove_dead_marks(git_dir)
    found: list[str] = []
    for here, _dirs, files in os.walk(git_dir / "refs"):
        for name in files:
            if name.endswith(".lock"):
                path = Path(here) / name
                if _left_by_dead_process(path):
                    path.unlink(missing_ok=True)
                continue
            if name.endswith(".fleetcd") and _old_own_mark(Path(here) / name):
                (Path(here) / name).unlink(missing_ok=True)
                continue
            found.append(f"{Path(here).relative_to(git_dir).as_posix()}/{name}")
    return sorted(found)


def _remove_dead_marks(git_dir: Path) -> None:
    """Remove the files locks are linked from (:func:`_own_mark`) that killed processes left."""
    for path in git_dir.iterdir():
        if path.name.endswith(".fleetcd") and (_named_for_dead_process(path) or _left_by_dead_process(path)):
            path.unlink(missing_ok=True)


def _old_own_mark(path: Path) -> bool:
    """Whether ``path`` is a lock's own file as earlier versions wrote it (until December 2026):
    beside the lock under ``refs/`` (``<ref>.lock.<pid>.fleetcd``), its process gone; whole, or empty
    or cut short by a kill while it was written. git reads it as a broken ref (``git fsck`` fails);
    it is not one. A file of another name is a ref, however broken, and is left to the push."""
    stem, _, pid = path.name.removesuffix(".fleetcd").rpartition(".")
    if not stem.endswith(".lock") or not _dead(pid, path):
        return False
    try:
        content = path.read_bytes()[:300]
    except OSError:
        return False
    return (b"%s %s %s\n" % (_LOCK_MARK, socket.gethostname().encode(), pid.encode())).startswith(content)


def fold_loose_refs(git_dir: Path, loose: Iterable[str]) -> int:
    """``git pack-refs --all`` of the ``loose`` refs (:func:`loose_refs`), by splicing their values into
    ``packed-refs`` (:class:`~fleetcd.git.packedrefs.PackedFile`) instead of writing every packed ref
    again: time that grows with the loose refs, plus one sequential write. Returns the files pruned.

    As git does it: under ``packed-refs.lock`` each loose file's value is read and packed (a rename:
    the loose file still shadows the same value, so no ref changes); then, the lock released, each
    loose file is deleted under its own ``<ref>.lock`` and only while it still holds the value just
    packed: a robot's status push that landed meanwhile stays loose and keeps its value, one that
    holds the ref's lock makes this leave the file. A ref git would not pack as plainly (a symbolic
    or unreadable file, an object the repository lacks, an annotated tag, whose packed line needs
    its peeled value) is left loose. A kill -9 at any instant leaves every ref at its value; a lock
    it left names its dead process and is removed by the next :func:`loose_refs`.
    """
    refs = sorted(loose)
    if not refs:
        return 0
    odb = pygit2.Repository(str(git_dir)).odb
    with _lock(git_dir, f"{PACKED_REFS}.lock"):
        packed = PackedFile.read(git_dir)
        values = {ref: value for ref in refs if (value := _plain_value(git_dir, odb, ref)) is not None}
        if values:  # one bisection a ref, inside the splice (asking first cost as much again)
            changes = {ref.encode(): f"{value} {ref}\n".encode() for ref, value in values.items()}
            _write_packed(git_dir, packed.changed(changes))
    return _prune(git_dir, values)


def _prune(git_dir: Path, values: Mapping[str, str]) -> int:
    """Delete each ref's loose file under its ``<ref>.lock`` while it holds ``values[ref]``, then its
    directories while empty (up to ``refs/<top>``). Every lock is a hard link to one marked file of
    this process (one link a ref, not a file written; 1,000 refs on a busy disk: 0.5 s less).

    Pruning is tidying, not publishing: the packed values are already written, and a loose file
    holding the packed value is the same ref. So a disk that refuses the mark or an unlink (full,
    read-only) prunes less, and the push that packed them still succeeded; the next one tries again."""
    base = os.fspath(git_dir)
    try:
        own = _own_mark(git_dir, "ref-locks")
    except OSError:
        return 0
    pruned = 0
    kept: set[str] = set()  # directories found not empty: their parents are not either
    try:
        for ref, value in values.items():
            lock = f"{base}/{ref}.lock"
            try:
                os.link(own, lock)
            except OSError:
                continue  # held (a push of it is under way), or its directory is gone
            try:
                if _loose_text(git_dir, ref) != value:
                    continue  # moved since it was packed: the newer value stays loose
                os.unlink(f"{base}/{ref}")  # noqa: PTH108 - plain strings, 1,000s of refs
            except OSError:
                continue  # refused by the disk: it stays loose, holding the packed value
            finally:
                os.unlink(lock)  # noqa: PTH108
            pruned += 1
            parent = ref.rpartition("/")[0]
            while parent.count("/") >= 2 and parent not in kept:
                try:
                    os.rmdir(f"{base}/{parent}")  # noqa: PTH106
                except OSError:
                    kept.add(parent)
                    break
                parent = parent.rpartition("/")[0]
    finally:
        own.unlink(missing_ok=True)
    return pruned


def _loose_text(git_dir: Path, ref: str) -> str | None:
    try:
        with open(f"{os.fspath(git_dir)}/{ref}", "rb") as file:  # noqa: PTH123 - 1,000s of refs
            return file.read(100).decode("ascii", "replace").strip()
    except OSError:
        return None


def _plain_value(git_dir: Path, odb: pygit2.Odb, ref: str) -> str | None:
    """``ref``'s loose value when it names, directly, an object of ``odb`` that is no tag."""
    text = _loose_text(git_dir, ref)
    if text is None or len(text) not in (40, 64) or text.strip("0123456789abcdef"):
        return None
    try:
        kind, _size = odb.read_header(pygit2.Oid(hex=text))
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return None if kind == pygit2.enums.ObjectType.TAG else text
