"""The agent against gitolite3 + OpenSSH set up as docs/git-server.md says (tests/gitolite.py).

Each robot logs in with its own SSH key and pins the server's host key. Through the
``FleetcdNamespace`` trigger a robot's fetch is shown only its own desired-state ref; its push may
update only ``refs/fleetcd/status/<its id>/``: a robot key pushing another robot's status ref is
refused by the server and reported by the agent as an error, never as a success.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pygit2
import pytest

from agent.report.build import build_report
from agent.report.push import push_report
from agent.sync.desired import fetch_desired
from agent.trustcheck import TrustState, verify_desired
from controller.ingest.reports import read_reports
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import desired_ref, status_ref
from fleetcd.git.remote import SshKey, list_remote
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import StatusReport
from tests.conftest import require_service
from tests.fleetrepo import FleetRepoBuilder
from tests.gitolite import Gitolite, GitoliteUnavailable
from tests.gitrepos import rev_parse
from tests.gpgkeys import KeyFactory, shared_keys
from tests.sim.provision import ProvisionedFleet, provisioned_fleet
from tests.sim.world import STAGING, START

ROBOTS = ["amr-001", "amr-002", "amr-003", "amr-004"]
PINNED = "the server's own"
NOW = START + timedelta(minutes=5)


@dataclass
class Served:
    aw: ProvisionedFleet
    server: Gitolite

    def config(
        self, device: str, *, key_of: str | None = None, pin: str | None = PINNED, **remote: object
    ) -> AgentConfig:
        """``device``'s agent.yaml for gitolite, logging in with ``key_of``'s key (default: its own),
        pinning the server's host key (``pin``: another fingerprint; None: no pin)."""
        settings = {"ssh_key": str(self.server.key(key_of or device)), **remote}
        if pin is not None:
            settings["host_key_sha256"] = self.server.host_fingerprint if pin == PINNED else pin
        return self.aw.config(device, url=self.server.url(), remote=settings)

    def repo(self) -> pygit2.Repository:
        return pygit2.Repository(str(self.server.repo_path()))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gpg_available: str) -> Iterator[Served]:
    def robots_in_staging(fleet: FleetRepoBuilder) -> None:
        for robot in ROBOTS:
            fleet.device(robot)
        fleet.cohort("staging", STAGING + ROBOTS, stage="staging")

    keys: KeyFactory = shared_keys()
    aw = provisioned_fleet(tmp_path_factory.mktemp("world"), keys, configure=robots_in_staging)
    try:
        server = Gitolite(tmp_path_factory.mktemp("gitolite"), ROBOTS).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        server.load(aw.server)
        yield Served(aw, server)
    finally:
        server.__exit__(None, None, None)


def status(device: str, seq: int) -> StatusReport:
    return build_report(
        device, seq, NOW, bundle_serial=1, stale=False, apps=[], deployments=[], last_error=None, drift=[]
    )


def test_a_robots_fetch_through_gitolite_sees_only_its_own_desired_ref(served: Served) -> None:
    config = served.config("amr-001")
    repo_dir = served.aw.repo_dir("amr-001")
    files = fetch_desired(config, repo_dir)
    assert files is not None
    verified, _ = verify_desired(config, files, TrustState(), NOW)
    assert verified.bundle.device == "amr-001"
    assert [(d.app, d.version) for d in verified.bundle.deployments] == [("nav", "1.0.0")]
    assert list(pygit2.Repository(str(repo_dir)).references) == [desired_ref("amr-001")]

    advertised = list_remote(
        pygit2.Repository(str(repo_dir)),
        served.server.url(),
        ["refs/"],
        credentials=SshKey("amr-001", served.server.key("amr-001")),
        host_keys=HostKeyPolicy(pinned_sha256=(served.server.host_fingerprint,)),
    )
    assert set(advertised) == {desired_ref("amr-001")}
    assert len(served.repo().references.objects) > len(ROBOTS)  # the server holds everyone's refs


def test_a_robot_key_cannot_push_another_robots_status_while_its_own_push_succeeds(served: Served) -> None:
    assert not served.server.access("amr-001", "W", status_ref("amr-002"))  # gitolite's own ACL says no
    impostor = served.config("amr-002", key_of="amr-001")
    with pytest.raises(PushRejected) as raised:
        push_report(impostor, served.aw.root / "impostor.git", status("amr-002", 1))
    assert raised.value.ref == status_ref("amr-002")
    assert ref_target(served.repo(), status_ref("amr-002")) is None

    own = push_report(served.config("amr-001"), served.aw.repo_dir("amr-001"), status("amr-001", 1))
    assert rev_parse(served.server.repo_path(), status_ref("amr-001")) == own


def test_the_controller_ingests_reports_pushed_through_gitolite(served: Served) -> None:
    config = served.config("amr-003")
    push_report(config, served.aw.repo_dir("amr-003"), status("amr-003", 1))
    push_report(config, served.aw.repo_dir("amr-003"), status("amr-003", 2))
    found, problem = read_reports(served.repo(), ["amr-003"])["amr-003"]
    assert problem is None and found is not None
    assert (found.device, found.seq) == ("amr-003", 2)


def test_a_reflashed_robot_behind_a_namespaced_view_is_told_it_cannot_rebase(
    served: Served, tmp_path: Path
) -> None:
    config = served.config("amr-004")
    push_report(config, tmp_path / "before.git", status("amr-004", 1))
    with pytest.raises(PushRejected, match=r"non-fast-forward.*cannot be fetched") as raised:
        push_report(config, tmp_path / "after-reflash.git", status("amr-004", 2))
    assert raised.value.ref == status_ref("amr-004")


# --- the pinned host key, enforced by OpenSSH's KnownHostsCommand ---------------------------------


def test_a_gitolite_server_with_another_host_key_is_refused_before_anything_is_fetched(
    served: Served, tmp_path: Path
) -> None:
    impostor = "SHA256:" + "B" * 43
    repo_dir = tmp_path / "robot.git"
    with pytest.raises(TransportError, match="not one of the pinned keys") as raised:
        fetch_desired(served.config("amr-002", pin=impostor), repo_dir)
    assert served.server.host_fingerprint in str(raised.value), "the refusal names the key it saw"
    assert impostor in str(raised.value)
    assert not (repo_dir / "refs" / "fleetcd").exists()
    with pytest.raises(TransportError, match="not one of the pinned keys"):
        push_report(served.config("amr-002", pin=impostor), repo_dir, status("amr-002", 1))
    assert ref_target(served.repo(), status_ref("amr-002")) is None


def test_the_matching_pin_connects_whatever_known_hosts_says(served: Served, tmp_path: Path) -> None:
    files = fetch_desired(served.config("amr-002"), tmp_path / "robot.git")
    assert files is not None


def test_without_a_pin_an_unknown_host_key_is_refused_as_openssh_would(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"  # an empty ~/.ssh/known_hosts: the server's key is unknown
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(TransportError, match=r"not in ~/\.ssh/known_hosts"):
        fetch_desired(served.config("amr-002", pin=None), tmp_path / "robot.git")
