"""The README's main job: `fleetcd demo` tells the whole story and every step ends as expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FLEETCD = [sys.executable, "-c", "from controller.cli import main; main()"]


def test_demo_runs_every_step_and_cleans_up(tmp_path: Path, gpg_available: str) -> None:
    before = set(Path("/tmp").glob("fleetcd-demo-*"))
    done = subprocess.run([*FLEETCD, "demo"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Plan: 6 robots to update in 3 waves, 0 skipped, 0 approvals missing." in out
    assert "1 signatures" in out and "robots updated" in out
    assert "audit log intact" in out
    assert "[release_modified]" in out
    assert "[alias_forbidden]" in out
    assert "Demo complete." in out
    assert set(Path("/tmp").glob("fleetcd-demo-*")) == before


def test_demo_keep_leaves_a_valid_fleet_to_explore(tmp_path: Path, gpg_available: str) -> None:
    fleet = tmp_path / "fleet"
    done = subprocess.run(
        [*FLEETCD, "demo", "--keep", str(fleet)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (fleet / "fleet.yaml").is_file()
    assert list((fleet / "approvals" / "navstack").glob("*.asc"))
    assert not (fleet / "devices" / "amr-evil.yaml").exists()
