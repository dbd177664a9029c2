"""One commit-status POST (:func:`controller.notify.webhooks.post_commit_status`) against real local
HTTP servers that misbehave the ways forges do: a refused token, rate limiting with ``Retry-After``,
a 5xx storm, a redirect to another host, a forge that never answers, a port that speaks no HTTP.

The reconcile around it is in tests/test_commit_status.py and the settings in
tests/test_notify_forge_settings.py. Here: what is retried and what is not, how long the waits are
(a :class:`FakeTime` clock, so nothing sleeps for real), and that the token goes out in exactly one
header and never into the delivery record that is logged.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.notify.forge import POSTED_FILE, CommitState, Forge, ForgeKind
from controller.notify.webhooks import Delivery, WebhookSettings, post_commit_status
from controller.reconcile.notify_step import post_status
from tests.hookreceiver import FakeTime, HookReceiver

TOKEN = "glpat-not-a-real-token-4f3c2b1a"  # a test value
SHA = "c0ffee" + "0" * 34
NO_JITTER = 0.0
DEFAULTS = WebhookSettings()


def post(
    forge: Forge,
    time: FakeTime,
    state: CommitState = CommitState.PENDING,
    settings: WebhookSettings = DEFAULTS,
) -> Delivery:
    return post_commit_status(
        forge,
        SHA,
        state,
        "rollout nav progressing",
        settings=settings,
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: NO_JITTER,
    )


def assert_token_kept_out(delivery: Delivery) -> None:
    assert TOKEN not in json.dumps(delivery.as_audit_data())
    where = f"{delivery.url} {delivery.error}"
    assert "acme" not in where and SHA not in where, where  # the API path is redacted too


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_the_token_goes_out_in_exactly_one_header_and_never_in_the_body(
    receiver: HookReceiver, kind: ForgeKind
) -> None:
    forge = Forge(kind, receiver.url("/api"), "acme/fleet", TOKEN)

    delivery = post(forge, FakeTime())

    assert delivery.ok and delivery.attempts == 1 and delivery.status == 200
    [seen] = receiver.seen
    carrying = [name for name, value in seen.headers.items() if TOKEN in value]
    expected = "PRIVATE-TOKEN" if kind is ForgeKind.GITLAB else "Authorization"
    assert carrying == [expected]
    assert TOKEN.encode() not in seen.body
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == f"{SHA}:pending"
    assert seen.headers["X-Fleetcd-Event"] == "commit_status"


def test_a_refused_token_is_not_retried_and_not_echoed(receiver: HookReceiver) -> None:
    receiver.reply(401)
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), time)

    assert not delivery.ok and delivery.status == 401 and delivery.error == "HTTP 401"
    assert len(receiver.seen) == 1 and time.sleeps == []
    assert_token_kept_out(delivery)


@pytest.mark.parametrize("status", [403, 404, 422], ids=str)
def test_a_client_error_from_the_forge_costs_one_attempt(receiver: HookReceiver, status: int) -> None:
    receiver.reply(status)

    delivery = post(Forge(ForgeKind.GITEA, receiver.url(""), "acme/fleet", TOKEN), FakeTime())

    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, status)
    assert len(receiver.seen) == 1


def test_a_rate_limited_post_waits_as_long_as_the_forge_asks_then_lands(receiver: HookReceiver) -> None:
    receiver.reply((429, {"Retry-After": "7"}), (429, {"Retry-After": "2"}))
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), time)

    assert delivery.ok and delivery.attempts == 3
    # the forge asked for 7 s, more than the 0.5 s backoff; then 2 s, more than the 1 s backoff
    assert time.sleeps == [7.0, 2.0]
    assert len({r.body for r in receiver.seen}) == 1  # every attempt sends the same status


def test_a_forge_asking_to_wait_an_hour_is_waited_for_only_up_to_the_cap(receiver: HookReceiver) -> None:
    receiver.reply(*[(503, {"Retry-After": "3600"})] * 4)
    time = FakeTime()
    settings = WebhookSettings(retry_after_cap_seconds=30.0, budget_seconds=1000.0)

    delivery = post(Forge(ForgeKind.GITLAB, receiver.url(""), "42", TOKEN), time, settings=settings)

    assert not delivery.ok and delivery.attempts == 4 and delivery.status == 503
    assert time.sleeps == [30.0, 30.0, 30.0]


def test_a_retry_after_that_is_garbage_falls_back_to_the_backoff(receiver: HookReceiver) -> None:
    receiver.reply((503, {"Retry-After": "soon-ish"}), (503, {"Retry-After": "-5"}))
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), time)

    assert delivery.ok and delivery.attempts == 3
    assert time.sleeps == [0.5, 1.0]


def test_a_5xx_storm_is_retried_with_doubling_backoff_then_given_up(receiver: HookReceiver) -> None:
    receiver.reply(500, 502, 503, 504, 500)
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITEA, receiver.url(""), "acme/fleet", TOKEN), time)

    assert not delivery.ok and delivery.attempts == 4 and delivery.status == 504
    assert time.sleeps == [0.5, 1.0, 2.0]
    assert delivery.error == "HTTP 504"
    assert_token_kept_out(delivery)


def test_a_retry_that_would_outlast_the_budget_is_not_made(receiver: HookReceiver) -> None:
    receiver.reply((503, {"Retry-After": "20"}), 200)
    time = FakeTime()
    settings = WebhookSettings(budget_seconds=10.0)

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), time, settings=settings)

    assert not delivery.ok and delivery.attempts == 1 and time.sleeps == []
    assert delivery.error is not None and "budget spent" in delivery.error


def test_a_redirect_to_another_host_is_not_followed_so_the_token_stays_home(receiver: HookReceiver) -> None:
    elsewhere = HookReceiver()
    try:
        receiver.reply((302, {"Location": elsewhere.url("/steal")}))
        delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), FakeTime())
    finally:
        elsewhere.close()

    assert not delivery.ok and delivery.status == 302 and delivery.attempts == 1
    assert elsewhere.seen == []


def test_a_forge_that_never_answers_times_out_within_the_read_timeout(receiver: HookReceiver) -> None:
    receiver.slow(2.0)
    settings = WebhookSettings(read_timeout_seconds=0.2, max_attempts=2)
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), time, settings=settings)

    assert not delivery.ok and delivery.status is None and delivery.attempts == 2
    assert delivery.error is not None and delivery.error.startswith(("ReadTimeout", "ConnectionError"))
    assert time.sleeps == [0.5]
    assert_token_kept_out(delivery)


def test_a_forge_that_is_not_listening_is_retried_then_reported_unreachable() -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITEA, f"http://127.0.0.1:{port}", "acme/fleet", TOKEN), time)

    assert not delivery.ok and delivery.status is None and delivery.attempts == 4
    assert delivery.error is not None and delivery.error.startswith("ConnectionError")
    assert delivery.url == f"http://127.0.0.1:{port}/…"
    assert_token_kept_out(delivery)


@pytest.fixture
def garbage_port() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that reads the request and answers bytes that are not HTTP, then hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    requests_seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                requests_seen.append(conn.recv(65536))
                conn.sendall(b"\x00\xffSSH-2.0-not-a-forge\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], requests_seen
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
    listener.close()
    thread.join(timeout=5)


def test_a_port_that_answers_garbage_is_a_failed_delivery_not_a_crash(
    garbage_port: tuple[int, list[bytes]],
) -> None:
    port, seen = garbage_port
    time = FakeTime()

    delivery = post(Forge(ForgeKind.GITLAB, f"http://127.0.0.1:{port}/api/v4", "acme/fleet", TOKEN), time)

    assert not delivery.ok and delivery.status is None and delivery.attempts == 4
    assert len(seen) == 4 and all(
        request.startswith(b"POST /api/v4/projects/acme%2Ffleet/") for request in seen
    )
    assert_token_kept_out(delivery)


@pytest.mark.parametrize("status", [200, 201, 202, 204], ids=str)
def test_any_2xx_is_accepted_on_the_first_attempt(receiver: HookReceiver, status: int) -> None:
    receiver.reply(status)  # GitHub and Gitea answer 201, GitLab 201 or 200

    delivery = post(Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN), FakeTime())

    assert (delivery.ok, delivery.attempts, delivery.status, delivery.error) == (True, 1, status, None)


def test_a_failed_post_leaves_no_memory_so_the_next_reconcile_posts_again(
    tmp_path: Path, receiver: HookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.reply(401)
    forge = Forge(ForgeKind.GITEA, receiver.url(""), "acme/fleet", TOKEN)

    assert not post_status(forge, tmp_path, SHA, None, None, [("nav", "progressing")])
    assert not (tmp_path / POSTED_FILE).exists()
    assert TOKEN not in caplog.text and "HTTP 401" in caplog.text

    assert post_status(forge, tmp_path, SHA, None, None, [("nav", "progressing")])
    assert post_status(forge, tmp_path, SHA, None, None, [("nav", "progressing")])  # remembered
    assert len(receiver.seen) == 2
    remembered = (tmp_path / POSTED_FILE).read_text()
    assert TOKEN not in remembered and json.loads(remembered)["state"] == "pending"
