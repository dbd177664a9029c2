"""Host key pins (fleetcd.git.knownhosts): fingerprints as OpenSSH computes them, pins that cannot be
mistaken, and a KnownHostsCommand that ssh can run and that cannot be steered by its arguments.

The end-to-end decision table (which key the command vouches for) lives in test_agent_no_pygit2.py;
here the pieces under it are checked against the real ``ssh-keygen``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetcd.git.knownhosts import (
    PIN_PREFIX,
    REFUSAL_MARK,
    HostKeyPolicy,
    fingerprint,
    known_hosts_command,
    known_hosts_line,
    main,
)

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")


def generated_key(tmp_path: Path, kind: str) -> tuple[str, str, str]:
    """(type, base64 blob, fingerprint as ssh-keygen -l prints it) of a fresh key of ``kind``."""
    path = tmp_path / f"key-{kind}"
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(path)], check=True)
    key_type, blob = Path(f"{path}.pub").read_text().split()[:2]
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    )
    return key_type, blob, listed.stdout.split()[1]


@needs_ssh_keygen
@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path, kind: str) -> None:
    _key_type, blob, expected = generated_key(tmp_path, kind)
    assert fingerprint(base64.b64decode(blob)) == expected


@needs_ssh_keygen
def test_a_real_key_is_accepted_only_under_its_own_pin(tmp_path: Path) -> None:
    key_type, blob, pin = generated_key(tmp_path, "ed25519")
    _other_type, other_blob, other_pin = generated_key(tmp_path, "ecdsa")
    assert known_hosts_line((pin,), "git.fleet", key_type, blob) == f"git.fleet {key_type} {blob}"
    assert known_hosts_line((other_pin,), "git.fleet", key_type, blob) is None
    assert known_hosts_line((pin,), "git.fleet", key_type, other_blob) is None


# --- pins ---------------------------------------------------------------------------------------------

GOOD_PIN = PIN_PREFIX + "A" * 43


@pytest.mark.parametrize(
    "pin",
    [
        "A" * 43,
        "sha256:" + "A" * 43,
        "SHA256:" + "A" * 42,
        "SHA256:" + "A" * 44,
        "SHA256:" + "A" * 21 + "," + "A" * 21,
        "MD5:" + "ab:" * 15 + "ab",
        "",
    ],
    ids=["no-prefix", "lowercase-prefix", "short", "long", "comma", "md5", "empty"],
)
def test_a_pin_that_is_not_an_openssh_sha256_fingerprint_is_refused(pin: str) -> None:
    with pytest.raises(ValueError, match="not an OpenSSH SHA256 fingerprint"):
        HostKeyPolicy(pinned_sha256=(GOOD_PIN, pin))


def test_a_policy_with_good_pins_or_none_is_accepted() -> None:
    assert HostKeyPolicy().pinned_sha256 == ()
    assert HostKeyPolicy(pinned_sha256=(GOOD_PIN, PIN_PREFIX + "b" * 43)).pinned_sha256[0] == GOOD_PIN
    assert HostKeyPolicy(insecure_accept_any_host_key=True).insecure_accept_any_host_key


# --- the known_hosts line -----------------------------------------------------------------------------

KEY = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)).decode()
PIN = fingerprint(base64.b64decode(KEY))


@pytest.mark.parametrize(
    ("host", "key_type", "key"),
    [
        ("", "ssh-ed25519", KEY),
        ("git.fleet", "", KEY),
        ("git.fleet", "NONE", KEY),
        ("git.fleet", "ssh-ed25519", ""),
        ("git.fleet", "ssh-ed25519", "NONE"),
        ("git.fleet", "ssh-ed25519", KEY[:-4]),
        ("git.fleet", "ssh-ed25519", KEY + "\n"),
        ("git.fleet", "ssh-ed25519", KEY.replace("A", "-", 1)),
    ],
    ids=["no-host", "no-type", "type-none", "no-key", "key-none", "truncated", "newline", "not-base64"],
)
def test_nothing_is_known_for_a_missing_or_malformed_key(host: str, key_type: str, key: str) -> None:
    assert known_hosts_line((PIN,), host, key_type, key) is None


def test_the_line_keeps_a_bracketed_host_with_port() -> None:
    assert (
        known_hosts_line((PIN,), "[10.0.0.5]:2222", "ssh-ed25519", KEY)
        == f"[10.0.0.5]:2222 ssh-ed25519 {KEY}"
    )


# --- the command ssh runs -----------------------------------------------------------------------------


def test_the_command_names_this_interpreter_and_the_pins_and_ssh_tokens() -> None:
    command = known_hosts_command((GOOD_PIN, PIN), sys.executable)
    parts = command.split()
    assert parts[:3] == [sys.executable, "-I", "-S"]
    assert parts[3].endswith("knownhosts.py") and Path(parts[3]).is_absolute()
    assert parts[4] == f"{GOOD_PIN},{PIN}"
    assert parts[5:] == ["%H", "%t", "%K"]


@pytest.mark.parametrize(
    "python",
    ["python3", "/usr/bin/py thon", "/usr/bin/python%d", '/usr/bin/"python"', "/usr/bin/py\\thon"],
    ids=["relative", "space", "percent", "quote", "backslash"],
)
def test_an_interpreter_path_ssh_would_split_or_expand_is_refused(python: str) -> None:
    with pytest.raises(ValueError, match="KnownHostsCommand"):
        known_hosts_command((GOOD_PIN,), python)


def test_the_command_runs_under_isolated_python_and_vouches_for_the_pinned_key() -> None:
    argv = [*known_hosts_command((PIN,), sys.executable).split()[:-3], "git.fleet", "ssh-ed25519", KEY]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env={}, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"git.fleet ssh-ed25519 {KEY}\n", "")


# --- main(): what ssh sees ----------------------------------------------------------------------------


def test_main_prints_the_line_for_a_pinned_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([PIN, "git.fleet", "ssh-ed25519", KEY]) == 0
    assert capsys.readouterr().out == f"git.fleet ssh-ed25519 {KEY}\n"


def test_main_refuses_an_unpinned_key_naming_both_fingerprints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([GOOD_PIN, "git.fleet", "ssh-ed25519", KEY]) == 0  # ssh refuses on the empty output
    out, err = capsys.readouterr()
    assert out == ""
    assert REFUSAL_MARK in err and PIN in err and GOOD_PIN in err and "git.fleet" in err


def test_main_names_an_unreadable_key_without_crashing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([PIN, "git.fleet", "ssh-ed25519", "%%%"]) == 0
    assert "(unreadable)" in capsys.readouterr().err


def test_main_is_silent_when_ssh_asks_without_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([PIN, "git.fleet", "NONE", "NONE"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("argv", [[], [PIN], [PIN, "h", "t"], [PIN, "h", "t", "k", "extra"]], ids=len)
def test_main_with_the_wrong_argument_count_refuses(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    assert "usage:" in capsys.readouterr().err


def test_empty_entries_in_the_pin_list_are_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f",,{PIN},", "git.fleet", "ssh-ed25519", KEY]) == 0
    assert capsys.readouterr().out.startswith("git.fleet ")
