"""The http health probe (agent/health/http.py) against apps that answer badly: a new version's app is
the least trusted thing on the robot, and its answer decides whether it stays or is rolled back.

Real servers on 127.0.0.1: raw sockets that write exactly the bytes of each case (garbage instead of
HTTP, a reset after accepting, a status line cut in half, headers that never end, an endless body),
and a real HTTP server for the redirect. What the watch window needs from every probe attempt:

* an answer that is not a clean HTTP status is a failed attempt with a reason naming the URL,
  never an exception out of the probe and never a pass;
* nothing the app sends can hold the probe past its ``timeout_seconds`` or make the agent read an
  endless body;
* a redirect is judged by its own status (3xx), never followed to somewhere that answers 200.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.health.probes import attempt
from fleetcd.models.release import HttpProbe
from tests.httpserver import QuietHandler, serve_handler

Answer = Callable[[socket.socket, threading.Event], None]  # the connection, the end of the test
PROBE_TIMEOUT_SECONDS = 2


def http_probe(url: str, **extra: Any) -> HttpProbe:
    fields = {
        "name": "web",
        "type": "http",
        "url": url,
        "attempts": 1,
        "timeout_seconds": PROBE_TIMEOUT_SECONDS,
    }
    return HttpProbe.model_validate(fields | extra)


@contextmanager
def raw_server(answer: Answer) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that runs ``answer`` on each connection; yields the probe's URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)  # accept() wakes up to see the end of the test
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed at the end of the test
            with conn:
                conn.settimeout(10)
                try:
                    conn.recv(4096)  # the request; its content does not matter here
                    answer(conn, stop)
                except OSError:
                    pass  # the probe gave up first: that is the point of some cases

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def send(data: bytes) -> Answer:
    return lambda conn, _stop: conn.sendall(data)


def reset(conn: socket.socket, _stop: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close


def endless_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(100_000):
        conn.sendall(f"X-Filler-{n}: {'a' * 64}\r\n".encode())
        if stop.wait(0.001):
            return


def trickle_status_line(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n\r\n":
        conn.sendall(bytes([byte]))
        if stop.wait(PROBE_TIMEOUT_SECONDS + 0.5):  # a gap longer than the read timeout
            return


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    while not stop.is_set():
        conn.sendall(b"x" * 65536)


HOSTILE: dict[str, Answer] = {
    "garbage": send(b"\x00\xffnot http at all\r\n\r\n"),
    "empty-close": send(b""),
    "reset": reset,
    "half-status-line": send(b"HTTP/1.1 2"),
    "status-not-a-number": send(b"HTTP/1.1 OK 200\r\n\r\n"),
    "http-0.9-body-only": send(b"<html>ok</html>"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_an_answer_that_is_not_http_fails_the_attempt_naming_the_url(case: str) -> None:
    with raw_server(HOSTILE[case]) as url:
        result = attempt(http_probe(url), allowlist=[])

    assert not result.ok
    assert url in result.detail
    assert not result.permanent  # the app may still come up: the next attempt asks again


def test_headers_that_never_end_cannot_hold_the_probe_or_pass_it() -> None:
    with raw_server(endless_headers) as url:
        started = time.monotonic()
        result = attempt(http_probe(url), allowlist=[])
        took = time.monotonic() - started

    assert not result.ok and url in result.detail
    assert took < 60  # urllib3's header cap or the read timeout ends it, not the app


def test_a_trickled_status_line_is_judged_on_what_arrives_in_time() -> None:
    with raw_server(trickle_status_line) as url:
        started = time.monotonic()
        result = attempt(http_probe(url), allowlist=[])
        took = time.monotonic() - started

    assert not result.ok and "no answer within" in result.detail
    assert took < 4 * PROBE_TIMEOUT_SECONDS


def test_an_endless_body_is_never_read_and_a_200_passes_at_once() -> None:
    with raw_server(endless_body) as url:
        started = time.monotonic()
        result = attempt(http_probe(url), allowlist=[])
        took = time.monotonic() - started

    assert result.ok and "status 200" in result.detail
    assert took < 2 * PROBE_TIMEOUT_SECONDS


def test_a_redirect_to_a_healthy_page_is_judged_as_the_redirect() -> None:
    class Redirect(QuietHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self.send_response(302)
                self.send_header("Location", "/really-healthy")
                self.end_headers()
            else:
                self.send_response(200)
                self.end_headers()

    with serve_handler(Redirect) as base:
        failed = attempt(http_probe(f"{base}/healthz"), allowlist=[])
        expected = attempt(http_probe(f"{base}/healthz", expect_status=302), allowlist=[])

    assert not failed.ok and "status 302, expected 200" in failed.detail
    assert expected.ok


def test_a_probe_with_retries_counts_each_hostile_answer_as_one_failed_attempt() -> None:
    with raw_server(HOSTILE["garbage"]) as url:
        result = attempt(http_probe(url, attempts=3, interval_seconds=1), allowlist=[])

    assert not result.ok and result.attempts == 1  # attempt() is one try; run_probe does the retries
