"""Fetch and push against real git servers: bare repos on disk, git daemon, and OpenSSH on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git import refs
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.remote import Refspec, SshKey, fetch, fetch_own_ref_cli, is_local, push
from tests.conftest import require_service
from tests.gitrepos import (
    GitDaemon,
    SshServer,
    bare_repo,
    commit_files,
    free_port,
    git,
    install_hook,
    rev_parse,
    sshd_binary,
    work_repo,
)

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROBOT = Identity("dev-1", "dev-1@robots.fleet.test")
ONLY_OWN_STATUS_HOOK = """\
case "$1" in
  refs/fleetcd/status/dev-1/*) exit 0 ;;
  refs/fleetcd/status/*) echo "dev-1 may not write $1" >&2; exit 1 ;;
esac
"""
PRE_RECEIVE_REFUSES_STATUS = """\
while read old new ref; do
  case "$ref" in refs/fleetcd/status/other/*) echo "pre-receive: $ref is not yours" >&2; exit 1 ;; esac
done
"""


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """A bare server repository with one commit on main and a desired-state ref for dev-1."""
    bare = bare_repo(tmp_path / "srv" / "fleet.git")
    work = work_repo(tmp_path / "seed")
    commit_files(work, {"fleet.yaml": b"name: demo\n"})
    git("push", "--quiet", str(bare), "main", "main:" + refs.desired_ref("dev-1"), cwd=work)
    return bare


@pytest.fixture
def robot(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "robot.git"), bare=True)


def report(
    robot: pygit2.Repository, device: str, text: bytes, parents: list[pygit2.Oid] | None = None
) -> str:
    """Commit a status report to ``device``'s status ref in the robot's repository; returns the ref."""
    ref = refs.status_ref(device)
    tree = write_tree(robot, {"status.yaml": text})
    oid = commit(robot, None, tree, f"status of {device}", parents or [], ROBOT, WHEN)
    update_refs(robot, {ref: (ref_target(robot, ref), oid)})
    return ref


def oid_of(repo: Path, ref: str) -> pygit2.Oid:
    found = rev_parse(repo, ref)
    assert found is not None, f"{ref} missing in {repo}"
    return pygit2.Oid(hex=found)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_service("sshd", sshd_binary() is not None, "no sshd (Debian package openssh-server)")
    with SshServer(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def pinned(ssh: SshServer) -> dict[str, Any]:
    return {
        "credentials": SshKey(ssh.user, ssh.client_key),
        "host_keys": HostKeyPolicy(pinned_sha256=(ssh.host_fingerprint,)),
    }


# --- fetch and push on local repositories ---------------------------------------------------------


@pytest.mark.parametrize("as_url", [str, lambda p: f"file://{p}"], ids=["path", "file-url"])
def test_fetch_and_push_round_trip_to_a_bare_repo(
    server: Path, robot: pygit2.Repository, as_url: Callable[[Path], str]
) -> None:
    url = as_url(server)
    desired = refs.desired_ref("dev-1")
    got = fetch(robot, url, [f"+{desired}:{desired}"])
    assert got == {desired: oid_of(server, "main")}
    assert robot.references[desired].target == got[desired]
    ref = report(robot, "dev-1", b"state: deployed\n")
    push(robot, url, [f"{ref}:{ref}"])
    assert rev_parse(server, ref) == str(robot.references[ref].target)
    assert "remote" not in git("config", "--list", cwd=Path(robot.path))


def test_fetch_maps_wildcards_and_leaves_out_refs_the_server_lacks(
    server: Path, robot: pygit2.Repository
) -> None:
    got = fetch(robot, str(server), ["+refs/heads/*:refs/remotes/fleet/*", "+refs/fleetcd/desired/dev-9:x"])
    assert list(got) == ["refs/remotes/fleet/main"]


@pytest.mark.parametrize(
    ("spec", "name", "local"),
    [
        ("+refs/heads/*:refs/remotes/o/*", "refs/heads/main", "refs/remotes/o/main"),
        ("refs/heads/*:refs/remotes/o/*", "refs/tags/v1", None),
        ("refs/fleetcd/status/*/report:refs/s/*", "refs/fleetcd/status/dev-1/report", "refs/s/dev-1"),
        ("refs/heads/main", "refs/heads/main", "refs/heads/main"),
        ("refs/heads/main:refs/m", "refs/heads/mainline", None),
    ],
    ids=["wildcard", "wildcard-miss", "infix-wildcard", "no-destination", "exact-miss"],
)
def test_refspecs_map_remote_names_like_git(spec: str, name: str, local: str | None) -> None:
    assert Refspec.parse(spec).map(name) == local


@pytest.mark.parametrize(
    ("url", "local"),
    [("/srv/fleet.git", True), ("file:///srv/fleet.git", True), ("./fleet.git", True),
     ("git@host:fleet.git", False), ("ssh://robot@host/fleet.git", False), ("https://host/fleet.git", False),
     ("a/b:c", True)],
    ids=["path", "file-url", "relative", "scp-like", "ssh-url", "https", "slash-before-colon"],
)  # fmt: skip
def test_urls_are_classified_like_git_does(url: str, local: bool) -> None:
    assert is_local(url) is local


# --- the server says no ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [str, lambda p: f"file://{p}"], ids=["path", "file-url"])
def test_push_refused_by_an_update_hook_raises_push_rejected_naming_the_ref(
    server: Path, robot: pygit2.Repository, as_url: Callable[[Path], str]
) -> None:
    install_hook(server, "update", ONLY_OWN_STATUS_HOOK)
    own, other = report(robot, "dev-1", b"ok\n"), report(robot, "other", b"forged\n")
    with pytest.raises(PushRejected) as caught:
        push(robot, as_url(server), [f"{other}:{other}"])
    assert caught.value.ref == other
    assert "dev-1 may not write refs/fleetcd/status/other/report" in str(caught.value)
    assert rev_parse(server, other) is None
    push(robot, as_url(server), [f"{own}:{own}"])
    assert rev_parse(server, own) is not None


def test_push_refused_by_a_pre_receive_hook_over_git_protocol(server: Path, robot: pygit2.Repository) -> None:
    install_hook(server, "pre-receive", PRE_RECEIVE_REFUSES_STATUS)
    other = report(robot, "other", b"forged\n")
    with GitDaemon(server.parent) as daemon, pytest.raises(PushRejected) as caught:
        push(robot, daemon.url(server), [f"{other}:{other}"])
    assert caught.value.ref == other
    assert "is not yours" in str(caught.value)
    assert rev_parse(server, other) is None


def test_push_refused_by_an_update_hook_over_ssh(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer
) -> None:
    install_hook(server, "update", ONLY_OWN_STATUS_HOOK)
    own, other = report(robot, "dev-1", b"ok\n"), report(robot, "other", b"forged\n")
    with pytest.raises(PushRejected) as caught:
        push(robot, ssh_server.url(server), [f"{own}:{own}", f"{other}:{other}"], **pinned(ssh_server))
    assert caught.value.ref == other
    assert rev_parse(server, other) is None


@pytest.mark.parametrize("transport", ["path", "ssh"])
def test_non_fast_forward_push_is_rejected_and_a_forced_one_is_not(
    server: Path, robot: pygit2.Repository, tmp_path: Path, transport: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, Any] = {}
    url = str(server)
    if transport == "ssh":
        ssh = request.getfixturevalue("ssh_server")
        url, options = ssh.url(server), pinned(ssh)
    ref = report(robot, "dev-1", b"first\n")
    push(robot, url, [f"{ref}:{ref}"], **options)
    on_server = rev_parse(server, ref)
    elsewhere = pygit2.init_repository(str(tmp_path / "other-robot.git"), bare=True)
    report(elsewhere, "dev-1", b"diverged history\n")
    with pytest.raises(PushRejected) as caught:
        push(elsewhere, url, [f"{ref}:{ref}"], **options)
    assert caught.value.ref == ref
    assert "non-fast-forward" in str(caught.value)
    assert rev_parse(server, ref) == on_server
    push(elsewhere, url, [f"+{ref}:{ref}"], **options)
    assert rev_parse(server, ref) == str(elsewhere.references[ref].target)


@pytest.mark.parametrize("as_url", [str, lambda p: f"file://{p}"], ids=["path", "file-url"])
def test_a_missing_repository_is_a_transport_error(
    robot: pygit2.Repository, tmp_path: Path, as_url: Callable[[Path], str]
) -> None:
    url = as_url(tmp_path / "no-such.git")
    with pytest.raises(TransportError, match=r"no-such\.git"):
        fetch(robot, url, ["+refs/heads/*:refs/heads/*"])
    ref = report(robot, "dev-1", b"ok\n")
    with pytest.raises(TransportError, match=r"no-such\.git"):
        push(robot, url, [f"{ref}:{ref}"])


def test_an_unreachable_ssh_server_is_a_transport_error(robot: pygit2.Repository, tmp_path: Path) -> None:
    key = SshKey("robot", tmp_path / "no-key")
    with pytest.raises(TransportError, match=r"127\.0\.0\.1"):
        fetch(robot, f"ssh://robot@127.0.0.1:{free_port()}/fleet.git", ["refs/heads/main"], credentials=key)


# --- SSH identity and host keys -------------------------------------------------------------------


def test_fetch_over_ssh_with_the_pinned_host_key(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer
) -> None:
    desired = refs.desired_ref("dev-1")
    got = fetch(robot, ssh_server.url(server), [f"+{desired}:{desired}"], **pinned(ssh_server))
    assert got == {desired: oid_of(server, desired)}


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (HostKeyPolicy(pinned_sha256=("SHA256:" + "A" * 43,)), "not one of the pinned keys"),
        (HostKeyPolicy(), "not in ~/.ssh/known_hosts"),
    ],
    ids=["other-key-pinned", "nothing-pinned-and-unknown"],
)
def test_an_unexpected_host_key_is_refused(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer, policy: HostKeyPolicy, message: str
) -> None:
    with pytest.raises(TransportError, match=message) as caught:
        fetch(
            robot,
            ssh_server.url(server),
            ["refs/heads/main"],
            credentials=SshKey(ssh_server.user, ssh_server.client_key),
            host_keys=policy,
        )
    if policy.pinned_sha256:
        assert ssh_server.host_fingerprint in str(caught.value)


def test_insecure_mode_accepts_any_host_key_only_when_asked(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer
) -> None:
    insecure = HostKeyPolicy(insecure_accept_any_host_key=True)
    key = SshKey(ssh_server.user, ssh_server.client_key)
    assert fetch(
        robot,
        ssh_server.url(server),
        ["+refs/heads/main:refs/heads/main"],
        credentials=key,
        host_keys=insecure,
    )


def test_a_refused_ssh_key_fails_instead_of_retrying_forever(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer
) -> None:
    stranger = SshKey(ssh_server.user, ssh_server.host_key)  # a valid key the server does not authorize
    policy = HostKeyPolicy(pinned_sha256=(ssh_server.host_fingerprint,))
    with pytest.raises(TransportError, match="refused SSH key"):
        fetch(robot, ssh_server.url(server), ["refs/heads/main"], credentials=stranger, host_keys=policy)


@pytest.mark.parametrize("pin", ["SHA256:short", "MD5:aa:bb", "A" * 50], ids=["short", "md5", "no-prefix"])
def test_malformed_host_key_pins_are_refused_up_front(pin: str) -> None:
    with pytest.raises(ValueError, match="SHA256"):
        HostKeyPolicy(pinned_sha256=(pin,))


# --- the O(1) poll with the git CLI ---------------------------------------------------------------


def test_cli_v2_fetch_of_own_ref_returns_its_value_and_none_when_absent(
    server: Path, robot: pygit2.Repository
) -> None:
    desired = refs.desired_ref("dev-1")
    oid, received = fetch_own_ref_cli(f"file://{server}", desired, git_dir=Path(robot.path))
    assert oid == oid_of(server, desired)
    assert robot.references[desired].target == oid
    assert received > 0
    missing, _ = fetch_own_ref_cli(f"file://{server}", refs.desired_ref("dev-2"), git_dir=Path(robot.path))
    assert missing is None


def test_cli_v2_poll_over_ssh_costs_the_same_however_many_robots_share_the_repo(
    server: Path, robot: pygit2.Repository, ssh_server: SshServer
) -> None:
    desired = refs.desired_ref("dev-1")
    key = SshKey(ssh_server.user, ssh_server.client_key)

    def poll() -> int:
        _, received = fetch_own_ref_cli(
            ssh_server.url(server),
            desired,
            git_dir=Path(robot.path),
            credentials=key,
            insecure_accept_any_host_key=True,
        )
        return received

    poll()  # first fetch downloads the objects; the no-op polls below only ask "still the same?"
    alone = poll()
    target = rev_parse(server, desired)
    lines = "".join(f"create {refs.desired_ref(f'dev-{n:04d}')} {target}\n" for n in range(2, 502))
    git_stdin(server, lines)
    assert poll() == alone


def git_stdin(repo: Path, text: str) -> None:
    import subprocess

    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input=text, text=True, check=True)


@pytest.mark.parametrize(
    ("url", "refspec"),
    [("--upload-pack=touch /tmp/pwned", "refs/heads/main"), ("/srv/fleet.git", "--force"),
     ("/srv/fleet.git", "refs/heads/a b"), ("", "refs/heads/main")],
    ids=["url-option", "refspec-option", "refspec-space", "empty-url"],
)  # fmt: skip
def test_urls_and_refspecs_git_would_read_as_options_are_refused(
    robot: pygit2.Repository, url: str, refspec: str
) -> None:
    for operation in (fetch, push):
        with pytest.raises(ValueError):
            operation(robot, url, [refspec])
