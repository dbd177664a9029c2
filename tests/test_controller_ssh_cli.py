"""The ``fleetcd`` CLI against a real SSH git server (gitolite over OpenSSH on loopback): the
controller and the operator commands log in with their own key and pin the server's host key, by
option or by environment; without a key they fail with an error that says so, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from fleetcd.git.objects import ref_target
from tests.conftest import require_service
from tests.gitolite import CONTROLLER, Gitolite, GitoliteUnavailable
from tests.gpgkeys import KeyFactory
from tests.sim.world import make_world

STATE_REF = "refs/heads/fleetcd/state"


def fleetcd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("fleetcd", path=str(Path(sys.executable).parent)) or "fleetcd"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCD_SSH")}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=300, env={**environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> Iterator[Gitolite]:
    world = make_world(tmp_path_factory.mktemp("world"), keys)
    try:
        gitolite = Gitolite(tmp_path_factory.mktemp("gitolite"), []).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        gitolite.load(world.server)
        yield gitolite
    finally:
        gitolite.__exit__(None, None, None)


def test_controller_reconciles_over_ssh_with_its_key_and_a_pinned_host_key(
    server: Gitolite, keys: KeyFactory, tmp_path: Path
) -> None:
    done = fleetcd(
        "controller", "reconcile", "--once", "--repo", server.url(), "--cache", str(tmp_path),
        "--gnupghome", str(keys.home), "--ssh-key", str(server.key(CONTROLLER)),
        "--host-key-sha256", server.host_fingerprint,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert ref_target(pygit2.Repository(str(server.repo_path())), STATE_REF) is not None

    env = {"FLEETCD_SSH_KEY": str(server.key(CONTROLLER)), "FLEETCD_SSH_HOST_KEY": server.host_fingerprint}
    verified = fleetcd("audit", "verify", "--repo", server.url(), "--cache", str(tmp_path / "audit"), env=env)
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout
    listed = fleetcd("get", "rollouts", "--repo", server.url(), "--cache", str(tmp_path / "get"), env=env)
    assert listed.returncode == 0, listed.stderr
    assert "nav" in listed.stdout


def test_without_an_ssh_key_the_controller_says_so_and_exits_with_a_transport_error(
    server: Gitolite, keys: KeyFactory, tmp_path: Path
) -> None:
    done = fleetcd(
        "controller", "reconcile", "--once", "--repo", server.url(), "--cache", str(tmp_path),
        "--gnupghome", str(keys.home), "--host-key-sha256", server.host_fingerprint,
    )  # fmt: skip

    assert done.returncode in (4, 5), (done.returncode, done.stderr)
    assert "SSH key" in done.stderr or "ssh key" in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_a_wrong_host_key_pin_is_refused(server: Gitolite, keys: KeyFactory, tmp_path: Path) -> None:
    wrong = "SHA256:" + "A" * 43
    done = fleetcd(
        "controller", "reconcile", "--once", "--repo", server.url(), "--cache", str(tmp_path),
        "--gnupghome", str(keys.home), "--ssh-key", str(server.key(CONTROLLER)), "--host-key-sha256", wrong,
    )  # fmt: skip

    assert done.returncode == 5, (done.returncode, done.stderr)
    assert "host key" in done.stderr.lower()
    assert "Traceback" not in done.stderr
