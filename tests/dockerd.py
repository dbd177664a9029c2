"""A real Docker Engine and registry for the Docker executor's tests, one per test session.

Nothing here is pulled from the internet: ``dockerd`` (Debian ``docker.io``) runs with its own
data root, exec root and unix socket (vfs storage, no iptables, no bridge: containers that serve
something use host networking), ``docker-registry`` (the distribution registry v2) listens on
127.0.0.1 (an insecure registry the engine allows by default), and test images are imported from a
busybox-static rootfs and pushed there, so each version is pinned by a real ``repo@sha256:…``.

Use the session fixture :func:`docker_world`; it skips (fails under CI) when dockerd, the registry
or a static busybox is missing, or dockerd cannot start here. Everything is stopped at session end.

Several robots on one test machine (tests/fullstack.py) each get a :class:`RobotHost`: a network
namespace of its own with a private dockerd in it, the git server's and registry's ports relayed
into it, and a worker thread inside it where the robot's agent runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import io
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest

from tests.conftest import require_service

IMAGE_REPOSITORY = "fleetcd-test/app"
DEFAULT_CMD = '["/bin/sleep", "3600"]'
APPLETS = ("sh", "sleep", "httpd", "wget", "echo", "cat", "true", "false", "ls", "test", "env")
START_TIMEOUT_SECONDS = 90  # dockerd on vfs with 2 cores can take a while to answer its socket
STOP_TIMEOUT_SECONDS = 30
_PT_INTERP = 3  # ELF program header type naming a dynamic loader


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in /usr/sbin or /usr/bin (dockerd lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = (Path("/usr/sbin") / name, Path("/usr/bin") / name)
    return next((str(p) for p in candidates if os.access(p, os.X_OK)), None)


def is_static_elf(path: Path) -> bool:
    """True for an ELF64 executable without a program interpreter (runs in an empty rootfs)."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != _PT_INTERP for i in range(phnum))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``ready`` until it holds; a process that dies first fails with the tail of its log."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT_SECONDS} s: {_tail(log)}")


