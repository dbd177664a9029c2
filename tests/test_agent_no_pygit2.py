"""The robot agent runs without pygit2 (Python 3.10 robots have no usable wheel): it speaks to its git
server through the ``git`` CLI (:mod:`fleetcd.git.robotgit`).

* every module under ``agent/`` imports, and a real ``fleetcd-agent once`` converges and reports,
  in an interpreter where ``import pygit2`` fails;
* the robot's fetch from a local-path server receives only its own slice of the repository, however
  big ``main`` is (libgit2's local transport sent the whole repository; issue 10 item 6);
* a hostile server streaming an endless pack is cut off at the transfer cap: git cannot write a
  larger pack file (RLIMIT_FSIZE), and nothing it wrote stays behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from agent.sync.desired import MAX_TRANSFER_BYTES, fetch_desired
from controller.ingest.reports import read_reports
from fleetcd.desired import BUNDLE_FILE, BundleRejected
from fleetcd.git.knownhosts import fingerprint, known_hosts_command
from fleetcd.git.refs import desired_ref, status_ref
from fleetcd.models.agent import AgentConfig
from fleetcd.reasons import Reason
from tests.gitrepos import GIT_ENV, rev_parse
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, DEVICE, AgentWorld
from tests.sim.provision import ROBOT, provisioned_fleet

ROOT = Path(__file__).resolve().parent.parent
# An interpreter in which pygit2 cannot be imported, whatever is installed: None in sys.modules
# makes every ``import pygit2`` raise ImportError.
NO_PYGIT2 = "import sys; sys.modules['pygit2'] = None\n"
BIG_FILE_BYTES = 8 * 1024 * 1024  # above the fetch cap (the five desired files plus slack)
ROBOT_SLICE_MAX_BYTES = 64 * 1024  # the robot's commit: four small files, a tree and a commit


def without_pygit2(code: str, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_PYGIT2 + code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def stored_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "objects").rglob("*") if p.is_file())


# --- no pygit2 anywhere on the robot -----------------------------------------------------------------


def test_every_agent_module_imports_with_pygit2_unavailable() -> None:
    code = (
        "import importlib, pkgutil, agent, agent.cli\n"
        "names = [m.name for m in pkgutil.walk_packages(agent.__path__, 'agent.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = without_pygit2(code)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 40, "walked too few agent modules: is the package path right?"


def test_importing_the_agent_loads_no_pygit2_even_when_it_is_installed() -> None:
    code = "import sys, agent.cli, agent.loop; print([m for m in sys.modules if m.split('.')[0] == 'pygit2'])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    built.publish("1.0.0")
    yield built
    built.close()


def test_fleetcd_agent_once_converges_and_reports_without_pygit2(world: AgentWorld) -> None:
    done = without_pygit2(
        "from agent.cli import main; main()", "--config", str(world.config_file), "once", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert not out["errors"] and out["pushed"]
    assert world.answer() == "1.0.0"

    assert rev_parse(world.controller.server, status_ref(DEVICE)) is not None
    import pygit2  # the test's own interpreter inspects the server (the controller keeps pygit2)

    found, problem = read_reports(pygit2.Repository(str(world.controller.server)), [DEVICE])[DEVICE]
    assert problem is None and found is not None
    assert [(d.app, d.version, d.activity) for d in found.deployments] == [(APP, "1.0.0", "deployed")]


# --- local-path servers: only the robot's own slice ---------------------------------------------------


def put_big_file_on_main(server: Path) -> None:
    """A 5 MB incompressible file committed on the server's main branch (plain git, no controller)."""
    env = {**GIT_ENV, "GIT_DIR": str(server)}
    data = random.Random(10).randbytes(BIG_FILE_BYTES)

    def git(*args: str, stdin: bytes | None = None) -> str:
        return (
            subprocess.run(["git", *args], input=stdin, env=env, capture_output=True, check=True)
            .stdout.decode()
            .strip()
        )

    blob = git("hash-object", "-w", "--stdin", stdin=data)
    tree = git("mktree", stdin=f"100644 blob {blob}\tfirmware.bin\n".encode())
    parent = rev_parse(server, "refs/heads/main")
    commit = git("commit-tree", tree, *(["-p", parent] if parent else []), stdin=b"big\n")
    git("update-ref", "refs/heads/main", commit)


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["path", "file-url"])
def test_big_file_on_main_does_not_reach_robot_fetch(tmp_path: Path, keys: KeyFactory, scheme: str) -> None:
    aw = provisioned_fleet(tmp_path, keys)
    put_big_file_on_main(aw.server)
    assert stored_bytes(aw.server) > BIG_FILE_BYTES > MAX_TRANSFER_BYTES

    files = fetch_desired(aw.config(url=f"{scheme}{aw.server}"), aw.repo_dir())

    assert files is not None and files.bundle == aw.server_files()[BUNDLE_FILE]
    assert stored_bytes(aw.repo_dir()) < ROBOT_SLICE_MAX_BYTES


