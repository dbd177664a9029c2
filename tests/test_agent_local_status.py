"""``fleetcd-agent status`` (:func:`agent.loop.local_status`) on a robot whose state files are damaged.

What a person on the robot runs when something looks wrong: it reads local files only (no network,
no gpg), never writes or repairs anything (the next cycle does, agent.converge.repair), lists each
unreadable file under ``problems`` naming it, still shows everything it could read, and exits 4
when there is a problem (0 otherwise). One real robot (tests/sim/agent.py) after a deployment and a
pushed report, shared by the module: each test damages files and puts them back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import cli
from agent.loop import local_status
from agent.paths import AgentPaths
from fleetcd.cli.main import run
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld

GARBAGE = b"\x00\x9f not json {"

# The state files ``status`` reads and judges, by their AgentPaths name.
JUDGED = ["status_file", "outbox", "trust_file", "config_hashes"]


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> Iterator[AgentWorld]:
    with ArtifactServer() as artifacts:
        world = AgentWorld.create(tmp_path_factory.mktemp("robot"), keys, artifacts)
        schema = {"type": "object", "properties": {"speed": {"type": "number"}}}
        world.controller.fleet.config(APP, "default", {"speed": 1.5})
        world.publish("1.0.0", config={"path": "web.yaml", "schema": schema})
        first = world.once()
        assert first.error is None and first.pushed, first.errors
        yield world
        world.close()


Spoil = Callable[..., Path]


@pytest.fixture
def spoil() -> Iterator[Spoil]:
    """Overwrite a state file with ``content`` (garbage by default); put back as it was after the test."""
    originals: dict[Path, bytes | None] = {}

    def overwrite(path: Path, content: bytes = GARBAGE) -> Path:
        originals.setdefault(path, path.read_bytes() if path.exists() else None)
        path.write_bytes(content)
        return path

    yield overwrite
    for path, before in originals.items():
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


def snapshot(paths: AgentPaths) -> dict[str, bytes]:
    """Every file under the state directory with its bytes (apps excluded: their processes write)."""
    root = paths.state_dir
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_relative_to(paths.apps_dir)
    }


def agent(*args: str) -> int:
    return run(cli, list(args))


def test_a_healthy_robot_shows_its_report_journal_and_last_push_with_no_problems(robot: AgentWorld) -> None:
    shown = local_status(robot.config)

    assert shown["problems"] == [] and shown["unsent_report_seq"] is None
    assert shown["device"] == "robot-1" and shown["state_dir"] == str(robot.paths.state_dir)
    journal = shown["journals"][APP]  # type: ignore[index]
    assert (journal["version"], journal["state"]) == ("1.0.0", "healthy")
    report = shown["report"]
    assert isinstance(report, dict) and report["seq"] >= 1
    last_push = shown["last_push"]
    assert isinstance(last_push, dict) and last_push["seq"] == report["seq"]
    json.dumps(shown)  # all of it is plain JSON (status -o json)


@pytest.mark.parametrize("name", JUDGED)
def test_one_unreadable_state_file_is_a_problem_naming_it_and_the_rest_is_still_shown(
    robot: AgentWorld, spoil: Spoil, name: str
) -> None:
    path = spoil(getattr(robot.paths, name))

    shown = local_status(robot.config)

    problems = shown["problems"]
    assert isinstance(problems, list)
    (problem,) = problems
    assert problem.startswith(f"{path}: corrupt agent state file")
    journal = shown["journals"][APP]  # type: ignore[index]
    assert (journal["version"], journal["state"]) == ("1.0.0", "healthy")
    if name != "status_file":
        assert shown["report"] is not None


def test_every_state_file_unreadable_at_once_lists_each_and_the_journal_too(
    robot: AgentWorld, spoil: Spoil
) -> None:
    spoiled = [spoil(getattr(robot.paths, name)) for name in JUDGED]
    spoiled.append(spoil(robot.paths.journal(APP), b""))  # a write lost in a power cut

    shown = local_status(robot.config)

    problems = shown["problems"]
    assert isinstance(problems, list) and len(problems) == len(spoiled)
    assert sorted(p.split(":")[0] for p in problems) == sorted(str(p) for p in spoiled)
    assert shown["journals"] == {APP: None} and shown["report"] is None
    assert shown["unsent_report_seq"] is None


def test_status_reads_only_and_sets_nothing_aside(robot: AgentWorld, spoil: Spoil) -> None:
    for name in JUDGED:
        spoil(getattr(robot.paths, name))
    spoil(robot.paths.journal(APP))
    before = snapshot(robot.paths)

    local_status(robot.config)
    assert agent("--config", str(robot.config_file), "status") == 4

    assert snapshot(robot.paths) == before  # no repair, no .corrupt- copy, no new file
    assert not list(robot.paths.state_dir.rglob("*.corrupt-*"))


def test_an_unreadable_push_record_is_no_problem_the_next_push_is_always_safe(
    robot: AgentWorld, spoil: Spoil
) -> None:
    spoil(robot.paths.push_file)

    shown = local_status(robot.config)

    assert shown["problems"] == [] and shown["last_push"] is None


def test_a_report_waiting_in_the_outbox_is_shown_by_its_seq(robot: AgentWorld, spoil: Spoil) -> None:
    status = robot.paths.status_file.read_bytes()
    spoil(robot.paths.outbox, status)  # the outbox holds one report, as the loop writes it

    shown = local_status(robot.config)

    assert shown["unsent_report_seq"] == json.loads(status)["seq"]


@pytest.mark.parametrize(
    ("damaged", "code"),
    [
        pytest.param([], 0, id="healthy"),
        pytest.param(["outbox"], 4, id="outbox"),
        pytest.param(["trust_file", "config_hashes"], 4, id="trust-and-ledger"),
    ],
)
def test_status_exits_4_exactly_when_there_is_a_problem(
    robot: AgentWorld,
    spoil: Spoil,
    capsys: pytest.CaptureFixture[str],
    damaged: list[str],
    code: int,
) -> None:
    for name in damaged:
        spoil(getattr(robot.paths, name))
    capsys.readouterr()

    assert agent("--config", str(robot.config_file), "status", "-o", "json") == code

    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert len(shown["problems"]) == len(damaged)
    assert "Traceback" not in out + err
    if damaged:
        assert f"{len(damaged)} corrupt state file(s)" in err


def test_status_of_a_robot_that_never_ran_shows_nothing_and_no_problem(
    tmp_path: Path, robot: AgentWorld
) -> None:
    config = robot.config.model_copy(update={"state_dir": str(tmp_path / "fresh-state")})

    shown = local_status(config)

    assert shown["problems"] == [] and shown["journals"] == {}
    assert shown["report"] is None and shown["last_push"] is None and shown["unsent_report_seq"] is None
    assert not (tmp_path / "fresh-state").exists()  # reading creates nothing


def test_the_state_directory_systemd_gives_is_read_when_agent_yaml_names_none(
    robot: AgentWorld, tmp_path: Path
) -> None:
    config = robot.config.model_copy(update={"state_dir": None})
    environ = {"STATE_DIRECTORY": f"{robot.paths.state_dir}:{tmp_path / 'second'}"}

    shown = local_status(config, environ=environ)

    assert shown["state_dir"] == str(robot.paths.state_dir)  # the first of systemd's list
    assert shown["journals"][APP]["version"] == "1.0.0"  # type: ignore[index]


def test_agent_yamls_state_dir_wins_over_the_one_systemd_gives(robot: AgentWorld, tmp_path: Path) -> None:
    shown = local_status(robot.config, environ={"STATE_DIRECTORY": str(tmp_path / "systemd-state")})

    assert shown["state_dir"] == str(robot.paths.state_dir)
