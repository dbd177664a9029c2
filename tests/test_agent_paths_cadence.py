"""The agent's state directory (agent.paths) and when a report is pushed (agent.report.cadence).

Where the state lives is decided once from agent.yaml, systemd's ``$STATE_DIRECTORY`` and the default,
in that order; a state directory that cannot be written must be named, a full one must not stop the
agent before it knows what to report. The push decision is a pure table: an unchanged report stays
quiet until the heartbeat, anything new or anything waiting in the outbox goes out at once, and a
``push.json`` that does not parse means "push again", which is always safe.
"""

from __future__ import annotations

import itertools
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.errors import StateDirUnwritable
from agent.paths import (
    DEFAULT_STATE_DIR,
    STATE_DIR_MODE,
    STATE_DIRECTORY_ENV,
    AgentPaths,
    agent_paths,
    resolve_state_dir,
)
from agent.report.cadence import (
    PUSH_FILE_MODE,
    PushState,
    digest,
    load_push_state,
    push_due,
    save_push_state,
)
from fleetcd.compat import UTC
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import StatusReport

FPR = "A" * 40
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
HEARTBEAT = timedelta(minutes=5)


def config(**fields: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "amr-1",
            "remote": {"url": "/srv/fleet.git"},
            "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": [FPR]}},
            **fields,
        }
    )


# --- where the state directory is ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state_dir", "environ", "expected"),
    [
        ("/data/fleetcd", {STATE_DIRECTORY_ENV: "/var/lib/other"}, "/data/fleetcd"),
        (None, {STATE_DIRECTORY_ENV: "/var/lib/fleetcd-unit"}, "/var/lib/fleetcd-unit"),
        (None, {STATE_DIRECTORY_ENV: "/var/lib/first:/var/lib/second"}, "/var/lib/first"),
        (None, {STATE_DIRECTORY_ENV: ""}, str(DEFAULT_STATE_DIR)),
        (None, {STATE_DIRECTORY_ENV: ":/var/lib/second"}, str(DEFAULT_STATE_DIR)),
        (None, {}, str(DEFAULT_STATE_DIR)),
    ],
    ids=["agent-yaml-wins", "systemd-unit", "first-of-several", "empty-env", "empty-first-entry", "default"],
)
def test_the_state_directory_comes_from_agent_yaml_then_systemd_then_the_default(
    state_dir: str | None, environ: dict[str, str], expected: str
) -> None:
    cfg = config(**({"state_dir": state_dir} if state_dir else {}))
    assert resolve_state_dir(cfg, environ) == Path(expected)
    assert agent_paths(cfg, environ).state_dir == Path(expected)


def test_without_an_environ_argument_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIRECTORY_ENV, "/run/from-env")
    assert resolve_state_dir(config()) == Path("/run/from-env")


def test_a_relative_state_dir_in_agent_yaml_is_refused() -> None:
    with pytest.raises(ValueError, match="state_dir"):
        config(state_dir="relative/state")


def test_every_state_file_lives_under_the_one_state_directory(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path / "state")
    named = [
        paths.repo,
        paths.desired_cache,
        paths.journal_dir,
        paths.journal("navstack"),
        paths.trust_file,
        paths.status_file,
        paths.outbox,
        paths.push_file,
        paths.apps_dir,
        paths.downloads_dir,
        paths.config_hashes,
        paths.config_history,
    ]
    assert all(p.parent == paths.state_dir or p.parent.parent == paths.state_dir for p in named)
    assert len(set(named)) == len(named), "two state files share a path"
    assert paths.journal("navstack") == paths.journal_dir / "navstack.json"


def test_create_makes_the_directories_private_and_is_idempotent(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path / "deep" / "state")
    assert paths.create() is paths
    for folder in (paths.state_dir, paths.journal_dir, paths.apps_dir, paths.downloads_dir):
        assert folder.is_dir()
        assert stat.S_IMODE(folder.stat().st_mode) & ~STATE_DIR_MODE == 0, f"{folder} is readable by others"
    (paths.journal_dir / "nav.json").write_text("{}")
    paths.create()
    assert (paths.journal_dir / "nav.json").read_text() == "{}"
    assert [p.name for p in paths.state_dir.iterdir() if p.name.startswith(".write-check-")] == []


def test_a_state_dir_under_a_regular_file_is_unwritable_and_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory's parent should be")
    paths = AgentPaths(blocker / "state")
    with pytest.raises(StateDirUnwritable) as caught:
        paths.create()
    assert caught.value.state_dir == blocker / "state"
    assert str(blocker / "state") in str(caught.value)


def test_a_journal_dir_that_is_a_file_is_unwritable(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path / "state")
    paths.state_dir.mkdir()
    paths.journal_dir.write_text("garbage where a folder belongs")
    with pytest.raises(StateDirUnwritable):
        paths.create()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-0500 directory anyway")
def test_a_read_only_state_dir_is_unwritable(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path / "state").create()
    paths.state_dir.chmod(0o500)
    try:
        with pytest.raises(StateDirUnwritable):
            paths.create()
    finally:
        paths.state_dir.chmod(0o700)


