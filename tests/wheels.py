"""This checkout's wheel, built the way a user would build it, for the tests that install or read it.

The build runs on a copy of the tree (no ``build/`` churn in the work tree, no large or leaking
top-level folders) with ``--no-isolation``: the build backend comes from the locked environment.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Top-level entries the build does not need; some are large (.venv) or would leak into the build.
NOT_COPIED = {
    ".git",
    ".venv",
    "build",
    "dist",
    "fleetcd.egg-info",
    "bench",
    "tests",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def _skip_top_level(folder: str, names: list[str]) -> set[str]:
    return NOT_COPIED & set(names) if Path(folder) == REPO else set()


def build_wheel(work: Path) -> Path:
    """Build the fleetcd wheel from a copy of the tree under ``work``; the .whl's path."""
    source = work / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=_skip_top_level)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"wheel build failed:\n{result.stdout}\n{result.stderr}"
    [built] = (work / "dist").glob("fleetcd-*.whl")
    return built
