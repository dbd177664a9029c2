"""A fleet made by ``fleetcd init`` passes its own CI on day one (issue 9, point 6).

Two halves:

- fast: ``init`` writes ``.github/fleetcd-requirements.txt`` as a requirement pip can read, with and
  without ``--install-spec``; every workflow installs from that one file; the pre-commit hook is a
  local hook on the installed fleetcd; no template file names fleetcd 0.1.0 or a ``rev: v`` tag
  (neither exists anywhere); and the default spec's decision table over PEP 610 ``direct_url.json``.
- slow: the template's validate job, run for real. The ``run:`` commands are taken in order from the
  generated fleet's ``.github/workflows/validate.yml`` and run under GitHub's bash (``bash
  --noprofile --norc -eo pipefail``) in a fleet made by ``fleetcd init --install-spec 'fleetcd @
  file://<wheel built from this checkout>'``, in a fresh venv made by the test, with pip free to fetch
  dependencies the way this machine's pip is configured. The ``uses:`` steps are not run: the
  test stands in for them (``actions/checkout`` with full history: the fleet is a git repository
  with ``origin/<base>``; ``actions/setup-python``: the fresh venv's bin first on PATH). Any other
  ``uses:`` step, or a ``${{ }}`` expression the test does not know, fails the test so it is updated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

# packaging is pip's own requirement parser; it comes with `build` (dev extra).
from packaging.requirements import Requirement

from fleetcd.operator.installspec import (
    PLACEHOLDER_URL,
    REQUIREMENTS_FILE,
    RunningFleetcd,
    SpecSource,
    choose_install_spec,
)
from tests.wheels import build_wheel

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "fleet-repo-template"
FLEETCD = Path(sys.executable).parent / "fleetcd"  # the operator's fleetcd (this checkout)
WORKFLOWS = sorted((TEMPLATE / ".github/workflows").glob("*.yml"))
INSTALL_STEP = f"pip install -r {REQUIREMENTS_FILE}"
BASE_BRANCH = "main"
# What the test stands in for instead of running (see the module docstring).
STOOD_IN_FOR = ("actions/checkout@", "actions/setup-python@")
EXPRESSIONS = {"${{ github.base_ref }}": BASE_BRANCH}
INSTALL_TIMEOUT_S = 300
STEP_TIMEOUT_S = 120
AUTHOR = ["-c", "user.name=Fleet Operator", "-c", "user.email=ops@example.invalid"]


def fleetcd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLEETCD), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def git(fleet: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(fleet), *AUTHOR, *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def requirement_lines(path: Path) -> tuple[list[str], list[str]]:
    """(pip options, requirements) of a requirements file, comments and blank lines dropped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return [x for x in lines if x.startswith("-")], [x for x in lines if not x.startswith("-")]


def the_requirement(path: Path) -> Requirement:
    _, requirements = requirement_lines(path)
    assert len(requirements) == 1, requirements
    parsed = Requirement(requirements[0])
    assert parsed.name == "fleetcd"
    return parsed


# --- the template and init (fast) ----------------------------------------------------------------


def test_no_template_file_names_a_fleetcd_release_or_tag_that_does_not_exist() -> None:
    offenders = []
    for path in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        if "0.1.0" in text or re.search(r"rev:\s*v", text):
            offenders.append(path.relative_to(TEMPLATE).as_posix())
    assert offenders == []


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_every_workflow_installs_fleetcd_from_the_one_requirements_file(workflow: Path) -> None:
    data = yaml.safe_load(workflow.read_text())
    runs = [s["run"] for job in data["jobs"].values() for s in job["steps"] if "run" in s]

    installs = [run.strip() for run in runs if "pip install" in run]

    assert installs == [INSTALL_STEP]
    assert "FLEETCD_PIP_SPEC" not in workflow.read_text()


def test_template_requirements_file_is_a_placeholder_pip_refuses_loudly() -> None:
    requirement = the_requirement(TEMPLATE / REQUIREMENTS_FILE)

    assert requirement.url == PLACEHOLDER_URL
    assert requirement.url.split("/")[2].endswith(".invalid")


def test_pre_commit_hook_runs_the_installed_fleetcd_without_a_tag() -> None:
    config = yaml.safe_load((TEMPLATE / ".pre-commit-config.yaml").read_text())

    [repo] = config["repos"]
    [hook] = repo["hooks"]
    assert repo["repo"] == "local"
    assert "rev" not in repo
    assert (hook["id"], hook["entry"], hook["language"]) == ("fleetcd-validate", "fleetcd validate", "system")
    assert (hook["pass_filenames"], hook["always_run"]) == (False, True)


