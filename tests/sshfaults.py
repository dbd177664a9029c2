"""Servers that fail in the ways SSH transports must survive, shared by the SSH fault tests
(tests/test_git_remote_ssh_faults.py for the controller's libgit2 transport,
tests/test_robotgit_ssh_faults.py for the agent's git CLI transport).

``server``: one gitolite3 behind OpenSSH on loopback (tests/gitolite.py) per module, holding main (a
commit with a 2 MiB file), amr-001's status ref and its desired ref in its namespace. ``stranger``:
a valid key gitolite was never given. :class:`Listener`: a TCP port that accepts and then stays
silent, sends a banner and stops, closes at once, or sends garbage. :func:`gitolite_log` tells
whether gitolite ran a session at all.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcd.git import refs
from tests.conftest import require_service
from tests.gitolite import Gitolite, GitoliteUnavailable
from tests.gitrepos import (
    bare_repo,
    commit_files,
    free_port,
    git,
    make_host_key,
    run_sshd,
    ssh_keygen,
    sshd_binary,
    work_repo,
)

ROBOT = "amr-001"
OTHER = "amr-002"
BIG_FILE_BYTES = 2 * 1024 * 1024
OTHER_PIN = "SHA256:" + "A" * 43
BEHAVIOURS = ["silent", "banner-then-silence", "close", "garbage"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitolite]:
    """gitolite with main (a commit carrying a 2 MiB file), a status ref for amr-001 and its
    desired ref in its namespace (what the robot sees as ``refs/fleetcd/desired/amr-001``)."""
    seed = work_repo(tmp_path_factory.mktemp("seed") / "work")
    commit_files(seed, {"fleet.yaml": b"name: demo\n", "big.bin": os.urandom(BIG_FILE_BYTES)})
    git("update-ref", refs.status_ref(ROBOT), "HEAD", cwd=seed)
    git("update-ref", refs.namespaced(ROBOT, refs.desired_ref(ROBOT)), "HEAD", cwd=seed)
    source = bare_repo(tmp_path_factory.mktemp("source") / "fleet.git")
    git("push", "--quiet", str(source), "refs/*:refs/*", cwd=seed)
    try:
        running = Gitolite(tmp_path_factory.mktemp("gitolite"), [ROBOT, OTHER]).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        running.load(source)
        yield running
    finally:
        running.__exit__(None, None, None)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid ed25519 key gitolite has never been given."""
    path = tmp_path_factory.mktemp("stranger") / "id_ed25519"
    ssh_keygen(path, "stranger")
    return path


def gitolite_log(server: Gitolite) -> str:
    """Every line gitolite has logged: one per session it ran (a login it never saw adds none)."""
    logs = sorted((server.home / ".gitolite" / "logs").glob("gitolite-*.log"))
    return "".join(path.read_text(encoding="utf-8") for path in logs)


class Listener:
    """A TCP listener on loopback that accepts and then ``behaviour``s each connection."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.behaviour == "close":
                conn.close()
            elif self.behaviour == "garbage":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 4096)
                self.held.append(conn)
            elif self.behaviour == "banner-then-silence":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                self.held.append(conn)
            else:  # silent: a host that accepts and never speaks
                self.held.append(conn)

    def url(self) -> str:
        return f"ssh://robot@127.0.0.1:{self.port}/fleet"

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    running = Listener(request.param)
    yield running
    running.close()


def closed_port_url() -> str:
    """An ssh:// URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"ssh://robot@127.0.0.1:{probe.getsockname()[1]}/fleet"


def known_hosts(server: Gitolite, path: Path, host_key_pub: Path | None = None) -> Path:
    """A known_hosts file vouching for ``host_key_pub`` (default: the server's own) at its address."""
    line = (host_key_pub or server.host_key.with_name(server.host_key.name + ".pub")).read_text().split()
    path.write_text(f"[127.0.0.1]:{server.port} {line[0]} {line[1]}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def passwords_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(an ssh:// URL, its host key's fingerprint) of an sshd that takes passwords and no keys."""
    binary = sshd_binary()
    require_service("sshd", binary is not None, "no sshd (Debian package openssh-server)")
    assert binary is not None
    folder = tmp_path_factory.mktemp("sshd-passwords")
    host_key = folder / "ssh_host_ed25519_key"
    fingerprint = make_host_key(host_key)
    port = free_port()
    process = run_sshd(
        binary, folder, port, host_key, folder / "authorized_keys", root_login="yes", passwords_only=True
    )
    try:
        yield f"ssh://robot@127.0.0.1:{port}/fleet", fingerprint
    finally:
        process.terminate()
        process.wait(timeout=10)
