"""More than one git server, for real: two gitolite3 servers over OpenSSH and a ``git daemon`` replica.

* ``primary`` (gitolite, repository ``fleet``): the controller pushes desired state and its state
  branch here over SSH with its own key (``fleetcd controller reconcile --once``, the CLI). It is
  also status shard ``s1``.
* ``second`` (another gitolite with its own sshd and host key, repository ``fleet-status`` as in
  docs/git-server.md's example): status shard ``s2``. It knows the same robot and controller keys,
  as an administrator would set it up, and its repository has the page's rules and trigger option.
* ``replica`` (``git daemon``, a plain bare repository): the read replica, kept fresh by the
  primary's ``post-receive`` hook read from docs/git-server.md.

Robots (the agent's own fetch, verification and push) poll the replica, verify the controller's
signed desired state from it, and push their status to their own shard (``fleetcd.shards``); one
controller reconcile ingests both shards, keeps ingesting one when the other is down (and says
so), and refuses a report pushed into the wrong shard. gitolite refuses a robot's key pushing
another robot's status ref on either server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from agent.cli import load_config
from agent.report.build import build_report
from agent.report.push import push_report
from agent.sync.desired import fetch_desired
from agent.trustcheck import TrustState, verify_desired
from controller.reconcile.statebranch import StateSnapshot, load_state
from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import NAMESPACES_PREFIX, status_ref
from fleetcd.models.agent import AgentConfig, Endpoint
from fleetcd.shards import shard_of
from tests.conftest import require_service
from tests.gitolite import CONTROLLER, DOC, Gitolite, GitoliteUnavailable
from tests.gitrepos import (
    GitDaemon,
    _wait_for_port,
    bare_repo,
    free_port,
    install_hook,
    rev_parse,
    sshd_binary,
)
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ProvisionedFleet
from tests.sim.world import CANARY, PRODUCTION, STAGING, audit_lines, make_world

ROBOTS = STAGING + CANARY + PRODUCTION
SHARDS = ("s1", "s2")
SHARD_REPOS = {"s1": "fleet", "s2": "fleet-status"}  # the repository of each shard on its server
# Two robots of each shard report (each push is an SSH login: the test stays short).
REPORTING = [d for name in SHARDS for d in [r for r in ROBOTS if shard_of(r, SHARDS) == name][:2]]


def replica_hook() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"`hooks/post-receive` of the primary's fleet repository.*?```sh\n(.*?)```", text, re.S)
    assert found is not None, f"{DOC}: no post-receive hook for replicas"
    return found.group(1)


def fleetcd(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("fleetcd", path=str(Path(sys.executable).parent)) or "fleetcd"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCD_SSH")}
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, env=environ)


@dataclass
class Servers:
    aw: ProvisionedFleet
    primary: Gitolite
    second: Gitolite
    daemon: GitDaemon
    replica: Path
    keys: KeyFactory
    cache: Path
    seq: dict[str, int] = field(default_factory=dict)

    def shard(self, name: str) -> Gitolite:
        return self.primary if name == "s1" else self.second

    def shard_url(self, name: str) -> str:
        return self.shard(name).url(SHARD_REPOS[name])

    def shard_repo(self, name: str) -> Path:
        return self.shard(name).repo_path(SHARD_REPOS[name])

    def owner(self, device: str) -> str:
        return shard_of(device, SHARDS)

    def reconcile(self) -> subprocess.CompletedProcess[str]:
        """One reconcile by the CLI, as a CI job or a cron would run it, against both shards."""
        done = fleetcd(
            "controller", "reconcile", "--once", "--repo", self.primary.url(), "--cache", str(self.cache),
            "--gnupghome", str(self.keys.home), "--ssh-key", str(self.primary.key(CONTROLLER)),
            "--host-key-sha256", f"{self.primary.host_fingerprint},{self.second.host_fingerprint}",
            "--status-shard", f"s1={self.shard_url('s1')}", "--status-shard", f"s2={self.shard_url('s2')}",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def config(self, device: str, *, status_in: str | None = None, **remote: Any) -> AgentConfig:
        """``device``'s agent.yaml: primary, the replica to poll, its status shard (or ``status_in``)."""
        name = status_in or self.owner(device)
        shard = self.shard(name)
        settings = {
            "ssh_key": str(self.primary.key(device)),
            "host_key_sha256": self.primary.host_fingerprint,
            "replicas": [{"url": self.daemon.url(self.replica)}],
            "status": {"url": self.shard_url(name), "host_key_sha256": shard.host_fingerprint},
            **remote,
        }
        return self.aw.config(device, url=self.primary.url(), remote=settings)

    def report(self, device: str, *, status_in: str | None = None, key_of: str | None = None) -> str:
        self.seq[device] = self.seq.get(device, 0) + 1
        config = self.config(device, status_in=status_in)
        if key_of is not None:
            config = config.model_copy(
                update={"remote": config.remote.model_copy(update={"ssh_key": str(self.primary.key(key_of))})}
            )
        report = build_report(
            device, self.seq[device], datetime.now(UTC), bundle_serial=1, stale=False, apps=[],
            deployments=[], last_error=None, drift=[],
        )  # fmt: skip
        where = status_in or "own"
        return push_report(config, self.aw.root / f"robot-{device}-{where}-{key_of or device}.git", report)

    def state(self) -> StateSnapshot:
        return load_state(pygit2.Repository(str(self.primary.repo_path())))

    def seqs(self) -> dict[str, int]:
        devices = self.state().devices
        return {d: devices[d].last_report_seq for d in ROBOTS}


