"""``fleetcd sim`` as an operator reads it: the text report and its exit code (controller/cli/sim.py).

The JSON report is checked against the state branch in tests/test_sim.py. Here the same rehearsal
is printed as text: the header names the robots, the clock and the seed; progress lines follow the
rollout through its waves as they happen; the summary, the rollouts' phases and the costs agree
with the JSON of the same seed; ``--keep`` says where the rehearsal's server is. A fleet whose main
does not validate is not rehearsed: exit 1, the file and line named on standard error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleetcd.cli.exitcodes import Exit
from tests.clirun import fleetcd
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

ROBOTS = len(STAGING + CANARY + PRODUCTION)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> ControllerWorld:
    return make_world(tmp_path_factory.mktemp("sim-text"), keys, name="rehearsed")


def sim(capsys: pytest.CaptureFixture[str], world: ControllerWorld, *args: str) -> tuple[int, str, str]:
    common = ["--repo", str(world.server), "--gnupghome", str(world.settings.gnupghome), "--seed", "3"]
    common += ["--poll-seconds", "30", "--controller-seconds", "30", "--virtual-time", "--until-done"]
    return fleetcd(capsys, "sim", *common, *args)


def test_the_text_report_tells_the_same_rehearsal_as_the_json_one(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld, tmp_path: Path
) -> None:
    code, out, err = sim(capsys, world, "-o", "json")
    assert code == Exit.OK, err
    data = json.loads(out)
    assert data["stopped"] == "done" and data["rollouts"] == {"nav": "completed"}

    code, text, err = sim(capsys, world, "--keep", str(tmp_path / "kept"))

    assert code == Exit.OK, err
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("fleetcd sim: "))
    assert lines[header].startswith(
        f"fleetcd sim: {ROBOTS} robots (0 offline), virtual clock, seed 3; poll 30 s"
    )
    assert all(" s  nav: " in line for line in lines[:header])  # progress first, as it happened
    assert any(line.startswith("stopped: done at ") for line in lines)
    summary = data["summary"]
    assert f"summary: {summary['applied']} applied, {summary['failed']} failed," in text
    assert "rollouts: nav completed" in lines
    costs = data["costs"]
    assert f"costs: {costs['polls']} polls ({costs['fetches']} brought a new commit" in text
    assert f"{costs['reconciles']} reconciles ({costs['idle_reconciles']} idle" in text
    for wave in ("staging", "canary", "production"):
        assert re.search(rf"^\s*\d+ s  nav: progressing, wave {wave} ", text, re.M), f"no progress for {wave}"
    kept = re.fullmatch(r"kept: (\S+) \(state branch, STATUS\.md, status\.html\); robots in (\S+)", lines[-1])
    assert kept is not None, lines[-1]
    assert Path(kept[1]).is_dir() and Path(kept[1]).is_relative_to(tmp_path / "kept")
    assert Path(kept[2]) == tmp_path / "kept" / "robots" and Path(kept[2]).is_dir()
    assert "STALLED" not in text


def test_a_fleet_whose_main_does_not_validate_is_not_rehearsed_exit_1_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyFactory
) -> None:
    broken = make_world(tmp_path, keys, name="broken")
    broken.fleet.file("devices/broken.yaml", "apiVersion: fleetcd.dev/v1\nkind: Device\nid: [open\n")
    broken.merge("a robot file that is no YAML")

    code, text, err = sim(capsys, broken)

    assert code == Exit.INVALID
    assert text == ""  # no rehearsal ran, so no report
    assert err.startswith("error: devices/broken.yaml:3: ")


def test_a_rehearsal_whose_rollout_halts_still_exits_0_and_says_halted(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld
) -> None:
    """Exit 0 means the rehearsal ran, whatever the rollouts did (docs/cli.md); 1 is for a stall."""
    code, text, err = sim(capsys, world, "--failure-rate", "1", "--max-seconds", "600")

    assert code == Exit.OK, err
    lines = text.splitlines()
    assert "rollouts: nav halted" in lines
    (summary,) = [line for line in lines if line.startswith("summary: ")]
    assert summary.startswith("summary: 0 applied, 1 failed,")  # stg-1, the only robot dispatched
    assert "STALLED" not in text


def test_a_rehearsal_with_every_robot_offline_applies_nothing_and_says_so(
    capsys: pytest.CaptureFixture[str], world: ControllerWorld
) -> None:
    code, text, err = sim(capsys, world, "--offline-rate", "1", "--max-seconds", "600")

    assert code == Exit.OK, err
    lines = text.splitlines()
    assert any(line.startswith(f"fleetcd sim: {ROBOTS} robots ({ROBOTS} offline), ") for line in lines)
    assert any(line.startswith("stopped: time limit at 600 s simulated") for line in lines), text
    (summary,) = [line for line in lines if line.startswith("summary: ")]
    assert summary.startswith("summary: 0 applied, 0 failed,") and f", {ROBOTS} offline," in summary
    assert "rollouts: nav progressing" in lines  # it waits for them; nothing failed
    assert any(line.startswith("costs: 0 polls ") for line in lines)  # an offline robot never polls
