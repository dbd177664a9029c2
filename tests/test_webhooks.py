"""Webhook notifications against a real local HTTP server: bodies, headers, retries, refusals, filters.

:class:`tests.hookreceiver.HookReceiver` records every POST and answers from a script of statuses.
Waiting is injected (``sleep`` records, the clock is fake), so retry schedules are asserted
exactly without any test waiting for them.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.audit.events import AuditEvent, AuditKind, event_key
from controller.notify import webhooks
from controller.notify.webhooks import ROLLOUT_TRANSITIONS, Delivery, WebhookSettings, messages, wants
from fleetcd.compat import UTC
from fleetcd.models.fleet import Webhook
from tests.gitrepos import free_port
from tests.hookreceiver import FakeTime, HookReceiver

AT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
FAST = WebhookSettings(backoff_initial_seconds=0.5, backoff_max_seconds=4.0, jitter_fraction=0.0)


def event(kind: AuditKind, rollout: str = "nav-1-4", **data: str) -> AuditEvent:
    return AuditEvent(at=AT, kind=kind, rollout=rollout, commit="c" * 40, reason=None, data=dict(data))


def send(
    hooks: list[Webhook], events: list[AuditEvent], fake: FakeTime, settings: WebhookSettings = FAST
) -> list[Delivery]:
    return webhooks.send(
        messages(hooks, events),
        fleet="demo",
        settings=settings,
        sleep=fake.sleep,
        clock=fake.clock,
        jitter=lambda: 0.5,
    )


def test_delivery_posts_the_event_with_an_idempotency_key(receiver: HookReceiver) -> None:
    halted = event(AuditKind.ROLLOUT_HALTED, wave="canary")

    [delivery] = send([Webhook(url=receiver.url())], [halted], FakeTime())

    assert (delivery.ok, delivery.attempts, delivery.status, delivery.error) == (True, 1, 200, None)
    [seen] = receiver.seen
    assert seen.path == "/hook"
    assert seen.headers["Idempotency-Key"] == event_key(halted) == delivery.event_key
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Fleetcd-Event"] == "rollout_halted"
    assert json.loads(seen.body) == {
        "format": "fleetcd.dev/webhook/v1",
        "fleet": "demo",
        "id": event_key(halted),  # what receivers dedupe by: deliveries are at least once
        "event": halted.as_json(),
    }


def test_server_error_then_success_is_retried_with_the_same_key_and_body(receiver: HookReceiver) -> None:
    receiver.reply(500, 503, 200)
    fake = FakeTime()

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.WAVE_PASSED)], fake)

    assert (delivery.ok, delivery.attempts, delivery.status) == (True, 3, 200)
    first, second, third = receiver.seen
    assert first.body == second.body == third.body
    assert {r.headers["Idempotency-Key"] for r in receiver.seen} == {delivery.event_key}
    assert fake.sleeps == [0.5, 1.0]  # exponential backoff


def test_jitter_shortens_each_delay_within_its_fraction(receiver: HookReceiver) -> None:
    receiver.reply(500, 200)
    fake = FakeTime()
    settings = WebhookSettings(backoff_initial_seconds=2.0, jitter_fraction=0.5)

    send([Webhook(url=receiver.url())], [event(AuditKind.WAVE_PASSED)], fake, settings)

    assert fake.sleeps == [1.5]  # 2.0 * (1 - 0.5 * jitter 0.5)


@pytest.mark.parametrize(
    ("retry_after", "slept"),
    [
        pytest.param("3", 3.0, id="seconds-longer-than-backoff"),
        pytest.param("0", 0.5, id="shorter-than-backoff-keeps-backoff"),
        pytest.param("3600", 30.0, id="capped"),
        pytest.param("soon", 0.5, id="unparseable-ignored"),
    ],
)
def test_retry_after_is_honoured_within_a_cap(receiver: HookReceiver, retry_after: str, slept: float) -> None:
    receiver.reply((429, {"Retry-After": retry_after}), 200)
    fake = FakeTime()

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.ROLLOUT_CREATED)], fake)

    assert delivery.ok and delivery.attempts == 2
    assert fake.sleeps == [slept]


@pytest.mark.parametrize(
    ("ahead_seconds", "zone", "low", "high"),
    [
        pytest.param(5, "GMT", 3.0, 5.0, id="http-date-ahead"),
        pytest.param(-3600, "GMT", 0.5, 0.5, id="http-date-past-keeps-backoff"),
        pytest.param(3600, "GMT", 30.0, 30.0, id="http-date-capped"),
        pytest.param(20, "-0000", 0.5, 0.5, id="http-date-without-zone-ignored"),
    ],
)
def test_a_retry_after_http_date_waits_until_then_within_the_cap(
    receiver: HookReceiver, ahead_seconds: int, zone: str, low: float, high: float
) -> None:
    """RFC 9110 allows an HTTP-date too; a date in the past must not make the retry immediate and
    one without a zone (RFC 2822 ``-0000``: unknown) is no instant at all."""
    when = datetime.now(UTC) + timedelta(seconds=ahead_seconds)
    receiver.reply((503, {"Retry-After": when.strftime(f"%a, %d %b %Y %H:%M:%S {zone}")}), 200)
    fake = FakeTime()

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.ROLLOUT_CREATED)], fake)

    assert delivery.ok and delivery.attempts == 2
    [slept] = fake.sleeps
    assert low <= slept <= high


def test_connection_refused_fails_after_bounded_attempts_without_raising() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there any more
    fake = FakeTime()
    settings = WebhookSettings(max_attempts=3, jitter_fraction=0.0)

    first, second = send(
        [Webhook(url=url)], [event(AuditKind.ROLLOUT_HALTED), event(AuditKind.ROLLBACK)], fake, settings
    )

    assert (first.ok, first.attempts, first.status) == (False, 3, None)
    assert first.error is not None and "ConnectionError" in first.error
    assert fake.sleeps == [0.5, 1.0]
    assert (second.ok, second.attempts) == (False, 0)  # a dead receiver is not retried per event
    assert second.error is not None and "unreachable" in second.error


def test_client_error_is_not_retried(receiver: HookReceiver) -> None:
    receiver.reply(400)
    fake = FakeTime()

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.ROLLOUT_ABORTED)], fake)

    assert (delivery.ok, delivery.attempts, delivery.status, delivery.error) == (False, 1, 400, "HTTP 400")
    assert fake.sleeps == []


def test_redirect_is_not_followed(receiver: HookReceiver) -> None:
    receiver.reply((307, {"Location": "http://127.0.0.1:1/elsewhere"}))

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.ROLLOUT_ABORTED)], FakeTime())

    assert (delivery.ok, delivery.status) == (False, 307)
    assert len(receiver.seen) == 1


def test_retries_stop_when_the_notify_budget_is_spent(receiver: HookReceiver) -> None:
    receiver.reply(500, 500, 500, 500)
    fake = FakeTime()
    settings = WebhookSettings(jitter_fraction=0.0, budget_seconds=1.0)

    first, second = send(
        [Webhook(url=receiver.url())],
        [event(AuditKind.WAVE_STARTED), event(AuditKind.WAVE_PASSED)],
        fake,
        settings,
    )

    assert (first.ok, first.attempts) == (False, 2)  # slept 0.5; the next 1.0 would overrun the budget
    assert first.error is not None and "budget" in first.error
    assert (second.ok, second.attempts) == (False, 1)  # still inside the budget: one try, no retry
    assert len(receiver.seen) == 3


def test_slow_receiver_times_out_and_is_retried(receiver: HookReceiver) -> None:
    receiver.slow(2.0)
    settings = WebhookSettings(read_timeout_seconds=0.2, max_attempts=2, jitter_fraction=0.0)

    [delivery] = send([Webhook(url=receiver.url())], [event(AuditKind.STALLED)], FakeTime(), settings)

    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 2, None)
    assert delivery.error is not None and "Timeout" in delivery.error


class _EndlessBody(BaseHTTPRequestHandler):
    """A receiver that answers 200 and then claims a gigabyte of body, trickling it forever."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return  # the controller hung up without reading: as it should


