"""``webhooks[].events`` in fleet.yaml names audit events; a name that is none is refused.

A webhook subscribed to ``wave_failled`` (a typo) or to ``notify_dropped`` (never announced: a
dropped delivery announced to a receiver that keeps failing would drop again) would hear nothing,
silently: the alert someone counts on never comes. ``fleetcd validate`` names the file, the field
and the bad value; every name the controller can send validates, with or without ``rollout_``.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from controller.audit.events import AuditKind
from controller.notify.outbox import wants
from controller.notify.webhooks import redact
from fleetcd.models.fleet import Webhook, WebhookEvent
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

HOOK = "https://hooks.fleet.test/fleetcd"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


NOT_SENT = ["wave_failled", "notify_dropped", "Wave_Started", "rollout_wave_started", ""]


@pytest.mark.parametrize("name", NOT_SENT)
def test_a_webhook_event_no_reconcile_sends_is_refused_naming_it(fleet: FleetRepoBuilder, name: str) -> None:
    fleet.fleet["webhooks"] = [{"url": HOOK, "events": ["wave_started", name]}]
    fleet.write()
    result = fleet.validate()

    assert [(f[0], f[2], f[4]) for f in found(result)] == [("fleet.yaml", "webhooks[0].events[1]", "error")]
    assert repr(name) in result.diagnostics[0].message


def test_every_event_a_reconcile_can_send_validates_by_its_name(fleet: FleetRepoBuilder) -> None:
    sent = [kind.value for kind in AuditKind if kind is not AuditKind.NOTIFY_DROPPED]
    fleet.fleet["webhooks"] = [{"url": HOOK, "events": sent}]
    fleet.write()
    assert fleet.validate().ok


def test_rollout_events_validate_without_their_prefix(fleet: FleetRepoBuilder) -> None:
    short = [kind.value.removeprefix("rollout_") for kind in AuditKind if kind.value.startswith("rollout_")]
    fleet.fleet["webhooks"] = [{"url": HOOK, "events": short}]
    fleet.write()
    assert fleet.validate().ok


def test_each_name_a_webhook_may_list_makes_it_hear_some_event() -> None:
    for name in get_args(WebhookEvent):
        hook = Webhook(url=HOOK, events=[name])
        assert any(wants(hook, kind) for kind in AuditKind), f"{name!r} subscribes to nothing"


def test_each_event_but_notify_dropped_can_be_subscribed_to() -> None:
    names = set(get_args(WebhookEvent))
    assert {kind.value for kind in AuditKind} - names == {AuditKind.NOTIFY_DROPPED.value}


SECRET = "tok-9d1e"


@pytest.mark.parametrize(
    "url",
    [
        f"http://hooks.fleet.test:99999/x?token={SECRET}",
        f"http://hooks.fleet.test:-1/x?token={SECRET}",
        f"http://[::1/x?token={SECRET}",
        f"http://:80/x?token={SECRET}",
        f"https://?token={SECRET}",
        f"http://hooks fleet.test/x?token={SECRET}",
        f"http://hooks.fleet.test/x?token={SECRET}\n",
    ],
    ids=["port-out-of-range", "port-negative", "open-bracket", "no-host", "only-a-query", "space", "newline"],
)
def test_a_webhook_url_the_controller_could_not_post_to_is_refused_without_repeating_it(
    fleet: FleetRepoBuilder, url: str
) -> None:
    """Such a URL once passed validation; sending a webhook to it then raised ValueError (a port
    out of range, an open bracket) instead of failing that delivery, or failed each delivery with
    requests' error text, which quotes the whole URL, token included (the outbox keeps it)."""
    fleet.fleet["webhooks"] = [{"url": url}]
    fleet.write()
    result = fleet.validate()

    assert [(f[0], f[2], f[4]) for f in found(result)] == [("fleet.yaml", "webhooks[0].url", "error")]
    assert SECRET not in result.diagnostics[0].message


@pytest.mark.parametrize(
    "url", ["https://hooks.fleet.test/x?token=a", "http://[::1]:8080/hook", "http://10.0.0.7:80", "https://h"]
)
def test_webhook_urls_the_controller_can_post_to_validate(fleet: FleetRepoBuilder, url: str) -> None:
    fleet.fleet["webhooks"] = [{"url": url}]
    fleet.write()
    assert fleet.validate().ok, found(fleet.validate())


@pytest.mark.parametrize("url", ["http://h:99999/x?token=s", "http://[::1/x?token=s"])
def test_a_log_line_never_fails_on_a_url_that_does_not_parse(url: str) -> None:

    assert redact(url) == "(a URL that does not parse)"