def _share_keys(primary: Gitolite, second: Gitolite) -> None:
    """The second server knows the same robots and controller by the same keys (as provisioned)."""
    keydir = second.home / ".gitolite" / "keydir"
    for user in [CONTROLLER, *ROBOTS]:
        shutil.copyfile(primary.keys_dir / f"{user}.pub", keydir / f"{user}.pub")
    second.gitolite("setup")


def _restart_sshd(server: Gitolite) -> None:
    binary = sshd_binary()
    assert binary is not None
    server.process = subprocess.Popen(
        [binary, "-D", "-e", "-f", str(server.dir / "sshd_config")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    _wait_for_port(server.port, server.process, "sshd for gitolite")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> Iterator[Servers]:
    world = make_world(tmp_path_factory.mktemp("world"), keys)
    started: list[Any] = []
    try:
        primary = Gitolite(tmp_path_factory.mktemp("primary"), ROBOTS).__enter__()
        started.append(primary)
        second = Gitolite(tmp_path_factory.mktemp("second"), ROBOTS, repos=[SHARD_REPOS["s2"]]).__enter__()
        started.append(second)
    except (GitoliteUnavailable, RuntimeError, OSError) as exc:
        for server in started:
            server.__exit__(None, None, None)
        require_service("gitolite", False, str(exc))
        raise
    base = tmp_path_factory.mktemp("daemon")
    replica = bare_repo(base / "fleet.git")
    daemon = GitDaemon(base).__enter__()
    started.append(daemon)
    try:
        _share_keys(primary, second)
        primary.load(world.server)  # main, as people merged it
        install_hook(primary.repo_path(), "post-receive", replica_hook())
        subprocess.run(
            [
                "git",
                "--git-dir",
                str(primary.repo_path()),
                "config",
                "--add",
                "fleetcd.replica",
                str(replica),
            ],
            check=True,
        )
        aw = ProvisionedFleet(world, tmp_path_factory.mktemp("robots"))
        built = Servers(aw, primary, second, daemon, replica, keys, tmp_path_factory.mktemp("cache"))
        built.reconcile()  # the first desired state, pushed to the primary
        yield built
    finally:
        for server in reversed(started):
            server.__exit__(None, None, None)


def test_robots_polling_a_replica_verify_the_desired_state_the_controller_pushed_to_the_primary(
    servers: Servers,
) -> None:
    primary = pygit2.Repository(str(servers.primary.repo_path()))
    replica = pygit2.Repository(str(servers.replica))
    desired = list_refs(primary, NAMESPACES_PREFIX)
    assert len(desired) == len(ROBOTS)
    assert list_refs(replica, NAMESPACES_PREFIX) == desired  # copied by the hook, not by the test
    unreachable = f"ssh://{servers.primary.user}@127.0.0.1:{free_port()}/fleet"  # nobody listens there
    for device in ROBOTS:
        config = servers.config(device, url=unreachable, host_key_sha256=None)
        config = config.model_copy(update={"remote": config.remote.model_copy(update={"url": unreachable})})
        files = fetch_desired(config, servers.aw.root / f"poll-{device}.git")  # only the replica answers
        assert files is not None
        verified, _ = verify_desired(config, files, TrustState(), datetime.now(UTC))
        assert verified.bundle.device == device
        expected = [("nav", "1.0.0")] if device in STAGING else []  # the staging wave goes first
        assert [(d.app, d.version) for d in verified.bundle.deployments] == expected


def test_a_replica_whose_host_key_does_not_match_its_pin_is_skipped_for_the_next(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    device = STAGING[0]
    # The second server's URL pinned to the primary's host key: ssh refuses it; the poll moves on.
    impostor = {"url": servers.second.url(), "host_key_sha256": servers.primary.host_fingerprint}
    unreachable = f"ssh://{servers.primary.user}@127.0.0.1:{free_port()}/fleet"
    config = servers.config(device)
    remote = config.remote.model_copy(
        update={
            "url": unreachable,
            "replicas": [Endpoint(**impostor), *config.remote.replicas],
        }
    )
    config = config.model_copy(update={"remote": remote})
    with caplog.at_level("WARNING"):
        files = fetch_desired(config, servers.aw.root / "poll-pinned.git")
    assert files is not None  # from the git daemon replica, the second in the list
    verified, _ = verify_desired(config, files, TrustState(), datetime.now(UTC))
    assert verified.bundle.device == device
    next_one = f"asking {servers.daemon.url(servers.replica)} next"
    assert any(next_one in r.getMessage() and servers.second.url() in r.getMessage() for r in caplog.records)


def test_status_pushed_to_two_gitolite_shards_is_ingested_by_one_reconcile(servers: Servers) -> None:
    assert {servers.owner(d) for d in ROBOTS} == set(SHARDS)
    assert {servers.owner(d) for d in REPORTING} == set(SHARDS)
    before = servers.seqs()
    for device in REPORTING:
        servers.report(device)
    for device in REPORTING:  # each report is on its own shard's server only
        for name in SHARDS:
            repo = pygit2.Repository(str(servers.shard_repo(name)))
            assert (status_ref(device) in repo.references) == (name == servers.owner(device))
    for device in [d for d in REPORTING if servers.owner(d) == "s2"]:  # the trigger: not only on `fleet`
        assert servers.second.push_advertisement(device, SHARD_REPOS["s2"], servers.primary.key(device)) == [
            status_ref(device)
        ]
    servers.reconcile()
    after = servers.seqs()
    assert {d for d in ROBOTS if after[d] != before[d]} == set(REPORTING)
    assert all(after[d] == servers.seq[d] for d in REPORTING)


def test_a_robot_pushing_into_another_shard_is_ignored_and_into_another_robots_ref_is_refused(
    servers: Servers,
) -> None:
    robot = next(d for d in REPORTING if servers.owner(d) == "s1")
    other = next(d for d in REPORTING if servers.owner(d) == "s2")
    held = servers.seqs()[robot]
    servers.seq[robot] = max(servers.seq.get(robot, 0), held) + 10
    servers.report(robot, status_in="s2")  # its own ref, so gitolite lets it; the wrong server
    done = servers.reconcile()
    assert servers.seqs()[robot] == held
    refused = [
        line["event"]
        for line in audit_lines(servers.state())
        if line["event"].get("reason") == "wrong_shard" and line["event"].get("device") == robot
    ]
    assert refused and refused[-1]["data"] == {
        "ref": status_ref(robot),
        "shard": "s2",
        "expected_shard": "s1",
    }
    assert "STALLED" not in done.stdout

    with pytest.raises(PushRejected) as raised:  # robot's key, other robot's ref, other robot's shard
        servers.report(other, key_of=robot)
    assert raised.value.ref == status_ref(other)


def test_with_one_shard_down_the_other_shards_robots_are_ingested_and_the_failure_is_audited(
    servers: Servers,
) -> None:
    before = servers.seqs()
    for device in REPORTING:
        servers.seq[device] = max(servers.seq.get(device, 0), before[device])
        servers.report(device)
    second = servers.second
    assert second.process is not None
    second.process.terminate()
    second.process.wait(timeout=10)
    try:
        done = servers.reconcile()
        assert "status shard unreachable: s2" in done.stdout
        after = servers.seqs()
        moved = {d for d in ROBOTS if after[d] != before[d]}
        assert moved == {d for d in REPORTING if servers.owner(d) == "s1"}  # s1 ingested, s2 kept
        lines = audit_lines(servers.state())
        down = [e["event"] for e in lines if e["event"]["kind"] == "status_shard_unreachable"]
        assert down and down[-1]["data"]["shard"] == "s2"
    finally:
        _restart_sshd(second)
    servers.reconcile()  # back: its robots' waiting reports come in
    after = servers.seqs()
    assert all(after[d] == servers.seq[d] for d in REPORTING)


# --- robot keys on the status shards' servers (``fleetcd robot add|retire|rotate-key --shard-admin``) ---
AUTHOR = ("--author", "Ops Person <ops@fleet.test>")


@dataclass
class Admins:
    """A gitolite-admin checkout of each server, each logging in with that server's admin key."""

    primary: Path
    second: Path
    out: Path

    def robot(self, servers: Servers, *args: str) -> str:
        fleet = servers.aw.world.fleet.root
        done = fleetcd("robot", *args, "--repo", str(fleet), *AUTHOR, "--gitolite-admin", str(self.primary))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def admins(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Admins:
    root = tmp_path_factory.mktemp("admins")
    made = []
    for name, server in (("primary", servers.primary), ("second", servers.second)):
        checkout = server.admin_checkout(root / name)
        ssh = server.admin_ssh()["GIT_SSH_COMMAND"].replace(f" -p {server.port}", "")  # the URL has it
        subprocess.run(["git", "-C", str(checkout), "config", "core.sshCommand", ssh], check=True)
        made.append(checkout)
    return Admins(made[0], made[1], root / "robots")


def new_robot(prefix: str) -> str:
    """A robot id not yet in the fleet whose status shard is s2 (on the second server)."""
    return next(f"{prefix}-{n}" for n in range(100) if shard_of(f"{prefix}-{n}", SHARDS) == "s2")


def enrol(servers: Servers, admins: Admins, robot: str) -> AgentConfig:
    """``robot add`` with both shards, its own shard's checkout given and pushed; its agent.yaml."""
    folder = admins.out / robot
    out = admins.robot(
        servers, "add", robot, "--site", "berlin", "--cohort", "staging", "--family", "amr",
        "--model", "mk2", "--revision", "3", "--url", servers.primary.url(),
        "--host-key-sha256", servers.primary.host_fingerprint,
        "--status-shard", f"s1={servers.shard_url('s1')}", "--status-shard", f"s2={servers.shard_url('s2')}",
        "--config-dir", str(folder), "--out", str(admins.out),
        "--shard-admin", f"s2={admins.second}", "--push",
    )  # fmt: skip
    assert f"gitolite-admin of status shard s2 ({admins.second})" in out
    config = load_config(folder / "agent.yaml")
    assert config.remote.status is not None and config.remote.status.url == servers.shard_url("s2")
    return pinned_status(servers, config)


def pinned_status(servers: Servers, config: AgentConfig, key: Path | None = None) -> AgentConfig:
    """``config`` with the second server's host key pinned for status (``robot add`` writes the
    shard's URL only) and, if given, another SSH key."""
    assert config.remote.status is not None
    status = config.remote.status.model_copy(update={"host_key_sha256": servers.second.host_fingerprint})
    update: dict[str, Any] = {"status": status}
    if key is not None:
        update["ssh_key"] = str(key)
    return config.model_copy(update={"remote": config.remote.model_copy(update=update)})


def push_own_status(servers: Servers, config: AgentConfig, seq: int) -> str:
    """The robot's report pushed from its one local repository, with the key its config names."""
    report = build_report(
        config.device, seq, datetime.now(UTC), bundle_serial=1, stale=False, apps=[], deployments=[],
        last_error=None, drift=[],
    )  # fmt: skip
    return push_report(config, servers.aw.root / f"enrolled-{config.device}.git", report)


def test_a_robot_enrolled_with_its_shards_admin_reports_to_its_shard_and_once_retired_is_refused_there(
    servers: Servers, admins: Admins
) -> None:
    robot = new_robot("amr-enrol")
    config = enrol(servers, admins, robot)
    shard = servers.shard_repo("s2")
    pushed = push_own_status(servers, config, 1)
    assert rev_parse(shard, status_ref(robot)) == pushed  # the second server knows its key

    out = admins.robot(servers, "retire", robot, "--shard-admin", f"s2={admins.second}", "--push")
    assert "gitolite-admin of status shard s2" in out and "push it to apply" not in out
    assert not (admins.second / "keydir" / f"{robot}.pub").exists()
    assert not servers.second.access(robot, "W", status_ref(robot), repo=SHARD_REPOS["s2"])
    with pytest.raises(TransportError):  # sshd on the second server no longer lets its key in
        push_own_status(servers, config, 2)
    assert rev_parse(shard, status_ref(robot)) == pushed


def test_a_rotated_key_is_refused_and_the_new_one_accepted_on_the_robots_shard(
    servers: Servers, admins: Admins
) -> None:
    robot = new_robot("amr-rotate")
    config = enrol(servers, admins, robot)
    push_own_status(servers, config, 1)
    new_folder = admins.out / f"{robot}-new-key"
    admins.robot(
        servers,
        "rotate-key",
        robot,
        "--out",
        str(new_folder),
        "--shard-admin",
        f"s2={admins.second}",
        "--push",
    )
    with pytest.raises(TransportError):  # the old key, on the shard's server
        push_own_status(servers, config, 2)
    rotated = pinned_status(servers, config, key=new_folder / "id_ed25519")
    pushed = push_own_status(servers, rotated, 2)
    assert rev_parse(servers.shard_repo("s2"), status_ref(robot)) == pushed


def test_a_shard_admin_for_a_shard_not_listed_is_refused_before_anything_is_written(
    servers: Servers, admins: Admins
) -> None:
    fleet = servers.aw.world.fleet.root
    head = rev_parse(fleet, "HEAD")
    done = fleetcd(
        "robot", "add", "amr-typo", "--site", "berlin", "--cohort", "staging", "--family", "amr",
        "--model", "mk2", "--revision", "3", "--url", servers.primary.url(),
        "--status-shard", f"s1={servers.shard_url('s1')}", "--status-shard", f"s2={servers.shard_url('s2')}",
        "--out", str(admins.out), "--shard-admin", f"s3={admins.second}", "--repo", str(fleet), *AUTHOR,
    )  # fmt: skip
    assert done.returncode != 0 and "s3" in done.stderr
    assert rev_parse(fleet, "HEAD") == head
    assert not (admins.out / "amr-typo").exists()
    assert not (admins.second / "keydir" / "amr-typo.pub").exists()
