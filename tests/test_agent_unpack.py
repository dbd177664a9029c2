"""Safe extraction of release tarballs: real tar files built with ``tarfile``, every escape refused.

Each hostile archive starts with a harmless file, so the tests also prove a refusal leaves nothing
half-extracted: the target never appears and no staging directory is left beside it.
"""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from agent.errors import UnsafeArchive
from agent.install import unpack
from agent.install.unpack import UnpackLimits, extract_tarball

CAPS = {"max_total_bytes": 10 * 1024 * 1024, "max_members": 1000}

Member = tuple[tarfile.TarInfo, bytes | None]


def regular(name: str, data: bytes = b"data\n", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE, mode: int = 0o644) -> Member:
    # A hard link shares its target's inode, so extracting it applies its mode: tar stores the same.
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, target, mode
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def build(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return path


@pytest.fixture(autouse=True, params=["stdlib-filter", "no-filter"])
def filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: with the stdlib's PEP 706 filter, and as on a Python without it (Debian 12's
    3.11.2, 3.10 before 3.10.12), where unpack's own stand-in must give the same verdicts."""
    if request.param == "no-filter":
        monkeypatch.setattr(unpack, "HAS_DATA_FILTER", False)
    elif not unpack.HAS_DATA_FILTER:
        pytest.skip("this Python has no tarfile.data_filter")


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """The directory that holds the target; it must stay empty whenever extraction is refused."""
    folder = tmp_path / "releases"
    folder.mkdir()
    return folder


HOSTILE = [
    pytest.param([regular("../evil")], "../evil", id="dotdot-escape"),
    pytest.param([regular("a/../../evil")], "a/../../evil", id="nested-dotdot-escape"),
    pytest.param([regular("a/../b")], "a/../b", id="dotdot-even-inside"),
    pytest.param([regular("/etc/evil")], "/etc/evil", id="absolute-path"),
    pytest.param([link("passwd", "/etc/passwd")], "passwd", id="symlink-to-etc-passwd"),
    pytest.param([link("a", "../../x")], "a", id="symlink-climbing-out"),
    pytest.param([directory("sub"), link("sub/l", "../../x")], "sub/l", id="nested-symlink-climbing-out"),
    pytest.param([link("l", "sub/../../x")], "l", id="symlink-dotdot-after-name"),
    pytest.param([link("h", "../outside", tarfile.LNKTYPE)], "h", id="hard-link-outside"),
    pytest.param([link("h", "/etc/passwd", tarfile.LNKTYPE)], "h", id="hard-link-absolute"),
    pytest.param([special("dev", tarfile.CHRTYPE)], "dev", id="char-device"),
    pytest.param([special("blk", tarfile.BLKTYPE)], "blk", id="block-device"),
    pytest.param([special("fifo", tarfile.FIFOTYPE)], "fifo", id="fifo"),
    pytest.param(
        [directory("sub"), link("l", "sub"), regular("l/evil")], "l/evil", id="file-through-symlink"
    ),
    pytest.param([link("l", "target"), regular("l")], "l", id="file-replacing-symlink"),
]


@pytest.mark.parametrize(("members", "bad"), HOSTILE)
def test_hostile_member_is_refused_by_name_and_nothing_is_extracted(
    tmp_path: Path, place: Path, members: list[Member], bad: str
) -> None:
    archive = build(tmp_path / "evil.tar.gz", [regular("README", b"harmless first member\n"), *members])
    target = place / "1.0.0"

    with pytest.raises(UnsafeArchive) as caught:
        extract_tarball(archive, target, **CAPS)

    assert caught.value.member == bad
    assert repr(bad) in str(caught.value)
    assert list(place.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "outside").exists()


def test_good_tarball_extracts_with_links_and_modes(tmp_path: Path, place: Path) -> None:
    archive = build(
        tmp_path / "app.tar.gz",
        [
            directory("bin"),
            directory("lib"),
            regular("lib/tool", b"#!/bin/sh\necho hi\n", mode=0o755),
            link("bin/tool", "../lib/tool"),
            link("lib/tool-hard", "lib/tool", tarfile.LNKTYPE, mode=0o755),
            regular("VERSION", b"1.0.0\n"),
        ],
    )
    target = place / "1.0.0"

    extract_tarball(archive, target, **CAPS)

    assert (target / "VERSION").read_bytes() == b"1.0.0\n"
    assert (target / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (target / "bin" / "tool").is_symlink()
    assert (target / "lib" / "tool-hard").stat().st_ino == (target / "lib" / "tool").stat().st_ino
    assert (target / "lib" / "tool").stat().st_mode & stat.S_IXUSR
    assert sorted(p.name for p in place.iterdir()) == ["1.0.0"]  # no staging directory left


def test_setuid_and_setgid_bits_are_dropped(tmp_path: Path, place: Path) -> None:
    archive = build(tmp_path / "app.tar", [regular("suid", b"x", mode=0o6755)], mode="w")

    extract_tarball(archive, place / "1.0.0", **CAPS)

    mode = (place / "1.0.0" / "suid").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID)
    assert mode & stat.S_IXUSR


def test_tar_bomb_over_the_size_cap_is_refused_before_writing(tmp_path: Path, place: Path) -> None:
    # 8 MiB of zeros compresses to a few KiB: small archive, large unpacked size.
    archive = build(tmp_path / "bomb.tar.gz", [regular("small"), regular("zeros", b"\0" * 8 * 1024 * 1024)])

    with pytest.raises(UnsafeArchive, match="exceeds the cap") as caught:
        extract_tarball(archive, place / "1.0.0", max_total_bytes=1024 * 1024, max_members=10)

    assert caught.value.member == "zeros"
    assert list(place.iterdir()) == []


def test_member_count_over_the_cap_is_refused(tmp_path: Path, place: Path) -> None:
    archive = build(tmp_path / "many.tar.gz", [regular(f"f{i}") for i in range(11)])

    with pytest.raises(UnsafeArchive, match="more than 10 members") as caught:
        extract_tarball(archive, place / "1.0.0", max_total_bytes=1024 * 1024, max_members=10)

    assert caught.value.member == "f10"
    assert list(place.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a tar archive at all" * 100, id="garbage"),
        pytest.param(b"", id="empty-file"),
    ],
)
def test_unreadable_archive_is_refused_without_a_member(tmp_path: Path, place: Path, content: bytes) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(content)

    with pytest.raises(UnsafeArchive, match="not a readable tar archive") as caught:
        extract_tarball(archive, place / "1.0.0", **CAPS)

    assert caught.value.member is None
    assert list(place.iterdir()) == []


def test_truncated_archive_leaves_nothing_behind(tmp_path: Path, place: Path) -> None:
    whole = build(tmp_path / "whole.tar.gz", [regular(f"f{i}", bytes(range(256)) * 400) for i in range(5)])
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(UnsafeArchive):
        extract_tarball(archive, place / "1.0.0", **CAPS)

    assert list(place.iterdir()) == []


def test_existing_target_is_never_overwritten(tmp_path: Path, place: Path) -> None:
    archive = build(tmp_path / "app.tar.gz", [regular("VERSION", b"new\n")])
    target = place / "1.0.0"
    target.mkdir()
    (target / "VERSION").write_bytes(b"old\n")

    with pytest.raises(FileExistsError):
        extract_tarball(archive, target, **CAPS)

    assert (target / "VERSION").read_bytes() == b"old\n"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"max_total_bytes": 0}, id="zero-bytes"),
        pytest.param({"max_members": 0}, id="zero-members"),
    ],
)
def test_out_of_bounds_unpack_limits_are_refused(overrides: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be within"):
        UnpackLimits(**overrides)
