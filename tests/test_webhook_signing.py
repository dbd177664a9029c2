"""Signed webhooks against a real local HTTP server, checked by the receiver code docs/operating.md
shows (extracted from the page and executed): a real delivery verifies; a tampered body, a wrong
secret or a replay outside the window does not; the secret reaches neither the repository, the
state branch, the mirror nor the logs.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from controller.audit.events import AuditEvent, AuditKind
from controller.cli import build
from controller.notify.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretError,
    WebhookSecret,
    load_secret,
)
from controller.notify.webhooks import WebhookSettings, messages, send
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import run
from fleetcd.compat import UTC
from fleetcd.models.fleet import Webhook
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.hookreceiver import FakeTime, HookReceiver, Received
from tests.sim.world import make_world

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operating.md"
SECRET = b"correct horse battery staple 42"
Verify = Callable[..., bool]


def documented_verify() -> Verify:
    """The ``verify`` function of the Python block in the "Webhooks" section of operating.md."""
    section = DOCS.read_text(encoding="utf-8").split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    scope: dict[str, object] = {}
    exec(compile(code, str(DOCS), "exec"), scope)  # the docs' own snippet, under test
    verify = scope["verify"]
    assert callable(verify)
    return verify  # type: ignore[return-value]


@pytest.fixture(scope="module")
def verify() -> Verify:
    return documented_verify()


def halted() -> AuditEvent:
    at = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    return AuditEvent(at=at, kind=AuditKind.ROLLOUT_HALTED, rollout="nav", commit="c" * 40, data={})


def deliver(receiver: HookReceiver, secret: WebhookSecret | None, wall: float = 1_700_000_000.0) -> Received:
    [delivery] = send(
        messages([Webhook(url=receiver.url())], [halted()]),
        fleet="demo",
        settings=WebhookSettings(jitter_fraction=0.0),
        sleep=FakeTime().sleep,
        secret=secret,
        wall=lambda: wall,
    )
    assert delivery.ok
    return receiver.seen[-1]


def timestamp(request: Received) -> int:
    return int(request.headers[TIMESTAMP_HEADER])


def test_a_signed_delivery_verifies_with_the_documented_receiver_check(
    receiver: HookReceiver, verify: Verify
) -> None:
    seen = deliver(receiver, WebhookSecret(SECRET, "test"))

    assert seen.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify(SECRET, seen.headers, seen.body, now=timestamp(seen) + 5)


def test_a_tampered_body_fails_verification(receiver: HookReceiver, verify: Verify) -> None:
    seen = deliver(receiver, WebhookSecret(SECRET, "test"))
    forged = seen.body.replace(b"rollout_halted", b"rollout_resumed")

    assert forged != seen.body
    assert not verify(SECRET, seen.headers, forged, now=timestamp(seen))
    assert not verify(SECRET, seen.headers, seen.body + b" ", now=timestamp(seen))


def test_a_moved_timestamp_fails_verification(receiver: HookReceiver, verify: Verify) -> None:
    seen = deliver(receiver, WebhookSecret(SECRET, "test"))
    fresh = {**seen.headers, TIMESTAMP_HEADER: str(timestamp(seen) + 3600)}  # a replay made to look new

    assert not verify(SECRET, fresh, seen.body, now=timestamp(seen) + 3600)


def test_the_wrong_secret_fails_verification(receiver: HookReceiver, verify: Verify) -> None:
    seen = deliver(receiver, WebhookSecret(SECRET, "test"))

    assert not verify(b"another secret of enough bytes", seen.headers, seen.body, now=timestamp(seen))


def test_a_replayed_old_delivery_is_refused_after_the_window(receiver: HookReceiver, verify: Verify) -> None:
    seen = deliver(receiver, WebhookSecret(SECRET, "test"), wall=1_700_000_000.0)

    assert timestamp(seen) == 1_700_000_000
    assert verify(SECRET, seen.headers, seen.body, now=1_700_000_000 + 299)
    assert not verify(SECRET, seen.headers, seen.body, now=1_700_000_000 + 301)


def test_each_retry_is_signed_with_its_own_timestamp(receiver: HookReceiver, verify: Verify) -> None:
    receiver.reply(503, 200)
    fake = FakeTime()
    [delivery] = send(
        messages([Webhook(url=receiver.url())], [halted()]),
        fleet="demo",
        settings=WebhookSettings(jitter_fraction=0.0, backoff_initial_seconds=2.0),
        sleep=fake.sleep,
        clock=fake.clock,
        secret=WebhookSecret(SECRET, "test"),
        wall=lambda: 1_700_000_000.0 + fake.now,
    )

    assert delivery.ok and delivery.attempts == 2
    first, second = receiver.seen
    assert (timestamp(first), timestamp(second)) == (1_700_000_000, 1_700_000_002)
    assert first.body == second.body
    assert all(verify(SECRET, r.headers, r.body, now=1_700_000_002) for r in receiver.seen)


def test_without_a_secret_deliveries_go_unsigned_with_a_warning(
    receiver: HookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        seen = deliver(receiver, None)

    assert SIGNATURE_HEADER not in seen.headers and TIMESTAMP_HEADER not in seen.headers
    assert "unsigned" in caplog.text and "FLEETCD_WEBHOOK_SECRET" in caplog.text


def test_the_secret_never_shows_in_a_repr() -> None:
    secret = WebhookSecret(SECRET, "test")
    assert SECRET.decode() not in repr(secret) and SECRET.decode() not in str(secret)


def test_the_secret_file_and_the_environment_give_the_same_signature(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")  # as `echo` writes it

    from_file = load_secret(path, None)
    from_env = load_secret(None, SECRET.decode())

    assert from_file is not None and from_env is not None
    assert from_file.headers(b"{}", 1) == from_env.headers(b"{}", 1)
    assert load_secret(None, None) is None and load_secret(None, "") is None


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        pytest.param(b"short\n", None, "must be 16..4096 bytes, got 5", id="too-short"),
        pytest.param(b"x" * 5000, None, "at most 4096 bytes", id="too-long-read-bounded"),
        pytest.param(SECRET, SECRET.decode(), "both set", id="file-and-env"),
    ],
)
def test_an_unusable_secret_is_refused_naming_where_it_came_from(
    tmp_path: Path, content: bytes, env: str | None, message: str
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)

    with pytest.raises(SecretError, match=message) as refused:
        load_secret(path, env)

    assert "secret" in str(refused.value) and content.decode() not in str(refused.value)


def test_the_controller_cli_refuses_a_short_secret_file_without_printing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"hunter2\n")
    argv = ["controller", "reconcile", "--once", "--repo", str(tmp_path / "none.git")]
    argv += ["--gnupghome", str(tmp_path), "--webhook-secret-file", str(path)]

    assert run(build(), argv) == int(Exit.USAGE)

    err = capsys.readouterr().err
    assert str(path) in err and "hunter2" not in err


def test_a_reconcile_through_the_cli_signs_every_delivery_and_leaks_the_secret_nowhere(
    tmp_path: Path,
    keys: KeyFactory,
    receiver: HookReceiver,
    verify: Verify,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def webhooks(fleet: FleetRepoBuilder) -> None:
        fleet.fleet["webhooks"] = [{"url": receiver.url("/hook")}]

    world = make_world(tmp_path, keys, configure=webhooks, notify=True)
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET + b"\n")
    cache = tmp_path / "cli-cache"
    argv = ["controller", "reconcile", "--once", "--repo", str(world.server), "--cache", str(cache)]
    argv += ["--gnupghome", str(keys.home), "--webhook-secret-file", str(secret_file)]
    monkeypatch.delenv("FLEETCD_WEBHOOK_SECRET", raising=False)

    with caplog.at_level(logging.DEBUG):
        assert run(build(), argv) == int(Exit.OK)

    kinds = sorted(r.headers["X-Fleetcd-Event"] for r in receiver.seen)
    assert kinds == ["rollout_created", "wave_started"]
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.seen)  # the receiver's own clock
    leaked = SECRET.decode()
    out = capsys.readouterr()
    assert leaked not in caplog.text and leaked not in out.out and leaked not in out.err
    history = subprocess.run(
        ["git", "--git-dir", str(world.server), "log", "--all", "-p", "--format=%H %B"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"webhooks" in history and SECRET not in history  # the repository and the state branch
    assert not [p for p in cache.rglob("*") if p.is_file() and SECRET in p.read_bytes()]


def test_the_reconcile_settings_sign_with_the_secret(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver, verify: Verify
) -> None:
    def webhooks(fleet: FleetRepoBuilder) -> None:
        fleet.fleet["webhooks"] = [{"url": receiver.url("/hook")}]

    world = make_world(tmp_path, keys, configure=webhooks, notify=True)
    world.settings = replace(world.settings, webhook_secret=WebhookSecret(SECRET, "test"))
    assert SECRET.decode() not in repr(world.settings)

    world.reconcile()

    assert len(receiver.seen) == 2
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.seen)
    assert not any(verify(b"x" * 32, r.headers, r.body) for r in receiver.seen)