# --- a hostile server streaming an endless pack -------------------------------------------------------


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


class EndlessPackServer:
    """A git:// server speaking protocol v2 that advertises the robot's ref, then answers the fetch
    with one blob "of 1 GiB" whose (stored, incompressible) zlib stream never ends."""

    def __init__(self, device: str) -> None:
        self.ref = desired_ref(device)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.sock:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):  # the robot hung up: expected
                    self._session(conn.makefile("rb"), conn)

    @staticmethod
    def _read_until_flush(reader: BinaryIO) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            head = reader.read(4)
            if len(head) < 4:
                return []
            size = int(head, 16)
            if size in (0, 1):  # flush, or the delimiter between a command and its arguments
                if size == 0:
                    return lines
                continue
            lines.append(reader.read(size - 4))

    def _session(self, reader: BinaryIO, conn: socket.socket) -> None:
        reader.read(int(reader.read(4), 16) - 4)  # the request: git-upload-pack /fleet.git\0host=...
        conn.sendall(pkt(b"version 2\n") + pkt(b"ls-refs\n") + pkt(b"fetch\n") + b"0000")
        oid = "1" * 40
        while True:
            command = self._read_until_flush(reader)
            if not command:
                return
            if command[0].startswith(b"command=ls-refs"):
                conn.sendall(pkt(f"{oid} {self.ref}\n".encode()) + b"0000")
                continue
            conn.sendall(pkt(b"packfile\n"))
            blob_size = 1 << 30
            header = bytes([0x80 | (3 << 4) | (blob_size & 0x0F)])  # type 3 = blob
            rest = blob_size >> 4
            while rest:
                header += bytes([(0x80 if rest >> 7 else 0) | (rest & 0x7F)])
                rest >>= 7
            data = b"PACK" + struct.pack(">II", 2, 1) + header
            stream, noise = zlib.compressobj(0), random.Random(3)
            while True:
                data += stream.compress(noise.randbytes(60_000))
                conn.sendall(pkt(b"\x01" + data[:65000]))
                self.sent += min(len(data), 65000)
                data = data[65000:]

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(): the socket would keep listening
        # on its port, and a later test's server on that port number got this one's connections.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=30)


def test_an_endless_pack_from_a_hostile_server_stops_at_the_transfer_cap(tmp_path: Path) -> None:
    server = EndlessPackServer(ROBOT)
    try:
        config = robot_config(tmp_path, f"git://127.0.0.1:{server.port}/fleet.git")
        repo_dir = tmp_path / "robot.git"
        started = time.monotonic()
        with pytest.raises(BundleRejected) as raised:
            fetch_desired(config, repo_dir)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert raised.value.reason is Reason.TOO_LARGE
    assert "over the cap" in str(raised.value.diagnostics[0].message)
    assert stored_bytes(repo_dir) < 64 * 1024, "the partial pack must not stay on the robot's disk"
    assert server.sent >= MAX_TRANSFER_BYTES  # the robot really read up to the cap, then stopped
    assert elapsed < 60


def robot_config(root: Path, url: str) -> AgentConfig:
    """The smallest agent.yaml of the robot: sync reads only ``device`` and ``remote``."""
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": ROBOT,
            "remote": {"url": url, "timeout_seconds": 60},
            "trust": {"keys_dir": str(root), "root": {"keys": ["A" * 40]}},
            "state_dir": str(root / "state"),
        }
    )


# --- the KnownHostsCommand ssh runs for a pinned host key: a decision table ---------------------------

KEY_B64 = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
PIN = fingerprint(base64.b64decode(KEY_B64))


@pytest.mark.parametrize(
    ("pins", "key_type", "key", "accepted"),
    [
        ((PIN,), "ssh-ed25519", KEY_B64, True),
        (("SHA256:" + "A" * 43, PIN), "ssh-ed25519", KEY_B64, True),
        (("SHA256:" + "A" * 43,), "ssh-ed25519", KEY_B64, False),
        ((PIN,), "NONE", "NONE", False),  # ssh ordering its algorithms: nothing is known
        ((PIN,), "ssh-ed25519", "not base64!", False),
        ((), "ssh-ed25519", KEY_B64, False),
    ],
    ids=["pinned", "second-pin", "other-key", "order-call", "garbage", "no-pins"],
)
def test_the_known_hosts_command_vouches_only_for_a_pinned_key(
    pins: tuple[str, ...], key_type: str, key: str, accepted: bool
) -> None:
    script = known_hosts_command(pins or ("SHA256:" + "Z" * 43,), sys.executable).split()
    argv = [*script[:-3], "[git.example]:2222", key_type, key]
    if not pins:
        argv[argv.index(script[-4])] = ""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env={})
    assert done.returncode == 0
    if accepted:
        assert done.stdout == f"[git.example]:2222 {key_type} {key}\n"
    else:
        assert done.stdout == ""
        assert ("is not one of the pinned keys" in done.stderr) == (key_type != "NONE")
