"""How a robot reaches its server and reads its desired-state commit (agent.sync.desired), with the git CLI.

``connection_of`` turns agent.yaml into the SSH identity and host key pin the robot uses (a key that
is configured but missing must stop it with a clear setup error, not a confusing auth failure);
``desired_refspecs`` must fetch the robot's own names only, never another robot's; ``read_desired``
reads the four files of a commit from a real bare repository, refusing a missing or oversized file
from its object header before reading it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.cli import load_config
from agent.sync.desired import MAX_TRANSFER_BYTES, connection_of, desired_refspecs, read_desired
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, BundleRejected
from fleetcd.desired.bundle import MAX_ROOT_BYTES
from fleetcd.desired.chain import TRUST_FILE
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.git.knownhosts import HostKeyPolicy
from fleetcd.git.refs import desired_names
from fleetcd.git.robotgit import RobotRepository
from fleetcd.models.agent import AgentConfig
from fleetcd.reasons import Reason
from fleetcd.wire import DESIRED_FILE_CAPS
from tests.gitrepos import GIT_ENV, bare_repo, git

FPR = "A" * 40
PIN = "SHA256:" + "b" * 43
FOUR = {
    BUNDLE_FILE: b'{"b":1}',
    ROOT_FILE: b'{"r":1}',
    ROOT_SIGNATURE_FILE: b"-----SIG-----",
    PROOF_FILE: b"[]",
    TRUST_FILE: b'{"t":1}',
}


def config(**remote: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "amr-7",
            "remote": {"url": "/srv/fleet.git", **remote},
            "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": [FPR]}},
        }
    )


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return path


# --- connection_of ------------------------------------------------------------------------------------


def test_a_local_server_needs_no_credentials_even_with_a_key_configured(key: Path) -> None:
    for url in ("/srv/fleet.git", "file:///srv/fleet.git"):
        connection = connection_of(config(url=url, ssh_key=str(key)))
        assert connection.credentials is None and connection.url == url


def test_an_ssh_server_uses_the_key_and_the_device_as_user(key: Path) -> None:
    connection = connection_of(config(url="ssh://git.fleet/fleet.git", ssh_key=str(key)))
    assert connection.credentials is not None
    assert (connection.credentials.username, connection.credentials.private_key) == ("amr-7", key)


def test_an_explicit_ssh_user_wins_over_the_device(key: Path) -> None:
    connection = connection_of(config(url="git@git.fleet:fleet.git", ssh_key=str(key), ssh_user="robot"))
    assert connection.credentials is not None and connection.credentials.username == "robot"


def test_a_configured_key_that_is_missing_is_a_setup_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent_key"
    with pytest.raises(SetupError) as caught:
        connection_of(config(url="ssh://git.fleet/fleet.git", ssh_key=str(missing)))
    assert str(missing) in str(caught.value) and "remote.ssh_key" in str(caught.value)


def test_a_key_path_that_is_a_directory_is_missing_too(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="does not exist"):
        connection_of(config(url="ssh://git.fleet/fleet.git", ssh_key=str(tmp_path)))


def test_an_ssh_server_without_a_key_uses_the_agent_defaults() -> None:
    connection = connection_of(config(url="ssh://git.fleet/fleet.git"))
    assert connection.credentials is None


def test_a_host_key_pin_becomes_the_only_accepted_key(key: Path) -> None:
    connection = connection_of(config(url="ssh://git.fleet/fleet.git", ssh_key=str(key), host_key_sha256=PIN))
    assert connection.host_keys == HostKeyPolicy(pinned_sha256=(PIN,))
    assert connection_of(config(url="ssh://git.fleet/fleet.git")).host_keys is None


@pytest.mark.parametrize(
    "pin",
    ["MD5:aa:bb", "SHA256:abc", "SHA256:" + "b" * 42, "SHA256:" + "b" * 44, "sha256:" + "b" * 43, PIN + ",x"],
    ids=["md5", "short", "one-short", "one-long", "lowercase-prefix", "two-pins"],
)
def test_a_malformed_primary_host_key_pin_is_refused_by_agent_yaml_naming_the_field(
    tmp_path: Path, pin: str
) -> None:
    """The primary's pin is checked when agent.yaml loads, like a replica's: not at the first poll."""
    path = tmp_path / "agent.yaml"
    path.write_text(
        "apiVersion: fleetcd.dev/v1\nkind: AgentConfig\ndevice: amr-7\n"
        f"remote:\n  url: ssh://git.fleet/fleet.git\n  host_key_sha256: '{pin}'\n"
        f"trust:\n  keys_dir: /etc/fleetcd/keys\n  root:\n    keys: ['{FPR}']\n"
    )
    with pytest.raises(InvalidContent) as refused:
        load_config(path)
    assert any(
        d.file == str(path) and d.field == "remote.host_key_sha256" for d in refused.value.diagnostics
    ), refused.value.diagnostics


def test_a_malformed_pin_that_reaches_the_connection_is_still_refused_before_any_connection() -> None:
    """Defence in depth: a model built without validation cannot smuggle a pin into ssh's options."""
    valid = config(url="ssh://git.fleet/fleet.git")
    remote = valid.remote.model_copy(update={"host_key_sha256": "MD5:aa:bb"})
    bad = valid.model_copy(update={"remote": remote})
    with pytest.raises(ValueError, match="MD5:aa:bb"):
        connection_of(bad)


