"""A real Docker Engine and registry for the Docker executor's tests, one per test session.

Nothing here is pulled from the internet: ``dockerd`` (Debian ``docker.io``) runs with its own
data root, exec root and unix socket (vfs storage, no iptables, no bridge: containers that serve
something use host networking), ``docker-registry`` (the distribution registry v2) listens on
127.0.0.1 (an insecure registry the engine allows by default), and test images are imported from a
busybox-static rootfs and pushed there, so each version is pinned by a real ``repo@sha256:…``.

Use the session fixture :func:`docker_world`; it skips (fails under CI) when dockerd, the registry
or a static busybox is missing, or dockerd cannot start here. Everything is stopped at session end.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
