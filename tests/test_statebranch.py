"""The controller's git edges: its mirror of the fleet repository and the state branch."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.reconcile.statebranch import dump, load_state, write_state
from controller.records.model import DeviceState
from controller.state.layout import META_FILE, device_file
from controller.state.model import ControllerMeta, DeviceFile
from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, SetupError
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.remote import push
from fleetcd.git.repo import Repository
from tests.gitrepos import bare_repo, commit_files, git, rev_parse, work_repo

WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def server(tmp_path: Path) -> Path:
    bare = bare_repo(tmp_path / "fleet.git")
    work = work_repo(tmp_path / "work")
    commit_files(work, {"fleet.yaml": b"name: x\n"}, "first")
    git("push", "--quiet", str(bare), "main", cwd=work)
    return bare


def test_first_reconcile_sees_no_state_branch(server: Path, tmp_path: Path) -> None:
    source = Source.for_url(str(server), tmp_path / "cache")
    repo = open_mirror(source)
    fetched = fetch_all(repo, source)
    assert str(fetched.main) == rev_parse(server, "main")
    assert fetched.state is None
    snapshot = load_state(repo)
    assert snapshot.commit is None and snapshot.meta == ControllerMeta()


def push_branch(repo: Repository, source: Source) -> None:
    """The state branch alone, without force (publish adds the desired refs and a lease)."""
    push(repo, source.url, [f"{STATE_BRANCH}:{STATE_BRANCH}"])


def test_state_round_trips_through_the_server(server: Path, tmp_path: Path) -> None:
    source = Source.for_url(f"file://{server}", tmp_path / "cache")
    repo = open_mirror(source)
    fetch_all(repo, source)
    meta = ControllerMeta(last_processed_commit="a" * 40, serial=3, updated_at=WHEN)
    device = DeviceFile(state=DeviceState(device="amr-1"))
    written = write_state(
        repo, load_state(repo), {META_FILE: dump(meta), device_file("amr-1"): dump(device)}, "reconcile", WHEN
    )
    assert written is not None
    push_branch(repo, source)
    assert rev_parse(server, STATE_BRANCH) == str(written)

    fresh = open_mirror(Source.for_url(str(server), tmp_path / "other-cache"))
    fetch_all(fresh, source)
    snapshot = load_state(fresh)
    assert snapshot.meta == meta
    assert snapshot.devices["amr-1"] == device


def test_a_no_op_reconcile_writes_no_commit(server: Path, tmp_path: Path) -> None:
    source = Source.for_url(str(server), tmp_path / "cache")
    repo = open_mirror(source)
    fetch_all(repo, source)
    files = {META_FILE: dump(ControllerMeta(serial=1))}
    first = write_state(repo, load_state(repo), files, "one", WHEN)
    assert first is not None
    assert write_state(repo, load_state(repo), files, "again", WHEN) is None


def test_losing_a_race_on_the_state_branch_is_a_rejected_push(server: Path, tmp_path: Path) -> None:
    one = Source.for_url(str(server), tmp_path / "cache-1")
    two = Source.for_url(str(server), tmp_path / "cache-2")
    repo_one, repo_two = open_mirror(one), open_mirror(two)
    fetch_all(repo_one, one)
    fetch_all(repo_two, two)
    write_state(repo_one, load_state(repo_one), {META_FILE: dump(ControllerMeta(serial=1))}, "one", WHEN)
    write_state(repo_two, load_state(repo_two), {META_FILE: dump(ControllerMeta(serial=2))}, "two", WHEN)
    push_branch(repo_one, one)
    with pytest.raises(PushRejected) as info:
        push_branch(repo_two, two)
    assert info.value.ref == STATE_BRANCH
    fetch_all(repo_two, two)
    assert load_state(repo_two).meta.serial == 1


def test_a_repository_without_main_is_a_setup_error(tmp_path: Path) -> None:
    empty = bare_repo(tmp_path / "empty.git")
    source = Source.for_url(str(empty), tmp_path / "cache")
    with pytest.raises(SetupError, match="has no refs/heads/main"):
        fetch_all(open_mirror(source), source)
