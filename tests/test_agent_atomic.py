"""Crash-safe state files on the robot (agent.state.atomic), on real disks and real killed processes.

Every piece of the agent's state goes through :func:`write_atomic`; a power cut or a ``kill -9`` at
any instant must leave the old file or the new one, whole. Here a real writer process is killed with
SIGKILL in the middle of its writes, a real tmpfs fills up (ENOSPC from the kernel), and corrupt
files are set aside under names no reader will ever pick up again.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.errors import CorruptState, DiskFull
from agent.state.atomic import (
    CORRUPT_MARK,
    DEFAULT_FILE_MODE,
    fsync_dir,
    read_bytes,
    read_json,
    read_model,
    set_aside,
    write_atomic,
)
from fleetcd.compat import UTC
from tests.disks import fill, mounted

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 5, 4, 9, 30, 15, tzinfo=UTC)
SIZE = 256 * 1024

WRITER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from agent.state.atomic import write_atomic
target = Path(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    write_atomic(target, (b"ab"[n % 2:n % 2 + 1]) * {SIZE})
    n += 1
"""


class Saved(BaseModel):
    seq: int
    name: str


# --- write_atomic -------------------------------------------------------------------------------------


def test_a_write_replaces_the_whole_file_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "trust.json"
    write_atomic(target, b'{"serial": 1, "padding": "' + b"x" * 1000 + b'"}')
    write_atomic(target, b'{"serial": 2}', mode=0o600)
    assert target.read_bytes() == b'{"serial": 2}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["trust.json"]


def test_the_default_mode_is_used_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "status.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == DEFAULT_FILE_MODE


def test_a_write_into_a_missing_directory_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_a_write_through_a_symlinked_target_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    # An attacker who can plant a symlink in the state directory must not redirect the write.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    state = tmp_path / "state"
    state.mkdir()
    (state / "push.json").symlink_to(victim)
    write_atomic(state / "push.json", b"{}")
    assert victim.read_bytes() == b"precious"
    assert not (state / "push.json").is_symlink()
    assert (state / "push.json").read_bytes() == b"{}"


def test_a_killed_writer_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path: Path) -> None:
    target = tmp_path / "journal.json"
    write_atomic(target, b"a" * SIZE)
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        data = target.read_bytes()
        assert len(data) == SIZE, f"torn file after kill at {delay} s: {len(data)} bytes"
        assert data in (b"a" * SIZE, b"b" * SIZE)
    # A temporary file a killed writer left is never read: readers use exact names.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "journal.json"]
    assert all(name.startswith(".journal.json.") and name.endswith(".tmp") for name in leftovers)


def test_a_full_disk_is_disk_full_naming_the_file_and_the_old_content_stays(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=256k", "tmpfs"):
        target = disk / "status.json"
        write_atomic(target, b"old report")
        filler = fill(disk)
        with pytest.raises(DiskFull) as caught:
            write_atomic(target, b"r" * 200_000)
        assert caught.value.path == target
        assert caught.value.needed_bytes == 200_000
        assert target.read_bytes() == b"old report"
        assert sorted(p.name for p in disk.iterdir()) == ["other-process-log", "status.json"]
        filler.unlink()
        write_atomic(target, b"r" * 200_000)  # space is back: the same write succeeds
        assert target.read_bytes() == b"r" * 200_000


def test_fsync_dir_of_a_missing_directory_raises(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "absent")


# --- readers ------------------------------------------------------------------------------------------


def test_read_bytes_is_none_only_for_a_missing_file(tmp_path: Path) -> None:
    assert read_bytes(tmp_path / "absent") is None
    (tmp_path / "empty").write_bytes(b"")
    assert read_bytes(tmp_path / "empty") == b""
    with pytest.raises(IsADirectoryError):
        read_bytes(tmp_path)


def test_read_model_reads_validates_and_names_what_it_expected(tmp_path: Path) -> None:
    path = tmp_path / "saved.json"
    assert read_model(path, Saved, "a saved thing") is None
    path.write_text('{"seq": 3, "name": "nav"}')
    assert read_model(path, Saved, "a saved thing") == Saved(seq=3, name="nav")
    path.write_text('{"seq": "three"}')
    with pytest.raises(CorruptState) as caught:
        read_model(path, Saved, "a saved thing")
    assert caught.value.path == path
    assert "not a saved thing" in str(caught.value)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b"[1,]", b"nul"], ids=repr)
def test_read_json_refuses_what_is_not_json(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "configs.json"
    path.write_bytes(raw)
    with pytest.raises(CorruptState, match="not valid JSON"):
        read_json(path)


def test_read_json_reads_any_json_value(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    for value in ({"a": [1, 2]}, [1], "text", 3, None, True):
        write_atomic(path, json.dumps(value).encode())
        assert read_json(path) == value


# --- set_aside ----------------------------------------------------------------------------------------


def test_a_corrupt_file_is_set_aside_with_its_utc_time(tmp_path: Path) -> None:
    path = tmp_path / "nav.json"
    path.write_bytes(b"\x00garbage")
    aside = set_aside(path, NOW)
    assert aside.name == f"nav.json{CORRUPT_MARK}20260504T093015Z"
    assert aside.read_bytes() == b"\x00garbage"
    assert not path.exists()


def test_a_local_time_is_converted_to_utc_in_the_name(tmp_path: Path) -> None:
    path = tmp_path / "nav.json"
    path.write_bytes(b"x")
    berlin = NOW.astimezone(timezone(timedelta(hours=2)))
    assert set_aside(path, berlin).name.endswith("20260504T093015Z")


def test_two_in_the_same_second_never_overwrite_each_other(tmp_path: Path) -> None:
    path = tmp_path / "nav.json"
    names = []
    for content in (b"one", b"two", b"three"):
        path.write_bytes(content)
        names.append(set_aside(path, NOW).name)
    stamp = f"nav.json{CORRUPT_MARK}20260504T093015Z"
    assert names == [stamp, f"{stamp}.1", f"{stamp}.2"]
    assert [(tmp_path / n).read_bytes() for n in names] == [b"one", b"two", b"three"]


def test_a_set_aside_file_is_not_a_journal_any_more(tmp_path: Path) -> None:
    path = tmp_path / "nav.json"
    path.write_bytes(b"bad")
    aside = set_aside(path, NOW)
    assert not aside.name.endswith(".json"), "readers glob *.json for journals"


def test_setting_aside_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        set_aside(tmp_path / "absent.json", NOW)
