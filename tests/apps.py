"""Real tarball apps for agent tests: a tiny Python HTTP server packed the way a release ships it.

The app (``app.py``, run as ``[sys.executable, "app.py"]`` in its release directory) listens on
127.0.0.1 at ``--port N`` or ``$PORT`` and answers ``GET /healthz`` with its version::

    data, sha = build_app_tarball(tmp_path / "web-1.0.0.tar.gz", "1.0.0")
    url = server.add("/web-1.0.0.tar.gz", data)
    release = make_release("web", "1.0.0", [tarball_artifact(url, data)])
    ... executor.switch(...) ...
    assert wait_for_version(port) == "1.0.0"

Behaviours: ``healthy`` (200 ``{"app": ..., "version": ...}``), ``unhealthy`` (the same, with status
500) and ``crash`` (prints a line to stderr and exits 3 at once: a crash-looping release). A
config file (``$FLEETCD_CONFIG``, read at start) holding ``unhealthy: true`` makes any behaviour
answer 500: a bad config value, as a config-only deployment can bring.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from agent.executors.supervisor import Supervisor
from fleetcd.models.release import Release

AppBehaviour = Literal["healthy", "crash", "unhealthy"]
APP_COMMAND = [sys.executable, "app.py"]
CRASH_EXIT_CODE = 3

_APP_SOURCE = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

VERSION = {version!r}
BEHAVIOUR = {behaviour!r}

if BEHAVIOUR == "crash":
    print(f"app {{VERSION}}: crashing on purpose", file=sys.stderr, flush=True)
    sys.exit({crash_code})

port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else int(os.environ["PORT"])
CONFIG_FILE = os.environ.get("FLEETCD_CONFIG", "")
CONFIG = open(CONFIG_FILE).read() if CONFIG_FILE and os.path.exists(CONFIG_FILE) else ""
BAD_CONFIG = "unhealthy: true" in CONFIG


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/healthz":
            self.send_error(404)
            return
        body = json.dumps({{"app": os.environ.get("FLEETCD_APP"), "version": VERSION}}).encode()
        self.send_response(500 if BEHAVIOUR == "unhealthy" or BAD_CONFIG else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


server = HTTPServer(("127.0.0.1", port), Handler)
print(f"app {{VERSION}} listening on {{port}}", flush=True)
server.serve_forever()
"""


def app_source(version: str, behaviour: AppBehaviour = "healthy") -> bytes:
    return _APP_SOURCE.format(version=version, behaviour=behaviour, crash_code=CRASH_EXIT_CODE).encode()


def build_app_tarball(
    dest: Path, version: str, *, behaviour: AppBehaviour = "healthy", padding_bytes: int = 0
) -> tuple[bytes, str]:
    """Write a ``.tar.gz`` release of the app to ``dest``; returns its bytes and their sha256.

    ``padding_bytes`` of incompressible data (``padding.bin``) make a download that takes a while."""
    files = {"app.py": app_source(version, behaviour), "VERSION": version.encode()}
    if padding_bytes:
        files["padding.bin"] = os.urandom(padding_bytes)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    dest.write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def tarball_artifact(
    url: str, data: bytes, *, name: str = "app", command: list[str] | None = None
) -> dict[str, Any]:
    """The ``app_tarball`` artifact entry of a Release for ``data`` served at ``url``."""
    return {
        "name": name,
        "kind": "app_tarball",
        "url": url,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "command": list(APP_COMMAND if command is None else command),
    }


def payload_artifact(
    url: str, data: bytes, *, name: str, path: str, kind: Literal["config", "model"] = "model"
) -> dict[str, Any]:
    """A ``config`` or ``model`` payload entry, placed at ``path`` inside the release directory."""
    sha = hashlib.sha256(data).hexdigest()
    return {"name": name, "kind": kind, "url": url, "sha256": sha, "size": len(data), "path": path}


def make_release(app: str, version: str, artifacts: list[dict[str, Any]], **fields: Any) -> Release:
    """A validated Release model (extra ``fields`` such as ``health`` go in as in the YAML)."""
    document = {"apiVersion": "fleetcd.dev/v1", "kind": "Release", "app": app, "version": version}
    return Release.model_validate({**document, "artifacts": artifacts, **fields})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the app binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthz(port: int, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]] | None:
    """Status and JSON body of ``GET /healthz``; None when nothing answers on the port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for_version(port: int, version: str | None = None, *, limit_s: float = 20.0) -> str | None:
    """Poll ``/healthz`` until it answers (with ``version`` when given); the version, or None."""
    deadline = time.monotonic() + limit_s
    while True:
        answer = healthz(port)
        if answer is not None and (version is None or answer[1].get("version") == version):
            return str(answer[1].get("version"))
        if time.monotonic() >= deadline:
            return None if answer is None else str(answer[1].get("version"))
        time.sleep(0.05)


def write_app(folder: Path, version: str, behaviour: AppBehaviour = "healthy") -> Path:
    """The app unpacked into ``folder`` (for supervisor tests that need no tarball)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_bytes(app_source(version, behaviour))
    return folder


def stop_all(supervisor: Supervisor) -> None:
    """Stop every app a test's supervisor knows (fixture teardown: no leaked processes)."""
    for app in supervisor.known_apps():
        supervisor.stop(app, timeout_s=5)


def wait_until(predicate: Callable[[], object], *, limit_s: float = 20.0) -> bool:
    """Poll ``predicate()`` until it is true or ``limit_s`` passed; its last truth value."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(0.05)
    return True
