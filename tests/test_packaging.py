"""Release gate: the wheel ships what installed users need, not just what the source tree has.

``fleetcd/schemas`` and ``fleetcd/template`` are symlinks to the top-level ``schemas/`` and
``fleet-repo-template/``; the build follows them, and this test proves the files really land in the
wheel together with the ``py.typed`` markers and both console scripts.
The wheel is built from a copy of the tree so the working tree gets no ``build/`` or egg-info churn.
The systemd unit it ships (the one the .deb installs, tests/test_deb.py) keeps its hardening.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.wheels import build_wheel

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
KINDS = ("fleet", "device", "cohort", "release", "rollout", "configinstance", "agentconfig")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    built = build_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_wheel_ships_json_schema_for_every_kind(wheel: zipfile.ZipFile, kind: str) -> None:
    assert f"fleetcd/schemas/v1/{kind}.json" in wheel.namelist()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("fleetcd/template/fleet.yaml", id="fleet-repo-template"),
        pytest.param("fleetcd/py.typed", id="fleetcd-typed"),
        pytest.param("controller/py.typed", id="controller-typed"),
        pytest.param("agent/py.typed", id="agent-typed"),
        pytest.param("agent/fleetcd-agent.service", id="agent-systemd-unit"),
    ],
)
def test_wheel_ships_data_file(wheel: zipfile.ZipFile, path: str) -> None:
    folder = path.rsplit("/", 1)[0] + "/"
    beside = sorted(n for n in wheel.namelist() if n.startswith(folder))
    assert path in wheel.namelist(), f"{path} is not in the wheel; {folder} holds {beside}"


def test_wheel_declares_both_console_scripts(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())

    assert dict(parser["console_scripts"]) == {
        "fleetcd": "controller.cli:main",
        "fleetcd-agent": "agent.cli:main",
    }


def test_wheel_holds_only_the_three_packages(wheel: zipfile.ZipFile) -> None:
    tops = {
        name.split("/", 1)[0] for name in wheel.namelist() if not name.split("/", 1)[0].endswith(".dist-info")
    }

    assert tops == {"fleetcd", "controller", "agent"}


def test_the_shipped_agent_unit_is_rated_at_most_5_by_systemd_analyze_security() -> None:
    """A quick check without root or the .deb (tests/test_deb.py rates the installed unit too)."""
    analyze = shutil.which("systemd-analyze")
    require_service("systemd-analyze", analyze is not None, "no systemd-analyze on PATH (Debian: systemd)")
    assert analyze is not None
    unit = REPO / "agent" / "fleetcd-agent.service"

    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True
    )

    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, f"no exposure line:\n{result.stdout}\n{result.stderr}"
    assert float(found.group(1)) <= 5.0, result.stdout
