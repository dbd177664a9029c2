"""Corrupt agent state reported, set aside and rebuilt (agent.converge.repair), file by file on a real disk.

Issue 10, point 8: a 0-byte or garbage journal stopped all reports and nothing repaired it. Each state
file is damaged here the way a lost write or a bad sector leaves it; the repair must report it, keep
the bad bytes for forensics under a name no reader picks up, and rebuild from what the disk shows.
The trust state is the sensitive one: rebuilt, it must never be looser than what the robot had
accepted (the serial and the signed time of its cached desired state), or an older validly signed
bundle could be replayed after a disk fault.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.converge.repair import RECOVERED_ID, repair_app_state, repair_files
from agent.errors import StateRepaired
from agent.executors.base import Executor
from agent.paths import AgentPaths
from agent.report.outbox import Outbox
from agent.state.atomic import CORRUPT_MARK
from agent.state.journal import Journal
from agent.sync.accept import Desired, write_cache
from agent.trustcheck import TrustState, load_trust_state, save_trust_state
from fleetcd.compat import UTC
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.reports import StatusReport
from fleetcd.vocabulary import Activity
from fleetcd.wire import DesiredFiles

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ISSUED = NOW - timedelta(hours=3)
GARBAGE = [b"", b"\x00" * 64, b"{truncated", b'{"format": 99}']


@pytest.fixture
def paths(tmp_path: Path) -> AgentPaths:
    return AgentPaths(tmp_path / "state").create()


def signed_root(serial: int) -> bytes:
    return json.dumps(
        {
            "format": "fleetcd.dev/root/v1",
            "serial": serial,
            "issued_at": ISSUED.isoformat(),
            "expires_at": (ISSUED + timedelta(days=7)).isoformat(),
            "merkle_root": "e" * 64,
            "leaves": 3,
            "fleet": "demo",
        }
    ).encode()


def cache(paths: AgentPaths, serial: int, bundle: bytes = b'{"bundle": true}') -> None:
    write_cache(
        paths.desired_cache, DesiredFiles("c" * 40, bundle, signed_root(serial), b"sig", b"[]", b"{}")
    )


def report(seq: int, serial: int | None) -> StatusReport:
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": "amr-1",
            "seq": seq,
            "agent_version": "0.1.0",
            "reported_at": NOW.isoformat(),
            "bundle_serial": serial,
        }
    )


def set_aside_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if CORRUPT_MARK in p.name)


# --- repair_files -------------------------------------------------------------------------------------


def test_healthy_or_missing_state_files_need_no_repair(paths: AgentPaths) -> None:
    assert repair_files(paths, NOW) == []
    cache(paths, 4)
    save_trust_state(paths.trust_file, TrustState(last_serial=4))
    paths.status_file.write_bytes(canonical_bytes(report(3, 4)))
    assert repair_files(paths, NOW) == []


@pytest.mark.parametrize("garbage", GARBAGE, ids=["empty", "zeros", "truncated", "future-format"])
def test_a_corrupt_trust_state_is_rebuilt_from_the_cached_signed_root(
    paths: AgentPaths, garbage: bytes
) -> None:
    cache(paths, 41, bundle=b'{"bundle": 41}')
    paths.trust_file.write_bytes(garbage)

    (repaired,) = repair_files(paths, NOW)

    state = load_trust_state(paths.trust_file)
    assert state.last_serial == 41, "an older signed bundle must still be refused after the repair"
    assert state.time_floor == ISSUED
    assert state.last_bundle_sha256 == hashlib.sha256(b'{"bundle": 41}').hexdigest()
    assert isinstance(repaired, StateRepaired)
    assert repaired.path == paths.trust_file and "serial 41" in repaired.rebuilt
    assert [p.read_bytes() for p in set_aside_files(paths.state_dir)] == [garbage]


def test_without_a_cache_the_trust_state_keeps_the_highest_serial_any_report_named(paths: AgentPaths) -> None:
    paths.status_file.write_bytes(canonical_bytes(report(9, 40)))
    Outbox(paths.outbox).put(report(10, 42))
    paths.trust_file.write_bytes(b"\x00")
    (repaired,) = repair_files(paths, NOW)
    assert load_trust_state(paths.trust_file).last_serial == 42
    assert "from the last report: serial 42" in repaired.rebuilt


def test_with_nothing_to_go_by_the_trust_state_is_rebuilt_empty_and_says_so(paths: AgentPaths) -> None:
    paths.trust_file.write_bytes(b"garbage")
    (repaired,) = repair_files(paths, NOW)
    assert load_trust_state(paths.trust_file) == TrustState()
    assert "as on first boot" in repaired.rebuilt


def test_a_cache_whose_root_does_not_parse_falls_back_to_the_reports(paths: AgentPaths) -> None:
    write_cache(paths.desired_cache, DesiredFiles("c" * 40, b"{}", b"not a root", b"sig", b"[]", b"{}"))
    paths.status_file.write_bytes(canonical_bytes(report(2, 17)))
    paths.trust_file.write_bytes(b"")
    (repaired,) = repair_files(paths, NOW)
    assert load_trust_state(paths.trust_file).last_serial == 17
    assert "last report" in repaired.rebuilt


def test_every_corrupt_file_is_reported_and_the_trust_state_built_from_what_survives(
    paths: AgentPaths,
) -> None:
    for path in (paths.desired_cache, paths.status_file, paths.outbox, paths.trust_file):
        path.write_bytes(b"\xff\xfe garbage")

    repaired = repair_files(paths, NOW)

    assert [r.path for r in repaired] == [
        paths.desired_cache,
        paths.status_file,
        paths.outbox,
        paths.trust_file,
    ]
    assert all(not r.path.exists() for r in repaired[:3]), "the others are simply gone until rewritten"
    assert load_trust_state(paths.trust_file) == TrustState()
    assert len(set_aside_files(paths.state_dir)) == 4
    assert all(r.aside.exists() and CORRUPT_MARK in r.aside.name for r in repaired)


def test_a_repair_is_reported_once_then_the_state_is_healthy(paths: AgentPaths) -> None:
    cache(paths, 5)
    paths.trust_file.write_bytes(b"")
    assert len(repair_files(paths, NOW)) == 1
    assert repair_files(paths, NOW + timedelta(minutes=1)) == []


def test_the_message_names_the_file_the_problem_and_where_it_went(paths: AgentPaths) -> None:
    paths.status_file.write_bytes(b"{")
    (repaired,) = repair_files(paths, NOW)
    message = str(repaired)
    assert str(paths.status_file) in message and repaired.aside.name in message
    assert "a new report replaces it" in message


# --- repair_app_state ---------------------------------------------------------------------------------


class Disk:
    """What an executor answers about the active version (the I/O edge the repair reads)."""

    name = "tarball"

    def __init__(self, active: dict[str, str], broken: bool = False) -> None:
        self.versions = active
        self.broken = broken

    def active(self, app: str) -> str | None:
        if self.broken:
            raise ConnectionRefusedError("engine down")
        return self.versions.get(app)


def repair_apps(paths: AgentPaths, disk: Disk) -> list[StateRepaired]:
    executor: Executor = disk  # type: ignore[assignment]  # only .name and .active are read
    return repair_app_state(paths, executor, Desired(), NOW)


def test_a_corrupt_journal_is_rebuilt_as_the_version_active_on_disk(paths: AgentPaths) -> None:
    paths.journal("nav").write_bytes(b"")
    (repaired,) = repair_apps(paths, Disk({"nav": "1.2.0"}))
    entry = Journal(paths.journal("nav")).load()
    assert entry is not None
    assert (entry.version, entry.state, entry.deployment_id, entry.committed) == (
        "1.2.0",
        Activity.HEALTHY,
        RECOVERED_ID,
        True,
    )
    assert "1.2.0 is active" in repaired.rebuilt


def test_a_corrupt_journal_with_nothing_active_is_rebuilt_empty(paths: AgentPaths) -> None:
    paths.journal("nav").write_bytes(b"\x00\x00")
    (repaired,) = repair_apps(paths, Disk({}))
    assert Journal(paths.journal("nav")).load() is None
    assert "no version of the app is active" in repaired.rebuilt


def test_an_engine_that_does_not_answer_leaves_an_empty_journal_to_ask_again(paths: AgentPaths) -> None:
    paths.journal("nav").write_bytes(b"{")
    (repaired,) = repair_apps(paths, Disk({"nav": "1.0.0"}, broken=True))
    assert Journal(paths.journal("nav")).load() is None
    assert "active version is unknown" in repaired.rebuilt and "engine down" in repaired.rebuilt


def test_only_the_corrupt_journal_is_touched(paths: AgentPaths) -> None:
    paths.journal("perception").write_bytes(b"garbage")
    paths.journal("nav").write_bytes(b"")
    repair_apps(paths, Disk({"nav": "1.0.0", "perception": "2.0.0"}))  # both rebuilt from the disk
    before = {app: paths.journal(app).read_bytes() for app in ("nav", "perception")}
    paths.journal("perception").write_bytes(b"\x00")  # a second fault, in one journal only
    (repaired,) = repair_apps(paths, Disk({"nav": "9.9.9", "perception": "2.0.0"}))
    assert repaired.path == paths.journal("perception")
    assert paths.journal("nav").read_bytes() == before["nav"], "a healthy journal is never rewritten"


def test_a_corrupt_config_ledger_is_set_aside_and_rebuilt_empty_without_a_desired_state(
    paths: AgentPaths,
) -> None:
    paths.config_hashes.write_bytes(b"[not a ledger")
    (repaired,) = repair_apps(paths, Disk({}))
    assert repaired.path == paths.config_hashes
    assert "rebuilt empty" in repaired.rebuilt
    assert len(set_aside_files(paths.state_dir)) == 1
