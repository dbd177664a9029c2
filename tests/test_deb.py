"""The robot package on this machine: ``dev/build-deb`` builds the .deb for its /usr/bin/python3 and
architecture, ``apt-get install`` puts it on, and the installed agent (``/usr/bin/fleetcd-agent``,
the unit's ExecStart) converges a tarball app from a real fleet and pushes its report. The installed
unit passes ``systemd-analyze verify`` and stays at ``systemd-analyze security`` exposure <= 5.0;
upgrade, remove, purge and reinstall never touch /var/lib/fleetcd.

This test changes the machine, so it needs root, Debian's python3 with venv, apt-get and
systemd-analyze, and no fleetcd-agent installed already (it would not replace a real one). Missing
any of that it skips, and fails under CI (``FLEETCD_REQUIRE_SERVICES=1``, tests/conftest.py). It
leaves the machine as found: the package purged, its own folder under /var/lib/fleetcd removed (and
/var/lib/fleetcd itself when the test created it), its apps stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.promtext import check_metrics, samples, value
from tests.sim.agent import APP, AgentWorld

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fleetcd-agent"
AGENT = Path("/usr/bin/fleetcd-agent")
UNIT = Path("/lib/systemd/system/fleetcd-agent.service")
OPT = Path("/opt/fleetcd")
STATE = Path("/var/lib/fleetcd")
EXAMPLE_CONFIG = Path("/etc/fleetcd/agent.yaml.example")
MAX_EXPOSURE = 5.0  # docs/agent.md, "Hardening"
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=APT_ENV)
    if check:
        assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _package_state() -> str | None:
    """dpkg's status of the package: 'install ok installed', 'deinstall ok config-files', or None."""
    result = _run("dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE, check=False)
    status = result.stdout.strip()
    return status if result.returncode == 0 and status and "not-installed" not in status else None


def _machine_problem() -> str | None:
    """Why this machine cannot run the package test, or None."""
    if os.geteuid() != 0:
        return "needs root (apt-get install)"
    for tool in ("apt-get", "dpkg-deb", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    python3 = Path("/usr/bin/python3")
    if not python3.exists() or _run(python3, "-c", "import ensurepip, venv", check=False).returncode:
        return "no Debian /usr/bin/python3 with venv (apt-get install python3 python3-venv)"
    if not (ROOT / ".venv" / "bin" / "python").exists():
        return "no .venv to build the package with (./dev/bootstrap)"
    state = _package_state()
    if state is not None:
        return f"{PACKAGE} is already on this machine ({state}); the test will not replace it"
    return None


def _install(deb: Path) -> None:
    _run("apt-get", "install", "-y", "--no-install-recommends", deb)


def _tree_digest(folder: Path) -> str:
    """sha256 over every path, mode and file content under ``folder``: any change shows."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(folder)}\0{info.st_mode:o}\0".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Debs:
    first: Path
    upgrade: Path  # the same checkout at a higher Debian version
    version: str
    upgrade_version: str


def _build(out: Path, *extra: str) -> Path:
    result = _run(ROOT / "dev" / "build-deb", "--out", out, *extra)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    problem = _machine_problem()
    require_service("the .deb install test", problem is None, problem or "")
    out = tmp_path_factory.mktemp("debs")
    first = _build(out)
    version = first.name.split("_")[1]
    upgrade_version = f"{version}+test2"
    upgrade = _build(out, "--version", upgrade_version)
    return Debs(first, upgrade, version, upgrade_version)


@pytest.fixture(scope="module")
def state_dir(debs: Debs) -> Iterator[Path]:
    """This test's own folder under /var/lib/fleetcd, removed afterwards (and /var/lib/fleetcd with it
    when the test created it)."""
    created = not STATE.exists()
    folder = STATE / f"fleetcd-test-deb-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    if created and STATE.exists() and not any(STATE.iterdir()):
        STATE.rmdir()


@pytest.fixture(scope="module")
def installed(debs: Debs, state_dir: Path) -> Iterator[Debs]:
    """The first build installed; purged at the end whatever happened."""
    _install(debs.first)
    try:
        yield debs
    finally:
        if _package_state() is not None:
            _run("apt-get", "purge", "-y", PACKAGE, check=False)


def test_installed_unit_is_the_source_tree_unit_and_passes_systemd_analyze_verify(installed: Debs) -> None:
    assert UNIT.read_bytes() == (ROOT / "agent" / "fleetcd-agent.service").read_bytes()
    assert AGENT.resolve().is_file()

    result = _run("systemd-analyze", "verify", UNIT, check=False)

    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_installed_unit_exposure_is_at_most_5(installed: Debs) -> None:
    result = _run("systemd-analyze", "security", "--offline=true", "--no-pager", UNIT, check=False)

    found = EXPOSURE.search(result.stdout)
    assert found is not None, f"no 'Overall exposure level' line:\n{result.stdout}\n{result.stderr}"
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_installed_agent_runs_on_debians_python_with_only_the_robot_lock(installed: Debs) -> None:
    venv_python = OPT / "venv" / "bin" / "python"
    assert venv_python.resolve() == Path("/usr/bin/python3").resolve()
    frozen = _run(venv_python, "-m", "pip", "freeze", "--disable-pip-version-check").stdout
    packages = {re.split(r"[ =@]", line)[0].lower() for line in frozen.splitlines()}
    assert "fleetcd" in packages and "pydantic" in packages
    assert "pygit2" not in packages and "pytest" not in packages


@pytest.fixture
def robot(
    installed: Debs, state_dir: Path, tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> Iterator[AgentWorld]:
    """A fleet whose robot keeps its state in this test's folder under /var/lib/fleetcd."""
    world = AgentWorld.create(tmp_path, keys, artifacts, agent={"state_dir": str(state_dir / "robot")})
    try:
        yield world
    finally:
        world.close()


def test_installed_agent_converges_a_tarball_app_and_pushes_its_report(
    robot: AgentWorld, promtool: str
) -> None:
    robot.publish("1.0.0")

    result = _run(AGENT, "--config", robot.config_file, "once", "-o", "json")

    cycle = json.loads(result.stdout)
    assert cycle["errors"] == [] and cycle["pushed"] is True, cycle
    app = cycle["apps"][APP]
    # Debian 12's python3 (3.11.2) has no PEP 706 tarfile filters: unpack's stand-in runs here.
    assert app["state"] == "healthy", json.dumps(cycle["apps"])
    assert robot.answer() == "1.0.0"
    dep = robot.deployment_id()
    robot.reconcile()
    assert robot.record(dep).activity.value == "deployed"
    # node_exporter's textfile, written by the packaged agent with the robot lock's prometheus-client.
    text = robot.paths.metrics_file.read_text()
    check_metrics(promtool, text)
    assert value(samples(text), "fleetcd_agent_app_info", app=APP, version="1.0.0") == 1


def test_upgrade_remove_purge_and_reinstall_keep_var_lib_fleetcd(installed: Debs, state_dir: Path) -> None:
    marker = state_dir / "marker"
    marker.write_text(f"robot state {uuid.uuid4().hex}\n")
    before = _tree_digest(state_dir)

    _install(installed.upgrade)
    assert _package_state() == f"install ok installed {installed.upgrade_version}"
    assert _run(AGENT, "--help").returncode == 0
    assert _tree_digest(state_dir) == before

    _run("apt-get", "remove", "-y", PACKAGE)
    assert _package_state() == f"deinstall ok config-files {installed.upgrade_version}"
    assert not AGENT.exists() and not (OPT / "venv").exists()
    assert EXAMPLE_CONFIG.exists()  # a conffile: kept until purge
    assert _tree_digest(state_dir) == before

    _install(installed.first)
    assert _run(AGENT, "--help").returncode == 0
    assert _tree_digest(state_dir) == before

    _run("apt-get", "purge", "-y", PACKAGE)
    assert _package_state() is None
    assert not OPT.exists() and not EXAMPLE_CONFIG.exists()
    assert _tree_digest(state_dir) == before

    _install(installed.first)  # a robot reprovisioned after a purge
    assert _package_state() == f"install ok installed {installed.version}"
    assert _run(AGENT, "--help").returncode == 0
    assert _tree_digest(state_dir) == before
