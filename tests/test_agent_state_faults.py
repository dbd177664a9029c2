"""The robot's own disk lets it down: a full disk, a read-only state directory, corrupt state files.

Real agent cycles (tests/agentworld.py) over real filesystems: a small tmpfs that really fills up
(ENOSPC from the kernel) and a read-only bind mount, skipped where mounting is not allowed; state
files emptied or overwritten with garbage the way a lost write or a bad sector leaves them. Each
fault must be reported and, once the disk allows it, end with the robot on a known version again.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.cli import cli
from agent.fetch import FREE_SPACE_MARGIN_BYTES
from agent.state.journal import JournalState
from fleetcd.cli.main import run
from tests.agentworld import AgentWorld


def agent(*args: str) -> int:
    return run(cli, list(args))


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


# --- a full disk -----------------------------------------------------------------------------------


def test_full_disk_then_space_back_installs_the_release(world: AgentWorld) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    downloads = world.paths.downloads_dir
    with mounted(downloads, "-t", "tmpfs", "-o", "size=4m", "tmpfs"):
        filler = fill(downloads)
        world.publish("1.1.0")

        full = world.once()

        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", JournalState.DOWNLOADING)
        assert world.answer() == "1.0.0"  # nothing changed on the robot
        assert full.report is not None
        (dep,) = full.report.deployments
        assert (dep.activity, dep.error) == ("downloading", "retrying")
        assert "disk full" in dep.message and full.report.last_error is not None
        # What the artifact needs: its declared size plus the small margin, not tens of MiB.
        size = int(dep.message.split("needs ")[1].split(" bytes")[0]) - FREE_SPACE_MARGIN_BYTES
        assert 0 < size < 100_000

        filler.unlink()  # logs rotated: the space is back
        back = world.once()

        assert back.error is None, back.errors
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", JournalState.HEALTHY)
        assert world.answer("1.1.0") == "1.1.0"


def test_full_disk_exits_4_from_once_without_a_traceback(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    with mounted(world.paths.create().downloads_dir, "-t", "tmpfs", "-o", "size=1m", "tmpfs") as downloads:
        fill(downloads)

        code = agent("--config", str(world.config_file), "once")

    assert code == 4
    err = capsys.readouterr().err
    assert "disk full" in err and "retried next cycle" in err and "Traceback" not in err


# --- a read-only state directory -------------------------------------------------------------------


def test_read_only_state_dir_exits_4(world: AgentWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    state = world.paths.state_dir
    with mounted(state, "--bind", str(state)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        code = agent("--config", str(world.config_file), "once")

        assert code == 4  # a setup error, not the network's 5
        err = capsys.readouterr().err
        assert f"{state}: the agent's state directory is not writable" in err
        assert "Read-only file system" in err and "Traceback" not in err
        assert world.answer() == "1.0.0"
