"""Moving many refs of a repository we alone write to: one rewrite of ``packed-refs``, no loose files.

git keeps a ref either as a loose file (``refs/namespaces/<id>/refs/fleetcd/desired/<id>``: four
directories and a file per robot) or as a line of ``packed-refs``. ``git update-ref`` always writes
loose files, and listing them later costs a directory walk each, so the controller's mirror was
packed (``git pack-refs --all``) after every fan-out. Measured on this machine at 10,000 refs:
``update-ref --stdin`` took 4.0 s (3.7 s of it in the kernel, making 40,000 directories) and the
``pack-refs`` that followed 10.0 s, deleting them again. Rewriting ``packed-refs`` with the new
values takes one sequential file write (about 9 MB at 100,000 refs), the old bytes with the
changed lines spliced in (:class:`PackedFile`: no Python object per untouched ref).

Only for a repository whose sole writer is the caller: the controller's mirror under its lock
(:class:`fleetcd.git.mirror.LockedRepository`). The rewrite still takes git's own
``packed-refs.lock`` (so a git process run by hand fails instead of interleaving), writes the new
file beside it and renames it into place: a ``kill -9`` leaves either the old file or the new one,
and at worst a stale ``packed-refs.lock``, which the mirror's lock removes on the next open. A loose
file of a moved ref would shadow its new packed value, so it is deleted after the rename (a kill in
between leaves the old value, a cache the next fetch refreshes from the server).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2

from fleetcd.errors import RefConflict

PACKED_REFS = "packed-refs"
# How far past the last changed record a changed ref's line is searched for before bisecting: the
# gap between 1,000 refs spread over 200,000 records is ~15 KB; a miss costs a few microseconds.
NEAR_BYTES = 65536
HEADER = b"# pack-refs with: peeled fully-peeled sorted \n"
# How much of two files :meth:`PackedFile.same_but` compares at once (as bytes slices).
SAME_CHUNK_BYTES = 65536


def _comment_inside(data: bytes) -> bool:
    """Whether a line after the first starts with ``#`` (memchr for ``#``, which names rarely hold,
    rather than a search for newline and ``#``: 5x faster on 9 MB)."""
    at = data.find(b"#", len(HEADER))
    while at >= 0:
        if data[at - 1] == 0x0A:
            return True
        at = data.find(b"#", at + 1)
    return False


def read_packed(git_dir: Path) -> dict[bytes, list[bytes]]:
    """``packed-refs`` as ref name → its lines (the ``<oid> <ref>`` line and any ``^<peeled>`` after)."""
    return _parse(read_packed_bytes(git_dir), git_dir / PACKED_REFS)


def read_packed_bytes(git_dir: Path) -> bytes:
    """``git_dir``'s ``packed-refs`` as it is on disk (empty when there is none)."""
    try:
        return (git_dir / PACKED_REFS).read_bytes()
    except FileNotFoundError:
        return b""


def _parse(data: bytes, where: Path) -> dict[bytes, list[bytes]]:
    entries: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"#"):
            continue
        if line.startswith(b"^"):
            if last is not None:
                last.append(line)
            continue
        _oid, sep, name = line.rstrip(b"\n").partition(b" ")
        if not sep:
            raise ValueError(f"{where}: unreadable line {line[:120]!r}")
        last = entries[name] = [line if line.endswith(b"\n") else line + b"\n"]
    return entries


