"""Reading a fleet repository's managed files from a working directory into a path → bytes map.

The rest of the core works on that map (a snapshot), whether it came from a checkout or from a git
ref (``fleetcd.git.trees``), so validation and planning never touch the disk themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.layout import FLEET_FILE, MANAGED_DIRS
from fleetcd.limits import READ_CAP_BYTES
from fleetcd.reasons import Reason

Snapshot = Mapping[str, bytes]
MAX_FILES = 250_000
_NOT_ALLOWED = "symlinks and special files are not allowed"


def read_directory(root: Path) -> tuple[dict[str, bytes], list[Diagnostic]]:
    """Every managed file under ``root``; symlinks and special files are reported, never followed.

    That holds for ``fleet.yaml`` and the managed folders themselves too: a pull request may hold
    ``keys -> /home/runner/.ssh``, and CI validates it on the runner.
    """
    fleet_file = root / FLEET_FILE
    if fleet_file.is_symlink():
        raise InvalidContent.at(str(fleet_file), "fleet.yaml is a symlink; symlinks are not allowed")
    if not fleet_file.is_file():
        raise InvalidContent.at(str(fleet_file), "not a fleet repository: fleet.yaml is missing")
    files: dict[str, bytes] = {FLEET_FILE: _read_capped(fleet_file)}
    problems: list[Diagnostic] = []
    for top in MANAGED_DIRS:
        base = root / top
        if base.is_symlink() or (base.exists() and not base.is_dir()):
            problems.append(Diagnostic(top, None, None, _NOT_ALLOWED, Reason.INVALID))
            continue
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            here = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
                full = here / name
                rel = full.relative_to(root).as_posix()
                if full.is_symlink() or not full.is_file():
                    problems.append(Diagnostic(rel, None, None, _NOT_ALLOWED, Reason.INVALID))
                    continue
                files[rel] = _read_capped(full)
                if len(files) > MAX_FILES:
                    raise InvalidContent.at(
                        str(root), f"more than {MAX_FILES} files", reason=Reason.TOO_LARGE
                    )
    return files, problems


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(READ_CAP_BYTES)