def test_journaled_apps_lists_journal_files_only_sorted(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path / "state")
    assert paths.journaled_apps() == []  # no journal folder yet: nothing ever converged
    paths.create()
    for name in ("perception.json", "navstack.json", ".navstack.json.tmp", ".hidden.json", "notes.txt"):
        (paths.journal_dir / name).write_text("{}")
    (paths.journal_dir / "navstack.json.corrupt-20260504T090000Z").write_text("x")
    assert paths.journaled_apps() == ["navstack", "perception"]


# --- what a report says -------------------------------------------------------------------------------


def report(seq: int = 1, at: datetime = NOW, **fields: Any) -> StatusReport:
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": "amr-1",
            "seq": seq,
            "agent_version": "0.1.0",
            "reported_at": at.isoformat(),
            **fields,
        }
    )


def test_the_digest_leaves_out_seq_and_time_only() -> None:
    base = digest(report())
    assert digest(report(seq=99, at=NOW + timedelta(hours=3))) == base
    assert digest(report(stale=True)) != base
    assert digest(report(bundle_serial=4)) != base
    assert digest(report(bundle_serial=4)) != digest(report(bundle_serial=5))


def test_the_digest_is_a_sha256_hex() -> None:
    value = digest(report())
    assert len(value) == 64 and int(value, 16) >= 0


def test_the_digest_of_another_device_differs() -> None:
    other = report().model_copy(update={"device": "amr-2"})
    assert digest(other) != digest(report())


# --- when to push (decision table) --------------------------------------------------------------------

SAID = "d" * 64


def last(ago: timedelta, said: str = SAID) -> PushState:
    return PushState(seq=3, at=NOW - ago, digest=said)


@pytest.mark.parametrize(
    ("previous", "said", "waiting", "due"),
    [
        (None, SAID, False, True),
        (last(timedelta(seconds=1)), SAID, False, False),
        (last(HEARTBEAT - timedelta(seconds=1)), SAID, False, False),
        (last(HEARTBEAT), SAID, False, True),
        (last(HEARTBEAT + timedelta(days=3)), SAID, False, True),
        (last(timedelta(seconds=1)), "e" * 64, False, True),
        (last(timedelta(seconds=1)), SAID, True, True),
        (None, SAID, True, True),
    ],
    ids=[
        "never-pushed",
        "same-just-now",
        "same-just-before-heartbeat",
        "heartbeat-exactly",
        "heartbeat-long-overdue",
        "something-new",
        "outbox-waiting",
        "never-pushed-and-waiting",
    ],
)
def test_push_due_table(previous: PushState | None, said: str, waiting: bool, due: bool) -> None:
    assert push_due(previous, said, NOW, HEARTBEAT, waiting=waiting) is due


def test_a_clock_set_back_a_year_does_not_silence_the_heartbeat() -> None:
    # The robot pushed while its clock was a year ahead; the clock is then corrected. Its report
    # says the same as before, so only the heartbeat would tell the controller it is alive.
    pushed_a_year_ahead = PushState(seq=3, at=NOW + timedelta(days=365), digest=SAID)
    later = [NOW + HEARTBEAT * n for n in range(1, 4)]
    assert any(push_due(pushed_a_year_ahead, SAID, now, HEARTBEAT, waiting=False) for now in later)


def test_a_quiet_fleet_pushes_once_per_heartbeat() -> None:
    # Simulate an idle robot polling every 20 s for an hour: pushes happen every heartbeat, no more.
    state: PushState | None = None
    pushes = []
    for step in range(180):
        now = NOW + timedelta(seconds=20 * step)
        if push_due(state, SAID, now, HEARTBEAT, waiting=False):
            pushes.append(now)
            state = PushState(seq=step, at=now, digest=SAID)
    gaps = {later - earlier for earlier, later in itertools.pairwise(pushes)}
    assert gaps == {HEARTBEAT}
    assert len(pushes) == 12


# --- push.json ----------------------------------------------------------------------------------------


def test_push_state_round_trips_with_a_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    state = PushState(seq=12, at=NOW, digest=SAID)
    save_push_state(path, state)
    assert load_push_state(path) == state
    assert stat.S_IMODE(path.stat().st_mode) == PUSH_FILE_MODE


def test_a_missing_push_file_means_never_pushed(tmp_path: Path) -> None:
    assert load_push_state(tmp_path / "push.json") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x00\x00",
        b"{not json",
        b"[]",
        b'{"seq": 1}',
        b'{"seq": 1, "at": "2026-05-04T09:00:00", "digest": "x"}',
        b'{"seq": 1, "at": "2026-05-04T09:00:00+00:00", "digest": "x", "extra": 1}',
    ],
    ids=["empty", "zeros", "truncated", "list", "missing-fields", "naive-time", "unknown-field"],
)
def test_an_unreadable_push_file_means_push_again(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(content)
    assert load_push_state(path) is None
    assert push_due(load_push_state(path), SAID, NOW, HEARTBEAT, waiting=False)


def test_saving_over_a_corrupt_push_file_heals_it(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(b"\xff garbage")
    save_push_state(path, PushState(seq=1, at=NOW, digest=SAID))
    loaded = load_push_state(path)
    assert loaded is not None and loaded.seq == 1