def test_the_timeout_comes_from_agent_yaml() -> None:
    assert connection_of(config(timeout_seconds=17)).timeout_s == 17.0
    remote = connection_of(config(timeout_seconds=17)).remote()
    assert remote.url == "/srv/fleet.git"


# --- desired_refspecs over a real server --------------------------------------------------------------


def test_the_refspecs_name_both_layouts_for_this_robot_only() -> None:
    specs = desired_refspecs("amr-7")
    physical, flat = desired_names("amr-7")
    assert specs[1] == f"+{flat}:{flat}"
    source = specs[0][1:].split(":", 1)[0]
    assert source.replace("*", "refs", 1) == physical, "the pattern covers the namespaced name"
    assert source.startswith("refs/namespaces/amr-7/")


def make_commit(server: Path, message: str) -> str:
    return desired_commit(server, FOUR, message=message)


def test_fetching_with_the_refspecs_brings_this_robots_refs_and_no_other_robots(tmp_path: Path) -> None:
    server = bare_repo(tmp_path / "server.git")
    commit = make_commit(server, "desired")
    planted = {
        "refs/namespaces/amr-7/refs/fleetcd/desired/amr-7": commit,
        "refs/fleetcd/desired/amr-7": commit,
        "refs/namespaces/amr-70/refs/fleetcd/desired/amr-70": commit,
        "refs/fleetcd/desired/amr-70": commit,
        "refs/namespaces/amr-8/refs/fleetcd/desired/amr-7": commit,
        "refs/fleetcd/desired/amr-8": commit,
    }
    for ref, target in planted.items():
        git("update-ref", ref, target, cwd=server)
    robot = bare_repo(tmp_path / "robot.git")
    git("fetch", "--quiet", str(server), *desired_refspecs("amr-7"), cwd=robot)
    fetched = set(git("for-each-ref", "--format=%(refname)", cwd=robot).split())
    assert fetched == {"refs/namespaces/amr-7/refs/fleetcd/desired/amr-7", "refs/fleetcd/desired/amr-7"}


def test_a_fetch_when_the_server_has_neither_name_is_no_error(tmp_path: Path) -> None:
    server = bare_repo(tmp_path / "server.git")
    git("update-ref", "refs/heads/main", make_commit(server, "main"), cwd=server)
    robot = bare_repo(tmp_path / "robot.git")
    specs = desired_refspecs("amr-7")
    done = subprocess.run(
        ["git", "fetch", "--quiet", str(server), specs[0]],
        cwd=robot,
        capture_output=True,
        text=True,
        env=GIT_ENV,
    )
    assert done.returncode == 0, "the namespaced pattern may match nothing"


def test_the_transfer_cap_is_the_files_caps_plus_small_slack() -> None:
    caps = sum(cap for _, cap in DESIRED_FILE_CAPS)
    assert caps < MAX_TRANSFER_BYTES <= caps + 128 * 1024


# --- read_desired from a real bare repository ---------------------------------------------------------


def desired_commit(
    repo: Path, files: dict[str, bytes], mode: str = "100644", message: str = "desired"
) -> str:
    lines = []
    for name, data in files.items():
        blob = (
            subprocess.run(
                ["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        lines.append(f"{mode} blob {blob}\t{name}\n")
    tree = subprocess.run(
        ["git", "mktree"], cwd=repo, input="".join(lines), capture_output=True, text=True, check=True
    ).stdout.strip()
    return git("commit-tree", tree, "-m", message, cwd=repo).strip()


@pytest.fixture
def robot(tmp_path: Path) -> RobotRepository:
    return RobotRepository(tmp_path / "robot.git")


def test_the_five_files_are_read_byte_for_byte(robot: RobotRepository) -> None:
    commit = desired_commit(robot.path, FOUR)
    files = read_desired(robot, commit)
    assert (files.commit, files.bundle, files.root, files.root_signature, files.proof, files.trust) == (
        commit,
        FOUR[BUNDLE_FILE],
        FOUR[ROOT_FILE],
        FOUR[ROOT_SIGNATURE_FILE],
        FOUR[PROOF_FILE],
        FOUR[TRUST_FILE],
    )


def test_a_ref_name_is_read_as_its_commit(robot: RobotRepository) -> None:
    commit = desired_commit(robot.path, FOUR)
    git("update-ref", "refs/fleetcd/desired/amr-7", commit, cwd=robot.path)
    assert read_desired(robot, "refs/fleetcd/desired/amr-7").commit == commit


@pytest.mark.parametrize("missing", [BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE, TRUST_FILE])
def test_a_commit_missing_one_file_is_refused_naming_it(robot: RobotRepository, missing: str) -> None:
    commit = desired_commit(robot.path, {k: v for k, v in FOUR.items() if k != missing})
    with pytest.raises(BundleRejected) as caught:
        read_desired(robot, commit)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.reason) == (missing, Reason.BUNDLE_INVALID)


def test_an_oversized_file_is_refused_from_its_header(robot: RobotRepository) -> None:
    commit = desired_commit(robot.path, {**FOUR, ROOT_FILE: b" " * (MAX_ROOT_BYTES + 1)})
    with pytest.raises(BundleRejected) as caught:
        read_desired(robot, commit)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.reason) == (ROOT_FILE, Reason.TOO_LARGE)


def test_something_that_is_not_a_commit_here_is_a_setup_error(robot: RobotRepository) -> None:
    with pytest.raises(SetupError, match="is not a commit here"):
        read_desired(robot, "0" * 40)
    with pytest.raises(SetupError, match="is not a commit here"):
        read_desired(robot, "refs/fleetcd/desired/nobody")
