"""A real artifact HTTP server for tests: the stdlib ``ThreadingHTTPServer`` on 127.0.0.1, in a thread.

It serves given bytes per path, honours ``Range: bytes=N-`` / ``bytes=N-M`` with ``206``, records
every request it saw, and misbehaves on request the ways artifact servers do in the field::

    with ArtifactServer() as server:
        url = server.add("/app.tar", body, Behaviour(fail_first_requests=1, fail_after_fraction=0.4))
        ...
        assert server.seen("/app.tar")[1].headers["Range"] == "bytes=...-"

Knobs (:class:`Behaviour`): trickle (bytes per second), endless body (no length, until the client
hangs up), a lying Content-Length, dying mid-body on the first N requests, ignoring Range.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_STEP_SECONDS = 0.05
_ENDLESS_CEILING_BYTES = 1024**3  # a broken client must not keep a test server writing forever


@dataclass(frozen=True)
class Behaviour:
    trickle_bytes_per_second: int | None = None  # send the body this slowly
    endless: bool = False  # no Content-Length; repeat the body until the client goes away
    content_length: int | None = None  # announce this Content-Length whatever the body is
    fail_first_requests: int = 0  # these many requests are cut off mid-body ...
    fail_after_fraction: float = 0.4  # ... after this fraction of the bytes they should carry
    ignore_range: bool = False  # always answer 200 with the whole body
    status: int | None = None  # answer every request with this status and no body


@dataclass(frozen=True)
class SeenRequest:
    path: str
    headers: dict[str, str]


@dataclass
class _Artifact:
    body: bytes
    behaviour: Behaviour
    requests: int = 0


@dataclass
class _State:
    artifacts: dict[str, _Artifact] = field(default_factory=dict)
    seen: list[SeenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.seen.append(SeenRequest(path, dict(self.headers.items())))
            artifact = state.artifacts.get(path)
            if artifact is not None:
                artifact.requests += 1
                number = artifact.requests
        if artifact is None:
            self.send_error(404)
            return
        behaviour = artifact.behaviour
        if behaviour.status is not None:
            self.send_response(behaviour.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, status, content_range = self._select(artifact.body, behaviour)
        if status == 416:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(artifact.body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(status)
        if content_range:
            self.send_header("Content-Range", content_range)
        if not behaviour.endless:
            length = behaviour.content_length if behaviour.content_length is not None else len(body)
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if behaviour.endless:
            self._send_endless(body, behaviour)
        elif number <= behaviour.fail_first_requests:
            self._send(body[: int(len(body) * behaviour.fail_after_fraction)], behaviour)
            self.close_connection = True  # the client sees the connection drop before the end
        else:
            self._send(body, behaviour)

    def _select(self, body: bytes, behaviour: Behaviour) -> tuple[bytes, int, str | None]:
        match = _RANGE.fullmatch(self.headers.get("Range", ""))
        if match is None or behaviour.ignore_range:
            return body, 200, None
        first = int(match[1])
        last = int(match[2]) if match[2] else len(body) - 1
        if first >= len(body):
            return b"", 416, None
        last = min(last, len(body) - 1)
        return body[first : last + 1], 206, f"bytes {first}-{last}/{len(body)}"

    def _send(self, data: bytes, behaviour: Behaviour) -> None:
        rate = behaviour.trickle_bytes_per_second
        step = len(data) if rate is None else max(1, int(rate * _STEP_SECONDS))
        for offset in range(0, len(data), max(step, 1)):
            if self.server.state.stopping.is_set() or not self._write(data[offset : offset + step]):
                return
            if rate is not None:
                self.server.state.stopping.wait(_STEP_SECONDS)

    def _send_endless(self, body: bytes, behaviour: Behaviour) -> None:
        block = body or b"\0" * 65536
        sent = 0
        while sent < _ENDLESS_CEILING_BYTES and not self.server.state.stopping.is_set():
            if not self._write(block):
                return
            sent += len(block)

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            return False
        return True


class ArtifactServer:
    """Context manager running the server; :meth:`add` publishes bytes and returns their URL."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, path: str, body: bytes, behaviour: Behaviour | None = None) -> str:
        with self._server.state.lock:
            self._server.state.artifacts[path] = _Artifact(body, behaviour or Behaviour())
        return self.base_url + path

    def seen(self, path: str) -> list[SeenRequest]:
        """Requests for ``path`` in arrival order."""
        with self._server.state.lock:
            return [r for r in self._server.state.seen if r.path == path]

    def __enter__(self) -> ArtifactServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the server down for good (its port refuses connections): the artifact server is down."""
        if self._server.state.stopping.is_set():
            return
        self._server.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for one-off test servers: nothing logged to pytest's output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run a real ``ThreadingHTTPServer`` with ``handler`` on 127.0.0.1 in a thread; yields its base URL
    (``http://127.0.0.1:PORT``) and shuts it down after. For servers :class:`ArtifactServer`'s
    behaviours do not cover: a redirect, a server that never answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
