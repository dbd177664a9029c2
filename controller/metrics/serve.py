"""Where the controller's metrics go: ``/metrics`` over HTTP, and a textfile for node_exporter.

:class:`MetricsServer` serves ``GET /metrics`` (anything else: 404) from a thread beside the
reconcile loop, on the address ``--metrics-address`` names (``127.0.0.1:9464`` by default when
given; no server otherwise). :func:`write_textfile` replaces ``--metrics-file`` atomically (a
temporary file in the same folder, fsynced, renamed over it), so node_exporter's textfile
collector never reads half a file; it ends in ``.prom`` as that collector demands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from fleetcd.errors import SetupError

log = logging.getLogger("fleetcd.controller.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9464  # Prometheus' default-port allocations list 9464 for OpenTelemetry-style exporters
MAX_PORT = 65535


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6, ``:9464`` for every address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= MAX_PORT:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_PORT}); port 0-{MAX_PORT}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # the standard class binds IPv4 only: "::1" would be refused


def url_of(host: str, port: int) -> str:
    """The URL a person pastes: an IPv6 host in brackets, every address (``""``) as ``*``."""
    shown = f"[{host}]" if ":" in host else (host or "*")
    return f"http://{shown}:{port}/metrics"


class MetricsServer:
    """``GET /metrics`` on ``(host, port)`` (port 0: any free one; :attr:`port` says which); an
    IPv6 host (``::1``, from ``[::1]:9464``) listens on IPv6."""

    def __init__(self, host: str, port: int, render: Callable[[], bytes]) -> None:
        handler = _handler(render)
        server = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server((host, port), handler)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise SetupError(f"--metrics-address {host}:{port}: cannot listen: {why}") from exc
        self._server.daemon_threads = True
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, name="fleetcd-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(render: Callable[[], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    return Handler


def write_textfile(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file beside it, fsync, rename)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)  # node_exporter usually runs as another user
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class TextfileWriter:
    """Rewrites ``path`` with ``render()`` after each reconcile; a failed write (a full or read-only
    disk) is logged and skipped, never raised: the next reconcile tries again."""

    def __init__(self, path: Path, render: Callable[[], bytes]) -> None:
        self.path = path
        self._render = render

    def write(self) -> bool:
        try:
            write_textfile(self.path, self._render())
        except OSError as exc:
            log.error("metrics file %s not written: %s", self.path, exc.strerror or exc)
            return False
        return True
