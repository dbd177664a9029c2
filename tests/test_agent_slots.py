"""Release slots of the tarball executor: install, atomic ``current`` switch, crash leftovers, pruning.

Crashes are real: a child process dies with ``os._exit`` (no cleanup runs, as in a power cut) at the
worst instant, and the parent checks what is left on disk.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import CorruptState, UnsafeArchive
from agent.install.slots import (
    current_version,
    install_release,
    installed_versions,
    prune,
    release_dir,
    remove_release,
    switch_current,
)
from fleetcd.errors import ApplyError

REPO = Path(__file__).resolve().parent.parent


def release_archive(folder: Path, version: str, extra: dict[str, bytes] | None = None) -> Path:
    archive = folder / f"app-{version}.tar.gz"
    files = {"VERSION": version.encode(), "bin/app": b"#!/bin/sh\n", **(extra or {})}
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    return folder


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def installed(root: Path, archives: Path, *versions: str) -> None:
    for version in versions:
        install_release(root, version, release_archive(archives, version))


def crash_in_child(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``root`` bound; it is expected to die with status 9."""
    script = f"from pathlib import Path\nroot = Path({str(root)!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)


def test_first_install_and_switch_then_upgrade_reports_previous(root: Path, archives: Path) -> None:
    assert current_version(root) is None

    installed(root, archives, "1.0.0")
    assert switch_current(root, "1.0.0") is None
    installed(root, archives, "1.1.0")
    previous = switch_current(root, "1.1.0")

    assert previous == "1.0.0"
    assert current_version(root) == "1.1.0"
    assert (root / "current" / "VERSION").read_bytes() == b"1.1.0"
    assert (root / "current").readlink() == Path("releases/1.1.0")  # relative: root can move