def test_init_from_a_local_checkout_writes_a_placeholder_and_says_so(tmp_path: Path) -> None:
    # This checkout's fleetcd is an editable install: no URL a CI runner could reach.
    result = fleetcd("init", "f", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert the_requirement(tmp_path / "f" / REQUIREMENTS_FILE).url == PLACEHOLDER_URL
    assert f"CI installs fleetcd @ {PLACEHOLDER_URL}" in result.stdout
    assert re.search(
        r"placeholder: the running fleetcd is .*file://.*, a path on this machine", result.stdout
    )
    assert f"warning: {REQUIREMENTS_FILE} holds a placeholder" in result.stderr


@pytest.mark.parametrize(
    ("args", "options", "specifier", "url"),
    [
        pytest.param(["--install-spec", "fleetcd==0.2.0"], [], "==0.2.0", None, id="index-version"),
        pytest.param(
            ["--install-spec", "fleetcd @ git+https://git.example.com/fleetcd.git@v0.2.0"],
            [],
            "",
            "git+https://git.example.com/fleetcd.git@v0.2.0",
            id="git-tag",
        ),
        pytest.param(
            ["--install-spec", "fleetcd @ file:///opt/wheels/fleetcd-0.2.0-py3-none-any.whl"],
            [],
            "",
            "file:///opt/wheels/fleetcd-0.2.0-py3-none-any.whl",
            id="wheel-file",
        ),
        pytest.param(
            ["--install-spec", "fleetcd>=0.2,<0.3", "--index-url", "https://pypi.internal.example/simple"],
            ["--index-url https://pypi.internal.example/simple"],
            "<0.3,>=0.2",
            None,
            id="internal-index",
        ),
        pytest.param(
            ["--install-spec", "fleetcd==0.2.0", "--no-index", "--find-links", "/opt/wheels"],
            ["--no-index", "--find-links /opt/wheels"],
            "==0.2.0",
            None,
            id="wheel-directory",
        ),
    ],
)
def test_init_writes_the_given_install_spec(
    tmp_path: Path, args: list[str], options: list[str], specifier: str, url: str | None
) -> None:
    result = fleetcd("init", "f", *args, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    path = tmp_path / "f" / REQUIREMENTS_FILE
    requirement = the_requirement(path)
    assert (str(requirement.specifier), requirement.url) == (specifier, url)
    assert requirement_lines(path)[0] == options
    assert f"CI installs {args[1]} ({REQUIREMENTS_FILE}; option:" in result.stdout
    assert (f"with pip options: {' '.join(options)}" in result.stdout) == bool(options)
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--install-spec", "numpy==1.26"], id="another-package"),
        pytest.param(["--install-spec", "fleetcd"], id="unpinned"),
        pytest.param(["--install-spec", "fleetcd @ not-a-url"], id="not-a-url"),
        pytest.param(
            ["--install-spec", "fleetcd==0.2.0\n--index-url https://evil.example/simple"], id="second-line"
        ),
        pytest.param(["--install-spec", "fleetcd==0.2.0", "--index-url", "--no-index"], id="option-as-url"),
        pytest.param(["--install-spec", "fleetcd==0.2.0", "--find-links", "/a b"], id="space-in-path"),
    ],
)
def test_init_refuses_an_install_spec_ci_could_not_use(tmp_path: Path, args: list[str]) -> None:
    result = fleetcd("init", "f", *args, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "expected" in result.stderr
    assert not (tmp_path / "f").exists()


# --- the default install spec: PEP 610 direct_url.json -> requirement (pure) ---------------------

GIT = "https://git.example.com/fleetcd.git"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WHEEL = "https://files.example.com/fleetcd-0.2.0-py3-none-any.whl"
SHA = "ab" * 32


@pytest.mark.parametrize(
    ("version", "direct_url", "source", "requirement"),
    [
        pytest.param("0.2.0", None, SpecSource.INDEX, "fleetcd==0.2.0", id="index"),
        pytest.param(
            "0.2.0",
            {"url": GIT, "vcs_info": {"vcs": "git", "commit_id": COMMIT, "requested_revision": "v0.2.0"}},
            SpecSource.VCS,
            f"fleetcd @ git+{GIT}@{COMMIT}",
            id="git-pinned-to-installed-commit",
        ),
        pytest.param(
            "0.2.0",
            {"url": GIT, "subdirectory": "py", "vcs_info": {"vcs": "git", "commit_id": COMMIT}},
            SpecSource.VCS,
            f"fleetcd @ git+{GIT}@{COMMIT}#subdirectory=py",
            id="git-subdirectory",
        ),
        pytest.param(
            "0.2.0",
            {"url": GIT, "vcs_info": {"vcs": "git"}},
            SpecSource.PLACEHOLDER,
            f"fleetcd @ {PLACEHOLDER_URL}",
            id="git-without-commit",
        ),
        pytest.param(
            "0.2.0",
            {"url": WHEEL, "archive_info": {"hashes": {"sha256": SHA}}},
            SpecSource.URL,
            f"fleetcd @ {WHEEL}#sha256={SHA}",
            id="wheel-url-with-hash",
        ),
        pytest.param(
            "0.2.0",
            {"url": WHEEL, "archive_info": {"hash": f"sha256={SHA}"}},
            SpecSource.URL,
            f"fleetcd @ {WHEEL}#sha256={SHA}",
            id="wheel-url-legacy-hash",
        ),
        pytest.param(
            "0.2.0",
            {"url": WHEEL, "archive_info": {}},
            SpecSource.URL,
            f"fleetcd @ {WHEEL}",
            id="wheel-url-no-hash",
        ),
        pytest.param(
            "0.2.0",
            {"url": "file:///home/op/fleetcd-0.2.0-py3-none-any.whl", "archive_info": {}},
            SpecSource.PLACEHOLDER,
            f"fleetcd @ {PLACEHOLDER_URL}",
            id="local-wheel-file",
        ),
        pytest.param(
            "0.2.0",
            {"url": "file:///home/op/fleetcd", "dir_info": {"editable": True}},
            SpecSource.PLACEHOLDER,
            f"fleetcd @ {PLACEHOLDER_URL}",
            id="editable-checkout",
        ),
        pytest.param(
            "0.2.0",
            {"url": "https://example.com/odd url.whl", "archive_info": {}},
            SpecSource.PLACEHOLDER,
            f"fleetcd @ {PLACEHOLDER_URL}",
            id="url-pip-cannot-read",
        ),
        pytest.param("0.2.0", {}, SpecSource.PLACEHOLDER, f"fleetcd @ {PLACEHOLDER_URL}", id="malformed"),
        pytest.param(None, None, SpecSource.PLACEHOLDER, f"fleetcd @ {PLACEHOLDER_URL}", id="not-installed"),
    ],
)
def test_default_install_spec_follows_where_the_running_fleetcd_came_from(
    version: str | None, direct_url: Mapping[str, Any] | None, source: SpecSource, requirement: str
) -> None:
    spec = choose_install_spec(RunningFleetcd(version=version, direct_url=direct_url))

    assert (spec.source, spec.requirement) == (source, requirement)
    assert Requirement(spec.requirement).name == "fleetcd"


# --- the validate job, run for real (slow) -------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built from a copy of the tree (no build/ churn in the work tree)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def runner_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty venv, as actions/setup-python leaves the runner: only pip, no fleetcd."""
    venv = tmp_path_factory.mktemp("runner") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv


@pytest.fixture(scope="module")
def pr_original(tmp_path_factory: pytest.TempPathFactory, wheel: Path, gpg_available: str) -> Iterator[Path]:
    """A fleet from ``init --install-spec`` with dev keys and a signed release on ``main`` (also
    ``origin/main``, as checkout with fetch-depth 0 has it), and a pull request branch that rolls the
    release out with both approvals."""
    base = tmp_path_factory.mktemp("ci")
    spec = f"fleetcd @ {wheel.as_uri()}"
    made = fleetcd("init", "f", "--install-spec", spec, cwd=base)
    assert made.returncode == 0, made.stderr
    fleet = base / "f"
    for command in (["keys", "generate"], ["sign", "releases/navstack/1.0.0.yaml"]):
        done = fleetcd(*command, cwd=fleet)
        assert done.returncode == 0, done.stderr
    rollout = fleet / "rollouts/navstack.yaml"
    rollout_text = rollout.read_text()
    rollout.unlink()
    git(fleet, "add", "-A")
    git(fleet, "commit", "-q", "-m", "New fleet")
    git(fleet, "update-ref", f"refs/remotes/origin/{BASE_BRANCH}", "HEAD")
    git(fleet, "checkout", "-q", "-b", "roll-out-navstack")
    rollout.write_text(rollout_text)
    approved = fleetcd("approve", "rollouts/navstack.yaml", "--all-approvers", cwd=fleet)
    assert approved.returncode == 0, approved.stderr
    git(fleet, "add", "-A")
    git(fleet, "commit", "-q", "-m", "Roll out navstack 1.0.0")
    yield fleet
    # The gpg-agent that key generation started for this keyring.
    keyring = fleet / ".fleetcd/gnupg"
    subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "gpg-agent"], check=False)


