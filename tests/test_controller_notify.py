"""Webhooks on rollout transitions, end to end: a reconcile of a real fleet repository POSTs to a
real local HTTP server (:class:`tests.hookreceiver.HookReceiver`), one request per subscribed
audit event with its event key as ``Idempotency-Key``; a replayed reconcile sends nothing new.

Deliveries are at least once: a controller killed (real SIGKILL) between pushing the state branch
and notifying sends after its restart, from the outbox committed with the audit lines; a
receiver that refuses keeps getting the event on later reconciles until it is dropped, audited.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from controller.notify.outbox import MAX_ROUNDS
from controller.notify.webhooks import PAYLOAD_FORMAT
from controller.reconcile.steps import reconcile_once
from controller.state.layout import OUTBOX_FILE
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.hookreceiver import HookReceiver
from tests.sim.world import STAGING, ControllerWorld, assert_no_duplicates, audit_lines, make_world
from tests.test_controller_faults import reconcile_killed_at


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


def hooked(receiver: HookReceiver) -> Callable[[FleetRepoBuilder], None]:
    def configure(fleet: FleetRepoBuilder) -> None:
        fleet.fleet["webhooks"] = [{"url": receiver.url("/hook")}]

    return configure


def subscribed_keys(world: ControllerWorld) -> set[str]:
    transitions = {"rollout_created", "wave_started"}
    return {line["key"] for line in audit_lines(world.state()) if line["event"]["kind"] in transitions}


def received_ids(receiver: HookReceiver) -> list[str]:
    ids = []
    for request in receiver.seen:
        body = json.loads(request.body)
        assert body["id"] == request.headers["Idempotency-Key"]
        ids.append(body["id"])
    return ids


def outbox(world: ControllerWorld) -> bytes | None:
    return world.state().files.get(OUTBOX_FILE)


def test_a_controller_killed_between_the_push_and_the_notify_step_delivers_after_restart(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    world = make_world(tmp_path, keys, configure=hooked(receiver), notify=True)
    reconcile_killed_at(world.settings, world.clock.now, "state-pushed")
    assert receiver.seen == []
    pending = outbox(world)
    assert pending is not None and b"rollout_created" in pending and b"/hook" not in pending  # no URLs
    expected = subscribed_keys(world)
    assert len(expected) == 2

    world.clock.tick(5)
    restarted = reconcile_once(world.settings)
    assert (restarted.events, restarted.notified) == ([], 2)
    world.clock.tick(5)
    settled = reconcile_once(world.settings)  # records the deliveries: the outbox is gone
    assert settled.state_commit is not None and outbox(world) is None
    world.clock.tick(5)
    assert reconcile_once(world.settings).idle

    ids = received_ids(receiver)
    assert set(ids) == expected and len(ids) >= len(expected)  # exactly once per id after dedupe
    assert_no_duplicates(world.state())


def test_a_lost_mirror_sends_again_and_receivers_dedupe_by_id(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    world = make_world(tmp_path, keys, configure=hooked(receiver), notify=True)
    world.reconcile()
    shutil.rmtree(world.settings.source.mirror)  # what the notify step saw is lost with the cache
    world.clock.tick(5)
    world.reconcile()
    world.clock.tick(5)
    world.reconcile()
    assert outbox(world) is None

    ids = received_ids(receiver)
    assert len(ids) == 4 and set(ids) == subscribed_keys(world)  # each id twice: at least once


def test_a_refusing_receiver_gets_the_event_on_a_later_reconcile(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    receiver.reply(400, 400)  # not retried within a reconcile
    world = make_world(tmp_path, keys, configure=hooked(receiver), notify=True)
    assert world.reconcile().notified == 0
    world.clock.tick(5)
    assert world.reconcile().notified == 2
    world.clock.tick(5)
    world.reconcile()
    assert outbox(world) is None
    ids = received_ids(receiver)
    assert len(ids) == 4 and set(ids) == subscribed_keys(world)


def test_a_delivery_failing_every_round_is_dropped_with_an_audit_line(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    receiver.reply(*[400] * 2 * MAX_ROUNDS)
    world = make_world(tmp_path, keys, configure=hooked(receiver), notify=True)
    results = []
    for _ in range(MAX_ROUNDS + 1):
        results.append(world.reconcile())
        world.clock.tick(5)
    assert [r.notified for r in results] == [0] * (MAX_ROUNDS + 1)
    assert len(receiver.seen) == 2 * MAX_ROUNDS
    assert outbox(world) is None
    dropped = [
        line["event"] for line in audit_lines(world.state()) if line["event"]["kind"] == "notify_dropped"
    ]
    assert sorted(e["data"]["kind"] for e in dropped) == ["rollout_created", "wave_started"]
    assert all("HTTP 400" in e["reason"] for e in dropped)
    assert reconcile_once(world.settings).idle