def test_switch_to_a_release_not_installed_is_refused_and_current_stays(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0")
    switch_current(root, "1.0.0")

    with pytest.raises(ApplyError, match="not installed"):
        switch_current(root, "2.0.0")

    assert current_version(root) == "1.0.0"


def test_reinstalling_an_installed_version_is_a_no_op(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0")

    path = install_release(root, "1.0.0", archives / "does-not-exist.tar.gz")

    assert path == release_dir(root, "1.0.0")
    assert (path / "VERSION").read_bytes() == b"1.0.0"


def test_unsafe_archive_installs_nothing_and_keeps_current(
    root: Path, archives: Path, tmp_path: Path
) -> None:
    installed(root, archives, "1.0.0")
    switch_current(root, "1.0.0")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO(b""))

    with pytest.raises(UnsafeArchive):
        install_release(root, "2.0.0", evil)

    assert installed_versions(root) == ["1.0.0"]
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.0"]
    assert current_version(root) == "1.0.0"


def test_current_always_resolves_to_a_complete_release_while_switching(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0", "2.0.0")
    switch_current(root, "1.0.0")
    failures: list[BaseException] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                assert (root / "current" / "VERSION").read_bytes() in {b"1.0.0", b"2.0.0"}
                reads += 1
            except BaseException as exc:  # any ENOENT means a reader saw no release at all
                failures.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            switch_current(root, "2.0.0" if i % 2 == 0 else "1.0.0")
    finally:
        done.set()
        thread.join()

    assert failures == []
    assert reads > 0
    assert not list(root.glob("current.tmp-*"))


def test_power_cut_during_switch_keeps_old_current_and_prune_cleans_up(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0", "2.0.0")
    switch_current(root, "1.0.0")

    result = crash_in_child(
        root,
        """
        import os, pathlib
        from agent.install.slots import switch_current
        # power cut after the tmp link exists (Path.replace reaches os.replace only from 3.11 on)
        os.replace = pathlib.Path.replace = lambda *args, **kwargs: os._exit(9)
        switch_current(root, "2.0.0")
        """,
    )

    assert result.returncode == 9, result.stderr
    assert current_version(root) == "1.0.0"
    assert (root / "current" / "VERSION").read_bytes() == b"1.0.0"
    assert len(list(root.glob("current.tmp-*"))) == 1  # the crash left its half-made link
    prune(root, keep={"1.0.0", "2.0.0"})
    assert not list(root.glob("current.tmp-*"))
    assert switch_current(root, "2.0.0") == "1.0.0"


def test_power_cut_during_unpack_leaves_no_release_and_prune_cleans_up(root: Path, archives: Path) -> None:
    archive = release_archive(archives, "2.0.0")

    result = crash_in_child(
        root,
        f"""
        import os
        from agent.install import unpack, slots
        unpack._fsync_tree = lambda path: os._exit(9)  # power cut with files unpacked, not renamed
        slots.install_release(root, "2.0.0", Path({str(archive)!r}))
        """,
    )

    assert result.returncode == 9, result.stderr
    assert installed_versions(root) == []
    assert [p.name.startswith(".2.0.0.tmp-") for p in (root / "releases").iterdir()] == [True]
    prune(root, keep=set())
    assert list((root / "releases").iterdir()) == []
    assert install_release(root, "2.0.0", archive).is_dir()


def test_current_release_is_never_removed(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0", "2.0.0")
    switch_current(root, "2.0.0")

    with pytest.raises(ApplyError, match="current"):
        remove_release(root, "2.0.0")
    remove_release(root, "1.0.0")

    assert installed_versions(root) == ["2.0.0"]


def test_prune_keeps_the_kept_and_the_current_release(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0", "2.0.0", "3.0.0", "4.0.0")
    switch_current(root, "3.0.0")

    removed = prune(root, keep={"4.0.0"})

    assert sorted(removed) == ["1.0.0", "2.0.0"]
    assert installed_versions(root) == ["3.0.0", "4.0.0"]
    assert not [p for p in (root / "releases").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda r: (r / "current").write_text("1.0.0"), "not a symlink", id="regular-file"),
        pytest.param(lambda r: (r / "current").symlink_to("/etc"), "points at", id="foreign-target"),
        pytest.param(lambda r: (r / "current").symlink_to("releases/../x"), "points at", id="dotdot-target"),
    ],
)
def test_tampered_current_is_reported_as_corrupt_state(root: Path, make: object, why: str) -> None:
    make(root)  # type: ignore[operator]

    with pytest.raises(CorruptState, match=why):
        current_version(root)


@pytest.mark.parametrize(
    "version",
    [
        pytest.param("../1.0.0", id="dotdot"),
        pytest.param("a/b", id="separator"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("", id="empty"),
        pytest.param("1.0..0", id="double-dot"),
    ],
)
def test_unsafe_version_names_never_become_paths(root: Path, version: str) -> None:
    with pytest.raises(ValueError, match="release directory name"):
        release_dir(root, version)


# --- switching over a damaged current ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "replaced"),
    [
        pytest.param(lambda link: link.write_text("releases/1.0.0\n"), None, id="a-file"),
        pytest.param(lambda link: link.symlink_to("/etc"), None, id="a-link-out-of-releases"),
        pytest.param(lambda link: link.symlink_to("releases/../../x"), None, id="a-link-climbing-out"),
        pytest.param(
            lambda link: link.symlink_to("releases/9.9.9"), "9.9.9", id="a-link-to-nothing-installed"
        ),
    ],
)
def test_a_switch_over_a_damaged_current_replaces_it_and_names_what_it_replaced(
    root: Path, archives: Path, damage: Callable[[Path], object], replaced: str | None
) -> None:
    installed(root, archives, "1.0.0", "1.1.0")
    damage(root / "current")

    assert switch_current(root, "1.1.0") == replaced  # None: what was there named no release

    assert current_version(root) == "1.1.0"
    assert (release_dir(root, "1.0.0") / "VERSION").read_text() == "1.0.0"  # nothing else touched


def test_a_directory_in_place_of_current_is_moved_aside_whole_not_deleted(root: Path, archives: Path) -> None:
    installed(root, archives, "1.0.0")
    link = root / "current"
    link.mkdir()
    (link / "notes.txt").write_text("copied here by hand\n")

    assert switch_current(root, "1.0.0") is None

    assert current_version(root) == "1.0.0"
    (aside,) = root.glob("current.corrupt-*")
    assert (aside / "notes.txt").read_text() == "copied here by hand\n"
    assert installed_versions(root) == ["1.0.0"]  # the set-aside folder is no release


def test_a_switch_over_a_damaged_current_to_a_version_not_installed_is_refused_and_touches_nothing(
    root: Path, archives: Path
) -> None:
    installed(root, archives, "1.0.0")
    link = root / "current"
    link.write_text("garbage")

    with pytest.raises(ApplyError, match="not installed"):
        switch_current(root, "2.0.0")

    assert link.read_text() == "garbage"  # refused before anything moved
    with pytest.raises(CorruptState):
        current_version(root)
