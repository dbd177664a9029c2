"""GnuPG that is not fit to check signatures (fleetcd/trust/gpg.py): fail closed, as a setup error.

A CI runner or a controller host may have GnuPG 1.4 (whose status lines lack the issuer and primary
fingerprints fleetcd relies on), something else installed as ``gpg``, a ``gpg`` that fails, or one
that never answers. Each must be a :class:`SetupError` (exit 4, "fix the machine"), never a verdict
about the repository, and never leave a throwaway keyring home behind in the temp folder.
Each fake is a real executable started by the real python-gnupg.
"""

from __future__ import annotations

import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.errors import SetupError
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import MIN_GPG_VERSION, Keyring, Signer

FAKES = {
    # name: (shell script body, what the refusal says)
    "gnupg-1.4": ('echo "cfg:version:1.4.23"\nexit 0\n', "1.4.23"),
    "gnupg-2.1": ('echo "cfg:version:2.1.18"\nexit 0\n', "2.1.18"),
    "not-gpg": ("exit 0\n", "unknown"),
    "gpg-fails": ('echo "gpg: fatal: libgcrypt is too old" >&2\nexit 2\n', "libgcrypt is too old"),
}


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the keyring makes its throwaway home: empty again after every refusal."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


def fake_gpg(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bin" / "gpg"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("name", sorted(FAKES))
def test_an_unfit_gpg_is_a_setup_error_for_the_keyring_and_leaves_no_home(
    tmp_path: Path, temp_root: Path, name: str
) -> None:
    body, says = FAKES[name]
    binary = fake_gpg(tmp_path, body)
    with pytest.raises(SetupError) as refused:
        Keyring.from_armored({}, gpgbinary=binary)
    message = str(refused.value)
    assert message.startswith(Reason.GPG_UNAVAILABLE.value) and says in message
    assert list(temp_root.iterdir()) == [], "the throwaway keyring home is removed"


@pytest.mark.parametrize("name", ["gnupg-1.4", "not-gpg"])
def test_an_unfit_gpg_is_a_setup_error_for_the_signer_too(tmp_path: Path, name: str) -> None:
    body, says = FAKES[name]
    with pytest.raises(SetupError, match=Reason.GPG_UNAVAILABLE.value) as refused:
        Signer(tmp_path / "home", gpgbinary=fake_gpg(tmp_path, body))
    assert says in str(refused.value)
    minimum = ".".join(map(str, MIN_GPG_VERSION))
    assert minimum in str(refused.value), "the operator is told which version to install"


def test_a_gpg_that_never_answers_the_version_probe_is_killed_and_refused(
    tmp_path: Path, temp_root: Path
) -> None:
    binary = fake_gpg(tmp_path, "exec sleep 600\n")
    with pytest.raises(SetupError, match="did not answer within 1 s"):
        Keyring.from_armored({}, gpgbinary=binary, timeout_seconds=1.0)
    assert list(temp_root.iterdir()) == []


def test_a_gpg_name_not_on_path_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as refused:
        Keyring.from_armored({}, gpgbinary="gpg-that-is-not-installed")
    assert "gpg-that-is-not-installed" in str(refused.value) and "apt-get install gnupg" in str(refused.value)
