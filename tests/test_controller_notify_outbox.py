"""The webhook outbox over a fleet's life: webhooks added, removed and subscribed by short names.

Real reconciles of a real fleet repository POST to a real local HTTP server
(:class:`tests.hookreceiver.HookReceiver`). What the state branch holds is read back with git from
the server, every version of every file: a webhook's URL (often carrying a token) never lands
there, only its sha256. A webhook taken out of fleet.yaml while deliveries to it are pending has
them dropped, audited, and hears nothing more; one added later hears only what happens after it
was added, never the fleet's past; ``halted`` subscribes to ``rollout_halted``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.notify.outbox import decode, webhook_id
from controller.state.layout import OUTBOX_FILE
from fleetcd.git.refs import STATE_BRANCH
from tests.fleetrepo import FleetRepoBuilder
from tests.gitrepos import free_port, git
from tests.gpgkeys import KeyFactory
from tests.hookreceiver import HookReceiver
from tests.sim.world import STAGING, ControllerWorld, audit_lines, fail_the_canary, make_world, pass_wave

TOKEN = "tok-3f9a0c5e"  # what a chat or paging service puts in a webhook URL


def with_hooks(*hooks: dict[str, Any]) -> Callable[[FleetRepoBuilder], None]:
    def configure(fleet: FleetRepoBuilder) -> None:
        fleet.fleet["webhooks"] = list(hooks)

    return configure


def heard(receiver: HookReceiver, path: str | None = None) -> list[str]:
    """The event kinds ``receiver`` was sent (at ``path``), in order."""
    return [r.headers["X-Fleetcd-Event"] for r in receiver.seen if path is None or r.path == path]


def events_of(world: ControllerWorld, kind: str) -> list[dict[str, Any]]:
    return [line["event"] for line in audit_lines(world.state()) if line["event"]["kind"] == kind]


def every_state_blob(server: Path) -> bytes:
    """Every version of every file the state branch ever held, concatenated (git cat-file --batch)."""
    listed = git("rev-list", "--objects", "--filter=object:type=blob", STATE_BRANCH, cwd=server)
    oids = "".join(line.split(" ", 1)[0] + "\n" for line in listed.splitlines() if line)
    done = subprocess.run(
        ["git", "cat-file", "--batch"], input=oids.encode(), cwd=server, capture_output=True, check=True
    )
    assert b" blob " in done.stdout  # (the commits listed with them are read too: no matter)
    return done.stdout


def test_a_webhook_url_and_its_token_never_reach_the_state_branch(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    url = receiver.url(f"/hook?token={TOKEN}")
    receiver.reply(*[400] * 50)  # refuses: the entries stay in the outbox, then are dropped
    world = make_world(tmp_path, keys, configure=with_hooks({"url": url}), notify=True)
    world.reconcile()
    pending = decode(world.state().files.get(OUTBOX_FILE))
    assert {entry.webhook for entry in pending} == {webhook_id(url)}
    for _ in range(6):
        world.clock.tick(5)
        world.reconcile()
    assert events_of(world, "notify_dropped"), "the refused deliveries were dropped, audited"

    stored = every_state_blob(world.server)
    assert TOKEN.encode() not in stored and b"/hook" not in stored
    assert webhook_id(url).encode() in stored  # named by its sha256 instead


def test_a_webhook_removed_from_fleet_yaml_has_its_pending_deliveries_dropped_audited(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    receiver.reply(400, 400)  # the first round is refused: both transitions stay pending
    world = make_world(tmp_path, keys, configure=with_hooks({"url": receiver.url("/gone")}), notify=True)
    assert world.reconcile().notified == 0
    assert len(decode(world.state().files.get(OUTBOX_FILE))) == 2

    world.fleet.fleet.pop("webhooks")
    world.merge("no more webhooks")
    world.clock.tick(5)
    world.reconcile()
    world.clock.tick(5)
    pass_wave(world, STAGING, "staging")  # transitions the removed webhook would have heard

    assert len(receiver.seen) == 2  # only the refused round
    assert OUTBOX_FILE not in world.state().files
    dropped = events_of(world, "notify_dropped")
    assert sorted(e["data"]["kind"] for e in dropped) == ["rollout_created", "wave_started"]
    assert {e["reason"] for e in dropped} == {"the webhook is no longer in fleet.yaml"}
    assert {e["data"]["webhook"] for e in dropped} == {webhook_id(receiver.url("/gone"))}


def test_a_webhook_added_later_hears_only_what_happens_after_it_was_added(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    world = make_world(tmp_path, keys, configure=with_hooks({"url": receiver.url("/first")}), notify=True)
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    first = heard(receiver, "/first")
    assert sorted(first) == ["rollout_created", "wave_passed", "wave_started", "wave_started"]

    world.fleet.fleet["webhooks"].append({"url": receiver.url("/later")})
    world.merge("a second webhook")
    world.clock.tick(5)
    world.reconcile()
    assert heard(receiver, "/later") == []  # the fleet's past is not replayed to it

    fail_the_canary(world)
    later = heard(receiver, "/later")
    assert "wave_failed" in later and set(later) <= {"wave_failed", "rollout_halted"}
    assert heard(receiver, "/first")[len(first) :] == later  # both hear the same new transitions


def test_halted_subscribes_to_rollout_halted_and_nothing_else(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    hooks = with_hooks({"url": receiver.url("/pager"), "events": ["halted", "created"]})
    world = make_world(tmp_path, keys, configure=hooks, notify=True)
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    assert heard(receiver) == ["rollout_created"]

    fail_the_canary(world)
    assert heard(receiver) == ["rollout_created", "rollout_halted"]
    body = json.loads(receiver.seen[-1].body)
    assert body["event"]["kind"] == "rollout_halted" and body["event"]["rollout"] == "nav"


def test_an_unreachable_webhook_s_error_keeps_its_token_off_the_state_branch(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """requests names the URL's path and query in its connection errors ("Max retries exceeded with
    url: /hook/<token>?sig=..."); the error is kept with the pending entry (and, once dropped, in
    the notify_dropped line), on the state branch robots may read."""
    url = f"http://127.0.0.1:{free_port()}/services/{TOKEN}?sig={TOKEN}"  # nothing listens there
    world = make_world(tmp_path, keys, configure=with_hooks({"url": url}), notify=True)
    world.reconcile()
    world.clock.tick(5)
    world.reconcile()  # folds the first round's failures into the outbox
    pending = decode(world.state().files.get(OUTBOX_FILE))
    assert pending and all("ConnectionError" in (entry.last_error or "") for entry in pending)

    assert TOKEN.encode() not in every_state_blob(world.server)  # recorded without the URL's secrets
