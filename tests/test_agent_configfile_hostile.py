"""Config instances under hostile names, planted files and odd values, on a real filesystem.

A release names where its config goes (``config.path``) and what it holds; the robot's disk may hold
anything at that place already (a symlink someone planted, a directory, a file with other
permissions). The file must land exactly where the path says, whole and with the agent's mode,
and :func:`~agent.configfiles.write.drifted` must judge only what a reader of that path would read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.configfiles.write import CONFIG_DIR, config_path, drifted, render, sha256_hex, write_config
from agent.state.atomic import DEFAULT_FILE_MODE
from fleetcd.errors import ApplyError
from fleetcd.models.release import ConfigSchema


def schema(path: str = "robot.yaml", fmt: str = "yaml") -> ConfigSchema:
    return ConfigSchema.model_validate({"path": path, "format": fmt, "schema": {"type": "object"}})


@pytest.mark.parametrize(
    "raw",
    [
        "robot params.yaml",
        "-rf.yaml",
        "émetteur/ロボット.json",
        "...",
        "..yaml",
        "a..b/c.yaml",
        ".hidden",
        "x\ny.yaml",
    ],
    ids=[
        "space",
        "leading-dash",
        "unicode",
        "three-dots",
        "dotdot-prefix",
        "dotdot-inside",
        "dotfile",
        "newline",
    ],
)
def test_odd_but_harmless_names_stay_inside_the_config_dir(tmp_path: Path, raw: str) -> None:
    path = config_path(tmp_path, schema(raw))
    assert path == tmp_path / CONFIG_DIR / raw
    write_config(path, b"a: 1\n")
    assert path.read_bytes() == b"a: 1\n"
    assert path.resolve().is_relative_to((tmp_path / CONFIG_DIR).resolve())


@pytest.mark.parametrize(
    "raw",
    ["robot\x00.yaml", "nav/..", "nav//../x", "./../x", "/etc/../../root/.ssh/authorized_keys"],
    ids=["nul", "trailing-dotdot", "double-slash-dotdot", "dot-then-dotdot", "absolute-climb"],
)
def test_names_that_hide_a_climb_or_a_nul_are_refused(raw: str) -> None:
    with pytest.raises(ApplyError, match=r"must not contain '\.\.' or NUL"):
        config_path(Path("/var/lib/fleetcd/apps/nav"), schema(raw))


def test_a_planted_symlink_at_the_config_path_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "etc-shadow"
    victim.write_bytes(b"root:secret\n")
    path = config_path(tmp_path / "app", schema("robot.yaml"))
    path.parent.mkdir(parents=True)
    path.symlink_to(victim)
    write_config(path, b"speed: 1\n")
    assert victim.read_bytes() == b"root:secret\n"
    assert not path.is_symlink()
    assert path.read_bytes() == b"speed: 1\n"


def test_a_directory_where_the_file_goes_fails_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / "robot.yaml"
    (path / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        write_config(path, b"a: 1\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["robot.yaml"]
    assert (path / "inside").is_dir()


def test_a_file_where_the_config_directory_goes_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / CONFIG_DIR).write_text("I am a file\n")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        write_config(config_path(tmp_path, schema("nav/robot.yaml")), b"a: 1\n")
    assert (tmp_path / CONFIG_DIR).read_text() == "I am a file\n"


def test_the_written_mode_is_the_agents_whatever_the_umask_or_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "robot.yaml"
    path.write_text("old\n")
    path.chmod(0o600)
    old_umask = os.umask(0o077)
    try:
        write_config(path, b"new\n")
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == DEFAULT_FILE_MODE
    write_config(path, b"secret\n", mode=0o640)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_reader_holding_the_old_file_open_keeps_reading_the_old_bytes(tmp_path: Path) -> None:
    path = tmp_path / "robot.yaml"
    write_config(path, b"speed: 1\n" * 1000)
    with path.open("rb") as reader:
        before = os.fstat(reader.fileno()).st_ino
        write_config(path, b"speed: 2\n")
        assert reader.read() == b"speed: 1\n" * 1000  # the old file, whole: never a torn mix
    assert path.stat().st_ino != before
    assert path.read_bytes() == b"speed: 2\n"


HOSTILE_VALUES: dict[str, Any] = {
    "looks_bool": ["yes", "no", "on", "off", "y", "null", "~"],
    "looks_number": ["0x10", "1e3", "010", ".inf", "1_000"],
    "tag": "!!python/object/apply:os.system ['reboot']",
    "document_break": "a\n---\nb: 1\n...\n",
    "anchor": "&x *x",
    "comment": "value # not a comment",
    "key: with colon": {"nested # hash": ["- dash", "[bracket", "{brace"]},
    "unicode": "ロボット \u2028 \U0001f916",
    "empty": "",
    "control": "bell\x07tab\tnul-free",
}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_values_that_look_like_syntax_round_trip_as_plain_data(fmt: str) -> None:
    data = render(HOSTILE_VALUES, schema(fmt=fmt))
    loaded = json.loads(data) if fmt == "json" else yaml.safe_load(data)
    assert loaded == HOSTILE_VALUES
    if fmt == "yaml":
        assert len(list(yaml.safe_load_all(data))) == 1  # a "---" value did not start a second document


def test_unicode_is_written_as_utf8_not_escaped() -> None:
    for fmt in ("yaml", "json"):
        data = render({"name": "ロボット"}, schema(fmt=fmt))
        assert "ロボット".encode() in data


def test_a_rewrite_with_the_same_bytes_or_a_touch_is_not_drift(tmp_path: Path) -> None:
    path = tmp_path / "robot.yaml"
    data = render({"speed": 1}, schema())
    write_config(path, data)
    write_config(path, data)
    os.utime(path, (0, 0))
    assert drifted({path: sha256_hex(data)}) == []


@pytest.mark.parametrize(
    "tamper",
    [
        "truncated",
        "replaced-by-directory",
        "replaced-by-symlink-elsewhere",
        "one-byte-flipped",
        "appended-newline",
    ],
)
def test_every_way_the_bytes_at_the_path_stop_matching_is_drift(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "robot.yaml"
    data = render({"speed": 1, "name": "r2d2"}, schema())
    write_config(path, data)
    if tamper == "truncated":
        path.write_bytes(b"")
    elif tamper == "replaced-by-directory":
        path.unlink()
        path.mkdir()
    elif tamper == "replaced-by-symlink-elsewhere":
        other = tmp_path / "other.yaml"
        other.write_text("speed: 9000\n")
        path.unlink()
        path.symlink_to(other)
    elif tamper == "one-byte-flipped":
        raw = bytearray(data)
        raw[0] ^= 0x01
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(data + b"\n")
    assert drifted({path: sha256_hex(data)}) == [path]


def test_a_symlink_to_identical_bytes_is_judged_by_what_the_app_reads(tmp_path: Path) -> None:
    path = tmp_path / "robot.yaml"
    data = render({"speed": 1}, schema())
    copy = tmp_path / "copy.yaml"
    copy.write_bytes(data)
    path.symlink_to(copy)
    assert drifted({path: sha256_hex(data)}) == []


def test_drifted_lists_paths_sorted_whatever_the_ledger_order(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("z.yaml", "a.yaml", "m.yaml")]
    assert drifted({path: "0" * 64 for path in paths}) == sorted(paths)
