"""What an installed release directory holds, recorded at install and checked before it is reused.

Place in the flow: the tarball executor (:mod:`agent.executors.tarball`) writes a
:class:`TreeRecord` as the last step of ``install`` (beside ``run.json`` in the release's reserved
``.fleetcd/``), and checks it before it reuses the directory instead of downloading: for a rollback
ordered by the controller (a new deployment of a version still on disk) and for an automatic
rollback. A release directory whose files differ from the record is never reused: a deployment
downloads and unpacks it again, an automatic rollback fails and says so.

The record holds the sha256 of every artifact the release named (so a reused directory is the one
the *signed* release describes, not just any directory of that version) and the sha256 of the tree:
every directory, regular file (content and permission bits) and symlink (target) under the release
directory except the agent's own ``.fleetcd/``, in sorted order. Checking it reads every byte of the
release once (about 1 s per GiB here), which is what makes a copy on disk as good as a download.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from pydantic import Field

from agent.errors import CorruptState
from agent.state.atomic import read_model, write_atomic
from fleetcd.compat import path_sha256
from fleetcd.models.base import FrozenModel

TREE_FILE = "tree.json"
_SHA256 = r"^[0-9a-f]{64}$"


class TreeRecord(FrozenModel):
    """``.fleetcd/tree.json``: which signed artifacts built this directory, and what it held."""

    format: int = Field(default=1, ge=1, le=1)
    artifacts: dict[str, str]  # artifact name -> sha256, as the signed release named them
    tree_sha256: str = Field(pattern=_SHA256)


def tree_sha256(folder: Path, *, skip: str) -> str:
    """sha256 over everything under ``folder`` but its top-level ``skip`` entry (see the docstring)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        relative = here.relative_to(folder)
        if relative == Path():
            dirnames[:] = [d for d in dirnames if d != skip]
            filenames = [f for f in filenames if f != skip]
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = (relative / name).as_posix()
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                digest.update(f"l {rel!r} {str(path.readlink())!r}\n".encode())
            elif stat.S_ISDIR(info.st_mode):
                digest.update(f"d {rel!r} {mode:o}\n".encode())
            elif stat.S_ISREG(info.st_mode):
                digest.update(f"f {rel!r} {mode:o} {info.st_size} {path_sha256(path)}\n".encode())
            else:  # a fifo or device: no release ships one (the unpacker refuses them)
                digest.update(f"? {rel!r} {stat.S_IFMT(info.st_mode):o}\n".encode())
    return digest.hexdigest()


def record_tree(folder: Path, meta: Path, artifacts: dict[str, str]) -> TreeRecord:
    """Hash ``folder`` (without ``meta``) and write the record into ``meta``; returns it."""
    record = TreeRecord(artifacts=dict(artifacts), tree_sha256=tree_sha256(folder, skip=meta.name))
    write_atomic(meta / TREE_FILE, record.model_dump_json(indent=2).encode() + b"\n")
    return record


def read_tree(meta: Path) -> TreeRecord | None:
    """The record in ``meta``, None when there is none (an install cut short, or an older agent's)."""
    return read_model(meta / TREE_FILE, TreeRecord, "a tree record")


def tree_problem(folder: Path, meta: Path, artifacts: dict[str, str] | None) -> str | None:
    """Why ``folder`` cannot be reused (None: it can): no record, other artifacts, or other files.

    ``artifacts`` (name -> sha256 from the signed release) must equal the recorded ones; None checks
    only the files against the record (an automatic rollback, which has no release at hand).
    """
    try:
        record = read_tree(meta)
    except CorruptState as exc:
        return str(exc)
    if record is None:
        return f"{meta / TREE_FILE} is missing (the install never finished)"
    if artifacts is not None and record.artifacts != artifacts:
        return "it was installed from other artifacts than the release names"
    actual = tree_sha256(folder, skip=meta.name)
    if actual != record.tree_sha256:
        recorded = record.tree_sha256
        return f"its files changed since the install (tree sha256 {actual[:12]}…, recorded {recorded[:12]}…)"
    return None
