"""Writing objects as one pack file and its index, the way ``git index-pack`` leaves them.

:func:`fleetcd.git.objects.object_batch` collects a batch's new objects in memory; this module
lands them on disk: one pack (version 2: ``PACK``, version, count, then each object as its
type-and-size header and zlib-compressed bytes or a delta of an earlier entry, then the SHA-1 of
all that) and its version 2 ``.idx`` (fan-out table, sorted ids, CRC-32 of each entry, offsets,
both checksums).

Deltas are found cheaply (:mod:`fleetcd.git.packdelta`), not searched for: an object may be
stored as a delta of one of the last few whole objects of its type closest in size (depth 1), when
that is under half its size. libgit2's pack builder searched a window of candidates for each
object and spent 2.5 s of a 4 s batch of 40,000 objects on it. On a 10,000-robot fan-out's
39,923 objects (bundles repeat their release, only deltas share it): 27.6 MB and 1.21 s CPU with
no deltas at all, 7.1 MB and 1.37-1.57 s with these. The size matters beyond the mirror:
``git push`` (``pack-objects``) sends stored objects as they are.

Crash safety, as git does it: both files are written under ``tmp_pack_*`` / ``tmp_idx_*`` names
inside ``objects/pack`` and fsynced, then the pack is renamed to ``pack-<checksum>.pack`` and the
index after it (git and libgit2 ignore a pack until its ``.idx`` exists), then the directory is
fsynced. A process killed at any instant leaves the repository as it was plus at worst a temp
file or an unindexed pack, which no reader sees; :func:`remove_stale_temp_files` deletes them once
they are older than :data:`STALE_AFTER_S` (a live writer's files are younger).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from fleetcd.git.packdelta import delta

# git's object type numbers in a pack entry header (libgit2's GIT_OBJECT_* use the same values).
PACK_TYPES = frozenset({1, 2, 3, 4})  # commit, tree, blob, tag
# zlib level 1: a 10,000-robot fan-out's 110,000 objects (91 MB) took 2.45 s CPU to 52.0 MB at
# level 1 and 2.79 s to 51.3 MB at git's default level 6.
COMPRESSION_LEVEL = 1
# A temp file or unindexed pack older than this is a killed writer's: 5 minutes, well above the
# seconds a batch takes to write (git gc waits longer, but it must allow for any writer).
STALE_AFTER_S = 300.0
# An object of DELTA_MIN_BYTES to DELTA_MAX_BYTES may be stored as a delta of a recent one of its
# type when the delta is at most 1/DELTA_GAIN of it; the last _BASES_KEPT whole objects of a type
# are kept as bases and the _BASES_TRIED closest in size are tried.
DELTA_MIN_BYTES = 256
# Larger objects are stored whole: finding a delta costs about its size times a few dozen slice
# comparisons (a 150 KB blob took ~0.1 s), and bundles are a few KB.
DELTA_MAX_BYTES = 128 * 1024
DELTA_GAIN = 2
_BASES_KEPT = 8
_BASES_TRIED = 2
# After this many deltas in a row not worth storing, the next objects of that type are stored
# whole without trying (random-looking data: the attempts would double the pack's CPU).
_MISSES_BEFORE_SKIP = 8
_SKIPPED_AFTER_MISSES = 64
_OFS_DELTA = 6
_IDX_MAGIC = b"\377tOc"
_LARGE_OFFSET = 0x80000000


def _entry_header(kind: int, size: int) -> bytes:
    """Type and size of one pack entry: 3 bits of type and 4 of size, then 7 bits a byte."""
    first = (kind << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(first | 0x80)
        first = size & 0x7F
        size >>= 7
    out.append(first)
    return bytes(out)


def write_pack(pack_dir: Path, objects: Iterable[tuple[bytes, int, bytes]]) -> Path | None:
    """Write ``objects`` (raw 20-byte id, type, bytes) as one pack and its index in ``pack_dir``
    (a repository's ``objects/pack``); returns the index's path, None when there was nothing.

    The ids are trusted to be the SHA-1 of ``"<type> <size>\\0" + bytes``: the caller (libgit2,
    which hashed them as they were written) computed them. Duplicates are written once.
    """
    entries: dict[bytes, tuple[int, bytes]] = {}
    for oid, kind, data in objects:
        if kind not in PACK_TYPES:
            raise ValueError(f"object {oid.hex()}: type {kind} cannot be stored in a pack")
        entries.setdefault(oid, (kind, data))
    if not entries:
        return None
    pack_dir.mkdir(parents=True, exist_ok=True)
    offsets: dict[bytes, tuple[int, int]] = {}  # id -> (offset, crc32 of its entry)
    pack_fd, pack_tmp = tempfile.mkstemp(prefix="tmp_pack_", dir=pack_dir)
    idx_tmp: str | None = None
    try:
        with os.fdopen(pack_fd, "wb") as out:
            digest = hashlib.sha1(usedforsecurity=False)
            head = b"PACK" + struct.pack(">II", 2, len(entries))
            digest.update(head)
            out.write(head)
            offset = len(head)
            bases = _Bases()
            for oid, (kind, data) in entries.items():
                entry = bases.delta_entry(kind, data, offset)
                if entry is None:
                    entry = _entry_header(kind, len(data)) + zlib.compress(data, COMPRESSION_LEVEL)
                    bases.add(kind, data, offset)
                digest.update(entry)
                out.write(entry)
                offsets[oid] = (offset, zlib.crc32(entry))
                offset += len(entry)
            checksum = digest.digest()
            out.write(checksum)
            out.flush()
            os.fsync(out.fileno())
        idx_fd, idx_tmp = tempfile.mkstemp(prefix="tmp_idx_", dir=pack_dir)
        with os.fdopen(idx_fd, "wb") as out:
            out.write(_index(offsets, checksum))
            out.flush()
            os.fsync(out.fileno())
        name = pack_dir / f"pack-{checksum.hex()}"
        Path(pack_tmp).replace(name.with_suffix(".pack"))
        Path(idx_tmp).replace(name.with_suffix(".idx"))  # last: now readers see the pack
    except BaseException:
        for tmp in (pack_tmp, idx_tmp):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(pack_dir)
    return name.with_suffix(".idx")


class _Bases:
    """Recent whole objects of each type that later ones may be stored as deltas of (depth 1: a
    delta's base is never itself a delta, so a read resolves one delta at most)."""

    def __init__(self) -> None:
        self.recent: dict[int, list[tuple[int, bytes]]] = {}  # type -> (offset, bytes), newest last
        self.misses: dict[int, int] = {}  # type -> deltas of it not worth storing, in a row
        self.skip: dict[int, int] = {}  # type -> objects still to store whole without trying

    def add(self, kind: int, data: bytes, offset: int) -> None:
        if DELTA_MIN_BYTES <= len(data) <= DELTA_MAX_BYTES:
            recent = self.recent.setdefault(kind, [])
            recent.append((offset, data))
            if len(recent) > _BASES_KEPT:
                del recent[0]

    def delta_entry(self, kind: int, data: bytes, offset: int) -> bytes | None:
        """The object as an OFS_DELTA entry at ``offset``, or None when no base makes it small."""
        if not DELTA_MIN_BYTES <= len(data) <= DELTA_MAX_BYTES:
            return None
        if self.skip.get(kind, 0) > 0:  # this type's objects have stopped resembling each other
            self.skip[kind] -= 1
            return None
        size = len(data)
        near = [b for b in self.recent.get(kind, ()) if size // 2 <= len(b[1]) <= size * 2]
        for base_offset, base in sorted(near, key=lambda b: abs(len(b[1]) - size))[:_BASES_TRIED]:
            instructions = delta(base, data, size // DELTA_GAIN)
            if instructions is not None and len(instructions) * DELTA_GAIN <= size:
                self.misses[kind] = 0
                distance = _offset_encoding(offset - base_offset)
                header = _entry_header(_OFS_DELTA, len(instructions)) + distance
                return header + zlib.compress(instructions, COMPRESSION_LEVEL)
        if near:
            self.misses[kind] = self.misses.get(kind, 0) + 1
            if self.misses[kind] >= _MISSES_BEFORE_SKIP:
                self.misses[kind], self.skip[kind] = 0, _SKIPPED_AFTER_MISSES
        return None


def _offset_encoding(distance: int) -> bytes:
    """How far back an OFS_DELTA's base starts, as git encodes it (big-endian, each more
    significant byte one less, so every distance has one spelling)."""
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


def _index(offsets: dict[bytes, tuple[int, int]], pack_checksum: bytes) -> bytes:
    """The version 2 ``.idx`` of a pack whose entries start at ``offsets`` (id -> offset, crc)."""
    ids = sorted(offsets)
    fanout = [0] * 256
    for oid in ids:
        fanout[oid[0]] += 1
    total = 0
    for byte in range(256):
        total += fanout[byte]
        fanout[byte] = total
    small: list[int] = []
    large: list[int] = []
    for oid in ids:
        offset = offsets[oid][0]
        if offset < _LARGE_OFFSET:
            small.append(offset)
        else:
            small.append(_LARGE_OFFSET | len(large))
            large.append(offset)
    body = b"".join(
        (
            _IDX_MAGIC,
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(ids),
            struct.pack(f">{len(ids)}I", *(offsets[oid][1] for oid in ids)),
            struct.pack(f">{len(ids)}I", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_checksum,
        )
    )
    return body + hashlib.sha1(body, usedforsecurity=False).digest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(pack_dir: Path, *, now: float | None = None) -> list[Path]:
    """Delete what a killed pack writer left in ``pack_dir``: ``tmp_*`` files (``tmp_pack_*``,
    ``tmp_idx_*``; :mod:`fleetcd.git.localpush`'s ``tmp_keep_*``; git's own, which only ``git
    prune`` removes, after two weeks), libgit2's ``pack_git2_*`` (a fetch's pack as it arrives,
    which nothing else removes) and ``.pack`` files without their ``.idx``, older than
    :data:`STALE_AFTER_S`. Returns them."""
    if not pack_dir.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - STALE_AFTER_S
    removed = []
    for path in pack_dir.iterdir():
        left = path.name.startswith(("tmp_", "pack_git2_")) or (
            path.suffix == ".pack" and not path.with_suffix(".idx").exists()
        )
        try:
            if left and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # removed meanwhile by git or by another cleaner
            continue
    return removed
