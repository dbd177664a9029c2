"""``--metrics-address`` in each form docs/metrics.md gives: ``127.0.0.1:PORT``, ``[::1]:PORT`` for
IPv6, port 0 for any free port; the URL ``controller run`` prints is one a person can paste.

``[::1]:9464`` was refused with "cannot listen: Address family for hostname not supported" (the
server bound IPv4 only), and the printed URL for it would have been ``http://::1:PORT/metrics``.
Real sockets, real HTTP; ``controller run`` as a process against a server that does not exist
(its passes fail and back off; the metrics are served all the same).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from controller.metrics.serve import MetricsServer, parse_address, url_of

ROOT = Path(__file__).resolve().parent.parent


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


@pytest.mark.parametrize(
    ("text", "family"),
    [
        pytest.param("127.0.0.1:0", socket.AF_INET, id="ipv4"),
        pytest.param("[::1]:0", socket.AF_INET6, id="ipv6", marks=needs_ipv6),
    ],
)
def test_each_documented_address_form_serves_metrics_on_its_own_family(text: str, family: int) -> None:
    host, port = parse_address(text)
    with MetricsServer(host, port, lambda: b"fleetcd_up 1\n") as server:
        url = url_of(host, server.port)
        assert get(url) == (200, b"fleetcd_up 1\n")
        with socket.socket(family) as other:  # the port is really bound on that family
            assert other.connect_ex((host, server.port)) == 0


def test_the_printed_url_puts_an_ipv6_host_in_brackets_and_every_address_as_a_star() -> None:
    assert url_of("::1", 9464) == "http://[::1]:9464/metrics"
    assert url_of("127.0.0.1", 9464) == "http://127.0.0.1:9464/metrics"
    assert url_of("", 9464) == "http://*:9464/metrics"


@needs_ipv6
def test_controller_run_on_an_ipv6_address_prints_a_url_that_answers(tmp_path: Path) -> None:
    argv = [
        "controller",
        "run",
        "--repo",
        str(tmp_path / "no-such-server.git"),
        "--cache",
        str(tmp_path / "c"),
    ]
    argv += ["--gnupghome", str(tmp_path), "--metrics-address", "[::1]:0", "--interval", "60"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from controller.cli import main; main()", *argv],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.fullmatch(r"metrics: (http://\[::1\]:\d+/metrics)\n", line)
        assert match, line
        status, body = get(match[1])
        assert status == 200 and b"fleetcd_reconciles_total" in body
    finally:
        process.terminate()
        process.wait(timeout=30)
