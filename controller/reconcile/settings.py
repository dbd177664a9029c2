"""Settings of a controller process, with bounded, documented defaults (units in the names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from controller.notify.forge import Forge
from controller.notify.signing import WebhookSecret
from controller.reconcile.shards import StatusShard
from controller.reconcile.source import Source
from fleetcd.compat import UTC

if TYPE_CHECKING:  # the cache imports the reconcile's modules, which import these settings
    from controller.reconcile.cache import ReconcileCache


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ControllerSettings:
    source: Source
    gnupghome: Path  # holds the controller's secret key (fleet.yaml trust.controller)
    # Robots' status in several repositories (docs/git-server.md, "Status shards"): read from
    # every one of these, each robot's only from its own; empty: from ``source``.
    status_shards: tuple[StatusShard, ...] = ()
    namespaces: bool = True  # per-robot GIT_NAMESPACE refs: O(1) no-op polls (docs/git-server.md)
    push_attempts: int = 5  # lost state-branch races retried on the new tip before giving up
    # Bundles are renewed at least this long before they expire, spread over ``renewal_window``
    # before that, at most ``renewals_per_reconcile`` per reconcile unless one is that close
    # (controller.delivery.select; both clamped to the fleet's bundle_expiry_seconds).
    root_refresh_before: timedelta = timedelta(days=2)
    renewal_window: timedelta = timedelta(days=1)
    renewals_per_reconcile: int = 1000
    notify: bool = True  # POST webhooks after a successful push
    webhook_secret: WebhookSecret | None = None  # signs them (from a file or the environment, never git)
    commit_status: Forge | None = None  # where main's commit status is posted, if anywhere
    # False: skip the idle fast path, reconcile in full even when nothing is new (a metrics-enabled
    # controller's first pass, so its fleet gauges exist from the start).
    idle_fast_path: bool = True
    now: Callable[[], datetime] = field(default=utc_now)  # injected in tests (DST, timeouts)
    # Called with a step name between write steps; tests kill the process there (kill -9 faults).
    checkpoint: Callable[[str], None] = field(default=lambda _step: None)
    # Parsed git objects kept between reconciles (``controller run``); None: every reconcile reads
    # and parses main and the state branch in full (``reconcile --once``). Same outcome either way.
    cache: ReconcileCache | None = None
