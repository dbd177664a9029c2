"""Architecture gate: the package layering and the adapter rule, checked on the source with ``ast``.

The shared core ``fleetcd`` imports neither role; ``controller`` and ``agent`` never import each
other; and only the adapter modules listed in :data:`ADAPTER_ALLOWLIST` import the libraries that
touch the outside world. A new adapter is added to the allowlist here, in review, on purpose.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("fleetcd", "controller", "agent")

# Top-level package -> top-level packages it must never import.
FORBIDDEN_PACKAGES: dict[str, frozenset[str]] = {
    "fleetcd": frozenset({"controller", "agent"}),
    "controller": frozenset({"agent"}),
    "agent": frozenset({"controller"}),
}

# Outside-world library -> the only repo-relative paths allowed to import it. An entry ending in "/"
# is a package prefix (every module under it); any other entry is one exact file.
ADAPTER_ALLOWLIST: dict[str, frozenset[str]] = {
    "gnupg": frozenset({"fleetcd/trust/gpg.py"}),
    "pygit2": frozenset({"fleetcd/git/"}),
    "docker": frozenset({"agent/executors/docker.py"}),
    "requests": frozenset({"controller/notify/webhooks.py"}),
    "urllib3": frozenset({"agent/fetch/http.py", "agent/health/http.py"}),
    "watchfiles": frozenset({"controller/watch.py", "agent/configfiles/watch.py"}),
    "prometheus_client": frozenset({"controller/metrics/exposition.py", "agent/report/metrics.py"}),
}


@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.imported!r}: {self.rule}"


def python_files(root: Path) -> Iterator[Path]:
    """Every .py file under the three packages; symlinked folders (schemas, template) are not code."""
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(root / package):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield Path(folder) / name


def imports_of(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every absolute import, including ``importlib.import_module("x")``.

    Relative imports stay inside their own top-level package, so they can break neither rule.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _allowed(path: str, allowlist: frozenset[str]) -> bool:
    return any(path.startswith(entry) if entry.endswith("/") else path == entry for entry in allowlist)


def check_layering(root: Path) -> list[Violation]:
    """All layering and adapter violations in the source tree at ``root``, sorted by file and line."""
    violations: list[Violation] = []
    for file in python_files(root):
        rel = file.relative_to(root).as_posix()
        package = rel.split("/", 1)[0]
        tree = ast.parse(file.read_bytes(), filename=rel)
        for line, module in imports_of(tree):
            top = module.split(".", 1)[0]
            if top in FORBIDDEN_PACKAGES[package]:
                rule = f"{package} must not import {top}"
                violations.append(Violation(rel, line, module, rule))
            elif top in ADAPTER_ALLOWLIST and not _allowed(rel, ADAPTER_ALLOWLIST[top]):
                allowed = ", ".join(sorted(ADAPTER_ALLOWLIST[top])) or "no module yet"
                rule = f"only adapter modules import {top} (allowed: {allowed})"
                violations.append(Violation(rel, line, module, rule))
    return sorted(violations)


def test_source_tree_respects_layering_and_adapter_rule() -> None:
    scanned = {p.relative_to(REPO).as_posix() for p in python_files(REPO)}
    assert "fleetcd/errors.py" in scanned, "the checker found no source: is REPO right?"

    violations = check_layering(REPO)

    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


# A planted tree: (path, source, the forbidden import the checker must report, or None if allowed).
PLANTED = [
    pytest.param(
        "fleetcd/core.py", "import controller.cli\n", "controller.cli", id="core-imports-controller"
    ),
    pytest.param("fleetcd/core2.py", "from agent import loop\n", "agent", id="core-imports-agent"),
    pytest.param("controller/run.py", "import agent\n", "agent", id="controller-imports-agent"),
    pytest.param(
        "agent/loop.py", "from controller.plan import x\n", "controller.plan", id="agent-imports-controller"
    ),
    pytest.param(
        "controller/ok.py", "from fleetcd.models import Fleet\n", None, id="controller-imports-core"
    ),
    pytest.param("agent/ok.py", "import fleetcd.errors\n", None, id="agent-imports-core"),
    pytest.param("fleetcd/rel.py", "from . import errors\n", None, id="relative-import"),
    pytest.param("fleetcd/trust/gpg.py", "import gnupg\n", None, id="gnupg-in-its-adapter"),
    pytest.param("fleetcd/trust/verify.py", "import gnupg\n", "gnupg", id="gnupg-outside-adapter"),
    pytest.param("fleetcd/git/repo.py", "import pygit2\n", None, id="pygit2-in-git-package"),
    pytest.param("fleetcd/git/sub/deep.py", "from pygit2 import Repository\n", None, id="pygit2-deep-in-git"),
    pytest.param("fleetcd/gitish.py", "import pygit2\n", "pygit2", id="pygit2-prefix-is-a-folder"),
    pytest.param("agent/exec.py", "from docker.errors import APIError\n", "docker.errors", id="docker"),
    pytest.param("controller/hook.py", "import requests\n", "requests", id="requests"),
    pytest.param(
        "agent/drift.py", "def f():\n    import watchfiles\n", "watchfiles", id="watchfiles-in-function"
    ),
    pytest.param(
        "agent/dyn.py",
        "import importlib\nimportlib.import_module('controller.cli')\n",
        "controller.cli",
        id="dynamic-import",
    ),
    pytest.param(
        "controller/typing_only.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pygit2\n",
        "pygit2",
        id="type-checking-import-counts",
    ),
]


@pytest.mark.parametrize(("path", "source", "forbidden"), PLANTED)
def test_checker_reports_planted_import(
    tmp_path: Path, path: str, source: str, forbidden: str | None
) -> None:
    file = tmp_path / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(source)

    violations = check_layering(tmp_path)

    found = [(v.file, v.imported) for v in violations]
    assert found == ([] if forbidden is None else [(path, forbidden)])


def test_violation_message_names_file_line_and_import(tmp_path: Path) -> None:
    (tmp_path / "fleetcd").mkdir()
    (tmp_path / "fleetcd" / "core.py").write_text('"""Doc."""\n\nimport os\nfrom agent.cli import main\n')

    [violation] = check_layering(tmp_path)

    assert str(violation).startswith("fleetcd/core.py:4: imports 'agent.cli': fleetcd must not import agent")


def test_symlinked_folders_are_not_scanned(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "bad.py").write_text("import controller\n")
    (tmp_path / "fleetcd").mkdir()
    (tmp_path / "fleetcd" / "template").symlink_to(tmp_path / "elsewhere")

    assert check_layering(tmp_path) == []


# --- Import cycles ------------------------------------------------------------------------------
# Module-level imports only: an import inside a function or under ``if TYPE_CHECKING:`` runs late (or
# never) and cannot deadlock a partially initialised module. Cycles known and not yet broken, each a
# sorted tuple of module names with a comment saying why; the list may only shrink.
ALLOWED_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def module_name(rel: str) -> str:
    """``controller/cli/__init__.py`` -> ``controller.cli``; ``fleetcd/limits.py`` -> ``fleetcd.limits``."""
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(body: list[ast.stmt], module: str, is_package: bool) -> Iterator[list[str]]:
    """What the module imports when it runs, one list of candidate names per imported name.

    ``import a.b`` gives ``["a.b"]``; ``from a import b`` gives ``["a.b", "a"]``: the submodule
    ``a.b`` when there is one, else the name comes from package ``a`` itself.
    """
    for node in body:
        if isinstance(node, ast.If):
            yield from module_level_imports(node.orelse, module, is_package)
            if not _is_type_checking(node.test):
                yield from module_level_imports(node.body, module, is_package)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from module_level_imports(block, module, is_package)
        elif isinstance(node, ast.Import):
            yield from ([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            yield from ([f"{base}.{alias.name}", base] for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the three packages it imports at module level."""
    files = {module_name(p.relative_to(root).as_posix()): p for p in python_files(root)}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_bytes(), filename=str(path))
        graph[module] = set()
        for candidates in module_level_imports(tree.body, module, path.name == "__init__.py"):
            found = next((name for name in candidates if name in files), None)
            if found is not None and found != module:
                graph[module].add(found)
    return graph


