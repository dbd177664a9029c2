"""The agent's own transport (fleetcd/git/robotgit.py: the git CLI and OpenSSH) when the server is wrong.

Against the real gitolite3 behind OpenSSH (tests/sshfaults.py) and TCP ports that misbehave. What a
robot must never do: talk to a host whose key is not the pinned one (gitolite never runs a session,
nothing is fetched), write an unknown host into a known_hosts file, prompt, hang past its timeout,
leave an ssh or git process behind, keep a partial pack over its byte cap, or take a refused push
for a delivered one.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git import refs
from fleetcd.git.gitcli import SshKey, TransferTooLarge
from fleetcd.git.knownhosts import HostKeyPolicy
from fleetcd.git.robotgit import RobotRemote, RobotRepository
from tests.gitolite import Gitolite
from tests.gitrepos import rev_parse
from tests.sshfaults import (
    BEHAVIOURS,
    BIG_FILE_BYTES,
    OTHER,
    OTHER_PIN,
    ROBOT,
    Listener,
    closed_port_url,
    gitolite_log,
)
from tests.sshfaults import listener as listener  # fixtures
from tests.sshfaults import passwords_only as passwords_only
from tests.sshfaults import server as server
from tests.sshfaults import stranger as stranger

DESIRED = refs.desired_ref(ROBOT)
FETCH_DESIRED = f"+{DESIRED}:{DESIRED}"
CAP = 16 * 1024 * 1024
TIMEOUT_S = 2.0
WHEN = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
GIVE_UP_WITHIN_S = TIMEOUT_S + 6  # the timeout, then killing the process group, on a busy machine


@pytest.fixture
def robot(tmp_path: Path) -> RobotRepository:
    return RobotRepository(tmp_path / "robot.git")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the robot's own, so ~/.ssh/known_hosts is one this test can read afterwards."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    return path


def remote(server: Gitolite, *, key: Path | None = None, policy: HostKeyPolicy | None = None) -> RobotRemote:
    """amr-001's remote for ``server``: its own key (or ``key``) and, by default, the server's pin."""
    host_keys = policy or HostKeyPolicy(pinned_sha256=(server.host_fingerprint,))
    return RobotRemote(server.url(), SshKey(server.user, key or server.key(ROBOT)), host_keys, timeout_s=20.0)


def desired_on_server(server: Gitolite) -> str | None:
    return rev_parse(server.repo_path(), refs.namespaced(ROBOT, DESIRED))


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (an ssh or git left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


# --- the pinned host ---------------------------------------------------------------------------------


def test_with_the_servers_pin_the_robot_fetches_only_its_own_desired_ref(
    server: Gitolite, robot: RobotRepository
) -> None:
    other = f"+{refs.desired_ref(OTHER)}:{refs.desired_ref(OTHER)}"
    fetched = robot.fetch(remote(server), [FETCH_DESIRED, other], max_bytes=CAP)
    assert fetched == [DESIRED]
    assert robot.ref_target(DESIRED) == desired_on_server(server)


def test_a_host_key_other_than_the_pin_is_refused_before_gitolite_runs_a_session(
    server: Gitolite, robot: RobotRepository
) -> None:
    before = gitolite_log(server)
    with pytest.raises(TransportError, match="not one of the pinned keys") as caught:
        robot.fetch(
            remote(server, policy=HostKeyPolicy(pinned_sha256=(OTHER_PIN,))), [FETCH_DESIRED], max_bytes=CAP
        )
    assert OTHER_PIN in str(caught.value)
    assert gitolite_log(server) == before
    assert robot.ref_target(DESIRED) is None


def test_a_push_to_a_host_with_another_key_is_refused_and_nothing_lands(
    server: Gitolite, robot: RobotRepository
) -> None:
    before = gitolite_log(server), rev_parse(server.repo_path(), refs.status_ref(ROBOT))
    ref = refs.status_ref(ROBOT)
    commit = robot.commit_file("status.json", b"{}", parent=None, message="s", author=("r", "r@x"), when=WHEN)
    robot.update_ref(ref, commit, None, message="report")
    with pytest.raises(TransportError, match="not one of the pinned keys"):
        robot.push(remote(server, policy=HostKeyPolicy(pinned_sha256=(OTHER_PIN,))), [f"{ref}:{ref}"])
    assert (gitolite_log(server), rev_parse(server.repo_path(), ref)) == before


def test_without_a_pin_an_unknown_host_is_refused_and_never_written_to_known_hosts(
    server: Gitolite, robot: RobotRepository, home: Path
) -> None:
    with pytest.raises(TransportError, match="known_hosts") as caught:
        robot.fetch(remote(server, policy=HostKeyPolicy()), [FETCH_DESIRED], max_bytes=CAP)
    assert "pin its fingerprint" in str(caught.value)
    known = home / ".ssh" / "known_hosts"
    assert not known.exists() or "127.0.0.1" not in known.read_text()


def test_insecure_mode_connects_to_any_host_only_when_asked(server: Gitolite, robot: RobotRepository) -> None:
    assert robot.fetch(
        remote(server, policy=HostKeyPolicy(insecure_accept_any_host_key=True)),
        [FETCH_DESIRED],
        max_bytes=CAP,
    ) == [DESIRED]


# --- the robot's key ----------------------------------------------------------------------------------


def test_a_key_gitolite_does_not_know_fails_once_without_a_prompt(
    server: Gitolite, robot: RobotRepository, stranger: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError):
        robot.fetch(remote(server, key=stranger), [FETCH_DESIRED], max_bytes=CAP)
    assert time.monotonic() - started < GIVE_UP_WITHIN_S
    assert robot.ref_target(DESIRED) is None


def test_a_robot_key_pushing_another_robots_status_is_refused_naming_the_ref(
    server: Gitolite, robot: RobotRepository
) -> None:
    theirs = refs.status_ref(OTHER)
    commit = robot.commit_file("status.json", b"{}", parent=None, message="s", author=("r", "r@x"), when=WHEN)
    robot.update_ref(theirs, commit, None, message="forged report")
    with pytest.raises(PushRejected) as caught:
        robot.push(remote(server), [f"{theirs}:{theirs}"])
    assert caught.value.ref == theirs
    assert rev_parse(server.repo_path(), theirs) is None


# --- the byte cap ---------------------------------------------------------------------------------------


def test_a_fetch_over_ssh_past_its_byte_cap_fails_and_leaves_no_partial_pack(
    server: Gitolite, robot: RobotRepository
) -> None:
    cap = BIG_FILE_BYTES // 8
    with pytest.raises(TransferTooLarge):
        robot.fetch(remote(server), [FETCH_DESIRED], max_bytes=cap)
    assert robot.ref_target(DESIRED) is None
    leftovers = list((robot.path / "objects" / "pack").glob("tmp_*"))
    assert leftovers == []
    # The same fetch under a cap it fits then succeeds: nothing half-done stands in its way.
    assert robot.fetch(remote(server), [FETCH_DESIRED], max_bytes=CAP) == [DESIRED]


# --- servers that do not answer ---------------------------------------------------------------------------


@pytest.mark.parametrize("listener", BEHAVIOURS, indirect=True)
@pytest.mark.parametrize("operation", ["fetch", "push"])
def test_a_server_that_does_not_speak_ssh_fails_within_the_timeout_leaving_no_process(
    listener: Listener, robot: RobotRepository, stranger: Path, operation: str
) -> None:
    target = RobotRemote(
        listener.url(),
        SshKey("robot", stranger),
        HostKeyPolicy(pinned_sha256=(OTHER_PIN,)),
        timeout_s=TIMEOUT_S,
    )
    started = time.monotonic()
    with pytest.raises(TransportError):
        if operation == "fetch":
            robot.fetch(target, [FETCH_DESIRED], max_bytes=CAP)
        else:
            ref = refs.status_ref(ROBOT)
            commit = robot.commit_file(
                "status.json", b"{}", parent=None, message="s", author=("r", "r@x"), when=WHEN
            )
            robot.update_ref(ref, commit, robot.ref_target(ref), message="report")
            robot.push(target, [f"{ref}:{ref}"])
    assert time.monotonic() - started < GIVE_UP_WITHIN_S
    assert processes_naming(f"-p {listener.port}") == []


def test_a_closed_port_fails_at_once(robot: RobotRepository, stranger: Path) -> None:
    target = RobotRemote(closed_port_url(), SshKey("robot", stranger), timeout_s=TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(TransportError):
        robot.fetch(target, [FETCH_DESIRED], max_bytes=CAP)
    assert time.monotonic() - started < TIMEOUT_S + 3


def test_the_ssh_command_never_prompts_and_uses_only_the_robots_key(tmp_path: Path) -> None:
    command = RobotRemote(
        "ssh://robot@fleet.example.com/fleet", SshKey("robot", tmp_path / "id")
    ).ssh_command()
    assert "BatchMode=yes" in command
    assert "IdentitiesOnly=yes" in command
    assert "StrictHostKeyChecking=yes" in command
    assert "-l" not in command.split()  # the URL names the user: ssh's -l would override it


def test_a_server_that_offers_only_passwords_fails_without_a_prompt(
    passwords_only: tuple[str, str], robot: RobotRepository, stranger: Path
) -> None:
    url, fingerprint = passwords_only
    target = RobotRemote(
        url, SshKey("robot", stranger), HostKeyPolicy(pinned_sha256=(fingerprint,)), timeout_s=TIMEOUT_S
    )
    started = time.monotonic()
    with pytest.raises(TransportError):
        robot.fetch(target, [FETCH_DESIRED], max_bytes=CAP)
    assert time.monotonic() - started < GIVE_UP_WITHIN_S
