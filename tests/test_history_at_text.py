"""``fleetcd history ROBOT --at T`` as text, where a robot's own words reach the operator's terminal.

A robot writes its report's messages and agent version itself; a compromised or buggy one can put
terminal escape sequences (clear the screen, retitle the window) and newlines in them to forge
lines of the answer. The text answer shows each message on its own line, escapes replaced, and no
forged line starts where the robot put a newline. Also as text: ``--commit`` says which main
commit the instant comes from, and a robot whose wave has not started has nothing installed yet.
A small world on real git and gpg, asked through the real ``fleetcd`` command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.cli.exitcodes import Exit
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, make_world

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
