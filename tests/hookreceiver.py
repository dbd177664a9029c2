"""A real webhook receiver for tests: the stdlib ``ThreadingHTTPServer`` on 127.0.0.1, in a thread.

:class:`HookReceiver` records every POST (path, headers, body) and answers from a script of
statuses (``reply(500, 200)``; 200 once the script is used up), optionally slowly. It stands for a
chat, paging or CI service receiving webhooks and for a forge receiving commit statuses; the
``receiver`` fixture in tests/conftest.py gives a test one. :class:`FakeTime` is the clock that
moves only when the code under test sleeps, so retry schedules are asserted without waiting.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Script:
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # consumed in order
    seen: list[Received] = field(default_factory=list)
    delay_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: _Script


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        script = self.server.script
        with script.lock:
            script.seen.append(Received(self.path, dict(self.headers.items()), body))
            status, headers = script.replies.pop(0) if script.replies else (200, {})
        if script.delay_seconds:
            time.sleep(script.delay_seconds)
        self.send_response(status)
        for name, value in {"Content-Length": "0", **headers}.items():
            self.send_header(name, value)
        self.end_headers()


class HookReceiver:
    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.script = _Script()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def reply(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        for item in statuses:
            self._server.script.replies.append(item if isinstance(item, tuple) else (item, {}))

    def slow(self, seconds: float) -> None:
        self._server.script.delay_seconds = seconds

    @property
    def seen(self) -> list[Received]:
        return list(self._server.script.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now
