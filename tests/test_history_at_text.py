"""``fleetcd history ROBOT --at T`` as text, where a robot's own words reach the operator's terminal.

A robot writes its report's messages and agent version itself; a compromised or buggy one can put
terminal escape sequences (clear the screen, retitle the window) and newlines in them to forge
lines of the answer. The text answer shows each message on its own line, escapes replaced, and no
forged line starts where the robot put a newline. Also as text: ``--commit`` says which main
commit the instant comes from, a robot whose wave has not started has nothing installed yet, and
after a halt each robot's line says where it stands (rolled back, failed, rolling back, rollback
dispatched, never reached).
A small world on real git and gpg, asked through the real ``fleetcd`` command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.cli.exitcodes import Exit
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import (
    PRODUCTION,
    STAGING,
    ControllerWorld,
    fail_the_canary,
    make_world,
    pass_all_waves,
    pass_wave,
    roll_out,
)

FORGED = "FORGED: nav runs 9.9.9, approved by everyone"
HOSTILE = f"probe failed\x1b[2J\x1b]0;owned\x07\r\n{FORGED}\u202e"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> Iterator[ControllerWorld]:
    """stg-1 was handed nav 1.0.0 and reported it failed, with a hostile message."""
    world = make_world(tmp_path_factory.mktemp("history-text"), keys, name="history-text")
    world.reconcile()
    world.clock.tick(5)
    world.sim.report(STAGING[0], "nav", "failed", world.clock.now, error="failed", message=HOSTILE)
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(5)
    yield world


def ask(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, cache: Path, *args: str
) -> tuple[int, str]:
    code, out, err = fleetcd(capsys, "history", *args, "--repo", str(world.server), "--cache", str(cache))
    assert code == Exit.OK, err
    return code, out


def test_a_deployment_of_a_release_without_config_is_answered_as_text(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    """The scenario's nav 1.0.0 has no config files: the text answer crashed (exit 70) on its
    missing config digest, while ``-o json`` answered."""
    code, out, err = fleetcd(
        capsys,
        "history",
        STAGING[0],
        "--at",
        world.clock.now.isoformat(),
        "--repo",
        str(world.server),
        "--cache",
        str(tmp_path / "ops"),
    )
    assert code == Exit.OK, err
    (dispatched,) = [line for line in out.splitlines() if "rollout nav generation 1" in line]
    assert "; release sha256 " in dispatched and "config" not in dispatched


def test_a_robot_message_cannot_write_escapes_or_forged_lines_to_the_terminal(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    _code, out = ask(capsys, world, tmp_path / "ops", STAGING[0], "--at", world.clock.now.isoformat())

    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert not any(line.lstrip().startswith("FORGED") for line in out.splitlines())
    handed, reported = [line for line in out.splitlines() if "probe failed" in line]
    # still shown, on the lines of the deployment it belongs to: what it was handed, what it reported
    assert handed.startswith("  handed: 1.0.0 deployment dep-") and FORGED in handed
    assert reported.startswith("  nav 1.0.0 dep-") and FORGED in reported


def test_the_json_answer_keeps_the_robot_s_message_as_it_was_written(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    _code, out = ask(
        capsys, world, tmp_path / "ops", STAGING[0], "--at", world.clock.now.isoformat(), "-o", "json"
    )
    answer = json.loads(out)
    (deployment,) = answer["report"]["deployments"]
    assert deployment["message"] == HOSTILE  # data for a program: exact; only text is cleaned


def test_with_commit_the_text_names_the_main_commit_the_instant_comes_from(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    main = world.fleet.git("rev-parse", "HEAD")
    _code, out = ask(capsys, world, tmp_path / "ops", STAGING[0], "--commit", main[:10])

    first = out.splitlines()[0]
    assert first.startswith(f"{STAGING[0]} at ")
    assert first.endswith(f"(as the controller processed main commit {main[:12]})")
    assert f", main {main[:12]}" in out.splitlines()[1]


def test_a_robot_whose_wave_has_not_started_has_nothing_installed_yet_as_text(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    _code, out = ask(capsys, world, tmp_path / "ops", PRODUCTION[0], "--at", world.clock.now.isoformat())

    assert "nothing installed yet: no deployment dispatched and no app reported" in out.splitlines()
    assert "the robot had not reported before the instant" in out


@pytest.fixture(scope="module")
def halted(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> Iterator[ControllerWorld]:
    """nav 1.0.0 everywhere; 1.1.0 passed staging and failed on can-1: the halt sends stg-1, can-2
    and can-3 back to 1.0.0; stg-1 has finished its rollback, can-2 is still applying it."""
    world = make_world(tmp_path_factory.mktemp("history-halted"), keys, name="history-halted")
    world.reconcile()
    pass_all_waves(world)
    roll_out(world, "1.1.0")
    pass_wave(world, STAGING, "staging")
    fail_the_canary(world)
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)  # its rollback to 1.0.0
    world.sim.report("can-2", "nav", "applying", world.clock.now)
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(5)
    yield world


@pytest.mark.parametrize(
    ("robot", "said"),
    [
        ("stg-1", "nav: rolled back: running 1.0.0 (a rollback deployment)"),
        ("can-1", "nav: 1.1.0 failed; running 1.0.0"),
        ("can-2", "nav: rolling back to 1.0.0 (applying); running 1.1.0"),
        ("can-3", "nav: rollback to 1.0.0 dispatched, not yet applied; running 1.1.0"),
        ("prod-1", "nav: running 1.0.0"),
    ],
)
def test_after_a_halt_each_robot_s_line_says_where_it_stands(
    capsys: pytest.CaptureFixture[str], halted: ControllerWorld, tmp_path: Path, robot: str, said: str
) -> None:
    _code, out = ask(capsys, halted, tmp_path / "ops", robot, "--at", halted.clock.now.isoformat())
    assert said in out.splitlines(), out
