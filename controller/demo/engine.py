"""``fleetcd demo --docker``: find out whether a Docker Engine answers, before anything is created.

The controller package does not use the docker SDK (only the agent's Docker executor does), so the
engine is asked ``GET /_ping`` with the standard library over ``$DOCKER_HOST`` (a unix socket by
default, or ``tcp://host:port``).

Six robots share the one engine: the agent's Docker executor scopes its containers by device
(``fleetcd-<device>-<app>-<version>``, a ``dev.fleetcd.device`` label), and each robot's app
listens on the port its device config names, with host networking as on a real robot.
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


def require_docker_demo() -> str:
    """The engine's address (``$DOCKER_HOST`` or the default socket); SetupError when it does not answer."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if not engine_answers(host):
        raise SetupError(
            f"Docker engine not reachable at {host} (set DOCKER_HOST, or start dockerd); "
            "`fleetcd demo` without --docker runs the same story with the tarball executor"
        )
    return host
