"""Reading a checked-out fleet repository into a snapshot (fleetcd/loading/snapshot.py).

``fleetcd validate`` runs in CI on the checkout of a pull request, which anyone may write: git
stores symlinks, so a pull request can point ``devices/x.yaml``, a whole managed folder or
``fleet.yaml`` itself at a file of the CI runner (a deploy key, a token). Nothing outside the
repository may be read, a special file must not hang the job, and every file is read only as far
as the loader needs to refuse it as too large.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.limits import MAX_DOCUMENT_BYTES, READ_CAP_BYTES
from fleetcd.loading import snapshot
from fleetcd.loading.snapshot import read_directory
from fleetcd.reasons import Reason
from fleetcd.validation.pipeline import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nthe runner's deploy key\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return FleetRepoBuilder(tmp_path / "fleet").standard().write()


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    outside = tmp_path / "runner" / "id_ed25519"
    outside.parent.mkdir()
    outside.write_bytes(SECRET)
    return outside


def _leaked(files: dict[str, bytes]) -> bool:
    return any(b"deploy key" in data for data in files.values())


def problems_of(repo: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    files, problems = read_directory(repo)
    return files, {p.file: p.message for p in problems}


def test_a_symlinked_document_is_reported_and_never_read(repo: Path, secret: Path) -> None:
    (repo / "devices" / "amr-666.yaml").symlink_to(secret)
    files, problems = problems_of(repo)
    assert "devices/amr-666.yaml" in problems and "devices/amr-666.yaml" not in files
    assert not _leaked(files)
    assert "devices/amr-001.yaml" in files, "the other files are still read"


def test_a_symlinked_folder_inside_a_managed_folder_is_reported_and_not_walked(
    repo: Path, secret: Path
) -> None:
    (repo / "devices" / "more").symlink_to(secret.parent, target_is_directory=True)
    files, problems = problems_of(repo)
    assert "devices/more" in problems
    assert not any(path.startswith("devices/more/") for path in files) and not _leaked(files)


def test_a_managed_folder_that_is_a_symlink_is_reported_and_not_walked(repo: Path, secret: Path) -> None:
    """``keys -> /home/runner/.ssh`` in a pull request: the folder itself is the link."""
    assert not (repo / "keys").exists()
    (repo / "keys").symlink_to(secret.parent, target_is_directory=True)
    files, problems = problems_of(repo)
    assert "keys" in problems
    assert not any(path.startswith("keys/") for path in files) and not _leaked(files)


def test_fleet_yaml_as_a_symlink_is_refused_and_not_read(repo: Path, secret: Path) -> None:
    (repo / "fleet.yaml").unlink()
    (repo / "fleet.yaml").symlink_to(secret)
    with pytest.raises(InvalidContent) as refused:
        read_directory(repo)
    assert refused.value.diagnostics[0].file.endswith("fleet.yaml")
    assert "deploy key" not in str(refused.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_reported_and_does_not_hang_the_job(repo: Path) -> None:
    os.mkfifo(repo / "devices" / "amr-pipe.yaml")
    result: list[dict[str, str]] = []
    reader = threading.Thread(target=lambda: result.append(problems_of(repo)[1]), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading a FIFO would block forever"
    assert "devices/amr-pipe.yaml" in result[0]


def test_a_huge_file_is_read_only_as_far_as_needed_and_refused_as_too_large(repo: Path) -> None:
    big = repo / "devices" / "amr-big.yaml"
    big.write_bytes(b"id: " + b"x" * (5 * MAX_DOCUMENT_BYTES) + b"\n")
    files, _ = problems_of(repo)
    assert len(files["devices/amr-big.yaml"]) == READ_CAP_BYTES
    result = validate_snapshot(files)
    found = [(d.file, d.reason) for d in result.errors if d.file == "devices/amr-big.yaml"]
    assert found == [("devices/amr-big.yaml", Reason.TOO_LARGE)]


def test_files_outside_the_managed_folders_are_not_read(repo: Path) -> None:
    (repo / "README.md").write_text("# fleet\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[core]\n")
    (repo / "scripts").mkdir()
    (repo / "scripts" / "deploy.yaml").write_text("kind: Device\n")
    files, problems = problems_of(repo)
    assert problems == {}
    assert all(path == "fleet.yaml" or path.split("/")[0] in snapshot.MANAGED_DIRS for path in files)


@pytest.mark.parametrize("shape", ["missing", "a-folder"])
def test_a_folder_without_a_fleet_yaml_file_is_not_a_fleet_repository(tmp_path: Path, shape: str) -> None:
    (tmp_path / "devices").mkdir()
    if shape == "a-folder":
        (tmp_path / "fleet.yaml").mkdir()
    with pytest.raises(InvalidContent) as refused:
        read_directory(tmp_path)
    assert refused.value.diagnostics[0].file == str(tmp_path / "fleet.yaml")


def test_more_files_than_the_cap_is_refused_as_too_large(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "MAX_FILES", 3)
    with pytest.raises(InvalidContent) as refused:
        read_directory(repo)
    assert refused.value.diagnostics[0].reason is Reason.TOO_LARGE


def test_the_snapshot_of_a_checkout_is_byte_for_byte_what_is_on_disk(repo: Path) -> None:
    files, problems = problems_of(repo)
    assert problems == {}
    on_disk = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and (p.name == "fleet.yaml" or p.relative_to(repo).parts[0] in snapshot.MANAGED_DIRS)
    }
    assert files == on_disk


def test_a_plain_file_where_a_managed_folder_belongs_is_reported(repo: Path) -> None:
    (repo / "withdrawals").write_text("kind: Withdrawal\n")
    files, problems = problems_of(repo)
    assert "withdrawals" in problems and "withdrawals" not in files
