"""Artifact download, the agent's **download** step: its settings and the interface the loop calls.

The converge loop receives a :class:`Downloader` (the real default is
:func:`agent.fetch.http.download`, which speaks HTTP through ``urllib3``), so tests and customers
can pass another. Every download is resumable, size-capped, deadline-bound and
sha256-checked; errors are those of :mod:`agent.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KIB = 1024
MIB = 1024 * KIB
# What a download leaves free beyond the artifact's declared size: room for what the agent writes
# right after it (journal, report, a git fetch of a few KiB each). Small on purpose: a 200-byte
# tarball needs 200 bytes + 1 MiB, not a fixed tens of MiB a nearly full robot disk does not have.
FREE_SPACE_MARGIN_BYTES = 1 * MIB


@dataclass(frozen=True)
class DownloadSettings:
    """Bounds of one artifact download. Every field has a unit in its name and a checked range."""

    connect_timeout_seconds: float = 10.0  # TCP + TLS handshake
    read_timeout_seconds: float = 30.0  # longest silence on the socket before giving up this try
    min_bytes_per_second: int = 10 * KIB  # slowest average rate tolerated; derives the deadline
    deadline_floor_seconds: float = 60.0  # the derived deadline is never shorter than this
    deadline_seconds: float | None = None  # explicit overall deadline; None derives it from the size
    free_space_margin_bytes: int = FREE_SPACE_MARGIN_BYTES  # left free once the artifact is stored
    chunk_bytes: int = 64 * KIB  # read and hash granularity

    def __post_init__(self) -> None:
        _within("connect_timeout_seconds", self.connect_timeout_seconds, 0.1, 300)
        _within("read_timeout_seconds", self.read_timeout_seconds, 0.1, 3600)
        _within("min_bytes_per_second", self.min_bytes_per_second, 1, 1024 * MIB)
        _within("deadline_floor_seconds", self.deadline_floor_seconds, 0.1, 86_400)
        if self.deadline_seconds is not None:
            _within("deadline_seconds", self.deadline_seconds, 0.1, 7 * 86_400)
        _within("free_space_margin_bytes", self.free_space_margin_bytes, 0, 1024**4)
        _within("chunk_bytes", self.chunk_bytes, 1, 16 * MIB)

    def deadline_for(self, size: int) -> float:
        """Seconds one download of ``size`` bytes may take from start to verified file."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        return self.deadline_floor_seconds + size / self.min_bytes_per_second


def _within(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"DownloadSettings.{name} must be within {low}..{high}, got {value}")


def partial_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` accumulate until verified (``app.tar.gz`` → ``app.tar.gz.part``)."""
    return dest.with_name(dest.name + ".part")


# Told the bytes of one artifact on disk so far, after every chunk (agent.report.progress listens).
Progress = Callable[[int], None]


class Downloader(Protocol):
    """Fetch ``url`` into ``dest``: exactly ``size`` bytes hashing to ``sha256``, or raise; tell
    ``progress`` (when given) the bytes on disk as they grow."""

    def __call__(
        self,
        url: str,
        dest: Path,
        *,
        sha256: str,
        size: int,
        settings: DownloadSettings,
        progress: Progress | None = None,
    ) -> Path: ...
