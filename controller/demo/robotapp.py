"""The demo's robot software: the navstack app each release ships, and the robot-side health check.

:func:`app_tarball` packs the app the way a release ships it (an ``app_tarball`` artifact). The app
is a stdlib HTTP server that reads its config file (``$FLEETCD_CONFIG``, written by the agent from
the robot's merged config instance) and answers ``GET /healthz`` on the config's ``port``. Release
1.1.0 carries the demo's bug: its new map loader rejects the narrow-aisle map ``tokyo-floor3``, so
on the one robot configured with it (``configs/navstack/device-amr-tyo-02.yaml``) the health
endpoint answers 500.

Six demo robots share one machine, so each app listens on its own port, and the release's health
probe is a robot-side tool (:func:`healthz_tool`, an ``exec`` probe on the agents' allowlist) that
GETs the URL its robot's agent gives it in ``NAVSTACK_HEALTHZ_URL``. On a real robot the probe
would be ``type: http`` on ``http://127.0.0.1:8080/healthz``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

HEALTHZ_ENV = "NAVSTACK_HEALTHZ_URL"
BROKEN_MAP = "tokyo-floor3"  # what 1.1.0's map loader cannot read

_APP = '''\
"""navstack __VERSION__: the fleetcd demo's stand-in for a robot's navigation stack."""
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

VERSION = "__VERSION__"
UNREADABLE_MAPS = __UNREADABLE__  # maps this version's loader cannot read

with open(os.environ["FLEETCD_CONFIG"], encoding="utf-8") as handle:
    config = json.load(handle)
problem = None
if config["map"] in UNREADABLE_MAPS:
    problem = f"map {config['map']}: unreadable by the {VERSION} map loader"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"app": "navstack", "version": VERSION, "device": os.environ.get("FLEETCD_DEVICE"),
                "map": config["map"], "max_speed_mps": config["max_speed_mps"]}
        if problem:
            body["error"] = problem
        data = json.dumps(body).encode()
        if problem and self.path == "/healthz":
            data = problem.encode()
        self.send_response(500 if problem and self.path == "/healthz" else 200)
        self.send_header("Content-Type", "application/json" if data.startswith(b"{") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


print(f"navstack {VERSION} on port {config['port']}, map {config['map']}", flush=True)
HTTPServer(("127.0.0.1", int(config["port"])), Handler).serve_forever()
'''

_HEALTHZ = '''\
#!__PYTHON__ -I
"""Robot-side health check of navstack: GET $__ENV__; exit 0 on 200, else 1 with the answer."""
import os, sys, urllib.error, urllib.request

url = os.environ["__ENV__"]
try:
    with urllib.request.urlopen(url, timeout=2) as response:
        print(response.status, response.read().decode(errors="replace"))
except urllib.error.HTTPError as exc:
    sys.exit(f"HTTP {exc.code}: {exc.read().decode(errors='replace')}")
except OSError as exc:
    sys.exit(f"GET {url}: {exc}")
'''


@dataclass(frozen=True)
class Artifact:
    """A packed release of the app: where it is on disk, its sha256 and size."""

    path: Path
    sha256: str
    size: int


def app_source(version: str, *, unreadable_maps: tuple[str, ...] = ()) -> str:
    return _APP.replace("__VERSION__", version).replace("__UNREADABLE__", repr(list(unreadable_maps)))


def app_tarball(folder: Path, version: str, *, unreadable_maps: tuple[str, ...] = ()) -> Artifact:
    """``navstack-<version>.tar.gz`` in ``folder``: ``app.py`` and ``VERSION``, reproducible bytes."""
    files = {
        "app.py": app_source(version, unreadable_maps=unreadable_maps).encode(),
        "VERSION": f"{version}\n".encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    # mtime 0 in the members and the gzip header: the same version always packs to the same bytes.
    data = gzip.compress(buffer.getvalue(), mtime=0)
    path = folder / f"navstack-{version}.tar.gz"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Artifact(path, hashlib.sha256(data).hexdigest(), len(data))


def healthz_tool(path: Path, python: str) -> Path:
    """Write the robot-side health check as an executable script run by ``python``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_HEALTHZ.replace("__PYTHON__", python).replace("__ENV__", HEALTHZ_ENV))
    path.chmod(0o755)
    return path
