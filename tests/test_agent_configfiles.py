"""Config instances on disk: where they go, what bytes they hold, and noticing local edits.

The drift watcher runs a real watchfiles thread against real files; the tests edit the file and
poll ``changed()`` for a bounded while (never a timed assertion).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.configfiles.watch import DriftWatcher
from agent.configfiles.write import config_path, drifted, render, sha256_hex, write_config
from fleetcd.errors import ApplyError
from fleetcd.models.release import ConfigSchema

APP_DIR = Path("/var/lib/fleetcd/apps/nav")
WAIT_SECONDS = 10.0


def schema(path: str = "robot.yaml", fmt: str = "yaml") -> ConfigSchema:
    return ConfigSchema.model_validate({"path": path, "format": fmt, "schema": {"type": "object"}})


def wait_for_change(watcher: DriftWatcher, path: Path) -> set[Path]:
    """Everything ``changed()`` returned until ``path`` showed up (or the bounded wait ran out)."""
    seen: set[Path] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    while path not in seen and time.monotonic() < deadline:
        seen |= watcher.changed()
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("robot.yaml", APP_DIR / "config" / "robot.yaml"),
        ("nav/params.json", APP_DIR / "config" / "nav" / "params.json"),
        ("./robot.yaml", APP_DIR / "config" / "robot.yaml"),
        ("/etc/acme/robot.yaml", Path("/etc/acme/robot.yaml")),
    ],
    ids=["relative", "nested", "dot-prefix", "absolute-kept"],
)
def test_config_path_places_relative_paths_under_the_app_config_dir(raw: str, expected: Path) -> None:
    assert config_path(APP_DIR, schema(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    ["../robot.yaml", "nav/../../../etc/shadow", "/etc/acme/../shadow", ".", "/"],
    ids=["parent", "deep-escape", "absolute-with-dotdot", "dot", "root"],
)
def test_config_path_that_walks_out_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ApplyError, match=f"config path {raw!r}"):
        config_path(APP_DIR, schema(raw))


VALUES_A: dict[str, Any] = {"speed": {"max": 1.5, "min": 0.1}, "name": "r2d2", "lidar": ["front", "rear"]}
VALUES_B: dict[str, Any] = {"lidar": ["front", "rear"], "name": "r2d2", "speed": {"min": 0.1, "max": 1.5}}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_rendering_is_deterministic_whatever_the_key_order(fmt: str) -> None:
    a, b = render(VALUES_A, schema(fmt=fmt)), render(VALUES_B, schema(fmt=fmt))
    assert a == b
    loaded = json.loads(a) if fmt == "json" else yaml.safe_load(a)
    assert loaded == VALUES_A
    text = a.decode()
    assert text.index("lidar") < text.index("name") < text.index("speed")
    assert text.index("max") < text.index("min")


def test_yaml_rendering_has_no_anchors_for_shared_values() -> None:
    shared = {"x": 1}
    text = render({"a": shared, "b": shared}, schema()).decode()
    assert "&" not in text and "*" not in text
    assert yaml.safe_load(text) == {"a": {"x": 1}, "b": {"x": 1}}


def test_write_config_creates_the_directory_and_replaces_atomically(tmp_path: Path) -> None:
    path = config_path(tmp_path, schema("nav/robot.yaml"))
    write_config(path, b"speed: 1\n")
    write_config(path, b"speed: 2\n")
    assert path.read_bytes() == b"speed: 2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["robot.yaml"]  # no temp files left


def test_drifted_reports_edited_and_deleted_files_only(tmp_path: Path) -> None:
    kept, edited, deleted = (tmp_path / n for n in ("kept.yaml", "edited.yaml", "deleted.yaml"))
    expected = {}
    for path in (kept, edited, deleted):
        data = render({"file": path.name}, schema())
        write_config(path, data)
        expected[path] = sha256_hex(data)
    assert drifted(expected) == []
    edited.write_text("file: hand-edited\n")
    deleted.unlink()
    assert drifted(expected) == sorted([edited, deleted])


def test_drift_watcher_notices_a_local_edit(tmp_path: Path) -> None:
    watched, neighbour = tmp_path / "robot.yaml", tmp_path / "other.yaml"
    write_config(watched, b"speed: 1\n")
    with DriftWatcher([watched]) as watcher:
        neighbour.write_text("not ours\n")
        with watched.open("a") as handle:
            handle.write("speed: 9000\n")
        seen = wait_for_change(watcher, watched)
    assert watched in seen
    assert neighbour not in seen


def test_drift_watcher_notices_a_replace_and_a_delete(tmp_path: Path) -> None:
    watched = tmp_path / "config" / "robot.yaml"
    write_config(watched, b"speed: 1\n")
    with DriftWatcher([watched]) as watcher:
        write_config(watched, b"speed: 2\n")  # what an editor's save-by-rename looks like
        assert watched in wait_for_change(watcher, watched)
        watched.unlink()
        assert watched in wait_for_change(watcher, watched)


def test_drift_watcher_stops_and_tolerates_missing_directories(tmp_path: Path) -> None:
    watcher = DriftWatcher([tmp_path / "never" / "made.yaml"])
    assert not watcher.running
    assert watcher.changed() == set()
    watcher.stop()
    live = tmp_path / "robot.yaml"
    live.write_text("a: 1\n")
    watcher = DriftWatcher([live])
    assert watcher.running
    watcher.stop()
    assert not watcher.running