def test_a_receiver_streaming_an_endless_body_cannot_hold_the_controller() -> None:
    """Only the status line counts: the body is never read, so a hostile or broken receiver that
    sends a huge answer costs one request, not the notify budget."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessBody)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        started = time.monotonic()
        [delivery] = send([Webhook(url=url)], [event(AuditKind.ROLLOUT_COMPLETED)], FakeTime())
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert (delivery.ok, delivery.status, delivery.attempts) == (True, 200, 1)
    assert took < 5.0, f"took {took:.1f} s: the body was read"


def test_deliveries_do_not_leak_url_secrets(receiver: HookReceiver) -> None:
    secret_url = receiver.url("/services/T000/B000/s3cr3t-token?sig=abc")

    [delivery] = send([Webhook(url=secret_url)], [event(AuditKind.ROLLOUT_COMPLETED)], FakeTime())

    assert delivery.ok
    assert "s3cr3t" not in delivery.url and "sig=" not in delivery.url
    assert delivery.url.startswith("http://127.0.0.1:") and delivery.url.endswith("/…")
    assert "s3cr3t" not in json.dumps(delivery.as_audit_data())


def test_only_subscribed_event_kinds_are_delivered(receiver: HookReceiver) -> None:
    halts_only = Webhook(url=receiver.url("/halts"), events=["halted", "rollback"])
    everything = Webhook(url=receiver.url("/all"))
    events = [
        event(AuditKind.ROLLOUT_CREATED),
        event(AuditKind.DEVICE_REPORT),
        event(AuditKind.ROLLOUT_HALTED),
        event(AuditKind.ROLLBACK),
        event(AuditKind.HISTORY_REWRITTEN),
    ]

    deliveries = send([halts_only, everything], events, FakeTime())

    assert all(d.ok for d in deliveries)
    by_path = [(r.path, r.headers["X-Fleetcd-Event"]) for r in receiver.seen]
    assert by_path == [
        ("/halts", "rollout_halted"),
        ("/halts", "rollback"),
        ("/all", "rollout_created"),
        ("/all", "rollout_halted"),
        ("/all", "rollback"),
    ]


@pytest.mark.parametrize(
    ("events", "kind", "expected"),
    [
        pytest.param([], AuditKind.ROLLOUT_HALTED, True, id="default-transition"),
        pytest.param([], AuditKind.STALLED, True, id="default-stalled"),
        pytest.param([], AuditKind.DEVICE_REPORT, False, id="default-no-device-reports"),
        pytest.param(["halted"], AuditKind.ROLLOUT_HALTED, True, id="short-name"),
        pytest.param(["rollout_halted"], AuditKind.ROLLOUT_HALTED, True, id="full-name"),
        pytest.param(["halted"], AuditKind.ROLLOUT_RESUMED, False, id="other-kind"),
        pytest.param(["device_report"], AuditKind.DEVICE_REPORT, True, id="explicit-non-transition"),
        pytest.param(["wave_failed"], AuditKind.WAVE_FAILED, True, id="wave-kind"),
    ],
)
def test_subscription_decision_table(events: list[str], kind: AuditKind, expected: bool) -> None:
    assert wants(Webhook(url="https://hooks.fleet.test/x", events=events), kind) is expected


def test_no_subscribers_sends_nothing(receiver: HookReceiver) -> None:
    assert send([], [event(AuditKind.ROLLOUT_HALTED)], FakeTime()) == []
    assert receiver.seen == []


def test_default_subscription_names_only_real_audit_kinds() -> None:
    assert not ROLLOUT_TRANSITIONS - {kind.value for kind in AuditKind}
