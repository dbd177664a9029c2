"""``fleetcd init``: a new fleet repository from the template shipped in the wheel.

The template (``fleet-repo-template/`` in the source tree, ``fleetcd/template`` once installed) is
read through ``importlib.resources`` so it works the same from a checkout, an editable install or a
wheel. The copy is followed by ``git init -b main``; nothing is committed, so the operator reviews
the files (and usually runs ``fleetcd keys generate``) before the first commit.

The template's ``.github/fleetcd-requirements.txt`` (where CI installs fleetcd from) holds a
placeholder; ``init`` overwrites it with the install spec chosen in ``fleetcd.operator.installspec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from fleetcd.errors import SetupError
from fleetcd.git.worktree import DEFAULT_BRANCH, init_repo
from fleetcd.operator.installspec import (
    REQUIREMENTS_FILE,
    InstallSpec,
    default_install_spec,
    render_requirements,
)

# Build and editor leftovers that may sit next to the template in a source checkout.
_SKIPPED = frozenset({"__pycache__", ".fleetcd", ".DS_Store"})


@dataclass(frozen=True)
class InitResult:
    root: Path
    files: tuple[str, ...]  # repository-relative paths written, sorted
    created_git: bool  # False when ``root`` already was a git work tree
    install: InstallSpec  # what REQUIREMENTS_FILE says CI installs


def template_root() -> Traversable:
    """The fleet repository template inside the installed ``fleetcd`` package."""
    root = resources.files("fleetcd") / "template"
    if not root.is_dir() or not (root / "fleet.yaml").is_file():
        raise SetupError("the fleetcd package has no fleet repository template (broken install?)")
    return root


def init_repository(dest: Path, *, force: bool = False, install: InstallSpec | None = None) -> InitResult:
    """Copy the template into ``dest`` and make it a git repository on branch ``main``.

    ``dest`` must be missing or empty unless ``force`` (then template files overwrite same-named
    files and everything else stays). ``install`` goes into the CI requirements file; by default
    the running fleetcd's own source (a placeholder when CI could not reach it).
    """
    spec = default_install_spec() if install is None else install
    if dest.exists() and not dest.is_dir():
        raise SetupError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise SetupError(
            f"{dest} is not empty; pick a new directory or pass --force to add the template anyway"
        )
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    _copy_tree(template_root(), dest, "", written)
    (dest / REQUIREMENTS_FILE).write_text(render_requirements(spec), encoding="utf-8")
    had_git = (dest / ".git").exists()
    init_repo(dest, DEFAULT_BRANCH)
    return InitResult(root=dest, files=tuple(sorted(written)), created_git=not had_git, install=spec)


def _copy_tree(source: Traversable, target: Path, prefix: str, written: list[str]) -> None:
    # The template is a few levels deep, so recursion depth is bounded by our own files.
    target.mkdir(exist_ok=True)
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name in _SKIPPED or entry.name.endswith((".pyc", "~")):
            continue
        if entry.is_dir():
            _copy_tree(entry, target / entry.name, f"{prefix}{entry.name}/", written)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())
            written.append(f"{prefix}{entry.name}")
