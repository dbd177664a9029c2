"""The converge journal and atomic state files: survive reloads and power cuts, refuse corruption loudly."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.errors import CorruptState
from agent.state.atomic import read_json, write_atomic
from agent.state.journal import Journal, JournalEntry
from fleetcd.compat import UTC
from fleetcd.vocabulary import JOURNAL_ACTIVITIES, Activity

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def entry(state: object = Activity.DOWNLOADING, **changes: object) -> JournalEntry:
    fields: dict[str, object] = {
        "deployment_id": "web/rollout-7",
        "version": "1.4.0",
        "previous_version": "1.3.2",
        "state": state,
        "attempts": 1,
        "updated_at": NOW,
        "reason": None,
    }
    fields.update(changes)
    return JournalEntry.model_validate(fields)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.json")


def test_first_boot_has_no_entry_and_sequence_zero(journal: Journal) -> None:
    assert journal.load() is None
    assert journal.seq == 0


def test_recorded_entries_survive_a_reload_with_growing_sequence(journal: Journal) -> None:
    first = entry()
    second = first.moved_to(Activity.APPLYING, now=NOW + timedelta(seconds=5))

    seqs = [journal.record(first), journal.record(second)]

    reloaded = Journal(journal.path)
    assert reloaded.load() == second
    assert seqs == [1, 2]
    assert reloaded.seq == 2


def test_clear_forgets_the_deployment_but_never_rewinds_the_sequence(journal: Journal) -> None:
    journal.record(entry())
    journal.record(entry(Activity.HEALTHY))

    cleared_at = journal.clear()
    next_seq = journal.record(entry(Activity.DOWNLOADING, version="1.5.0"))

    assert cleared_at == 3
    assert next_seq == 4


def test_record_leaves_no_temporary_files_and_is_private(journal: Journal) -> None:
    for state in sorted(JOURNAL_ACTIVITIES):
        journal.record(entry(state))

    assert [p.name for p in journal.path.parent.iterdir()] == ["journal.json"]
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x00\x00\x00\x00", id="zeroed-block"),
        pytest.param(b'{"format": 1, "seq": 3, "entry": {"deployment_id": "web', id="torn-json"),
        pytest.param(b"[]", id="wrong-shape"),
        pytest.param(b'{"format": 2, "seq": 1, "entry": null}', id="future-format"),
        pytest.param(
            b'{"format": 1, "seq": 1, "entry": {"deployment_id": "d", "version": "1",'
            b' "previous_version": null, "state": "exploded", "attempts": 0,'
            b' "updated_at": "2026-03-01T12:00:00Z", "reason": null}}',
            id="unknown-state",
        ),
    ],
)
def test_corrupt_journal_is_a_loud_error_naming_the_file(journal: Journal, content: bytes) -> None:
    journal.path.write_bytes(content)

    with pytest.raises(CorruptState) as caught:
        journal.load()
    with pytest.raises(CorruptState):
        journal.record(entry())  # never silently overwrite what we could not read

    assert str(journal.path) in str(caught.value)
    assert journal.path.read_bytes() == content


def test_clear_is_how_an_operator_recovers_a_corrupt_journal(journal: Journal) -> None:
    journal.path.write_bytes(b"garbage")

    journal.clear()

    assert journal.load() is None


def test_power_cut_during_record_keeps_the_previous_entry(journal: Journal) -> None:
    before = entry(Activity.SWITCHED)
    journal.record(before)
    script = textwrap.dedent(
        f"""
        import os, pathlib
        from datetime import datetime
        from fleetcd.compat import UTC
        from pathlib import Path
        from agent.state.journal import Journal, JournalEntry
        from fleetcd.vocabulary import Activity
        # power cut after the temp file is written (Path.replace reaches os.replace only from 3.11 on)
        os.replace = pathlib.Path.replace = lambda *args, **kwargs: os._exit(9)
        Journal(Path({str(journal.path)!r})).record(JournalEntry(
            deployment_id="x", version="9.9.9", previous_version=None, state=Activity.HEALTHY,
            attempts=0, updated_at=datetime.now(UTC)))
        """
    )

    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)

    assert result.returncode == 9, result.stderr
    assert Journal(journal.path).load() == before


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"updated_at": datetime(2026, 3, 1, 12, 0)}, id="naive-timestamp"),
        pytest.param({"attempts": -1}, id="negative-attempts"),
        pytest.param({"deployment_id": ""}, id="empty-deployment"),
        pytest.param({"state": "exploded"}, id="unknown-state"),
        pytest.param({"surprise": 1}, id="unknown-field"),
    ],
)
def test_invalid_entries_cannot_be_built(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        entry(**changes)


def test_moved_to_keeps_the_deployment_and_sets_state_and_reason() -> None:
    later = NOW + timedelta(minutes=1)

    moved = entry().moved_to(Activity.ROLLING_BACK, now=later, reason="probe http failed", attempts=2)

    assert (moved.deployment_id, moved.version, moved.previous_version) == ("web/rollout-7", "1.4.0", "1.3.2")
    assert (moved.state, moved.updated_at, moved.reason, moved.attempts) == (
        Activity.ROLLING_BACK,
        later,
        "probe http failed",
        2,
    )
    assert not moved.settled
    assert moved.moved_to(Activity.ROLLED_BACK, now=later).settled


def test_write_atomic_replaces_whole_content_and_read_json_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_atomic(path, b'{"a": 1}')
    write_atomic(path, b'{"b": 2}')

    assert read_json(path) == {"b": 2}
    assert os.listdir(tmp_path) == ["status.json"]


def test_read_json_tolerates_missing_but_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert read_json(path) is None

    path.write_bytes(b'{"a": ')

    with pytest.raises(CorruptState, match=r"status\.json: corrupt agent state file"):
        read_json(path)
