"""Real disks for fault tests: a mount for the duration of a block, and filling one until ENOSPC."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted(target: Path, *mount_args: str) -> Iterator[Path]:
    """``mount <mount_args> <target>`` for the block, or skip where mounting is not allowed."""
    result = subprocess.run(["mount", *mount_args, str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount {' '.join(mount_args)} (needs root): {result.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the kernel says ENOSPC; the file (delete it to give the space back)."""
    filler = disk / "other-process-log"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler
