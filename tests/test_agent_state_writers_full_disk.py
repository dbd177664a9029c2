"""Every writer of agent state on a disk that is really full: the contract of agent.state.atomic.

Each file the agent keeps (journal, trust state, desired-state cache, report, outbox, push record,
migrations ledger, the Docker executor's active record) must be written through
:func:`agent.state.atomic.write_atomic`, so that a full disk is :class:`~agent.errors.DiskFull`
naming the file, the file keeps its previous content whole, and no temporary file is left taking
space. A writer that used ``write_text`` would leave a torn or empty file here and fail this test.
The disk is a small real tmpfs (tests/disks.py; skipped where mounting is not allowed), filled until
the kernel answers ENOSPC; no state file is faked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from agent.errors import DiskFull
from agent.executors.base import ExecutorContext
from agent.executors.docker import DockerExecutor
from agent.report.cadence import PushState, load_push_state, save_push_state
from agent.report.outbox import Outbox
from agent.state.journal import Journal, JournalEntry
from agent.state.migrations import Ledger, MigrationLedger, MigrationRun
from agent.sync.accept import read_cache, write_cache
from agent.trustcheck import TrustState, load_trust_state, save_trust_state
from fleetcd.compat import UTC
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import StatusReport
from fleetcd.vocabulary import Activity, MigrationState
from fleetcd.wire import DesiredFiles
from tests.disks import fill, mounted

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Writer:
    """One kind of state file: its name, how the agent writes version ``n`` of it, how it reads it."""

    name: str
    write: Callable[[Path, int], object]
    read: Callable[[Path], object]


def journal_entry(n: int) -> JournalEntry:
    return JournalEntry(
        deployment_id=f"dep-{n}",
        version=f"1.{n}.0",
        previous_version=None,
        state=Activity.HEALTHY,
        attempts=1,
        updated_at=NOW,
        reason="x" * 1500,  # big enough that a full disk cannot take it
    )


def report(n: int) -> StatusReport:
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": "robot-1",
            "seq": n,
            "agent_version": "0.1.0",
            "reported_at": NOW.isoformat(),
            "last_error": "e" * 500,
        }
    )


def desired(n: int) -> DesiredFiles:
    return DesiredFiles(
        commit=f"{n:040d}", bundle=b"b" * 2048 * n, root=b"{}", root_signature=b"s", proof=b"{}", trust=b""
    )


def ledger(n: int) -> MigrationLedger:
    runs = [
        MigrationRun(
            name=f"step-{i}",
            version="1.0.0",
            deployment_id="d",
            timeout_seconds=60,
            state=MigrationState.APPLIED,
            at=NOW,
        )
        for i in range(n)
    ]
    return MigrationLedger(runs=runs)


def docker_active(path: Path) -> DockerExecutor:
    config = AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "robot-1",
            "remote": {"url": "/srv/fleet.git"},
            "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": ["A" * 40]}},
            "executor": "docker",
            "docker": {"base_url": f"unix://{path.parent / 'no-engine.sock'}"},
        }
    )
    return DockerExecutor(ExecutorContext(apps_dir=path.parent.parent, downloads_dir=path.parent), config)


WRITERS = [
    Writer("journal", lambda p, n: Journal(p).record(journal_entry(n)), lambda p: Journal(p).load()),
    Writer(
        "trust state",
        lambda p, n: save_trust_state(p, TrustState(last_serial=n, last_bundle_sha256=f"{n:064x}")),
        load_trust_state,
    ),
    Writer("desired-state cache", lambda p, n: write_cache(p, desired(n)), read_cache),
    Writer("outbox", lambda p, n: Outbox(p).put(report(n)), lambda p: Outbox(p).pending()),
    Writer(
        "push record",
        lambda p, n: save_push_state(p, PushState(seq=n, at=NOW, digest="d" * 2000 * n)),
        load_push_state,
    ),
    Writer("migrations ledger", lambda p, n: Ledger(p).save(ledger(20 * n)), lambda p: Ledger(p).load()),
    Writer(
        "docker active record",
        lambda p, n: docker_active(p)._record_active("app", f"1.{n}.0" + "0" * 1000 * (n - 1)),
        lambda p: p.read_text(),
    ),
]


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with mounted(tmp_path_factory.mktemp("state-disk"), "-t", "tmpfs", "-o", "size=1m", "tmpfs") as target:
        yield target


@pytest.fixture
def folder(disk: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder of its own on the small disk, emptied again after the test."""
    own = disk / request.node.name.replace("[", "-").replace("]", "").replace(" ", "-")
    (own / "app").mkdir(parents=True)
    yield own / "app"
    for path in sorted(own.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    own.rmdir()


@pytest.mark.parametrize("writer", WRITERS, ids=[w.name for w in WRITERS])
def test_a_full_disk_is_disk_full_naming_the_file_and_the_old_content_stays_whole(
    folder: Path, disk: Path, writer: Writer
) -> None:
    path = folder / ("active" if writer.name == "docker active record" else "state.json")
    writer.write(path, 1)
    before = path.read_bytes()
    read_before = writer.read(path)
    filler = fill(disk)
    try:
        with pytest.raises(DiskFull) as caught:
            writer.write(path, 2)

        assert str(path) in str(caught.value)
        assert path.read_bytes() == before  # the previous version, whole
        assert writer.read(path) == read_before
        assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left
    finally:
        filler.unlink()

    writer.write(path, 2)  # space is back: the same write goes through
    assert path.read_bytes() != before
