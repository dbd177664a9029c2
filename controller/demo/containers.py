"""``fleetcd demo --docker``: the navstack app as container images, served by a registry the demo runs.

Place in the flow: :func:`controller.demo.session.demo_session` opens a :class:`ContainerWorld` (after
:func:`controller.demo.engine.require_docker_demo` found an engine) and closes it at exit; the story
publishes each release through :meth:`ContainerWorld.publish`, which returns the pinned
``127.0.0.1:<port>/fleetcd-demo/navstack@sha256:…`` the release names.

Nothing is pulled from the internet. The image is imported (``docker import``) from a rootfs holding
Debian's static busybox: ``sh -c`` reads the app's port from its config file (``$FLEETCD_CONFIG``,
which the agent bind-mounts into the container) and runs ``httpd`` with host networking; the CGI
``/www/cgi-bin/healthz`` answers 500 in 1.1.0 on the robot whose map is ``tokyo-floor3``. The
images are pushed to ``docker-registry`` on 127.0.0.1 (an insecure registry every engine allows).

The controller package never imports the docker SDK: the engine is driven with the ``docker`` CLI.
At exit the run's containers (by image repository), its images and the registry are removed.
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
from pathlib import Path
from typing import ClassVar

from controller.demo.robotapp import BROKEN_MAP
from fleetcd.errors import SetupError

REPOSITORY = "fleetcd-demo/navstack"
APPLETS = ("sh", "httpd", "sed", "grep", "cat", "echo", "test", "sleep")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
HEALTH_PATH = "/cgi-bin/healthz"
START_TIMEOUT_SECONDS = 30.0
CLI_TIMEOUT_SECONDS = 120
_PT_INTERP = 3  # ELF program header naming a dynamic loader: not runnable in an empty rootfs

# The app: its port and map from the config file the agent writes (JSON, one key per line).
_START = """\
port=$(sed -n 's/^ *"port": *\\([0-9]*\\).*/\\1/p' "$FLEETCD_CONFIG")
map=$(sed -n 's/^ *"map": *"\\([^"]*\\)".*/\\1/p' "$FLEETCD_CONFIG")
echo "navstack $(cat /VERSION) on port $port, map $map"
exec httpd -f -p "127.0.0.1:$port" -h /www
"""
_HEALTHZ = """\
#!/bin/sh
if grep -q '"map": "__BROKEN__"' "$FLEETCD_CONFIG" 2>/dev/null && test -n "__BROKEN__"; then
  printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n'
  echo "map __BROKEN__: unreadable by the __VERSION__ map loader"
else
  printf 'Content-Type: text/plain\\r\\n\\r\\n'
  echo "navstack __VERSION__ ok"
fi
"""


def _static_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and _is_static(path):
            return path
    raise SetupError("the Docker demo needs a statically linked busybox (Debian: apt install busybox-static)")


def _is_static(path: Path) -> bool:
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    size, count = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * size)[0] != _PT_INTERP for i in range(count))


def rootfs(busybox: Path, version: str) -> bytes:
    """The image's files as a tar: busybox and its applets, the start script, /www with the CGI."""
    broken = BROKEN_MAP if version == "1.1.0" else ""
    healthz = _HEALTHZ.replace("__BROKEN__", broken).replace("__VERSION__", version)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, len(data), link, 0
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755), ("www/cgi-bin", 0o755)):
            add(folder, tarfile.DIRTYPE, mode)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("start.sh", tarfile.REGTYPE, 0o755, _START.encode())
        add("www/index.html", tarfile.REGTYPE, 0o644, f"navstack {version}\n".encode())
        add("www/cgi-bin/healthz", tarfile.REGTYPE, 0o755, healthz.encode())
        add("VERSION", tarfile.REGTYPE, 0o644, f"{version}\n".encode())
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ContainerWorld:
    """The run's registry and images on the engine at ``host``; :meth:`close` removes all of it."""

    command: ClassVar[list[str]] = ["/bin/sh", "/start.sh"]

    def __init__(self, host: str, folder: Path) -> None:
        self.host, self.folder = host, folder
        self._docker = shutil.which("docker")
        registry = shutil.which("docker-registry")
        if self._docker is None or registry is None:
            raise SetupError(
                "the Docker demo needs the docker CLI and docker-registry "
                "(Debian: apt install docker.io docker-registry)"
            )
        self._busybox = _static_busybox()
        self.port = _free_port()
        self._images: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        with (folder / "registry.log").open("ab") as log:
            self._registry = subprocess.Popen([registry, "serve", str(config)], stdout=log, stderr=log)
        self._wait_for_registry()

    @property
    def repository(self) -> str:
        return f"127.0.0.1:{self.port}/{REPOSITORY}"

    def publish(self, version: str) -> str:
        """Import the app of ``version``, push it; its pinned ``repository@sha256:…``."""
        tag = f"{self.repository}:{version}"
        change = f"CMD {self.command}".replace("'", '"')
        image_id = self._cli(["import", "--change", change, "-", tag], rootfs(self._busybox, version)).strip()
        self._images.append(image_id)
        self._cli(["push", "--quiet", tag])
        digests = self._cli(["image", "inspect", "--format", '{{join .RepoDigests "\\n"}}', tag]).split()
        pinned = [d for d in digests if d.startswith(f"{self.repository}@sha256:")]
        if not pinned:
            raise SetupError(f"push of {tag}: the engine lists no digest for it ({digests})")
        return pinned[0]

    def close(self) -> None:
        """Remove the run's containers and images, stop the registry (never raises)."""
        with contextlib.suppress(Exception):
            listed = self._cli(
                ["ps", "--all", "--filter", "label=dev.fleetcd.app", "--format", "{{.ID}} {{.Image}}"]
            )
            ours = [line.split()[0] for line in listed.splitlines() if f" {self.repository}" in line]
            if ours:
                self._cli(["rm", "--force", *ours])
        for image in self._images:
            with contextlib.suppress(Exception):
                self._cli(["rmi", "--force", image])
        self._registry.terminate()
        try:
            self._registry.wait(10)
        except subprocess.TimeoutExpired:
            self._registry.kill()
            self._registry.wait()

    def _cli(self, args: list[str], stdin: bytes | None = None) -> str:
        assert self._docker is not None
        env = {**os.environ, "DOCKER_HOST": self.host}
        done = subprocess.run(
            [self._docker, *args], input=stdin, capture_output=True, env=env, timeout=CLI_TIMEOUT_SECONDS
        )
        if done.returncode != 0:
            raise SetupError(f"docker {args[0]}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    def _wait_for_registry(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        url = f"http://127.0.0.1:{self.port}/v2/"
        while time.monotonic() < deadline:
            if self._registry.poll() is not None:
                break
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        self.close()
        log = (self.folder / "registry.log").read_text(errors="replace")[-1500:]
        raise SetupError(f"docker-registry on 127.0.0.1:{self.port} did not start: {log}")
