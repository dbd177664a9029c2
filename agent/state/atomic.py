"""Crash-safe small files: every piece of agent state on disk is written through here.

A power cut at any instant leaves either the old file or the new one, never a torn mix: the bytes go
to a temporary file in the same directory, which is fsynced, renamed over the target with
``os.replace`` (atomic on POSIX), and then the directory itself is fsynced so the rename survives.
Readers tolerate a missing file (first boot) but never a corrupt one: that is raised, loudly, and
the loop sets the file aside (:func:`set_aside`) and rebuilds it (:mod:`agent.converge.repair`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import CorruptState, DiskFull
from fleetcd.compat import UTC

# ENOSPC: the disk is full; EDQUOT: this user's quota is, which means the same to the agent.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

DEFAULT_FILE_MODE = 0o644
CORRUPT_MARK = ".corrupt-"  # <name>.corrupt-<UTC time>: a state file set aside, never read again

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def fsync_dir(path: Path) -> None:
    """Make renames and unlinks inside ``path`` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, whole."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(path, len(data)) from exc
        raise
    fsync_dir(path.parent)


def read_bytes(path: Path) -> bytes | None:
    """The content of ``path``, or None when it does not exist yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_model(path: Path, model_type: type[M], what: str) -> M | None:
    """The ``model_type`` saved in ``path`` as JSON; None if missing; :class:`CorruptState` naming
    ``what`` it should have been when it does not parse or validate."""
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        return model_type.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptState(path, f"not {what}: {exc.errors()[0]['msg']}") from exc


def read_json(path: Path) -> Any | None:
    """The JSON value in ``path``; None if missing; :class:`CorruptState` if it is not valid JSON."""
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptState(path, f"not valid JSON: {exc}") from exc


def read_record(path: Path, record_type: Callable[..., R], what: str) -> R | None:
    """``record_type(**fields)`` of the JSON object in ``path`` (a dataclass the agent wrote); None
    if missing; :class:`CorruptState` naming ``what`` it should have been when the fields do not fit."""
    raw = read_json(path)
    if raw is None:
        return None
    try:
        return record_type(**raw)
    except TypeError as exc:  # not an object, or missing or unknown fields
        raise CorruptState(path, f"not {what}: {exc}") from exc


def set_aside(path: Path, now: datetime) -> Path:
    """Rename the corrupt file ``path`` to ``<name>.corrupt-<UTC time>`` beside it; the new path.

    Kept for forensics; no reader looks at it again (they read exact names, and journals end in
    ``.json``). Two in the same second get ``.1``, ``.2``… so none is overwritten.
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
    extra = 0
    while aside.exists():
        extra += 1
        aside = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}.{extra}")
    path.rename(aside)
    fsync_dir(path.parent)
    return aside