@pytest.fixture
def pr_fleet(pr_original: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "f"
    # Sockets of a gpg-agent are not files to copy.
    shutil.copytree(pr_original, copy, symlinks=True, ignore=shutil.ignore_patterns("S.*"))
    return copy


def validate_job_steps(fleet: Path) -> list[tuple[str, str]]:
    """(name, script) of each ``run:`` step of the fleet's validate job, in order."""
    workflow = yaml.safe_load((fleet / ".github/workflows/validate.yml").read_text())
    steps = workflow["jobs"]["validate"]["steps"]
    stood_in = [s["uses"] for s in steps if "uses" in s]
    assert all(uses.startswith(STOOD_IN_FOR) for uses in stood_in), stood_in
    runs = []
    for step in steps:
        if "run" not in step:
            continue
        assert "env" not in step, "step env is not modelled here; extend the test"
        script = step["run"]
        for expression, value in EXPRESSIONS.items():
            script = script.replace(expression, value)
        assert "${{" not in script, f"unknown expression in {step.get('name')}: {script}"
        runs.append((step.get("name", script), script))
    return runs


def runner_env(venv: Path, summary: Path) -> dict[str, str]:
    """The environment a step sees: the runner's Python first on PATH, never this checkout's .venv."""
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != FLEETCD.parent]
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), *keep]),
        VIRTUAL_ENV=str(venv),
        CI="true",
        GITHUB_BASE_REF=BASE_BRANCH,
        GITHUB_STEP_SUMMARY=str(summary),
    )
    return env


