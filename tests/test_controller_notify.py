"""Webhooks on rollout transitions, end to end: a reconcile of a real fleet repository POSTs to a
real local HTTP server (:class:`tests.test_webhooks.HookReceiver`), one request per subscribed
audit event with its event key as ``Idempotency-Key``; a replayed reconcile sends nothing new.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.notify.webhooks import PAYLOAD_FORMAT
from controller.reconcile.steps import reconcile_once
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory, shared_keys
from tests.test_controller_faults import audit_lines, make_world
from tests.test_controller_scenario import STAGING
from tests.test_webhooks import HookReceiver, receiver

__all__ = ["receiver"]  # the fixture, shared with the webhook unit tests


@pytest.fixture(scope="module")
def keys(gpg_available: str) -> KeyFactory:
    return shared_keys()


def test_a_reconcile_posts_its_rollout_transitions_once_with_idempotency_keys(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    def webhooks(fleet: FleetRepoBuilder) -> None:
        fleet.fleet["webhooks"] = [
            {"url": receiver.url("/all?token=s3cret")},
            {"url": receiver.url("/waves"), "events": ["wave_started", "wave_passed"]},
        ]

    world = make_world(tmp_path, keys, configure=webhooks, notify=True)
    world.reconcile()

    logged = {line["key"]: line["event"] for line in audit_lines(world.state())}
    seen = [(r.path, r.headers["X-Fleetcd-Event"]) for r in receiver.seen]
    assert sorted(seen) == [
        ("/all?token=s3cret", "rollout_created"),
        ("/all?token=s3cret", "wave_started"),
        ("/waves", "wave_started"),
    ]
    for request in receiver.seen:
        body = json.loads(request.body)
        assert (body["format"], body["fleet"]) == (PAYLOAD_FORMAT, "faults")
        assert logged[request.headers["Idempotency-Key"]] == body["event"]  # the key names the audit line

    replay = reconcile_once(world.settings)
    assert replay.events == [] and len(receiver.seen) == 3

    # The next transitions are sent, and only to the webhooks subscribed to them.
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)
    world.reconcile()
    kinds = [(r.path, r.headers["X-Fleetcd-Event"]) for r in receiver.seen[3:]]
    assert sorted(kinds) == [
        ("/all?token=s3cret", "wave_passed"),
        ("/all?token=s3cret", "wave_started"),
        ("/waves", "wave_passed"),
        ("/waves", "wave_started"),
    ]
