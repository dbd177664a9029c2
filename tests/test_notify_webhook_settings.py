"""Webhook bounds and what the audit log may say about a receiver.

Deliveries against a real HTTP server are in tests/test_webhooks.py. Here: settings outside their
bounds are refused at start-up (a webhook must never hold the reconcile loop for long), the retry
delay doubles up to its cap and jitter only ever shortens it, and a receiver's URL is written to the
audit log without what often holds a token (user info, path, query).
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.notify.webhooks import WebhookSettings, redact


@pytest.mark.parametrize(
    "changes",
    [
        {"max_attempts": 0},
        {"max_attempts": 11},
        {"jitter_fraction": -0.1},
        {"jitter_fraction": 1.5},
        {"connect_timeout_seconds": 0},
        {"read_timeout_seconds": -1},
        {"budget_seconds": 0},
    ],
    ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values()))),
)
def test_settings_outside_their_bounds_are_refused_naming_the_setting(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        WebhookSettings(**changes)
    assert next(iter(changes)) in str(caught.value)


@pytest.mark.parametrize("attempts", [1, 10])
def test_attempt_counts_at_their_bounds_are_accepted(attempts: int) -> None:
    assert WebhookSettings(max_attempts=attempts).max_attempts == attempts


def test_the_retry_delay_doubles_up_to_its_cap() -> None:
    settings = WebhookSettings(backoff_initial_seconds=0.5, backoff_max_seconds=8.0, jitter_fraction=0.25)
    assert [settings.backoff(n, 0.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999999])
def test_jitter_only_shortens_a_delay_and_by_at_most_its_fraction(jitter: float) -> None:
    settings = WebhookSettings(jitter_fraction=0.25)
    for failed in range(1, 10):
        base = settings.backoff(failed, 0.0)
        delay = settings.backoff(failed, jitter)
        assert base * 0.75 <= delay <= base <= settings.backoff_max_seconds


def test_many_failures_never_overflow_the_delay() -> None:
    assert WebhookSettings().backoff(1000, 0.0) == WebhookSettings().backoff_max_seconds


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example/services/T000/B000/XXXXSECRET", "https://hooks.example/…"),
        ("https://hooks.example/?token=SECRET", "https://hooks.example/…"),
        ("https://user:SECRET@hooks.example:8443/hook", "https://hooks.example:8443/…"),
        ("https://hooks.example", "https://hooks.example"),
        ("https://hooks.example/", "https://hooks.example"),
        ("http://127.0.0.1:9000/x#SECRET", "http://127.0.0.1:9000/…"),
    ],
    ids=["token-in-path", "token-in-query", "password-in-userinfo", "bare-host", "root-path", "fragment"],
)
def test_a_receivers_url_is_logged_without_its_secrets(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "SECRET" not in redact(url)
