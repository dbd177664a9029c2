"""Safe tarball extraction for the tarball executor: nothing in an archive may escape its target.

Runs after the download's digest check and before the slot switch (see :mod:`agent.install.slots`).
The stdlib's extraction filter (``filter="data"``, PEP 706) does the heavy lifting: it refuses
members and links resolving outside the target, device and fifo files, and drops setuid/setgid bits
and ownership. On top of it this module adds only what the filter does not do:

* caps on the member count and the total uncompressed size (tar bombs), checked on the headers
  before a single byte is written, plus a free-space check;
* strict name rules, checked up front on every header: no absolute paths (the filter would quietly
  strip the ``/``), no ``..`` components, no member inside or replacing a symlink of the same
  archive, and symlink targets that are ``../`` steps then plain names staying inside the target.
  These make the archive safe by its headers alone, which also covers the filter's known
  ``realpath`` bypasses on older 3.11 patch releases;
* all-or-nothing: extraction goes to a temporary directory beside ``target``, is fsynced and then
  renamed into place, so a refusal or a crash never leaves a half-extracted release.

Every refusal is :class:`agent.errors.UnsafeArchive` naming the member and why.

Pythons without the filters (Debian 12's 3.11.2, Python 3.10 before 3.10.12) get the same result
from :func:`_data_member`: the name rules above already keep every path inside the target, and it
refuses device and fifo members, drops setuid/setgid/sticky and group/other write bits, and makes
the files the agent's own — the filter's remaining duties.
"""

from __future__ import annotations

import copy
import errno
import gzip
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.errors import DiskFull, UnsafeArchive
from agent.state.atomic import NO_SPACE_ERRNOS, fsync_dir

_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
# PEP 706's filters: 3.12+, and backported to 3.11.4+ and 3.10.12+ (not to Debian 12's 3.11.2).
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_FILE_MODE_KEEP = 0o755  # rwx for the owner, r-x for group and others: no setuid/setgid/sticky/g+w/o+w
_OWNER_READ_WRITE = 0o600
_DIR_MODE = 0o755


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on what one release archive may unpack to."""

    max_total_bytes: int = 8 * 1024**3  # 8 GiB of regular-file content, uncompressed
    max_members: int = 200_000  # files, directories and links together

    def __post_init__(self) -> None:
        if not 1 <= self.max_total_bytes <= 1024**4:
            raise ValueError(f"max_total_bytes must be within 1 B..1 TiB, got {self.max_total_bytes}")
        if not 1 <= self.max_members <= 10_000_000:
            raise ValueError(f"max_members must be within 1..10000000, got {self.max_members}")


def extract_tarball(archive: Path, target: Path, *, max_total_bytes: int, max_members: int) -> None:
    """Unpack ``archive`` (tar, optionally gz/bz2/xz) into the new directory ``target``, or nothing."""
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "extraction target already exists", str(target))
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        staging.chmod(0o755)
        with tarfile.open(archive, "r:*") as tar:
            members, total = _checked_members(tar, archive, staging, max_total_bytes, max_members)
            free = shutil.disk_usage(staging).free
            if total > free:
                raise DiskFull(target, total, free)
            if HAS_DATA_FILTER:
                try:
                    tar.extractall(staging, members=members, filter="data")
                except tarfile.FilterError as exc:
                    raise UnsafeArchive(archive, exc.tarinfo.name, str(exc)) from exc
            else:  # the members are _data_member's copies, every one checked above
                tar.extractall(staging, members=members)  # noqa: S202
        _fsync_tree(staging)
        staging.rename(target)
        fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, _UNREADABLE):
            raise UnsafeArchive(archive, None, f"not a readable tar archive: {exc}") from exc
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(target) from exc
        raise


def _checked_members(
    tar: tarfile.TarFile, archive: Path, staging: Path, max_total_bytes: int, max_members: int
) -> tuple[list[tarfile.TarInfo], int]:
    """All members after the caps, the name rules and the data filter; refuses on the first bad one."""
    members: list[tarfile.TarInfo] = []
    symlinks: set[str] = set()
    total = 0
    for member in tar:  # lazily: a million-member bomb is refused at max_members + 1 headers
        if len(members) >= max_members:
            raise UnsafeArchive(archive, member.name, f"archive has more than {max_members} members")
        if member.isreg():
            total += member.size
            if total > max_total_bytes:
                raise UnsafeArchive(
                    archive, member.name, f"unpacked size exceeds the cap of {max_total_bytes} bytes"
                )
        problem = _name_problem(member, symlinks)
        if problem is not None:
            raise UnsafeArchive(archive, member.name, problem)
        if HAS_DATA_FILTER:
            try:
                tarfile.data_filter(member, str(staging))
            except tarfile.FilterError as exc:
                raise UnsafeArchive(archive, member.name, str(exc)) from exc
            kept = member
        else:
            kept = _data_member(member, archive)
        if member.issym():
            symlinks.add(posixpath.normpath(member.name))
        members.append(kept)
    return members, total


def _data_member(member: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
    """What ``filter="data"`` would extract for ``member``, on a Python without the filters."""
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(archive, member.name, "is a special file (device, fifo or other)")
    kept = copy.copy(member)
    if member.isreg() or member.islnk():
        kept.mode = (member.mode & _FILE_MODE_KEEP) | _OWNER_READ_WRITE
    elif member.isdir():
        kept.mode = _DIR_MODE
    # Owned by whoever runs the agent: as root, tarfile would otherwise chown to the archive's ids.
    kept.uid, kept.gid, kept.uname, kept.gname = os.getuid(), os.getgid(), "", ""
    return kept


def _name_problem(member: tarfile.TarInfo, symlinks: set[str]) -> str | None:
    """Why this header is refused by name alone, or None."""
    name = member.name
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "path has a '..' component"
    normal = posixpath.normpath(name)
    if normal in symlinks:
        return "replaces a symlink of the same archive"
    for parent in PurePosixPath(normal).parents:
        if str(parent) in symlinks:
            return f"path goes through the archive's symlink {str(parent)!r}"
    if member.islnk() and (member.linkname.startswith("/") or ".." in member.linkname.split("/")):
        return f"hard link to {member.linkname!r} outside the archive"
    if member.issym():
        return _symlink_problem(normal, member.linkname)
    return None


def _symlink_problem(name: str, linkname: str) -> str | None:
    """Symlinks may climb with leading ``..`` steps only, and never above the target root."""
    if not linkname or linkname.startswith("/"):
        return f"symlink to {linkname!r}: absolute or empty target"
    steps = [part for part in linkname.split("/") if part not in ("", ".")]
    ups = next((i for i, part in enumerate(steps) if part != ".."), len(steps))
    if ".." in steps[ups:]:
        return f"symlink to {linkname!r}: '..' after a name"
    if ups > len(PurePosixPath(name).parent.parts):
        return f"symlink to {linkname!r} escapes the target"
    return None


def _fsync_tree(root: Path) -> None:
    """Flush every extracted file and directory before the rename publishes them."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))