def run_step(script: str, fleet: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    # GitHub's `shell: bash` default on Linux runners.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=fleet,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_job(fleet: Path, venv: Path, summary: Path) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """Every run: step in order, stopping at the first failure as a job does."""
    env = runner_env(venv, summary)
    done = []
    for name, script in validate_job_steps(fleet):
        timeout = INSTALL_TIMEOUT_S if INSTALL_STEP in script else STEP_TIMEOUT_S
        result = run_step(script, fleet, env, timeout)
        done.append((name, result))
        if result.returncode != 0:
            break
    return done


@pytest.mark.slow
def test_validate_job_passes_on_a_new_fleets_first_pull_request(
    pr_fleet: Path, runner_venv: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"

    done = run_job(pr_fleet, runner_venv, summary)

    names = [name for name, _ in done]
    assert names == ["Install fleetcd", "Validate", "Plan"]
    for name, result in done:
        assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"
    installed = shutil.which("fleetcd", path=runner_env(runner_venv, summary)["PATH"])
    assert installed == str(runner_venv / "bin/fleetcd")
    assert "navstack" in summary.read_text()


@pytest.mark.slow
def test_validate_job_fails_on_an_unknown_device_in_a_cohort(
    pr_fleet: Path, runner_venv: Path, tmp_path: Path
) -> None:
    cohort = pr_fleet / "cohorts/canary.yaml"
    cohort.write_text(cohort.read_text().replace("  - amr-tyo-02\n", "  - amr-tyo-02\n  - amr-xyz-99\n"))
    git(pr_fleet, "commit", "-q", "-am", "Add a robot that does not exist to canary")

    done = run_job(pr_fleet, runner_venv, tmp_path / "summary.md")

    (install, installed), (validate, validated) = done
    assert (install, installed.returncode) == ("Install fleetcd", 0), installed.stderr
    assert validate == "Validate"
    assert validated.returncode == 1, validated.stdout + validated.stderr
    assert re.search(r"::error file=cohorts/canary\.yaml.*amr-xyz-99", validated.stdout + validated.stderr)
