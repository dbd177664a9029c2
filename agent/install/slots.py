"""On-disk slots of the tarball executor: ``<root>/releases/<version>/`` and one ``current`` symlink.

Install unpacks a verified archive into its own release directory (all-or-nothing, see
:mod:`agent.install.unpack`); switch points ``current`` at it with the one atomic operation POSIX
offers for this: build ``current.tmp-<random>`` beside it, ``os.replace`` it onto ``current``, fsync
the directory. A reader (the app's service, a probe) therefore always sees ``current`` resolve to a
complete release, old or new, and a crash at any instant leaves one of the two. Which release was
current before a switch is recorded in the converge journal, not guessed from the disk here.

Layout under ``root`` (``current`` is relative, so the root can be moved or bind-mounted)::

    releases/1.4.0/            complete releases, one per version
    releases/.1.5.0.tmp-xyz/   an unpack in progress (removed by prune after a crash)
    releases/.trash-1.2.0-xyz/ a release being deleted (removed by prune after a crash)
    current -> releases/1.4.0
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from agent.errors import CorruptState
from agent.install.unpack import UnpackLimits, extract_tarball
from agent.state.atomic import fsync_dir, set_aside
from fleetcd.compat import UTC
from fleetcd.errors import ApplyError

log = logging.getLogger(__name__)

RELEASES_DIR = "releases"
CURRENT_LINK = "current"
_TMP_LINK_PREFIX = f"{CURRENT_LINK}.tmp-"
_TRASH_PREFIX = ".trash-"
# Versions become directory names: semver characters only, never a leading dot or a separator.
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")


def _check_version(version: str) -> str:
    if not _VERSION_PATTERN.fullmatch(version) or ".." in version:
        raise ValueError(f"{version!r} is not usable as a release directory name")
    return version


def release_dir(root: Path, version: str) -> Path:
    return root / RELEASES_DIR / _check_version(version)


def install_release(root: Path, version: str, archive: Path, *, limits: UnpackLimits | None = None) -> Path:
    """Unpack ``archive`` as ``releases/<version>``; already installed means done (crash resume).

    Release versions are immutable in the fleet repository, so an existing directory (renamed into
    place whole) is that version's content.
    """
    limits = limits or UnpackLimits()
    target = release_dir(root, version)
    if target.is_dir() and not target.is_symlink():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    extract_tarball(archive, target, max_total_bytes=limits.max_total_bytes, max_members=limits.max_members)
    return target


def current_version(root: Path) -> str | None:
    """The version ``current`` points at, or None before the first switch."""
    link = root / CURRENT_LINK
    try:
        pointed = link.readlink()
    except FileNotFoundError:
        return None
    except OSError as exc:  # EINVAL: a regular file or directory where the symlink belongs
        raise CorruptState(link, f"not a symlink: {exc}") from exc
    parts = pointed.parts
    if len(parts) != 2 or parts[0] != RELEASES_DIR or not _VERSION_PATTERN.fullmatch(parts[1]):
        raise CorruptState(link, f"points at {str(pointed)!r}, not at {RELEASES_DIR}/<version>")
    return parts[1]


def switch_current(root: Path, version: str) -> str | None:
    """Point ``current`` at an installed ``version`` atomically; returns the version it replaced."""
    target = release_dir(root, version)
    if not target.is_dir() or target.is_symlink():
        raise ApplyError(f"{target}: release {version} is not installed, cannot switch to it")
    try:
        old = current_version(root)
    except CorruptState:  # a file or a foreign link where ours belongs (drift): replaced like any link
        old = None
        link = root / CURRENT_LINK
        if link.is_dir() and not link.is_symlink():  # a directory copied there by hand: kept, beside
            aside = set_aside(link, datetime.now(UTC))
            log.warning("%s: a directory where the current link belongs; moved to %s", link, aside)
    tmp = root / f"{_TMP_LINK_PREFIX}{secrets.token_hex(8)}"
    tmp.symlink_to(Path(RELEASES_DIR) / version)
    try:
        tmp.replace(root / CURRENT_LINK)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(root)
    return old


def installed_versions(root: Path) -> list[str]:
    """Complete releases on disk, sorted by name (not by semver: callers order versions)."""
    folder = root / RELEASES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def remove_release(root: Path, version: str) -> None:
    """Delete ``releases/<version>``, never the current one; a crash midway leaves only trash."""
    if version == current_version(root):
        raise ApplyError(f"refusing to remove release {version}: `current` points at it")
    target = release_dir(root, version)
    if not target.exists():
        return
    # Rename first so the release disappears atomically; half-deleted trash is no release at all.
    trash = target.with_name(f"{_TRASH_PREFIX}{version}-{secrets.token_hex(4)}")
    target.rename(trash)
    fsync_dir(target.parent)
    shutil.rmtree(trash)


def prune(root: Path, keep: set[str]) -> list[str]:
    """Remove every release not in ``keep`` (the current one always stays) and crash leftovers.

    Leftovers are interrupted unpacks, deletions and switches. Call it only from the converge loop,
    never while an install into the same root is running. Returns the versions removed.
    """
    current = current_version(root)
    removed = []
    for version in installed_versions(root):
        if version not in keep and version != current:
            remove_release(root, version)
            removed.append(version)
    folder = root / RELEASES_DIR
    for leftover in folder.glob(".*") if folder.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)
    for stale_link in root.glob(f"{_TMP_LINK_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            stale_link.unlink()
    return removed
