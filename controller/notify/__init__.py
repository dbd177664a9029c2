"""Notifications after a reconcile's write step: webhooks for rollout transitions (best effort)."""

from __future__ import annotations

from controller.notify.webhooks import ROLLOUT_TRANSITIONS, Delivery, WebhookSettings, notify, wants

__all__ = ["ROLLOUT_TRANSITIONS", "Delivery", "WebhookSettings", "notify", "wants"]