def _tail(log: Path, limit: int = 2000) -> str:
    return log.read_text(errors="replace")[-limit:] if log.exists() else "(no log)"


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<free port>; its storage survives stop/start."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary, self.root, self.port = binary, root, free_port()
        self.config = root / "registry.yml"
        self.log = root / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
            f"http:\n  addr: {self.host}\n"
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.binary, "serve", str(self.config)], stdout=log, stderr=log)
        url = f"http://{self.host}/v2/"
        wait_until(
            lambda: urllib.request.urlopen(url, timeout=2).status == 200,
            "docker-registry",
            self.process,
            self.log,
        )

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The registry is down inside the block (the link is cut), back on the same port after."""
        self.stop()
        try:
            yield
        finally:
            self.start()


class Dockerd:
    """A private dockerd: own data root, exec root, socket and pidfile under ``root``."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary, self.root = binary, root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        daemon_json = self.root / "daemon.json"
        daemon_json.write_text("{}\n")  # never merge the machine's /etc/docker/daemon.json
        argv = [
            self.binary,
            f"--config-file={daemon_json}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host={self.base_url}",
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--log-level=warn",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log)

        def answers() -> bool:
            client = docker.DockerClient(base_url=self.base_url, timeout=10)
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_until(answers, "dockerd", self.process, self.log)

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        _unmount_below(self.root)


def _unmount_below(root: Path) -> None:
    """dockerd leaves its netns bind mount (exec-root/netns/default) behind: pytest cannot delete it."""
    prefix = f"{root}/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


class DockerWorld:
    """The engine, its client and the registry, plus builders of pushed busybox test images."""

    def __init__(self, engine: Dockerd, registry: Registry, busybox: Path) -> None:
        self.engine, self.registry, self.busybox = engine, registry, busybox
        self.client: Any = docker.DockerClient(base_url=engine.base_url, timeout=300)
        self._pushed: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return self.engine.base_url

    @property
    def repository(self) -> str:
        return f"{self.registry.host}/{IMAGE_REPOSITORY}"

    def push_app(self, version: str) -> str:
        """Import a busybox image whose /www/index.html says ``app <version>``, push it, pin it.

        Returns ``127.0.0.1:<port>/fleetcd-test/app@sha256:…``; the same version is built once.
        """
        if version not in self._pushed:
            self.client.api.import_image_from_data(
                _rootfs_tar(self.busybox, version),
                repository=self.repository,
                tag=version,
                changes=[f"CMD {DEFAULT_CMD}"],
            )
            digest = None
            for line in self.client.api.push(self.repository, tag=version, stream=True, decode=True):
                if "error" in line:
                    raise RuntimeError(f"push of {self.repository}:{version} failed: {line['error']}")
                digest = line.get("aux", {}).get("Digest", digest)
            if digest is None:
                raise RuntimeError(f"push of {self.repository}:{version} reported no digest")
            self._pushed[version] = f"{self.repository}@{digest}"
        return self._pushed[version]

    def unknown_image(self) -> str:
        """A well-formed pin of this registry's repository that the registry has never seen."""
        return f"{self.repository}@sha256:{'0' * 64}"

    def forget_image(self, image: str) -> None:
        """Delete the local copy (every tag of it), so the next fetch must pull from the registry."""
        with contextlib.suppress(docker.errors.ImageNotFound):
            self.client.images.remove(self.client.images.get(image).id, force=True)

    def remove_containers(self, app: str | None = None) -> None:
        """Remove the fleetcd containers of ``app`` (of every app when None), running or not."""
        label = "dev.fleetcd.app" if app is None else f"dev.fleetcd.app={app}"
        for container in self.client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_containers()
        self.client.close()


def _rootfs_tar(busybox: Path, version: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, len(data), link, 0
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder in ("bin", "www", "tmp"):
            add(folder, tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("www/index.html", tarfile.REGTYPE, 0o644, f"app {version}\n".encode())
        add("VERSION", tarfile.REGTYPE, 0o644, f"{version}\n".encode())
    return buffer.getvalue()


def _missing() -> tuple[dict[str, str], str | None]:
    """The binaries found, and why the engine cannot run here (None when it can)."""
    found = {name: find_binary(name) for name in ("dockerd", "docker-registry", "busybox")}
    absent = [name for name, path in found.items() if path is None]
    if absent:
        return (
            {},
            f"missing {', '.join(absent)} (Debian docker.io, docker-registry, busybox-static; dev/bootstrap)",
        )
    paths = {name: str(path) for name, path in found.items()}
    if not is_static_elf(Path(paths["busybox"])):
        return {}, f"{paths['busybox']} is not statically linked (install Debian busybox-static)"
    if os.geteuid() != 0:
        return {}, "dockerd needs root"
    return paths, None


@pytest.fixture(scope="session")
def docker_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerWorld]:
    """A running private dockerd and registry for the session (skip, or fail under CI, without)."""
    binaries, why = _missing()
    require_service("docker", why is None, why or "")
    root = tmp_path_factory.mktemp("dockerd")
    engine = Dockerd(binaries["dockerd"], root)
    registry = Registry(binaries["docker-registry"], root)
    world: DockerWorld | None = None
    try:
        try:
            engine.start()
            registry.start()
        except RuntimeError as exc:
            require_service("docker", False, str(exc))
        world = DockerWorld(engine, registry, Path(binaries["busybox"]))
        yield world
    finally:
        if world is not None:
            world.close()
        registry.stop()
        engine.stop()


# --- robots with a machine of their own ----------------------------------------------------------
# Robots sharing one test machine must not share what real robots never share: the engine (container
# names are per app and version, not per robot) and the loopback (every robot's app listens on the
# port its release names). A network namespace is per thread on Linux, so each robot's agent runs in
# a worker thread that entered the robot's namespace; what that thread starts (dockerd, gpg) is
# inside it too. The test machine's git server and registry are relayed in on their own ports, so
# URLs and pinned image names stay ``127.0.0.1:<port>``.

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"  # struct ifreq: interface name, flags, rest of the union
_RELAY_CHUNK_BYTES = 65536
_libc = ctypes.CDLL(None, use_errno=True)


def _enter_new_network_namespace() -> int:
    """Move the calling thread into a new network namespace, loopback up; an fd that holds it."""
    if _libc.unshare(_CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        (_, flags) = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` of the calling thread's network namespace."""
    return socket.create_server(("127.0.0.1", port))


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_RELAY_CHUNK_BYTES):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


class Relay:
    """Connections to ``listener`` (inside a namespace) go on to 127.0.0.1:``port`` outside it.

    Build it from a thread outside the namespace: its threads inherit that thread's namespace, so
    the connections they open reach the test machine's loopback.
    """

    def __init__(self, listener: socket.socket, port: int) -> None:
        self.listener, self.port = listener, port
        threading.Thread(target=self._serve, name=f"relay-{port}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                inside, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                outside = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            for source, sink in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()


class RobotHost:
    """One robot's machine: its own network namespace, a private dockerd in it, relayed ports.

    :meth:`call` / :meth:`submit` run a function on the robot (in its namespace's worker thread).
    """

    def __init__(self, name: str, root: Path, dockerd: str, relayed_ports: Sequence[int]) -> None:
        self.name, self.root = name, root
        root.mkdir(parents=True, exist_ok=True)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"robot-{name}")
        self._netns: int | None = None
        self.relays: list[Relay] = []
        self._held: list[socket.socket] = []
        self.engine = Dockerd(dockerd, root)
        self.client: Any = None
        try:
            self._netns = self.call(_enter_new_network_namespace)
            self.relays = [Relay(self.call(listen, port), port) for port in relayed_ports]
            self.call(self.engine.start)
            self.client = docker.DockerClient(base_url=self.engine.base_url, timeout=300)
        except BaseException:
            self.close()
            raise

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._worker.submit(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def occupy(self, port: int) -> None:
        """Some other program of the robot listens on ``port`` (until :meth:`close`)."""
        self._held.append(self.call(listen, port))

    def running(self) -> dict[str, str]:
        """app → version of the fleetcd containers running on this robot's engine."""
        found = self.client.containers.list(filters={"label": "dev.fleetcd.app", "status": "running"})
        return {c.labels["dev.fleetcd.app"]: c.labels["dev.fleetcd.version"] for c in found}

    def container_id(self, app: str, version: str) -> str | None:
        found = self.client.containers.list(
            all=True, filters={"label": [f"dev.fleetcd.app={app}", f"dev.fleetcd.version={version}"]}
        )
        return str(found[0].id) if found else None

    def has_image(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                for container in self.client.containers.list(all=True, filters={"label": "dev.fleetcd.app"}):
                    container.remove(force=True)
            self.client.close()
        self.engine.stop()
        for relay in self.relays:
            relay.close()
        for sock in self._held:
            sock.close()
        self._worker.shutdown()
        if self._netns is not None:
            os.close(self._netns)