class PackedFile:
    """The bytes of a ``packed-refs`` file: a ref looked up, and the file with some refs changed,
    in time that grows with the refs asked about, not with the file.

    git writes the file sorted by name and says so in its header (``sorted``); then a ref is found
    by bisecting the bytes (``^<peeled>`` lines belong to the record above them), and the changed
    file is the old bytes cut at the K changed records with the new lines spliced in: K lookups and
    one copy, no Python object per untouched line (200,000 refs parsed into a dict took 0.3 s; the
    splice of 1,000 takes milliseconds). Any other file (no such header, a comment or blank line
    inside, no final newline) is parsed whole and rewritten sorted, as before: the output is the
    same bytes either way (``tests/test_git_packed_splice.py`` checks it on random files).
    """

    def __init__(self, data: bytes, where: Path) -> None:
        self.data = data
        self.where = where
        self.spliceable = not data or (
            data.startswith(HEADER)
            and data.endswith(b"\n")
            and not data.startswith(b"^", len(HEADER))
            and not _comment_inside(data)
        )
        self._entries: dict[bytes, list[bytes]] | None = None

    @classmethod
    def read(cls, git_dir: Path) -> PackedFile:
        return cls(read_packed_bytes(git_dir), git_dir / PACKED_REFS)

    def entries(self) -> dict[bytes, list[bytes]]:
        if self._entries is None:
            self._entries = _parse(self.data, self.where)
        return self._entries

    def value(self, name: bytes) -> bytes | None:
        """The object id ``name`` is packed at (hex, as bytes), or None."""
        if not self.spliceable:
            lines = self.entries().get(name)
            return lines[0].split(b" ", 1)[0] if lines else None
        start, end = self._find(len(HEADER) if self.data else 0, name)
        return self.data[start : self.data.index(b" ", start)] if start != end else None

    def changed(self, changes: Mapping[bytes, bytes | None]) -> list[bytes | memoryview]:
        """The file with each ref in ``changes`` given its new lines (``<oid> <ref>\\n``, and any
        ``^<peeled>\\n``), or removed (None); header first, sorted, as chunks to write in order."""
        if not self.spliceable:
            entries = dict(self.entries())
            for name, lines in changes.items():
                if lines is None:
                    entries.pop(name, None)
                else:
                    entries[name] = [lines]
            return [HEADER, *(line for name in sorted(entries) for line in entries[name])]
        view = memoryview(self.data)
        chunks: list[bytes | memoryview] = [HEADER]
        at = len(HEADER) if self.data else 0
        for name in sorted(changes):
            start, end = self._near(at, name)
            chunks.append(view[at:start])
            lines = changes[name]
            if lines is not None:
                chunks.append(lines)
            at = end
        chunks.append(view[at:])
        return chunks

    def same_but(self, other: PackedFile, prefix: bytes, names: Iterable[bytes]) -> bool:
        """Whether every record under ``prefix`` but those of ``names`` is the same bytes in both
        files (compared between the named records, each found near the last: no line split).

        The bytes between two cuts are compared as ``bytes`` slices of at most
        :data:`SAME_CHUNK_BYTES` (a copy and a memcmp): ``memoryview`` slices compare item by item,
        which at 100,000 robots (13.6 MB, 1,000 desired refs cut) was most of the 74 ms this took
        in the wave's push, with the bisection of every cut over the whole file."""
        if not (self.spliceable and other.spliceable):
            return False
        after = prefix[:-1] + bytes([prefix[-1] + 1])  # the first name past every name under prefix
        cuts = [prefix, *sorted(name for name in names if name.startswith(prefix)), after]
        mine, theirs = self._cuts(cuts), other._cuts(cuts)
        for n in range(len(cuts) - 1):
            if not _same_span(
                self.data, mine[n][1], mine[n + 1][0], other.data, theirs[n][1], theirs[n + 1][0]
            ):
                return False
        return True

    def _cuts(self, names: list[bytes]) -> list[tuple[int, int]]:
        at = len(HEADER) if self.data else 0
        found = []
        for name in names:
            start, end = self._near(at, name)
            found.append((start, end))
            at = start
        return found

    def _near(self, low: int, name: bytes) -> tuple[int, int]:
        """:meth:`_find`, looking first for ``name``'s line in the next :data:`NEAR_BYTES` after
        ``low`` (one search in C): changes sorted by name are each found a gap after the last, where
        bisecting cost ~17 Python steps a ref (1,000 moved refs of 200,000: 60 ms of 0.13 s)."""
        data = self.data
        needle = b" " + name + b"\n"
        edge = low + NEAR_BYTES + len(needle)
        hit = data.find(needle, low, edge)
        if hit < 0:  # a new ref (or a far one): bisect the window when it sorts inside it
            return self._find(low, name, self._bound(edge, name))
        start = data.rfind(b"\n", 0, hit) + 1
        if data.find(b" ", start, hit) >= 0 or start < low:  # not the record's own name: bisect
            return self._find(low, name)
        end = hit + len(needle)
        while data.startswith(b"^", end):
            end = data.index(b"\n", end) + 1
        return start, end

    def _bound(self, at: int, name: bytes) -> int | None:
        """The start of the first record after offset ``at`` when ``name`` sorts before it (so a
        bisection for ``name`` from before ``at`` may stop there), else None. Missed refs (new
        ones: robots' first status reports) were bisected over the whole file, ~17 steps a ref at
        200,000 records against ~10 inside one window (1,000 new refs: 35 ms against 21 ms)."""
        data = self.data
        cut = data.find(b"\n", at) + 1
        while cut and data.startswith(b"^", cut):
            cut = data.find(b"\n", cut) + 1
        if not cut or cut >= len(data):
            return None
        space, newline = data.find(b" ", cut), data.find(b"\n", cut)
        return cut if 0 <= space < newline and name < data[space + 1 : newline] else None

    def _find(self, low: int, name: bytes, high: int | None = None) -> tuple[int, int]:
        """Where ``name``'s record is at or after offset ``low`` (a record's start) and before
        ``high`` (a record's start, or the end): its first and past-last byte, or twice the offset
        where it would go."""
        data = self.data
        high = len(data) if high is None else high
        while low < high:
            start = max(low, data.rfind(b"\n", low, (low + high) // 2) + 1)
            while data[start] == 0x5E:  # "^": a peeled line belongs to the record above it
                start = max(low, data.rfind(b"\n", low, start - 1) + 1)
            newline = data.index(b"\n", start)
            space = data.find(b" ", start, newline)
            if space < 0:
                raise ValueError(f"{self.where}: unreadable line {data[start : newline + 1][:120]!r}")
            end = newline + 1
            while data.startswith(b"^", end):
                end = data.index(b"\n", end) + 1
            found = data[space + 1 : newline]
            if found < name:
                low = end
            elif found > name:
                high = start
            else:
                return start, end
        return low, low


def _same_span(a: bytes, a_start: int, a_end: int, b: bytes, b_start: int, b_end: int) -> bool:
    """Whether ``a[a_start:a_end] == b[b_start:b_end]``, compared :data:`SAME_CHUNK_BYTES` at a
    time (no copy of a whole span of megabytes). A span that ends before it starts is empty, as
    a slice is (two cuts at one record: a name named twice)."""
    a_end, b_end = max(a_start, a_end), max(b_start, b_end)
    if a_end - a_start != b_end - b_start:
        return False
    for at in range(0, a_end - a_start, SAME_CHUNK_BYTES):
        size = min(SAME_CHUNK_BYTES, a_end - a_start - at)
        if a[a_start + at : a_start + at + size] != b[b_start + at : b_start + at + size]:
            return False
    return True


def update_packed(
    repo: pygit2.Repository,
    updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]],
) -> int:
    """Move every ref from its expected old value (None: must not exist) to its new one, all or none.

    Refs already at their new value are left alone (a replay after a crash is a no-op); another
    value raises :class:`~fleetcd.errors.RefConflict` before anything is written. Returns how many
    refs moved. The caller must be the repository's only writer (see the module docstring).
    """
    moved: dict[str, pygit2.Oid] = {}
    for ref, (old, new) in sorted(updates.items()):
        actual = _target(repo, ref)
        if actual == new:
            continue
        if actual != old:
            raise RefConflict(ref, None if old is None else str(old), None if actual is None else str(actual))
        moved[ref] = new
    if not moved:
        return 0
    git_dir = Path(repo.path)
    lock = git_dir / f"{PACKED_REFS}.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as exc:
        first = min(moved)
        held = f"(locked by another writer, or left by a killed one: {lock} exists)"
        raise RefConflict(first, _hex(updates[first][0]), held) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            changes = {ref.encode(): f"{new} {ref}\n".encode() for ref, new in moved.items()}
            out.writelines(PackedFile.read(git_dir).changed(changes))
            out.flush()
            os.fsync(out.fileno())
        lock.replace(git_dir / PACKED_REFS)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    for ref in moved:
        remove_loose(git_dir, ref)
    return len(moved)


