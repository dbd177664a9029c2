"""``fleetcd validate`` end to end: exit codes, output formats, pre-commit use and setup failures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli.validate import validate_command as command
from fleetcd.cli.main import guarded
from fleetcd.errors import Diagnostic
from fleetcd.reasons import Reason
from fleetcd.validation.report import escape_data, escape_property, github_line, text_line
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory

ANNOTATION = re.compile(r"^::(error|warning) file=[^,:\r\n]+(,line=\d+)?,title=fleetcd validate::[^\r\n]+$")


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    fleet.write()
    return fleet


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the command as the console script does (errors mapped to exit codes centrally)."""
    code = guarded(lambda: command.main(args=list(args), prog_name="fleetcd validate", standalone_mode=False))
    out, err = capsys.readouterr()
    return code, out + err


def test_complete_signed_and_approved_fleet_validates_clean_in_every_format(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = validate(capsys, "--repo", str(fleet.root))
    assert (code, text) == (0, "fleetcd validate: valid: 0 errors, 0 warnings in 20 files\n")

    code, out = validate(capsys, "--repo", str(fleet.root), "-o", "json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "errors": [], "warnings": [], "files": 20}

    code, out = validate(capsys, "--repo", str(fleet.root), "--format", "github")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("::")] == []


def test_invalid_fleet_exits_1_with_file_line_messages(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.cohort("canary", ["amr-001", "amr-404"])
    fleet.write()
    line = fleet.line_of("cohorts/canary.yaml", "amr-404")
    code, out = validate(capsys, "--repo", str(fleet.root))
    assert code == 1
    assert out.splitlines() == [
        f"cohorts/canary.yaml:{line}: error: devices[1]: unknown robot 'amr-404': no devices/amr-404.yaml "
        "(a typo here would silently drop a robot) [unknown_device]",
        "fleetcd validate: INVALID: 1 error, 0 warnings in 20 files",
    ]


def test_invalid_fleet_in_json_and_github_formats_is_well_formed(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.config("nav", "device-amr-002", {"max_speed": "fast"})
    fleet.file(f"releases/nav/1.0.0.yaml.d/{'E' * 40}.asc", "not a signature\n")  # a warning
    fleet.write()

    code, out = validate(capsys, "--repo", str(fleet.root), "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert report["files"] == 22
    assert [(e["file"], e["field"], e["reason"], e["severity"]) for e in report["errors"]] == [
        ("configs/nav/device-amr-002.yaml", "values.max_speed", "config_invalid", "error")
    ]
    assert [w["reason"] for w in report["warnings"]] == ["signature_invalid"]

    code, out = validate(capsys, "--repo", str(fleet.root), "--format", "github")
    lines = out.splitlines()
    assert code == 1
    assert [line.split(" ", 1)[0] for line in lines[:-1]] == ["::error", "::warning"]
    assert all(ANNOTATION.match(line) for line in lines[:-1]), lines
    assert lines[-1] == "fleetcd validate: INVALID: 1 error, 1 warning in 22 files"


def test_file_names_from_pre_commit_are_accepted_and_the_whole_repo_is_checked(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(capsys, "--repo", str(fleet.root), "devices/amr-001.yaml", "fleet.yaml")[0] == 0
    fleet.cohort("canary", ["amr-404"])
    fleet.write()
    # the staged file is fine on its own; the cohort that now breaks is reported anyway
    assert validate(capsys, "--repo", str(fleet.root), "devices/amr-001.yaml")[0] == 1


def test_missing_gpg_is_a_setup_error(
    fleet: FleetRepoBuilder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code, out = validate(capsys, "--repo", str(fleet.root))
    assert code == 4
    assert "gpg_unavailable" in out


def test_unknown_base_ref_is_a_setup_error(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.git_init()
    fleet.commit("initial")
    code, out = validate(capsys, "--repo", str(fleet.root), "--base", "origin/nope")
    assert code == 4
    assert "origin/nope" in out


def test_base_ref_in_a_repo_without_git_is_a_setup_error(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(capsys, "--repo", str(fleet.root), "--base", "HEAD")[0] == 4


def test_release_edit_against_base_fails_through_the_cli(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.git_init()
    fleet.commit("publish")
    fleet.release("nav", "1.0.0", config_schema={"type": "object"})
    fleet.write()
    code, out = validate(capsys, "--repo", str(fleet.root), "--base", "HEAD", "-o", "json")
    assert code == 1
    assert [e["reason"] for e in json.loads(out)["errors"]] == ["release_modified"]


def test_not_a_fleet_repository_is_reported_in_the_chosen_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(capsys, "--repo", str(tmp_path), "-o", "json")
    assert code == 1
    assert json.loads(out)["errors"][0]["message"] == "not a fleet repository: fleet.yaml is missing"


def test_conflicting_format_options_are_a_usage_error(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(capsys, "--repo", str(fleet.root), "--format", "github", "-o", "json")[0] == 2


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        pytest.param("plain", "plain", "plain", id="plain"),
        pytest.param("100% sure", "100%25 sure", "100%25 sure", id="percent"),
        pytest.param("a\nb\r\nc", "a%0Ab%0D%0Ac", "a%0Ab%0D%0Ac", id="newlines"),
        pytest.param("x: y, z", "x: y, z", "x%3A y%2C z", id="colon-comma-in-property"),
        pytest.param("%0A", "%250A", "%250A", id="already-escaped-looking"),
    ],
)
def test_github_escaping_follows_the_workflow_command_rules(text: str, data: str, prop: str) -> None:
    assert escape_data(text) == data
    assert escape_property(text) == prop


def test_github_annotation_of_a_hostile_message_stays_on_one_line() -> None:
    diagnostic = Diagnostic(
        "releases/a,b/1.0.0.yaml", 3, "notes", "bad\n::error::injected 100%", Reason.INVALID
    )
    line = github_line(diagnostic)
    assert line == (
        "::error file=releases/a%2Cb/1.0.0.yaml,line=3,title=fleetcd validate::"
        "notes: bad%0A::error::injected 100%25 [invalid]"
    )
    assert text_line(diagnostic).startswith("releases/a,b/1.0.0.yaml:3: error: notes: bad")


def test_installed_console_script_works_as_a_pre_commit_hook(fleet: FleetRepoBuilder) -> None:
    script = Path(sys.executable).with_name("fleetcd")
    staged = ["devices/amr-001.yaml", "cohorts/canary.yaml"]
    done = subprocess.run([str(script), "validate", *staged], cwd=fleet.root, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (
        0,
        "fleetcd validate: valid: 0 errors, 0 warnings in 20 files\n",
    )
    fleet.cohort("canary", ["amr-404"])
    fleet.write()
    done = subprocess.run([str(script), "validate", *staged], cwd=fleet.root, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.startswith("cohorts/canary.yaml:")
