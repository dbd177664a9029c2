"""fleetcd/git/remote.py over SSH when something is wrong: the real gitolite3 behind OpenSSH on loopback
(tests/gitolite.py), and TCP listeners that misbehave as a broken or hostile host would.

What must hold for every operation (fetch, list, push, the CLI poll): a host key other than the
pinned one is refused before a session starts (gitolite never sees the login, nothing is read or
written); a key the server does not know is refused once, not retried forever; an unreachable or
silent server is a TransportError within the timeout, never a hang; and a push the client can tell
is wrong (stale lease, atomic or wildcard over SSH) is refused before anything is sent.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.errors import PushRejected, SetupError, TransportError
from fleetcd.git import refs
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.remote import SshKey, TransferTooLarge, fetch, fetch_own_ref_cli, list_remote, push
from tests.gitolite import CONTROLLER, Gitolite
from tests.gitrepos import git, make_host_key, rev_parse
from tests.sshfaults import (
    BEHAVIOURS,
    BIG_FILE_BYTES,
    OTHER_PIN,
    ROBOT,
    Listener,
    closed_port_url,
    gitolite_log,
    known_hosts,
)
from tests.sshfaults import listener as listener  # fixtures
from tests.sshfaults import passwords_only as passwords_only
from tests.sshfaults import server as server
from tests.sshfaults import stranger as stranger

WHEN = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
TIMEOUT_S = 1.0
# libgit2's connect and read timeouts, plus a margin for a busy machine: never a hang.
GIVE_UP_WITHIN_S = 3 * TIMEOUT_S + 5


@pytest.fixture
def local(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "local.git"), bare=True)


def key(server: Gitolite, user: str) -> SshKey:
    return SshKey(server.user, server.key(user))


def pin(fingerprint: str) -> HostKeyPolicy:
    return HostKeyPolicy(pinned_sha256=(fingerprint,))


def status_commit(repo: pygit2.Repository, device: str, text: bytes) -> str:
    """A new status commit for ``device`` in ``repo``, on top of what it held; returns the ref."""
    ref = refs.status_ref(device)
    before = ref_target(repo, ref)
    tree = write_tree(repo, {"status.json": text})
    oid = commit(
        repo, None, tree, f"status of {device}", [before] if before else [], Identity(device, "r@x"), WHEN
    )
    update_refs(repo, {ref: (before, oid)})
    return ref


def fetch_status(local: pygit2.Repository, server: Gitolite, device: str) -> str:
    """Bring ``device``'s status ref from the server's disk into ``local``, without a session."""
    ref = refs.status_ref(device)
    fetch(local, str(server.repo_path()), [f"+{ref}:{ref}"])
    return ref


# --- host keys --------------------------------------------------------------------------------------


Operation = Callable[[pygit2.Repository, Gitolite, HostKeyPolicy], object]


def _fetch(local: pygit2.Repository, server: Gitolite, policy: HostKeyPolicy) -> object:
    return fetch(
        local,
        server.url(),
        ["+refs/heads/*:refs/heads/*"],
        credentials=key(server, CONTROLLER),
        host_keys=policy,
    )


def _list(local: pygit2.Repository, server: Gitolite, policy: HostKeyPolicy) -> object:
    return list_remote(local, server.url(), ["refs/"], credentials=key(server, CONTROLLER), host_keys=policy)


def _push(local: pygit2.Repository, server: Gitolite, policy: HostKeyPolicy) -> object:
    fetch_status(local, server, ROBOT)
    ref = status_commit(local, ROBOT, b'{"seq": 1}')
    push(local, server.url(), [f"{ref}:{ref}"], credentials=key(server, ROBOT), host_keys=policy)
    return ref


OPERATIONS = [
    pytest.param(_fetch, id="fetch"),
    pytest.param(_list, id="list"),
    pytest.param(_push, id="push"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_ssh_host_key_mismatch_refused_before_any_ref_is_read(
    server: Gitolite, local: pygit2.Repository, operation: Operation
) -> None:
    status_before = rev_parse(server.repo_path(), refs.status_ref(ROBOT))
    log_before = gitolite_log(server)
    with pytest.raises(TransportError) as caught:
        operation(local, server, pin(OTHER_PIN))
    # The refusal names the key the server showed, so an operator can tell a rotation from an attack.
    assert server.host_fingerprint in str(caught.value)
    assert gitolite_log(server) == log_before, "a session was opened with a host that failed the pin"
    assert [r for r in local.references if r.startswith("refs/heads/")] == []
    assert rev_parse(server.repo_path(), refs.status_ref(ROBOT)) == status_before


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_same_operations_with_the_right_pin_reach_gitolite(
    server: Gitolite, local: pygit2.Repository, operation: Operation
) -> None:
    log_before = gitolite_log(server)
    operation(local, server, pin(server.host_fingerprint))
    assert len(gitolite_log(server)) > len(log_before)


def test_one_matching_pin_among_several_is_enough(server: Gitolite, local: pygit2.Repository) -> None:
    # A rotation publishes the new host key's pin beside the old one; either must do.
    policy = HostKeyPolicy(pinned_sha256=(OTHER_PIN, server.host_fingerprint))
    assert "refs/heads/main" in _list(local, server, policy)  # type: ignore[operator]


# --- client keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["fetch", "list", "push"])
def test_a_key_gitolite_does_not_know_is_refused_once_and_nothing_moves(
    server: Gitolite, local: pygit2.Repository, stranger: Path, operation: str
) -> None:
    credentials = SshKey(server.user, stranger)
    policy = pin(server.host_fingerprint)
    status_before = rev_parse(server.repo_path(), refs.status_ref(ROBOT))
    started = time.monotonic()
    with pytest.raises(TransportError, match="refused SSH key"):
        if operation == "fetch":
            fetch(
                local, server.url(), ["+refs/heads/*:refs/heads/*"], credentials=credentials, host_keys=policy
            )
        elif operation == "list":
            list_remote(local, server.url(), ["refs/"], credentials=credentials, host_keys=policy)
        else:
            ref = status_commit(local, ROBOT, b'{"seq": 2}')
            push(local, server.url(), [f"{ref}:{ref}"], credentials=credentials, host_keys=policy)
    assert time.monotonic() - started < GIVE_UP_WITHIN_S  # one refusal, not libgit2 asking forever
    assert rev_parse(server.repo_path(), refs.status_ref(ROBOT)) == status_before


def test_ssh_without_a_configured_key_is_refused_naming_the_server(
    server: Gitolite, local: pygit2.Repository
) -> None:
    with pytest.raises(TransportError, match="no SSH key is configured") as caught:
        fetch(local, server.url(), ["refs/heads/main"], host_keys=pin(server.host_fingerprint))
    assert "127.0.0.1" in str(caught.value)


def test_a_private_key_file_that_is_missing_is_a_transport_error(
    server: Gitolite, local: pygit2.Repository, tmp_path: Path
) -> None:
    missing = SshKey(server.user, tmp_path / "no-such-key")
    with pytest.raises(TransportError):
        fetch(
            local,
            server.url(),
            ["refs/heads/main"],
            credentials=missing,
            host_keys=pin(server.host_fingerprint),
        )


def test_a_robot_key_pushing_main_is_refused_naming_the_ref(
    server: Gitolite, local: pygit2.Repository
) -> None:
    robot_key, policy = key(server, ROBOT), pin(server.host_fingerprint)
    main_before = rev_parse(server.repo_path(), "refs/heads/main")
    fetch(
        local,
        server.url(),
        ["+refs/heads/main:refs/heads/main"],
        credentials=key(server, CONTROLLER),
        host_keys=policy,
    )
    parent = ref_target(local, "refs/heads/main")
    assert parent is not None
    tree = write_tree(local, {"fleet.yaml": b"name: taken-over\n"})
    oid = commit(local, None, tree, "take over", [parent], Identity(ROBOT, "r@x"), WHEN)
    update_refs(local, {"refs/heads/main": (parent, oid)})
    with pytest.raises(PushRejected) as caught:
        push(
            local, server.url(), ["refs/heads/main:refs/heads/main"], credentials=robot_key, host_keys=policy
        )
    assert caught.value.ref == "refs/heads/main"
    assert rev_parse(server.repo_path(), "refs/heads/main") == main_before


# --- pushes refused before anything is sent -----------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "refusal"),
    [("stale", "stale info"), ("absent", "no such ref"), ("current", None)],
    ids=["stale", "absent-but-present", "current"],
)
def test_a_status_push_over_ssh_moves_the_ref_only_under_a_lease_matching_the_server(
    server: Gitolite, local: pygit2.Repository, lease: str, refusal: str | None
) -> None:
    ref = fetch_status(local, server, ROBOT)
    on_server = rev_parse(server.repo_path(), ref)
    status_commit(local, ROBOT, f'{{"lease": "{lease}"}}'.encode())
    # stale: what this writer last saw, but the server has moved on since
    expected = {"stale": "1" * 40, "absent": None, "current": on_server}[lease]

    def send() -> None:
        push(
            local, server.url(), [f"{ref}:{ref}"], credentials=key(server, ROBOT),
            host_keys=pin(server.host_fingerprint), leases={ref: expected},
        )  # fmt: skip

    if refusal is None:
        send()
        assert rev_parse(server.repo_path(), ref) == str(local.references[ref].target)
        return
    with pytest.raises(PushRejected, match=refusal) as caught:
        send()
    assert caught.value.ref == ref
    assert rev_parse(server.repo_path(), ref) == on_server


def test_a_non_fast_forward_status_push_over_ssh_is_refused_naming_the_ref(
    server: Gitolite, local: pygit2.Repository
) -> None:
    ref = fetch_status(local, server, ROBOT)
    on_server = rev_parse(server.repo_path(), ref)
    tree = write_tree(local, {"status.json": b'{"seq": 0}'})
    orphan = commit(local, None, tree, "rewritten history", [], Identity(ROBOT, "r@x"), WHEN)
    update_refs(local, {ref: (ref_target(local, ref), orphan)})
    with pytest.raises(PushRejected, match="non-fast-forward") as caught:
        push(
            local,
            server.url(),
            [f"{ref}:{ref}"],
            credentials=key(server, ROBOT),
            host_keys=pin(server.host_fingerprint),
        )
    assert caught.value.ref == ref
    assert rev_parse(server.repo_path(), ref) == on_server


@pytest.mark.parametrize(
    ("refspecs", "atomic"),
    [(["refs/fleetcd/status/amr-001/report:refs/fleetcd/status/amr-001/report"], True),
     (["refs/fleetcd/status/*:refs/fleetcd/status/*"], False)],
    ids=["atomic", "wildcard"],
)  # fmt: skip
def test_atomic_or_wildcard_pushes_over_ssh_are_refused_without_connecting(
    local: pygit2.Repository, refspecs: list[str], atomic: bool
) -> None:
    url = closed_port_url()  # connecting would fail differently
    with pytest.raises(ValueError, match="local repository"):
        push(local, url, refspecs, atomic=atomic)


# --- the transfer cap -----------------------------------------------------------------------------------


def test_a_fetch_over_ssh_larger_than_its_cap_is_aborted_and_names_the_url(
    server: Gitolite, local: pygit2.Repository
) -> None:
    with pytest.raises(TransferTooLarge) as caught:
        fetch(
            local, server.url(), ["+refs/heads/main:refs/heads/main"], credentials=key(server, CONTROLLER),
            host_keys=pin(server.host_fingerprint), max_bytes=BIG_FILE_BYTES // 4,
        )  # fmt: skip
    assert caught.value.limit_bytes == BIG_FILE_BYTES // 4
    assert caught.value.seen_bytes > caught.value.limit_bytes
    assert "refs/heads/main" not in local.references


# --- servers that do not answer ---------------------------------------------------------------------------


def _libgit2_fetch(local: pygit2.Repository, url: str, credentials: SshKey) -> Any:
    return fetch(
        local,
        url,
        ["refs/heads/main"],
        credentials=credentials,
        host_keys=pin(OTHER_PIN),
        timeout_s=TIMEOUT_S,
    )


def _libgit2_list(local: pygit2.Repository, url: str, credentials: SshKey) -> Any:
    return list_remote(local, url, ["refs/"], credentials=credentials, timeout_s=TIMEOUT_S)


def _libgit2_push(local: pygit2.Repository, url: str, credentials: SshKey) -> Any:
    ref = status_commit(local, ROBOT, b'{"seq": 1}')
    return push(local, url, [f"{ref}:{ref}"], credentials=credentials, timeout_s=TIMEOUT_S)


def _cli_poll(local: pygit2.Repository, url: str, credentials: SshKey) -> Any:
    return fetch_own_ref_cli(
        url, refs.desired_ref(ROBOT), git_dir=Path(local.path), credentials=credentials,
        insecure_accept_any_host_key=True, timeout_s=TIMEOUT_S,
    )  # fmt: skip


@pytest.mark.parametrize("listener", BEHAVIOURS, indirect=True)
@pytest.mark.parametrize(
    "operation",
    [_libgit2_fetch, _libgit2_list, _libgit2_push, _cli_poll],
    ids=["fetch", "list", "push", "cli-poll"],
)
def test_a_server_that_does_not_speak_ssh_is_a_transport_error_within_the_timeout(
    listener: Listener, local: pygit2.Repository, stranger: Path, operation: Callable[..., Any]
) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        operation(local, listener.url(), SshKey("robot", stranger))
    assert time.monotonic() - started < GIVE_UP_WITHIN_S
    assert str(listener.port) in str(caught.value) or "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    "operation", [_libgit2_fetch, _libgit2_push, _cli_poll], ids=["fetch", "push", "cli-poll"]
)
def test_a_closed_port_is_a_transport_error_at_once(
    local: pygit2.Repository, stranger: Path, operation: Callable[..., Any]
) -> None:
    url = closed_port_url()
    started = time.monotonic()
    with pytest.raises(TransportError):
        operation(local, url, SshKey("robot", stranger))
    assert time.monotonic() - started < TIMEOUT_S + 2


# --- the CLI poll (OpenSSH itself checks the host against known_hosts) -------------------------------


def robot_fetch_repo(tmp_path: Path) -> Path:
    path = tmp_path / "robot.git"
    git("init", "--quiet", "--bare", str(path))
    return path


def test_the_cli_poll_with_the_servers_known_host_reads_the_robots_own_desired_ref(
    server: Gitolite, tmp_path: Path
) -> None:
    git_dir = robot_fetch_repo(tmp_path)
    value, received = fetch_own_ref_cli(
        server.url(), refs.desired_ref(ROBOT), git_dir=git_dir, credentials=key(server, ROBOT),
        known_hosts=known_hosts(server, tmp_path / "known_hosts"),
    )  # fmt: skip
    # Through gitolite's namespace trigger: the robot's own view of its desired ref.
    on_server = rev_parse(server.repo_path(), refs.namespaced(ROBOT, refs.desired_ref(ROBOT)))
    assert value is not None and str(value) == on_server
    assert received > 0


def test_the_cli_poll_refuses_a_host_whose_key_known_hosts_does_not_hold(
    server: Gitolite, tmp_path: Path
) -> None:
    other = tmp_path / "other_host_key"
    make_host_key(other)
    git_dir = robot_fetch_repo(tmp_path)
    log_before = gitolite_log(server)
    with pytest.raises(TransportError):
        fetch_own_ref_cli(
            server.url(), refs.status_ref(ROBOT), git_dir=git_dir, credentials=key(server, ROBOT),
            known_hosts=known_hosts(server, tmp_path / "known_hosts", other.with_name(other.name + ".pub")),
        )  # fmt: skip
    assert gitolite_log(server) == log_before
    assert subprocess.run(["git", "--git-dir", str(git_dir), "show-ref"], capture_output=True).stdout == b""


def test_the_cli_poll_refuses_an_empty_known_hosts_rather_than_trusting_on_first_use(
    server: Gitolite, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(TransportError):
        fetch_own_ref_cli(
            server.url(), refs.status_ref(ROBOT), git_dir=robot_fetch_repo(tmp_path),
            credentials=key(server, ROBOT), known_hosts=empty,
        )  # fmt: skip
    assert empty.read_text(encoding="utf-8") == "", "OpenSSH added the unknown host to the file"


def test_the_cli_poll_with_a_key_gitolite_does_not_know_is_refused(
    server: Gitolite, tmp_path: Path, stranger: Path
) -> None:
    git_dir = robot_fetch_repo(tmp_path)
    with pytest.raises(TransportError):
        fetch_own_ref_cli(
            server.url(), refs.desired_ref(ROBOT), git_dir=git_dir,
            credentials=SshKey(server.user, stranger), known_hosts=known_hosts(server, tmp_path / "kh"),
        )  # fmt: skip
    assert subprocess.run(["git", "--git-dir", str(git_dir), "show-ref"], capture_output=True).stdout == b""


def test_known_hosts_without_a_key_is_a_setup_error_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="known_hosts"):
        fetch_own_ref_cli(
            "ssh://robot@127.0.0.1:1/fleet", refs.desired_ref(ROBOT), git_dir=tmp_path,
            known_hosts=tmp_path / "known_hosts",
        )  # fmt: skip


@pytest.mark.parametrize(
    "ref",
    ["refs/fleetcd/desired/a b", "HEAD", "refs/heads/*", "refs/heads/x:refs/heads/y", "--upload-pack=sh"],
    ids=["space", "not-under-refs", "wildcard", "refspec", "option"],
)
def test_the_cli_poll_refuses_a_ref_that_is_not_one_full_name(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ValueError, match="not a full ref name"):
        fetch_own_ref_cli("ssh://robot@127.0.0.1:1/fleet", ref, git_dir=tmp_path)


# --- a server that takes no keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation", [_libgit2_fetch, _libgit2_list, _cli_poll], ids=["fetch", "list", "cli-poll"]
)
def test_a_server_that_offers_only_passwords_is_refused_without_a_prompt(
    passwords_only: tuple[str, str], local: pygit2.Repository, stranger: Path, operation: Callable[..., Any]
) -> None:
    url, _ = passwords_only
    started = time.monotonic()
    with pytest.raises(TransportError):
        operation(local, url, SshKey("robot", stranger))
    assert time.monotonic() - started < GIVE_UP_WITHIN_S


def test_libgit2_says_the_server_offers_no_key_authentication(
    passwords_only: tuple[str, str], local: pygit2.Repository, stranger: Path
) -> None:
    url, fingerprint = passwords_only
    with pytest.raises(TransportError, match="offers no SSH key authentication"):
        fetch(
            local, url, ["refs/heads/main"], credentials=SshKey("robot", stranger), host_keys=pin(fingerprint)
        )
