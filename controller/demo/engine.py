"""``fleetcd demo --docker``: find out whether a Docker Engine answers, before anything is created.

The controller package does not use the docker SDK (only the agent's Docker executor does), so the
engine is asked ``GET /_ping`` with the standard library over ``$DOCKER_HOST`` (a unix socket by
default, or ``tcp://host:port``).

Six robots cannot share one engine: the agent's Docker executor names an app's containers
``fleetcd-<app>-<version>`` and runs them with host networking on the release's port, exactly as on
one real robot. A Docker demo therefore needs an engine per robot (a network namespace and a
private ``dockerd`` each, as ``tests/dockerd.py`` builds them for the full-stack tests), which
does not start within the demo's two minutes on a small machine. Until it does, ``--docker``
stops with a setup error (exit 4) that says which of the two it met.
"""

from __future__ import annotations

import http.client
import os
import socket
from urllib.parse import urlsplit

from fleetcd.errors import SetupError

DEFAULT_HOST = "unix:///var/run/docker.sock"
PING_TIMEOUT_SECONDS = 3.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def engine_answers(host: str) -> bool:
    """Whether the engine at ``host`` (``unix://…`` or ``tcp://…``) answers ``/_ping`` with OK."""
    url = urlsplit(host)
    connection: http.client.HTTPConnection
    if url.scheme == "unix":
        connection = _UnixConnection(url.path, PING_TIMEOUT_SECONDS)
    elif url.scheme in ("tcp", "http") and url.hostname:
        connection = http.client.HTTPConnection(url.hostname, url.port or 2375, timeout=PING_TIMEOUT_SECONDS)
    else:
        return False
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == http.client.OK
    except OSError:
        return False
    finally:
        connection.close()


def require_docker_demo() -> None:
    """Raise SetupError: no engine, or an engine that six demo robots cannot share."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if not engine_answers(host):
        raise SetupError(
            f"Docker engine not reachable at {host} (set DOCKER_HOST, or start dockerd); "
            "`fleetcd demo` without --docker runs the same story with the tarball executor"
        )
    raise SetupError(
        f"a Docker engine answers at {host}, but the Docker demo needs one engine per robot "
        "(containers are named fleetcd-<app>-<version> and use host networking, as on a real robot), "
        "which this demo does not set up yet; `fleetcd demo` runs the story with the tarball executor"
    )
