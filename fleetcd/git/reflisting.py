"""A local repository's refs read from the bytes that store them, parsed again only where they changed.

:func:`fleetcd.git.remote.fetch_moved` compares the server's refs with the mirror's on every
reconcile. At 100,000 robots that is 200,000 refs on each side: ``git ls-remote`` of the server
(a process printing every ref, then a Python line each) and a parse of the mirror's ``packed-refs``
(a Python line each) cost most of the fetch of a wave that moved one branch. A
:class:`RefReader` keeps what it parsed from a repository's ``packed-refs`` with the exact bytes it
parsed: the next read compares the new bytes with those (equal: nothing parsed at all), and when
they differ parses only the lines that are not in both (two sets of lines, built in C). Loose ref
files, which override the packed ones, are read every time; they are few once packed.

What a read returns is a function of the bytes read alone, so a reader can hold an old answer but
never give one: a long-running controller keeps one per repository
(:class:`RefListingMemo`), ``controller reconcile --once`` reads afresh and gets the same refs.
The rules are :func:`fleetcd.git.packedrefs.read_refs`'s: comment and peeled lines are skipped, a
loose file holding anything but an object id (half-written) hides the ref, and a name that is not
UTF-8 is left out (no ref fleetcd reads or writes has one). A symbolic loose ref (``ref: ...``)
is git's to resolve: :meth:`RefReader.read` returns None for it, and the caller's ``git
ls-remote`` lists it under its target's object id, so a status ref made symbolic on the server is
fetched and refused by the ingest, as it was before the refs were read from their bytes.

A repository someone else may be writing (the server) is read consistently or not at all: when
``packed-refs`` was replaced while the loose files were read (a ``git pack-refs`` moving refs
from one to the other), or a loose file vanished, :meth:`RefReader.read` returns None and the
caller lists the refs through git instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKED_REFS = "packed-refs"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


_SKIPPED = ("#", "^", "")  # comment, peeled and empty lines


def _lines(packed: bytes) -> list[str]:
    """``packed``'s lines as text: decoded at once (in C), or line by line leaving out the lines
    that are not UTF-8 when some are not."""
    try:
        return packed.decode().split("\n")
    except UnicodeDecodeError:
        lines = []
        for line in packed.split(b"\n"):
            try:
                lines.append(line.decode())
            except UnicodeDecodeError:
                continue
        return lines


class RefReader:
    """The refs under ``names`` (exact names, or prefixes ending in ``/``) of one repository."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._exact = frozenset(name for name in names if not name.endswith("/"))
        self._prefixes = tuple(name for name in names if name.endswith("/"))
        self._packed: bytes | None = None  # the packed-refs bytes ``_parsed`` was made from
        self._parsed: dict[str, str] = {}
        # How each read went, for the tests: packed-refs as before, lines diffed, parsed in full.
        self.same = self.diffed = self.full = 0

    def _parse_lines(self, lines: Iterable[str], into: dict[str, str], *, remove: bool = False) -> None:
        exact, prefixes = self._exact, self._prefixes
        for line in lines:
            if line[:1] in _SKIPPED:
                continue
            oid, _, ref = line.partition(" ")
            if not (ref in exact or ref.startswith(prefixes)):
                continue
            if not remove:
                into[ref] = oid
            elif into.get(ref) == oid:
                del into[ref]

    def _packed_refs(self, packed: bytes) -> dict[str, str]:
        """The wanted refs of ``packed``, from the last parse where the bytes allow."""
        if packed == self._packed:
            self.same += 1
            return self._parsed
        new = _lines(packed)
        if self._packed is None:
            self.full += 1
            parsed: dict[str, str] = {}
            self._parse_lines(new, parsed)
        else:
            self.diffed += 1
            old, added = set(_lines(self._packed)), set(new)
            parsed = dict(self._parsed)
            self._parse_lines(old - added, parsed, remove=True)
            self._parse_lines(added - old, parsed)
        self._packed, self._parsed = packed, parsed
        return parsed

    def from_bytes(self, packed: bytes, loose: Iterable[tuple[str, bytes]]) -> dict[str, str]:
        """The refs stored as ``packed`` (``packed-refs``' bytes) and ``loose`` ((ref, file
        content) pairs, which override it), read once by the caller
        (:class:`fleetcd.git.packedrefs.RefStorage`): the same rules as :meth:`read`."""
        refs = dict(self._packed_refs(packed))
        for ref, data in loose:
            if ref in self._exact or ref.startswith(self._prefixes):
                _set_loose(refs, ref, data)
        return refs

    def read(self, git_dir: Path) -> dict[str, str] | None:
        """Ref → object id (hex) under the names; None when the storage could not be read
        consistently (a reftable repository, ``packed-refs`` replaced or a loose file gone while
        reading). The dict is the caller's own."""
        if (git_dir / "reftable").exists():
            return None
        where = git_dir / PACKED_REFS
        before = _stamp(where)
        try:
            packed = where.read_bytes()
        except FileNotFoundError:
            packed = b""
        refs = dict(self._packed_refs(packed))
        for name in self.names:
            start = git_dir / name
            if name.endswith("/"):
                for here, _dirs, files in os.walk(start):
                    for file in files:
                        if not file.endswith(".lock") and not _read_loose(git_dir, Path(here) / file, refs):
                            return None
            elif start.is_file() and not _read_loose(git_dir, start, refs):
                return None
        if _stamp(where) != before:
            return None
        return refs


def _read_loose(git_dir: Path, path: Path, refs: dict[str, str]) -> bool:
    """``path``'s ref into ``refs`` (or hidden when it holds no object id); False when it vanished
    or is symbolic (git resolves it: the caller lists the refs through git)."""
    ref = path.relative_to(git_dir).as_posix()
    try:
        data = path.read_bytes()[:100]
    except FileNotFoundError:
        return False
    except OSError:  # a directory where a file was, unreadable: unknown, as read_refs has it
        refs.pop(ref, None)
        return True
    if data.startswith(b"ref:"):
        return False
    _set_loose(refs, ref, data)
    return True


def _set_loose(refs: dict[str, str], ref: str, data: bytes) -> None:
    """A loose file's object id over its packed value, or the ref hidden when it holds none."""
    text = data[:100].decode("ascii", errors="replace").strip()
    if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
        refs[ref] = text
    else:
        refs.pop(ref, None)


@dataclass
class RefListingMemo:
    """What ``controller run`` keeps between fetches: one reader for the server and one for the
    mirror (each replaced when asked for other names), and the names of refs already judged
    (:func:`controller.reconcile.source.fetch_all`'s check that a ref under the desired-state
    prefixes is a desired-state ref)."""

    server: RefReader | None = None
    mirror: RefReader | None = None
    judged: set[str] = field(default_factory=set)

    def server_reader(self, names: Sequence[str]) -> RefReader:
        if self.server is None or self.server.names != tuple(names):
            self.server = RefReader(names)
        return self.server

    def mirror_reader(self, names: Sequence[str]) -> RefReader:
        if self.mirror is None or self.mirror.names != tuple(names):
            self.mirror = RefReader(names)
        return self.mirror