def _target(repo: pygit2.Repository, ref: str) -> pygit2.Oid | None:
    found = repo.references.get(ref)
    if found is None:
        return None
    target = found.resolve().target
    return target if isinstance(target, pygit2.Oid) else None


def remove_loose(git_dir: Path, ref: str) -> None:
    """Delete ``ref``'s loose file, then its directories up to ``refs/`` while they are empty."""
    path = git_dir / ref
    try:
        path.unlink()
    except FileNotFoundError:
        return
    top = git_dir / "refs"
    parent = path.parent
    while parent != top and top in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _hex(oid: pygit2.Oid | None) -> str | None:
    return None if oid is None else str(oid)


def loose_refs_at_least(git_dir: Path, count: int) -> bool:
    """Whether ``git_dir`` holds ``count`` or more loose ref files; stops walking once it knows.

    Packed, ``refs/`` is a handful of directories, so asking costs next to nothing; with K loose
    refs it costs at most a walk to the ``count``-th. Callers pack only then (see
    :mod:`controller.reconcile.source`): ``git pack-refs --all`` rewrites every packed ref each time
    (0.6 s at 20,000 refs here) even when nothing is loose.
    """
    found = 0
    for _here, _dirs, files in os.walk(git_dir / "refs"):
        found += sum(not name.endswith(".lock") for name in files)
        if found >= count:
            return True
    return False


