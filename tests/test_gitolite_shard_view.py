"""The namespace trigger of docs/git-server.md on a status shard that is not named ``fleet``.

One gitolite3 behind OpenSSH (tests/gitolite.py, the trigger and ACL read from the page) serves:

* ``fleet-status``: a status shard, the page's ``repo fleet`` block copied under another name
  (``option fleetcd.robot-view = 1`` comes with it);
* ``fleet-open``: a shard whose ACL lets every robot write every status ref (a mistake an operator
  could make), marked for the trigger: ``receive.hideRefs`` alone must still hold each robot to
  its own ref;
* ``unmarked``: the same rules without the option, to show the option is what turns the view on.

Every repository holds the status refs of several robots, as a shard does after a day.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from agent.report.push import push_status
from bench.status_push import robot_report
from fleetcd.compat import UTC
from fleetcd.errors import PushRejected
from fleetcd.git.refs import status_ref
from fleetcd.models.agent import AgentConfig
from tests.conftest import require_service
from tests.gitolite import CONTROLLER, Gitolite, GitoliteUnavailable
from tests.gitrepos import GIT_ENV, rev_parse

ROBOTS = ["amr-001", "amr-002", "amr-003", "amr-004"]
SHARD = "fleet-status"
OPEN = "fleet-open"
UNMARKED = "unmarked"
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
# Not the page's rules: every robot may write every status ref; only the trigger narrows a push.
EXTRA_CONF = f"""
repo {OPEN}
    option fleetcd.robot-view       = 1
    RW+                             = fleetcd-controller
    R                               = @robots
    RW  refs/fleetcd/status/        = @robots

repo {UNMARKED}
    RW+                             = fleetcd-controller
    R                               = @robots
    RW  refs/fleetcd/status/USER/   = @robots
"""


def _seed(repo: Path, robots: list[str]) -> None:
    """``robots``' status refs, written server-side (as earlier reports left them)."""
    env = {**GIT_ENV, "PATH": "/usr/bin:/bin"}
    tree = subprocess.run(
        ["git", "--git-dir", str(repo), "mktree"],
        input="",
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "--git-dir", str(repo), "commit-tree", tree, "-m", "earlier report"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    for robot in robots:
        subprocess.run(["git", "--git-dir", str(repo), "update-ref", status_ref(robot), commit], check=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitolite]:
    try:
        running = Gitolite(tmp_path_factory.mktemp("gitolite"), ROBOTS, repos=[SHARD]).__enter__()
    except (GitoliteUnavailable, RuntimeError, OSError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        conf = running.home / ".gitolite" / "conf" / "gitolite.conf"
        conf.write_text(conf.read_text(encoding="utf-8") + EXTRA_CONF, encoding="utf-8")
        running.gitolite("setup")
        # A robot reporting for the first time has no ref there yet: amr-002 into the shard; into
        # the open one amr-001, and amr-002 whose ref amr-001 tries to create (a creation is a
        # fast-forward: only the hidden ref stops it, not the ACL's refusal of a rewind).
        _seed(running.repo_path(SHARD), [r for r in ROBOTS if r != "amr-002"])
        _seed(running.repo_path(OPEN), [r for r in ROBOTS if r not in ("amr-001", "amr-002")])
        _seed(running.repo_path(UNMARKED), ROBOTS)
        yield running
    finally:
        running.__exit__(None, None, None)


def robot_config(server: Gitolite, device: str, repo: str, *, key_of: str | None = None) -> AgentConfig:
    """``device``'s agent.yaml pushing status to ``repo`` with ``key_of``'s key (default: its own)."""
    remote = {
        "url": server.url(repo),
        "ssh_key": str(server.key(key_of or device)),
        "host_key_sha256": server.host_fingerprint,
    }
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": device,
            "remote": remote,
            "trust": {"keys_dir": "/nonexistent", "root": {"keys": ["A" * 40]}},
        }
    )


def test_a_robots_push_to_a_shard_not_named_fleet_is_advertised_only_its_own_ref(server: Gitolite) -> None:
    assert server.push_advertisement("amr-001", SHARD) == [status_ref("amr-001")]
    assert server.push_advertisement("amr-003", SHARD) == [status_ref("amr-003")]
    seeded = {status_ref(r) for r in ROBOTS if r != "amr-002"}
    assert seeded <= set(server.push_advertisement(CONTROLLER, SHARD))  # the controller is shown all


def test_without_the_option_a_robots_push_is_advertised_every_robots_ref(server: Gitolite) -> None:
    everyone = sorted(status_ref(r) for r in ROBOTS)
    assert sorted(server.push_advertisement("amr-001", UNMARKED)) == everyone


def test_a_robot_reports_into_a_shard_not_named_fleet(server: Gitolite, tmp_path: Path) -> None:
    pushed = push_status(
        robot_config(server, "amr-002", SHARD), tmp_path / "robot.git", robot_report("amr-002", 1, NOW)
    )
    assert rev_parse(server.repo_path(SHARD), status_ref("amr-002")) == pushed.commit


def test_another_robots_status_ref_is_refused_by_hidden_refs_when_the_acl_would_allow_it(
    server: Gitolite, tmp_path: Path
) -> None:
    assert server.access("amr-001", "W", status_ref("amr-002"), repo=OPEN)  # the ACL alone lets it through
    impostor = robot_config(server, "amr-002", OPEN, key_of="amr-001")
    with pytest.raises(PushRejected) as raised:
        push_status(impostor, tmp_path / "impostor.git", robot_report("amr-002", 7, NOW), rebase=False)
    assert raised.value.ref == status_ref("amr-002")
    assert rev_parse(server.repo_path(OPEN), status_ref("amr-002")) is None

    own = push_status(
        robot_config(server, "amr-001", OPEN), tmp_path / "own.git", robot_report("amr-001", 1, NOW)
    )
    assert rev_parse(server.repo_path(OPEN), status_ref("amr-001")) == own.commit
