"""The robot's own disk lets it down: a full disk, a read-only state directory, corrupt state files.

Real agent cycles (tests/sim/agent.py) over real filesystems: a small tmpfs that really fills up
(ENOSPC from the kernel) and a read-only bind mount, skipped where mounting is not allowed; state
files emptied or overwritten with garbage the way a lost write or a bad sector leaves them. Each
fault must be reported and, once the disk allows it, end with the robot on a known version again.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.cli import cli
from agent.converge.configs import load_ledger
from agent.errors import StateRepaired
from agent.fetch import FREE_SPACE_MARGIN_BYTES
from agent.loop import CycleResult
from agent.trustcheck import load_trust_state
from fleetcd.cli.main import run
from fleetcd.vocabulary import Activity
from tests.disks import fill, mounted
from tests.sim.agent import APP, AgentWorld


def agent(*args: str) -> int:
    return run(cli, list(args))


# --- a full disk -----------------------------------------------------------------------------------


def test_full_disk_then_space_back_installs_the_release(world: AgentWorld) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    downloads = world.paths.downloads_dir
    with mounted(downloads, "-t", "tmpfs", "-o", "size=4m", "tmpfs"):
        filler = fill(downloads)
        world.publish("1.1.0")

        full = world.once()

        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.DOWNLOADING)
        assert world.answer() == "1.0.0"  # nothing changed on the robot
        assert full.report is not None
        (dep,) = full.report.deployments
        assert (dep.activity, dep.error) == ("downloading", "retrying")
        assert "disk full" in dep.message and full.report.last_error is not None
        # What the artifact needs: its declared size plus the small margin, not tens of MiB.
        size = int(dep.message.split("needs ")[1].split(" bytes")[0]) - FREE_SPACE_MARGIN_BYTES
        assert 0 < size < 100_000

        filler.unlink()  # logs rotated: the space is back
        back = world.once()

        assert back.error is None, back.errors
        entry = world.entry()
        assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
        assert world.answer("1.1.0") == "1.1.0"


def test_full_disk_exits_4_from_once_without_a_traceback(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    with mounted(world.paths.create().downloads_dir, "-t", "tmpfs", "-o", "size=1m", "tmpfs") as downloads:
        fill(downloads)

        code = agent("--config", str(world.config_file), "once")

    assert code == 4
    err = capsys.readouterr().err
    assert "disk full" in err and "retried next cycle" in err and "Traceback" not in err


# --- a read-only state directory -------------------------------------------------------------------


def test_read_only_state_dir_exits_4(world: AgentWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    state = world.paths.state_dir
    with mounted(state, "--bind", str(state)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        code = agent("--config", str(world.config_file), "once")

        assert code == 4  # a setup error, not the network's 5
        err = capsys.readouterr().err
        assert f"{state}: the agent's state directory is not writable" in err
        assert "Read-only file system" in err and "Traceback" not in err
        assert world.answer() == "1.0.0"


# --- corrupt state files ---------------------------------------------------------------------------

ZERO_BYTES = b""  # a write the filesystem lost: the name is there, the data is not
GARBAGE = b'\x00\x13\xff{"format": 1, "seq": \xc3'  # a bad sector, a torn foreign write


def set_aside_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def repaired(result: CycleResult, path: Path) -> StateRepaired:
    (found,) = [e for e in result.errors if isinstance(e, StateRepaired) and e.path == path]
    return found


def test_zero_byte_journal_is_reported_and_recovered(world: AgentWorld) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    journal = world.paths.journal(APP)
    journal.write_bytes(ZERO_BYTES)
    world.controller.clock.tick(10)

    result = world.once()

    found = repaired(result, journal)
    assert "rebuilt from the tarball executor: 1.0.0 is active" in str(found)
    assert result.report is not None and result.pushed  # the report is built, and says so
    assert result.report.last_error is not None and "corrupt agent state file" in result.report.last_error
    (aside,) = set_aside_copies(journal)
    assert aside.read_bytes() == ZERO_BYTES and found.aside == aside  # kept for forensics
    entry = world.entry()  # a known state again: the desired deployment, adopted where it runs
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert entry.deployment_id == world.deployment_id()
    assert world.answer() == "1.0.0"
    world.controller.clock.tick(10)
    assert world.once().error is None


def test_garbage_journal_then_a_new_release_installs_beside_the_running_version(world: AgentWorld) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    journal = world.paths.journal(APP)
    journal.write_bytes(GARBAGE)
    world.publish("1.1.0")

    result = world.once()

    assert "rebuilt from the tarball executor: 1.0.0 is active" in str(repaired(result, journal))
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
    assert entry.previous_version == "1.0.0"  # what a rollback of 1.1.0 would go back to
    assert world.answer("1.1.0") == "1.1.0"
    assert [p.read_bytes() for p in set_aside_copies(journal)] == [GARBAGE]


def test_status_on_a_corrupt_journal_prints_the_problem_and_exits_4(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.publish("1.0.0")
    assert world.once().error is None
    capsys.readouterr()
    journal = world.paths.journal(APP)
    journal.write_bytes(GARBAGE)

    code = agent("--config", str(world.config_file), "status")

    assert code == 4
    out, err = capsys.readouterr()
    assert f"{APP}: running 1.0.0" in out  # what can be read is still shown
    assert f"problem: {journal}: corrupt agent state file" in out
    assert "1 corrupt state file(s)" in err and "Traceback" not in out + err
    assert journal.read_bytes() == GARBAGE  # status only reads; the next cycle repairs

    assert agent("--config", str(world.config_file), "status", "-o", "json") == 4
    assert json.loads(capsys.readouterr().out)["problems"][0].startswith(str(journal))


@pytest.mark.parametrize(
    ("name", "content", "rebuilt"),
    [
        ("trust_file", ZERO_BYTES, "rebuilt from desired.json: serial"),
        ("trust_file", GARBAGE, "rebuilt from desired.json: serial"),
        ("config_hashes", ZERO_BYTES, "rebuilt from the verified desired state: "),
        ("outbox", GARBAGE, "this cycle's report replaces it"),
        ("desired_cache", ZERO_BYTES, "fetched again by the next poll"),
        ("status_file", GARBAGE, "a new report replaces it"),
    ],
    ids=["trust-empty", "trust-garbage", "ledger-empty", "outbox-garbage", "cache-empty", "status-garbage"],
)
def test_a_corrupt_state_file_is_reported_set_aside_and_rebuilt(
    world: AgentWorld, name: str, content: bytes, rebuilt: str
) -> None:
    schema = {"type": "object", "properties": {"speed": {"type": "number"}}, "additionalProperties": False}
    world.controller.fleet.config(APP, "default", {"speed": 1.5})
    world.publish("1.0.0", config={"path": "web.yaml", "schema": schema})
    first = world.once()
    assert first.error is None, first.errors
    paths = world.paths
    trust, ledger = load_trust_state(paths.trust_file), load_ledger(paths.config_hashes)
    assert trust.last_serial is not None and ledger.files
    path: Path = getattr(paths, name)
    path.write_bytes(content)
    world.controller.clock.tick(10)

    result = world.once()

    assert rebuilt in str(repaired(result, path))
    assert [p.read_bytes() for p in set_aside_copies(path)] == [content]
    assert (
        result.report is not None
        and result.pushed
        and result.report.seq > (first.report or result.report).seq
    )
    assert result.report.last_error is not None and str(path) in result.report.last_error
    # Rebuilt as it was: the serial that refuses replays, the config bytes drift is checked against.
    rebuilt_trust = load_trust_state(paths.trust_file)
    assert (rebuilt_trust.last_serial, rebuilt_trust.trust_version) == (
        trust.last_serial,
        trust.trust_version,
    )
    assert trust.trust_version is not None  # the run loop's repair holds the trust root again
    assert load_ledger(paths.config_hashes).files == ledger.files
    assert world.answer() == "1.0.0"
    world.controller.clock.tick(10)
    again = world.once()
    assert again.error is None, again.errors
    assert load_trust_state(paths.trust_file).last_commit == trust.last_commit
