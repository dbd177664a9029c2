"""Notifications after a reconcile's write step: webhooks for rollout transitions, at least once
(pending deliveries live in an outbox on the state branch until they are known delivered)."""

from __future__ import annotations

from controller.notify.webhooks import ROLLOUT_TRANSITIONS, Delivery, WebhookSettings, messages, send, wants

__all__ = ["ROLLOUT_TRANSITIONS", "Delivery", "WebhookSettings", "messages", "send", "wants"]
