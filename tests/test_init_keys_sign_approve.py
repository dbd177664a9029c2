"""Operator workflow on a new fleet: ``init`` → ``keys generate`` → ``sign`` → ``approve`` → ``validate``.

Runs the installed ``fleetcd`` console script against real gpg and real git, the way an operator
does, and checks the template itself: every fleet document loads, carries a schema modeline naming
its kind, and the trust block can be rewritten without losing the comments people wrote.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleetcd.errors import InvalidContent
from fleetcd.git.worktree import commit_all
from fleetcd.layout import FileKind, classify
from fleetcd.loading.fleetspec import load_spec
from fleetcd.loading.snapshot import read_directory
from fleetcd.loading.strict_yaml import parse_strict
from fleetcd.operator.fleetfile import DEV_KEY_NOTE, rewrite_fingerprints

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "fleet-repo-template"
FLEETCD = Path(sys.executable).parent / "fleetcd"
RELEASE = "releases/navstack/1.0.0.yaml"
ROLLOUT = "rollouts/navstack.yaml"
FPR_LINE = re.compile(r'fingerprint: "([0-9A-F]{40})"')
SCHEMA_KINDS = {
    FileKind.FLEET,
    FileKind.DEVICE,
    FileKind.COHORT,
    FileKind.RELEASE,
    FileKind.ROLLOUT,
    FileKind.CONFIG,
}


def fleetcd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLEETCD), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fleet(tmp_path: Path, gpg_available: str) -> Path:
    """A fresh fleet from ``fleetcd init`` (short path: gpg-agent sockets live in the keyring)."""
    result = fleetcd("init", "f", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "f"


@pytest.fixture(scope="module")
def keyed_original(tmp_path_factory: pytest.TempPathFactory, gpg_available: str) -> Path:
    """One ``init`` + ``keys generate`` per module; tests get copies (key generation is the slow part)."""
    base = tmp_path_factory.mktemp("k")
    assert fleetcd("init", "f", cwd=base).returncode == 0
    result = fleetcd("keys", "generate", cwd=base / "f")
    assert result.returncode == 0, result.stderr
    return base / "f"


@pytest.fixture
def keyed_fleet(keyed_original: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "f"
    # Sockets of a gpg-agent that is still shutting down are not files to copy.
    shutil.copytree(keyed_original, copy, symlinks=True, ignore=shutil.ignore_patterns("S.*"))
    return copy


TRUST_ROOT = "trust/root/1.yaml"


def fingerprints_by_name(trust_root: str) -> dict[str, str]:
    data = yaml.safe_load(trust_root)
    keys = [*data["root"]["keys"], *data["release_signers"]["keys"], *data["approvers"], *data["controller"]]
    return {k["name"]: k["fingerprint"] for k in keys}


def test_new_fleet_signed_and_approved_validates(keyed_fleet: Path) -> None:
    signed = fleetcd("sign", RELEASE, cwd=keyed_fleet)
    approved = fleetcd("approve", ROLLOUT, "--all-approvers", cwd=keyed_fleet)
    validated = fleetcd("validate", cwd=keyed_fleet)

    fprs = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    assert signed.returncode == 0, signed.stderr
    assert (keyed_fleet / f"{RELEASE}.d/{fprs['release-signer']}.asc").is_file()
    assert approved.returncode == 0, approved.stderr
    assert sorted(p.name for p in (keyed_fleet / "approvals/navstack").glob("*.asc")) == sorted(
        f"{fprs[name]}.asc" for name in ("approver-1", "approver-2")
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_edited_rollout_voids_its_approvals(keyed_fleet: Path) -> None:
    assert fleetcd("sign", RELEASE, cwd=keyed_fleet).returncode == 0
    assert fleetcd("approve", ROLLOUT, "--all-approvers", cwd=keyed_fleet).returncode == 0
    rollout = keyed_fleet / ROLLOUT
    rollout.write_text(rollout.read_text().replace("soak_seconds: 600", "soak_seconds: 60"))

    validated = fleetcd("validate", cwd=keyed_fleet)

    assert validated.returncode == 1
    assert ROLLOUT in validated.stdout + validated.stderr


def test_sign_refuses_an_invalid_release(keyed_fleet: Path) -> None:
    release = keyed_fleet / RELEASE
    text = release.read_text()
    release.write_text(text.replace("    size: 10485760\n", "    size: 10485760\n    checksum: md5\n", 1))

    result = fleetcd("sign", RELEASE, cwd=keyed_fleet)

    assert result.returncode == 1
    line = text.splitlines().index("    size: 10485760") + 2
    assert f"{RELEASE}:{line}: artifacts[0].checksum: unknown field 'checksum'" in result.stderr
    assert not (keyed_fleet / f"{RELEASE}.d").exists()


def test_sign_refuses_a_key_that_is_not_a_release_signer(keyed_fleet: Path) -> None:
    approver = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())["approver-1"]

    result = fleetcd("sign", RELEASE, "--key", approver, cwd=keyed_fleet)

    assert result.returncode == 4
    assert f"key {approver} is not a release signer" in result.stderr
    assert not (keyed_fleet / f"{RELEASE}.d").exists()


def test_approve_refuses_a_key_that_is_not_an_approver(keyed_fleet: Path) -> None:
    signer = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())["release-signer"]

    result = fleetcd("approve", ROLLOUT, "--key", signer, cwd=keyed_fleet)

    assert result.returncode == 4
    assert f"key {signer} is not an approver in {TRUST_ROOT}" in result.stderr
    assert not list((keyed_fleet / "approvals").rglob("*.asc"))


def test_approve_refuses_a_rollout_of_a_release_that_does_not_exist(keyed_fleet: Path) -> None:
    rollout = keyed_fleet / ROLLOUT
    rollout.write_text(rollout.read_text().replace('release: "1.0.0"', 'release: "9.9.9"'))

    result = fleetcd("approve", ROLLOUT, cwd=keyed_fleet)

    assert result.returncode == 1
    assert "releases/navstack/9.9.9.yaml does not exist" in result.stderr
    assert not list((keyed_fleet / "approvals").rglob("*.asc"))


def test_keys_generate_rewrites_fingerprints_and_keeps_comments(keyed_fleet: Path) -> None:
    before = (TEMPLATE / TRUST_ROOT).read_text().splitlines()
    after = (keyed_fleet / TRUST_ROOT).read_text().splitlines()

    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    fprs = fingerprints_by_name("\n".join(after))
    assert len(changed) == 5
    assert all(FPR_LINE.search(new) and new.endswith(DEV_KEY_NOTE) for _, new in changed)
    assert len(set(fprs.values())) == 5
    assert (keyed_fleet / f"{TRUST_ROOT}.d/{fprs['root']}.asc").is_file()  # version 1 is signed
    assert not any(fpr.startswith("000000") for fpr in fprs.values())
    listed = fleetcd("keys", "list", cwd=keyed_fleet)
    assert listed.returncode == 0, listed.stderr
    for name, fpr in fprs.items():
        assert re.search(rf"{fpr}  {name}  \[keys/{name}\.asc\]", listed.stdout), listed.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            '    fingerprint: "OLD"  # placeholder\n',
            f'    fingerprint: "NEW"  {DEV_KEY_NOTE}\n',
            id="quoted-note",
        ),
        pytest.param(
            "    fingerprint: 'OLD'  # alice's key\n",
            '    fingerprint: "NEW"  # alice\'s key\n',
            id="single-quoted",
        ),
        pytest.param("    fingerprint: 1234\n", '    fingerprint: "NEW"\n', id="plain-gets-quoted"),
    ],
)
def test_fingerprint_rewrite_touches_only_the_value(line: str, expected: str) -> None:
    text = f"# keep me\ntrust:\n  controller:\n    name: controller\n{line}"
    parsed = parse_strict(text.encode(), "fleet.yaml")

    out = rewrite_fingerprints(text, parsed, {("trust", "controller", "fingerprint"): "NEW"})

    assert out == text.replace(line, expected)


def test_fingerprint_rewrite_refuses_two_keys_on_one_line() -> None:
    text = 'approvers: [{name: a, fingerprint: "A"}, {name: b, fingerprint: "B"}]\n'
    parsed = parse_strict(text.encode(), "fleet.yaml")

    with pytest.raises(InvalidContent, match="on a line of its own"):
        rewrite_fingerprints(text, parsed, {("approvers", 1, "fingerprint"): "NEW"})


def template_yaml_files() -> list[str]:
    return sorted(
        p.relative_to(TEMPLATE).as_posix() for p in TEMPLATE.rglob("*") if p.suffix in (".yaml", ".yml")
    )


@pytest.mark.parametrize("path", template_yaml_files())
def test_every_template_yaml_file_has_a_schema_modeline(path: str) -> None:
    first = (TEMPLATE / path).read_text().splitlines()[0]
    where = classify(path)

    assert first.startswith("# yaml-language-server: $schema=https://")
    if where is not None and where.kind in SCHEMA_KINDS:
        kind = yaml.safe_load((TEMPLATE / path).read_text())["kind"]
        assert kind == where.kind.value
        assert first == f"# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/{kind.lower()}.json"


def test_template_documents_load_without_problems() -> None:
    files, problems = read_directory(TEMPLATE)
    spec, diagnostics = load_spec(files)

    assert problems == []
    assert diagnostics == []
    assert len(spec.devices) == 6
    assert {d.model.hardware.revision for d in spec.devices.values()} == {1, 2}
    assert {d.model.timezone for d in spec.devices.values()} == {
        "Europe/Berlin",
        "America/Chicago",
        "Asia/Tokyo",
    }
    assert any(d.model.maintenance_windows for d in spec.devices.values())
    assert spec.cohorts["production"].model.selector is not None


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    refused = fleetcd("init", str(target), cwd=tmp_path)
    forced = fleetcd("init", str(target), "--force", cwd=tmp_path)

    assert refused.returncode == 4
    assert "not empty" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "fleet.yaml").read_bytes() == (TEMPLATE / "fleet.yaml").read_bytes()


def test_init_creates_a_git_repository_on_main_ignoring_local_keys(fleet: Path) -> None:
    (fleet / ".fleetcd/gnupg").mkdir(parents=True)
    (fleet / ".fleetcd/gnupg/secret").write_text("never committed")

    commit = commit_all(fleet, "New fleet", "Fleet Operator <ops@example.invalid>")

    git = ["git", "-C", str(fleet)]
    assert (
        subprocess.run([*git, "symbolic-ref", "HEAD"], capture_output=True, text=True).stdout
        == "refs/heads/main\n"
    )
    tracked = subprocess.run([*git, "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    assert (
        subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() == commit
    )
    assert {"fleet.yaml", ".github/workflows/validate.yml", "CODEOWNERS", RELEASE} <= set(tracked)
    assert not any(p.startswith(".fleetcd/") for p in tracked)


def test_pre_commit_hook_validates_the_whole_repository() -> None:
    [hook] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    config = yaml.safe_load((TEMPLATE / ".pre-commit-config.yaml").read_text())

    assert hook["id"] == "fleetcd-validate"
    assert (hook["entry"], hook["language"], hook["pass_filenames"], hook["always_run"]) == (
        "fleetcd validate",
        "python",
        False,
        True,
    )
    assert [h["id"] for r in config["repos"] for h in r["hooks"]] == ["fleetcd-validate"]


def test_validate_workflow_tolerates_plan_changes_exit_code() -> None:
    workflow = yaml.safe_load((TEMPLATE / ".github/workflows/validate.yml").read_text())
    steps = workflow["jobs"]["validate"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps)

    assert steps[0]["with"]["fetch-depth"] == 0
    assert 'fleetcd validate --base "origin/${{ github.base_ref }}" --format github' in script
    plan = next(s["run"] for s in steps if "fleetcd plan" in s.get("run", ""))
    for code, fails in ((0, False), (3, False), (1, True), (4, True)):
        # A stand-in `fleetcd` exiting with `code`, run under GitHub's default shell (bash -e).
        script = f"fleetcd() {{ return {code}; }}\n" + plan.replace("${{ github.base_ref }}", "main")
        result = subprocess.run(
            ["bash", "-e", "-c", script], env={"GITHUB_STEP_SUMMARY": "/dev/null"}, capture_output=True
        )
        assert (result.returncode != 0) == fails, (code, result)