def import_cycles(root: Path) -> list[tuple[str, ...]]:
    """Every set of modules that import each other in a loop (strongly connected components, Tarjan)."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_import_cycles_between_modules() -> None:
    cycles = set(import_cycles(REPO))

    assert not cycles - ALLOWED_CYCLES, "import cycles:\n" + "\n".join(map(" <-> ".join, sorted(cycles)))
    assert not ALLOWED_CYCLES - cycles, "broken cycles still allowlisted: remove them from ALLOWED_CYCLES"


CYCLES = [
    pytest.param(
        {"controller/a.py": "from controller import b\n", "controller/b.py": "import controller.a\n"},
        [("controller.a", "controller.b")],
        id="two-modules",
    ),
    pytest.param(
        {
            "fleetcd/x/__init__.py": "from .one import f\n",
            "fleetcd/x/one.py": "from fleetcd.x.two import g\n",
            "fleetcd/x/two.py": "from fleetcd.x import one\n",
        },
        [("fleetcd.x.one", "fleetcd.x.two")],
        id="relative-and-three-modules",
    ),
    pytest.param(
        {"agent/a.py": "import agent.b\n", "agent/b.py": "def f():\n    import agent.a\n"},
        [],
        id="import-in-function-is-not-counted",
    ),
    pytest.param(
        {
            "agent/a.py": "import agent.b\n",
            "agent/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import agent.a\n",
        },
        [],
        id="type-checking-import-is-not-counted",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CYCLES)
def test_cycle_checker_finds_planted_cycle(
    tmp_path: Path, files: dict[str, str], expected: list[tuple[str, ...]]
) -> None:
    for rel, source in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(source)

    assert import_cycles(tmp_path) == expected
