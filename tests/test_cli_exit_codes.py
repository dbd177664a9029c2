"""The one error handler of ``fleetcd`` and ``fleetcd-agent`` (fleetcd/cli/main.py) and the option
checks every remote-reading command shares (controller/cli/options.py).

The exit code is the contract with CI jobs and systemd (docs/cli.md): an invalid repository must be
1 and never look like a network failure (5) that a job would retry, a bug must be 70 and never 1
(which tells the operator their repository is wrong), and a bad option must be refused as usage (2)
before anything is fetched or written. Each case raises the real error type of the shared core.
"""

from __future__ import annotations

import errno
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import pytest

from controller.cli import OPERATOR_MIN_PYTHON, build, main
from controller.cli.options import commit_status_of, remote_source, webhook_secret
from controller.notify.forge import MAX_TOKEN_BYTES, TOKEN_ENV, ForgeKind
from controller.notify.signing import SECRET_ENV, SIGNATURE_HEADER, sign
from controller.sim.settings import SimSettings
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import guarded, run
from fleetcd.errors import Diagnostic, InvalidContent, SetupError, TransportError
from fleetcd.reasons import Reason

PIN = "SHA256:" + "Q" * 43
OTHER_PIN = "SHA256:" + "R" * 43
SECRET = b"0123456789abcdef-webhook"


def _raise(error: BaseException) -> NoReturn:
    raise error


class _Bug(RuntimeError):
    pass


# --- guarded: every error group to its code -------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidContent.at("rollouts/nav.yaml", "no such cohort", line=4, field="targets"), Exit.INVALID),
        (SetupError("gpg is not installed"), Exit.SETUP),
        (TransportError("ssh: connect to host git.fleet port 22: Connection refused"), Exit.TRANSPORT),
        (click.UsageError("no such option: --frobnicate"), Exit.USAGE),
        (click.BadParameter("not a number", param_hint="--interval"), Exit.USAGE),
        (click.Abort(), Exit.USAGE),
        (click.exceptions.Exit(0), Exit.OK),
        (_Bug("list index out of range"), Exit.INTERNAL),
        (KeyError("devices"), Exit.INTERNAL),
        (ValueError("a bug that looks like bad input"), Exit.INTERNAL),
        (OSError(errno.ENOSPC, "No space left on device", "/var/cache/fleetcd/x"), Exit.SETUP),
        (OSError(errno.EROFS, "Read-only file system", "/var/lib/fleetcd/x"), Exit.SETUP),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/var/lib/fleetcd/x"), Exit.SETUP),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "state.json"), Exit.INTERNAL),
    ],
    ids=[
        "invalid-content", "setup", "transport", "usage", "bad-parameter", "abort", "click-exit-0", "bug",
        "key-error", "value-error", "disk-full", "read-only-disk", "over-quota", "a-missing-file-is-a-bug",
    ],
)  # fmt: skip
def test_each_error_group_exits_with_its_documented_code(
    capsys: pytest.CaptureFixture[str], error: BaseException, code: Exit
) -> None:
    assert guarded(lambda: _raise(error)) == code
    out, err = capsys.readouterr()
    assert out == "", "errors go to standard error only, so `-o json` output stays parseable"
    assert bool(err.strip()) is (code != Exit.OK), "every refusal says something, --help's exit nothing"


def test_a_bug_is_never_reported_as_invalid_content(capsys: pytest.CaptureFixture[str]) -> None:
    """A CI job reading exit 1 would blame the repository; a bug is 70 with its traceback."""
    assert guarded(lambda: _raise(_Bug("boom in step plan"))) == Exit.INTERNAL != Exit.INVALID
    err = capsys.readouterr().err
    assert "Traceback" in err and "_Bug" in err and "boom in step plan" in err
    assert "internal error" in err


def test_invalid_content_prints_one_line_per_diagnostic_naming_file_line_and_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    diagnostics = [
        Diagnostic("devices/amr-001.yaml", 7, "labels.dock", "must be a string"),
        Diagnostic("rollouts/nav.yaml", None, None, "missing approvals", reason=Reason.APPROVAL_MISSING),
    ]
    assert guarded(lambda: _raise(InvalidContent(diagnostics))) == Exit.INVALID
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: devices/amr-001.yaml:7: labels.dock: must be a string",
        "error: rollouts/nav.yaml: missing approvals",
    ]


@pytest.mark.parametrize(
    ("result", "code"),
    [(None, 0), (0, 0), (1, 1), (3, 3), (True, 1), ("text", 0)],
    ids=["none", "zero", "one", "plan-changes", "bool", "not-an-int"],
)
def test_a_command_return_value_is_its_exit_code_when_it_is_an_int(result: Any, code: int) -> None:
    """``plan`` returns 3 (changes) and ``get release`` 1 (unknown): their code passes through."""
    assert guarded(lambda: result) == code


