"""The server settings that make a status push cost the same at any fleet size keep git's checks.

docs/git-server.md sets ``core.alternateRefsCommand true`` on the fleet repository (and the gitolite
trigger hides every ref but the robot's own from its receive-pack): the connectivity check of a
push then walks back to the robot's own ref only, instead of from every ref of the repository
(docs/scaling.md, "Status pushes"). These tests run real ``git receive-pack`` with the settings read
from the page: the agent's own push still goes through, and a push whose objects are not all there
is still refused, its ref left where it was.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from agent.report.push import push_status
from bench.agent_poll import agent_config
from bench.status_push import robot_report
from fleetcd.compat import UTC
from fleetcd.git.refs import status_prefix, status_ref
from fleetcd.git.robotgit import RobotRepository
from tests.gitolite import server_settings

DEVICE = "amr-007"
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True
    ).stdout


def pkt(line: bytes) -> bytes:
    return b"%04x%s" % (len(line) + 4, line)


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """The fleet repository with the page's settings and the trigger's per-robot push view."""
    repo = tmp_path / "repositories" / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    for argv in server_settings():
        subprocess.run(argv, cwd=tmp_path, check=True)
    git(repo, "config", "--add", "receive.hideRefs", "refs/")
    git(repo, "config", "--add", "receive.hideRefs", f"!{status_prefix(DEVICE)}")
    return repo


def test_the_documented_settings_turn_off_the_alternate_refs_walk(server: Path) -> None:
    assert git(server, "config", "core.alternateRefsCommand").strip() == b"true"


def agent_pushes(server: Path, robot: Path, seq: int) -> str:
    config = agent_config(DEVICE, f"file://{server}", "A" * 40)
    return push_status(config, robot, robot_report(DEVICE, seq, NOW)).commit


def receive_pack(server: Path, old: str, new: str, pack: bytes) -> bytes:
    """One push spoken to ``git receive-pack`` directly: the command, then the pack as sent."""
    command = pkt(f"{old} {new} {status_ref(DEVICE)}\0report-status\n".encode())
    done = subprocess.run(
        ["git", "receive-pack", str(server)], input=command + b"0000" + pack, capture_output=True, check=False
    )
    return done.stdout


def test_a_status_push_missing_an_object_is_refused_with_alternate_refs_off(
    server: Path, tmp_path: Path
) -> None:
    robot = tmp_path / "robot.git"
    first = agent_pushes(server, robot, 1)  # the agent's real push goes through these settings
    assert git(server, "rev-parse", status_ref(DEVICE)).decode().strip() == first

    # The next report's commit and tree, packed without its status.json blob.
    repo = RobotRepository(robot)
    new = repo.commit_file(
        "status.json", b'{"seq": 2}\n', parent=first, message="two", author=("r", "r@x"), when=NOW
    )
    tree = git(robot, "rev-parse", f"{new}^{{tree}}").decode().strip()
    without_blob = git(robot, "pack-objects", "--stdout", stdin=f"{new}\n{tree}\n".encode())

    refused = receive_pack(server, first, new, without_blob)

    assert b"ng " + status_ref(DEVICE).encode() in refused
    assert git(server, "rev-parse", status_ref(DEVICE)).decode().strip() == first
    blob = git(robot, "rev-parse", f"{new}:status.json").decode().strip()
    assert subprocess.run(["git", "--git-dir", str(server), "cat-file", "-e", blob], check=False).returncode

    # The same push with the blob is accepted: what was refused was the missing object.
    whole = git(robot, "pack-objects", "--stdout", stdin=f"{new}\n{tree}\n{blob}\n".encode())
    accepted = receive_pack(server, first, new, whole)

    assert b"ok " + status_ref(DEVICE).encode() in accepted
    assert git(server, "rev-parse", status_ref(DEVICE)).decode().strip() == new


def test_the_agent_keeps_reporting_into_a_repository_with_the_documented_settings(
    server: Path, tmp_path: Path
) -> None:
    robot = tmp_path / "robot.git"
    pushed = [agent_pushes(server, robot, seq) for seq in (1, 2, 3)]

    assert git(server, "rev-list", status_ref(DEVICE)).decode().split() == pushed[::-1]
    assert git(server, "fsck", "--no-progress", "--connectivity-only") == b""
