"""The few names Python 3.11 added that fleetcd uses, for the robots' Python 3.10.

Ubuntu 22.04, ROS 2 Humble and JetPack 6 ship Python 3.10, so everything a robot imports (the shared
core and the agent) runs on 3.10 through 3.13. Import these names from here, never from the standard
library directly; ``tests/test_py310_names.py`` keeps it that way. On 3.11+ they are the standard
library's own objects.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import timezone
from enum import Enum
from pathlib import Path
from typing import IO

UTC = timezone.utc  # datetime.UTC is this very object (3.11+)

if sys.version_info >= (3, 11):
    from enum import StrEnum
    from typing import Self
else:  # the Python 3.10 job runs this branch; mypy checks it (python_version = 3.10)
    from typing_extensions import Self

    class StrEnum(str, Enum):
        """3.11's StrEnum: members are str, and ``str()``/``format()`` give the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list[object]) -> str:
            return name.lower()


_CHUNK_BYTES = 1 << 20


def file_sha256(handle: IO[bytes], chunk_bytes: int = _CHUNK_BYTES) -> str:
    """The sha256 (hex) of what is left to read in ``handle`` (``hashlib.file_digest`` is 3.11+)."""
    digest = hashlib.sha256()
    while chunk := handle.read(chunk_bytes):
        digest.update(chunk)
    return digest.hexdigest()


def path_sha256(path: Path, chunk_bytes: int = _CHUNK_BYTES) -> str:
    """The sha256 (hex) of the file at ``path``, read ``chunk_bytes`` at a time."""
    with path.open("rb") as handle:
        return file_sha256(handle, chunk_bytes)


__all__ = ["UTC", "Self", "StrEnum", "file_sha256", "path_sha256"]
