"""A release directory kept on disk is reused only while it is exactly what was installed.

``agent.install.tree`` records, at install, the signed artifacts and a hash of every directory, file
(content and permission bits) and symlink under the release; before a rollback or a redeploy reuses
the directory, :func:`tree_problem` must find any change someone (or a failing disk) made since.
Each tampering here is one a user could do by hand on a robot; the agent's own ``.fleetcd/`` is
the one place that may change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.install.tree import TREE_FILE, read_tree, record_tree, tree_problem, tree_sha256

ARTIFACTS = {"navstack.tar.gz": "a" * 64}


def release(root: Path) -> tuple[Path, Path]:
    """A small installed release: files, an executable, a nested dir, a symlink, and .fleetcd/."""
    folder = root / "releases" / "1.2.0"
    (folder / "bin").mkdir(parents=True)
    (folder / "share" / "maps").mkdir(parents=True)
    (folder / "bin" / "navd").write_bytes(b"#!/bin/sh\nexec sleep 1\n")
    (folder / "bin" / "navd").chmod(0o755)
    (folder / "share" / "maps" / "floor1.yaml").write_text("width: 40\n")
    (folder / "config.yaml").write_text("speed: 1.5\n")
    (folder / "current-map").symlink_to("share/maps/floor1.yaml")
    meta = folder / ".fleetcd"
    meta.mkdir()
    (meta / "run.json").write_text("{}")
    record_tree(folder, meta, ARTIFACTS)
    return folder, meta


def _rewrite_same_size(f: Path) -> None:
    (f / "config.yaml").write_text("speed: 9.9\n")


def _chmod_exec(f: Path) -> None:
    (f / "config.yaml").chmod(0o755)


def _drop_exec(f: Path) -> None:
    (f / "bin" / "navd").chmod(0o644)


def _add_file(f: Path) -> None:
    (f / "bin" / "helper").write_text("x")


def _remove_file(f: Path) -> None:
    (f / "share" / "maps" / "floor1.yaml").unlink()


def _add_empty_dir(f: Path) -> None:
    (f / "share" / "empty").mkdir()


def _retarget_link(f: Path) -> None:
    (f / "current-map").unlink()
    (f / "current-map").symlink_to("/etc/passwd")


def _file_becomes_link_to_same_content(f: Path) -> None:
    (f / "config.yaml").rename(f / "config.real")
    (f / "config.yaml").symlink_to("config.real")


def _rename_file(f: Path) -> None:
    (f / "config.yaml").rename(f / "config.yml")


def _append_byte(f: Path) -> None:
    with (f / "bin" / "navd").open("ab") as handle:
        handle.write(b"\n")


def _add_fifo(f: Path) -> None:
    os.mkfifo(f / "share" / "pipe")


def _nested_fleetcd_dir(f: Path) -> None:
    # only the top-level .fleetcd/ is the agent's: one deeper is release content
    (f / "share" / ".fleetcd").mkdir()


def _dir_mode(f: Path) -> None:
    (f / "share").chmod(0o700)


TAMPERING: dict[str, Callable[[Path], None]] = {
    "content-rewritten-same-size": _rewrite_same_size,
    "made-executable": _chmod_exec,
    "exec-bit-dropped": _drop_exec,
    "file-added": _add_file,
    "file-removed": _remove_file,
    "empty-dir-added": _add_empty_dir,
    "symlink-retargeted": _retarget_link,
    "file-replaced-by-link-to-same-bytes": _file_becomes_link_to_same_content,
    "file-renamed": _rename_file,
    "one-byte-appended": _append_byte,
    "fifo-added": _add_fifo,
    "nested-fleetcd-dir": _nested_fleetcd_dir,
    "directory-mode-changed": _dir_mode,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_a_release_changed_since_install_is_not_reused(
    tmp_path: Path, tamper: Callable[[Path], None]
) -> None:
    folder, meta = release(tmp_path)
    assert tree_problem(folder, meta, ARTIFACTS) is None
    tamper(folder)
    problem = tree_problem(folder, meta, ARTIFACTS)
    assert problem is not None and "changed since the install" in problem
    assert tree_problem(folder, meta, None) == problem  # an automatic rollback checks the files too


def test_the_agents_own_folder_may_change_without_voiding_the_release(tmp_path: Path) -> None:
    folder, meta = release(tmp_path)
    (meta / "run.json").write_text('{"pid": 4242}')
    (meta / "extra.log").write_text("started\n")
    assert tree_problem(folder, meta, ARTIFACTS) is None


def test_a_release_installed_from_other_artifacts_is_not_reused_for_this_release(tmp_path: Path) -> None:
    folder, meta = release(tmp_path)
    assert tree_problem(folder, meta, {"navstack.tar.gz": "b" * 64}) == (
        "it was installed from other artifacts than the release names"
    )
    assert tree_problem(folder, meta, {**ARTIFACTS, "maps.tar.gz": "c" * 64}) is not None
    assert tree_problem(folder, meta, {}) is not None
    assert tree_problem(folder, meta, None) is None  # without a release at hand only files count


def test_an_install_cut_short_before_its_record_is_not_reused(tmp_path: Path) -> None:
    folder, meta = release(tmp_path)
    (meta / TREE_FILE).unlink()
    problem = tree_problem(folder, meta, ARTIFACTS)
    assert problem is not None and TREE_FILE in problem and "never finished" in problem
    assert read_tree(meta) is None


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b'{"format": 1, "artifacts": {}, "tree_sha256": "short"}', b'{"format": 2}'],
    ids=["empty", "garbage", "bad-sha", "future-format"],
)
def test_a_corrupt_record_is_a_reason_not_a_crash(tmp_path: Path, content: bytes) -> None:
    folder, meta = release(tmp_path)
    (meta / TREE_FILE).write_bytes(content)
    problem = tree_problem(folder, meta, ARTIFACTS)
    assert problem is not None and TREE_FILE in problem


def test_the_tree_hash_does_not_depend_on_the_order_files_were_written(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, names in ((one, ["a", "b", "c/d", "c/e"]), (two, ["c/e", "c/d", "b", "a"])):
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(name)
    assert tree_sha256(one, skip=".fleetcd") == tree_sha256(two, skip=".fleetcd")


def test_a_symlink_loop_or_a_dangling_link_is_hashed_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "loop").symlink_to("loop")
    (folder / "dangling").symlink_to("/nonexistent/target")
    (folder / "up").symlink_to("..")  # following it would walk the whole parent
    first = tree_sha256(folder, skip=".fleetcd")
    assert first == tree_sha256(folder, skip=".fleetcd")
    (folder / "dangling").unlink()
    (folder / "dangling").symlink_to("/nonexistent/other")
    assert tree_sha256(folder, skip=".fleetcd") != first


def test_names_that_look_like_the_hash_format_cannot_collide(tmp_path: Path) -> None:
    # a file name holding a newline and a fake entry must not hash like two entries
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "a").write_text("")
    (one / "b").write_text("")
    (two / "a' 644 0 x\nf 'b").write_text("")
    assert tree_sha256(one, skip=".fleetcd") != tree_sha256(two, skip=".fleetcd")