def read_refs(git_dir: Path, prefixes: tuple[str, ...]) -> dict[str, str]:
    """Every ref under ``prefixes`` (full names ending in ``/``, or exact names) → object id (hex),
    read straight from ``packed-refs`` and the loose files that override it.

    For the controller's mirror, which is mostly packed: 200,000 refs read this way in a fraction
    of the time libgit2 takes to iterate them (2.8 s) or ``git for-each-ref`` (2.1 s). Symbolic
    refs and unreadable loose files are left out: the caller treats them as unknown.
    """
    exact = {p.encode() for p in prefixes if not p.endswith("/")}
    wanted = tuple(p.encode() for p in prefixes if p.endswith("/"))
    try:
        data = (git_dir / PACKED_REFS).read_bytes()
    except FileNotFoundError:
        data = b""
    refs: dict[str, str] = {}
    for line in data.split(b"\n"):
        if line[:1] in (b"#", b"^", b""):
            continue
        oid, _, packed_name = line.partition(b" ")
        if packed_name in exact or packed_name.startswith(wanted):  # an exact name is no prefix
            refs[packed_name.decode()] = oid.decode()
    for prefix in prefixes:
        start = git_dir / prefix
        if prefix.endswith("/") and start.is_dir():
            for here, _dirs, files in os.walk(start):
                for name in files:
                    if not name.endswith(".lock"):
                        _read_loose(git_dir, Path(here) / name, refs)
        elif not prefix.endswith("/") and start.is_file():
            _read_loose(git_dir, start, refs)
    return refs


def refs_to_send(ours: Path, theirs: Path, prefix: str, likely: Iterable[str] = ()) -> dict[str, str]:
    """Refs under ``prefix`` (ending in ``/``) in the repository at ``ours`` whose value the one at
    ``theirs`` lacks (absent or another object id) → our object id (hex): what a wildcard
    ``git push`` of ``prefix`` would send, read from both repositories' ref files.

    In time that grows with the refs that differ and the loose files, not with the refs: each of
    ``likely`` (the refs the caller moved) and each ref loose on either side is looked up on both
    (:class:`PackedFile`), and the packed bytes between those refs are compared in place; only
    when they differ too are the packed lines compared as two sets (built in C, 0.1-0.3 s at
    200,000 refs). Listing 100,000 refs of ours to compare them took 0.3 s more than either.
    Symbolic and unreadable loose refs of ours are left out.
    """
    ours_packed, theirs_packed = PackedFile.read(ours), PackedFile.read(theirs)
    ours_loose, theirs_loose = _loose_under(ours, prefix), _loose_under(theirs, prefix)
    wanted = prefix.encode()
    candidates = {ref for ref in likely if ref.startswith(prefix)} | ours_loose.keys() | theirs_loose.keys()
    if not ours_packed.same_but(theirs_packed, wanted, (ref.encode() for ref in candidates)):
        for line in set(ours_packed.data.split(b"\n")).difference(theirs_packed.data.split(b"\n")):
            _oid, _, name = line.partition(b" ")
            if name.startswith(wanted) and line[:1] not in (b"#", b"^"):
                candidates.add(name.decode())
    found: dict[str, str] = {}
    for ref in sorted(candidates):
        mine = ours_loose[ref] if ref in ours_loose else ours_packed.value(ref.encode())
        if mine is None or len(mine) not in (40, 64):
            continue
        there = theirs_loose[ref] if ref in theirs_loose else theirs_packed.value(ref.encode())
        if mine != there:
            found[ref] = mine.decode()
    return found