def test_an_unknown_command_is_usage_and_help_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(build(), ["frobnicate"]) == Exit.USAGE
    assert "frobnicate" in capsys.readouterr().err
    assert run(build(), ["--help"]) == Exit.OK
    assert "Exit codes" in capsys.readouterr().out
    assert run(build(), ["validate", "--format", "xml"]) == Exit.USAGE


def test_an_old_python_is_told_to_use_fleetcd_agent_with_the_setup_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 10, 12, "final", 0))
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == Exit.SETUP
    out, err = capsys.readouterr()
    assert out == "" and "fleetcd-agent" in err and "3.11" in err
    assert OPERATOR_MIN_PYTHON == (3, 11)


# --- remote_source: the SSH pins every remote-reading command uses ----------------------------------


@pytest.fixture
def no_ssh_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FLEETCD_SSH_KEY", "FLEETCD_SSH_HOST_KEY", "FLEETCD_SSH_USER", SECRET_ENV, TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "pin", ["SHA256:abc", "MD5:aa:bb", PIN + "x", "sha256:" + "Q" * 43], ids=["short", "md5", "long", "case"]
)
def test_a_malformed_host_key_pin_is_usage_before_anything_is_fetched(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch, pin: str
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(click.BadParameter) as refused:
        remote_source("ssh://git@git.fleet/fleet", cache, host_key=pin)
    assert refused.value.param_hint == "--host-key-sha256" and pin in str(refused.value)
    assert not cache.exists(), "refused before the mirror is created"


def test_a_malformed_pin_from_the_environment_is_refused_like_the_option(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``get`` has no --host-key-sha256 option: FLEETCD_SSH_HOST_KEY is checked the same way."""
    no_ssh_env.setenv("FLEETCD_SSH_HOST_KEY", "SHA256:abc")
    cache = tmp_path / "cache"
    code = run(build(), ["get", "rollouts", "--repo", "ssh://git@git.fleet/fleet", "--cache", str(cache)])
    assert code == Exit.USAGE and "SHA256:abc" in capsys.readouterr().err
    assert not cache.exists()


def test_several_pins_separated_by_commas_are_all_accepted_and_only_they(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    source = remote_source("ssh://git@git.fleet/fleet", tmp_path, host_key=f" {PIN} ,{OTHER_PIN},")
    assert source.host_keys is not None and source.host_keys.pinned_sha256 == (PIN, OTHER_PIN)
    assert remote_source("ssh://git@git.fleet/fleet", tmp_path).host_keys is None, "no pin: known_hosts"


def test_the_environment_supplies_key_user_and_pin_when_the_options_do_not(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "id_ed25519"
    no_ssh_env.setenv("FLEETCD_SSH_KEY", str(key))
    no_ssh_env.setenv("FLEETCD_SSH_USER", "deploy")
    no_ssh_env.setenv("FLEETCD_SSH_HOST_KEY", PIN)
    source = remote_source("ssh://git.fleet/fleet", tmp_path / "cache")
    assert source.credentials is not None and source.host_keys is not None
    assert (source.credentials.username, Path(source.credentials.private_key)) == ("deploy", key)
    assert source.host_keys.pinned_sha256 == (PIN,)
    given = remote_source("ssh://git.fleet/fleet", tmp_path / "cache", host_key=OTHER_PIN)
    assert given.host_keys is not None and given.host_keys.pinned_sha256 == (OTHER_PIN,), "the option wins"


# --- the webhook secret and the commit-status forge -------------------------------------------------


def test_a_webhook_secret_in_both_the_file_and_the_environment_is_refused(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    no_ssh_env.setenv(SECRET_ENV, "other")
    with pytest.raises(click.BadParameter) as refused:
        webhook_secret(secret)
    assert refused.value.param_hint == "--webhook-secret-file" and SECRET_ENV in str(refused.value)
    no_ssh_env.delenv(SECRET_ENV)
    loaded = webhook_secret(secret)
    assert loaded is not None, "the file alone is used"
    signed = loaded.headers(b"{}", 1_700_000_000)[SIGNATURE_HEADER]
    assert signed == sign(SECRET, 1_700_000_000, b"{}"), "one trailing newline is not part of the secret"
    assert webhook_secret(None) is None


def test_a_guessably_short_webhook_secret_is_refused_without_echoing_it(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"hunter2\n")
    with pytest.raises(click.BadParameter) as refused:
        webhook_secret(secret)
    assert str(secret) in str(refused.value) and "hunter2" not in str(refused.value)


def test_an_oversized_webhook_secret_file_is_refused_not_truncated(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"k" * (1024 * 1024))
    with pytest.raises(click.BadParameter):
        webhook_secret(secret)


def _token(tmp_path: Path, text: str | bytes = "ghp_token\n") -> Path:
    path = tmp_path / "token"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"kind": "github"}, ["--commit-status-api", "--commit-status-repo"]),
        ({"api": "https://api.github.com"}, ["--commit-status-forge", "--commit-status-repo"]),
        ({"kind": "github", "api": "https://api.github.com", "repo": "a/b", "token": False}, [TOKEN_ENV]),
        ({"repo": "acme/fleet"}, ["--commit-status-forge", "--commit-status-api"]),
    ],
    ids=["forge-only", "api-only", "no-token", "repo-only"],
)  # fmt: skip
def test_commit_statuses_half_configured_are_usage_naming_every_missing_option(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch, given: dict[str, Any], missing: list[str]
) -> None:
    token = None if given.pop("token", True) is False else _token(tmp_path)
    with pytest.raises(click.UsageError) as refused:
        commit_status_of(given.get("kind"), given.get("api"), given.get("repo"), token)
    for name in missing:
        assert name in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "api", "repo", "token", "names"),
    [
        ("github", "ftp://api.github.com", "acme/fleet", "t", "--commit-status-api"),
        ("github", "https://api.github.com", "acme/fleet/extra", "t", "--commit-status-repo"),
        ("gitea", "https://git.example", "acme/../fleet", "t", "--commit-status-repo"),
        ("github", "https://api.github.com", "acme/fleet", "t" * (MAX_TOKEN_BYTES + 1), "token"),
        ("github", "https://api.github.com", "acme/fleet", "tab\there", "token"),
        ("github", "https://api.github.com", "acme/fleet", b"\xff\xfe", "UTF-8"),
    ],
    ids=[
        "api-not-http", "github-repo-3-parts", "dot-dot-repo", "token-too-long", "token-control",
        "token-binary",
    ],
)  # fmt: skip
def test_a_malformed_commit_status_setting_is_usage_naming_it(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch, kind: str, api: str, repo: str, token: str, names: str
) -> None:
    with pytest.raises(click.UsageError) as refused:
        commit_status_of(kind, api, repo, _token(tmp_path, token))
    assert names in str(refused.value)


def test_a_token_in_both_file_and_environment_is_refused_even_without_a_forge(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    no_ssh_env.setenv(TOKEN_ENV, "from-env")
    with pytest.raises(click.UsageError) as refused:
        commit_status_of(None, None, None, _token(tmp_path))
    assert TOKEN_ENV in str(refused.value)


def test_commit_statuses_fully_configured_from_the_environment_token(
    tmp_path: Path, no_ssh_env: pytest.MonkeyPatch
) -> None:
    assert commit_status_of(None, None, None, None) is None, "off unless asked for"
    no_ssh_env.setenv(TOKEN_ENV, "glpat-123")
    assert commit_status_of(None, None, None, None) is None, "a token alone turns nothing on"
    forge = commit_status_of("gitlab", "https://gitlab.example/api/v4", "group/sub/fleet", None)
    assert forge is not None and forge.kind is ForgeKind.GITLAB and forge.repo == "group/sub/fleet"
    assert "glpat-123" not in repr(forge), "the token never shows in logs"


# --- numbers from the command line are finite ------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-nan"])
@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["sim", "--repo", "."], "--apply-seconds"),
        (["sim", "--repo", "."], "--failure-rate"),
        (["sim", "--repo", "."], "--offline-rate"),
        (["sim", "--repo", "."], "--latency-ms"),
        (["sim", "--repo", "."], "--poll-seconds"),
        (["sim", "--repo", "."], "--jitter-percent"),
        (["sim", "--repo", "."], "--controller-seconds"),
        (["sim", "--repo", "."], "--max-seconds"),
        (["controller", "run", "--repo", ".", "--gnupghome", "."], "--interval"),
    ],
)
def test_a_non_finite_number_option_is_usage_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], option: str, value: str
) -> None:
    """click's FloatRange lets ``nan`` through (every comparison with NaN is false): a NaN interval
    would reach ``Event.wait`` and a NaN failure rate the simulator's dice."""
    assert run(build(), [*command, option, value]) == Exit.USAGE
    err = capsys.readouterr().err
    assert option in err and value in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "field", ["apply_seconds", "failure_rate", "latency_seconds", "max_seconds", "poll_seconds"]
)
def test_simulator_settings_refuse_nan_and_infinity(tmp_path: Path, field: str) -> None:
    where = {"url": str(tmp_path), "gnupghome": tmp_path, "workdir": tmp_path}
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match=field):
            SimSettings(**where, **{field: bad})
    assert getattr(SimSettings(**where, **{field: 0.5}), field) == 0.5
