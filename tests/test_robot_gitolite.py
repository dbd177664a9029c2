"""``fleetcd robot add|retire|rotate-key`` against the real gitolite3 + OpenSSH of docs/git-server.md.

The commands edit a clone of ``gitolite-admin`` and push it (``--push``), exactly as an
administrator would; the server's own post-update hook then rewrites ``authorized_keys``. The robot
uses nothing but what ``robot add`` wrote: its ``agent.yaml`` (loaded as the agent loads it), the
pinned public keys beside it and its SSH key. An enrolled robot fetches and verifies its desired
state and pushes its report, which the controller reads; a retired robot's key is refused by sshd;
after ``rotate-key`` the old key is refused and the new one works.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from agent.cli import load_config
from agent.loop import run_once
from agent.report.build import build_report
from agent.report.push import push_report
from agent.sync.desired import fetch_desired
from controller.ingest.reports import read_reports
from fleetcd.desired import BundleRejected
from fleetcd.errors import TransportError
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import StatusReport
from tests.clirun import fleetcd
from tests.conftest import require_service
from tests.gitolite import Gitolite, GitoliteUnavailable
from tests.gpgkeys import KeyFactory, shared_keys
from tests.sim.provision import ProvisionedFleet, provisioned_fleet
from tests.sim.world import START
from tests.test_ops_switches import AUTHOR

NOW = START + timedelta(minutes=5)


@dataclass
class Served:
    aw: ProvisionedFleet
    server: Gitolite
    admin: Path
    root: Path

    def fleetcd(self, capsys: pytest.CaptureFixture[str], *args: str) -> str:
        repo = [
            "--repo",
            str(self.aw.world.fleet.root),
            *AUTHOR,
            "--gitolite-admin",
            str(self.admin),
            "--push",
        ]
        code, out, err = fleetcd(capsys, "robot", *args, *repo)
        assert code == 0, err
        return out

    def enrol(self, capsys: pytest.CaptureFixture[str], robot: str) -> AgentConfig:
        """``robot add`` as an operator runs it, the fleet pushed and reconciled, the server loaded."""
        folder = self.root / "robots" / robot
        self.fleetcd(
            capsys,
            "add",
            robot,
            *("--site", "berlin", "--cohort", "staging", "--family", "amr", "--model", "mk2"),
            *("--revision", "3", "--url", self.server.url()),
            *("--host-key-sha256", self.server.host_fingerprint),
            *("--config-dir", str(folder), "--state-dir", str(self.root / "state" / robot)),
            *("--out", str(self.root / "robots")),
        )
        self.publish()
        return load_config(folder / "agent.yaml")

    def publish(self) -> None:
        world = self.aw.world
        world.fleet.git("push", "-q", str(world.server), "main")
        world.reconcile()
        self.server.load(world.server)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gpg_available: str) -> Iterator[Served]:
    keys: KeyFactory = shared_keys()
    aw = provisioned_fleet(tmp_path_factory.mktemp("world"), keys)
    try:
        server = Gitolite(tmp_path_factory.mktemp("gitolite"), ["stg-1"]).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        root = tmp_path_factory.mktemp("ops")
        admin = server.admin_checkout(root / "gitolite-admin")
        yield Served(aw, server, admin, root)
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def admin_ssh(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's git logs in to gitolite-admin with the admin key (their own ssh set-up)."""
    monkeypatch.setenv("GIT_SSH_COMMAND", served.server.admin_ssh()["GIT_SSH_COMMAND"])


def status(device: str, seq: int) -> StatusReport:
    return build_report(
        device, seq, NOW, bundle_serial=1, stale=False, apps=[], deployments=[], last_error=None, drift=[]
    )


def syncs(served: Served, config: AgentConfig, now: datetime = NOW) -> None:
    """One cycle of the real agent (``fleetcd-agent once``) polls, verifies and reports through
    gitolite, and the controller reads the report. (The release has no artifact the tarball
    executor could install here: its deployment fails, which the report says; beside the point.)"""
    result = run_once(config, now)
    transport = [e for e in result.errors if isinstance(e, (TransportError, BundleRejected))]
    assert transport == [] and result.pushed and result.serial is not None and not result.stale
    server = pygit2.Repository(str(served.server.repo_path()))
    found, problem = read_reports(server, [config.device])[config.device]
    assert problem is None and found is not None
    assert (found.device, found.seq, found.bundle_serial) == (config.device, result.report.seq, result.serial)
    assert [d.version for d in found.deployments] == ["1.0.0"], "it holds its nav 1.0.0 deployment"


def refused(config: AgentConfig, where: Path) -> None:
    with pytest.raises(TransportError, match=r"(?i)permission denied|publickey"):
        fetch_desired(config, where)


def test_an_enrolled_robot_syncs_and_reports_and_once_retired_its_key_is_refused(
    served: Served, capsys: pytest.CaptureFixture[str], admin_ssh: None, tmp_path: Path
) -> None:
    config = served.enrol(capsys, "amr-new-1")
    assert served.server.access("amr-new-1", "R", "refs/heads/main")
    syncs(served, config)

    served.fleetcd(capsys, "retire", "amr-new-1")
    served.publish()
    assert not served.server.access("amr-new-1", "R", "refs/heads/main")
    refused(config, tmp_path / "after-retire.git")
    with pytest.raises(TransportError):
        push_report(config, tmp_path / "after-retire-push.git", status("amr-new-1", 2))


def test_after_rotate_key_the_old_key_is_refused_and_the_new_key_syncs(
    served: Served, capsys: pytest.CaptureFixture[str], admin_ssh: None, tmp_path: Path
) -> None:
    config = served.enrol(capsys, "amr-new-2")
    syncs(served, config)
    old = tmp_path / "old-key"
    shutil.copytree(Path(config.remote.ssh_key or "").parent, old, ignore=shutil.ignore_patterns("keys"))
    old_remote = config.remote.model_copy(update={"ssh_key": str(old / "id_ed25519")})
    with_old = config.model_copy(update={"remote": old_remote})
    assert fetch_desired(with_old, tmp_path / "old-before.git") is not None  # the copy is a working key

    new = tmp_path / "new-key"
    served.fleetcd(capsys, "rotate-key", "amr-new-2", "--out", str(new))
    refused(with_old, tmp_path / "old.git")

    # On the robot: the new key replaces the old one where agent.yaml points; nothing else changes.
    key = Path(config.remote.ssh_key or "")
    shutil.copyfile(new / "id_ed25519", key)
    shutil.copyfile(new / "id_ed25519.pub", key.with_name("id_ed25519.pub"))
    syncs(served, config, NOW + timedelta(seconds=config.poll.heartbeat_seconds + 1))  # a report is due