def _loose_under(git_dir: Path, prefix: str) -> dict[str, bytes | None]:
    """Every loose ref file under ``prefix`` → its object id (hex bytes), None when it holds none."""
    found: dict[str, bytes | None] = {}
    for here, _dirs, files in os.walk(git_dir / prefix):
        for name in files:
            if name.endswith(".lock"):
                continue
            path = Path(here) / name
            try:
                text = path.read_bytes()[:100].strip()
            except OSError:
                text = b""
            hexdigits = len(text) in (40, 64) and not text.strip(b"0123456789abcdef")
            found[path.relative_to(git_dir).as_posix()] = text if hexdigits else None
    return found


def _read_loose(git_dir: Path, path: Path, refs: dict[str, str]) -> None:
    ref = path.relative_to(git_dir).as_posix()
    try:
        text = path.read_bytes()[:100].decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        refs.pop(ref, None)
        return
    if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
        refs[ref] = text
    else:
        refs.pop(ref, None)  # symbolic, or half-written: unknown


@dataclass(frozen=True)
class RefStorage:
    """The bytes that store a repository's refs, read once: ``packed-refs`` and every loose ref file.

    :attr:`fingerprint` digests exactly these bytes and :meth:`refs` parses exactly these bytes, so
    a value kept under a fingerprint is a function of the refs it names, however the repository
    changed while it was read. About 30 ms for 200,000 packed refs; parsing them 0.3 s more.
    """

    packed: bytes
    loose: tuple[tuple[str, bytes], ...]  # (ref, file content), sorted by ref

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.packed)
        for ref, data in self.loose:
            digest.update(b"\0%s\0%d\0%s" % (ref.encode(), len(data), data))
        return digest.hexdigest()

    def refs(self, names: tuple[str, ...]) -> dict[str, str]:
        """Refs under ``names`` (prefixes ending in ``/``, or exact names) → object id (hex)."""
        exact = {name for name in names if not name.endswith("/")}
        prefixes = tuple(name for name in names if name.endswith("/"))

        def wanted(ref: str) -> bool:
            return ref in exact or ref.startswith(prefixes)

        found: dict[str, str] = {}
        for line in self.packed.split(b"\n"):
            if line[:1] in (b"#", b"^", b""):
                continue
            oid, _, name = line.partition(b" ")
            ref = name.decode(errors="replace")
            if wanted(ref):
                found[ref] = oid.decode(errors="replace")
        for ref, data in self.loose:
            if wanted(ref):
                text = data[:100].decode("ascii", errors="replace").strip()
                if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
                    found[ref] = text
                else:
                    found.pop(ref, None)  # symbolic or half-written: not listed
        return found


def read_ref_storage(git_dir: Path) -> RefStorage | None:
    """``git_dir``'s ref storage (see :class:`RefStorage`); None for a repository keeping refs in the
    reftable format (git >= 2.45), or when a ref file vanished while it was read (a ref is moving)."""
    if (git_dir / "reftable").exists():
        return None
    try:
        packed = (git_dir / PACKED_REFS).read_bytes()
    except FileNotFoundError:
        packed = b""
    loose: list[tuple[str, bytes]] = []
    for here, _dirs, files in os.walk(git_dir / "refs"):
        for name in files:
            if name.endswith(".lock"):
                continue
            path = Path(here) / name
            try:
                loose.append((path.relative_to(git_dir).as_posix(), path.read_bytes()))
            except OSError:
                return None
    return RefStorage(packed, tuple(sorted(loose)))
