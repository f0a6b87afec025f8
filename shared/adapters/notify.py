"""Notifications: a message on the `notifications` queue (other systems read it) and, when
`POOLKEEPER_NOTIFY_WEBHOOK` is set, the same JSON on the webhook queue, which a queue trigger
POSTs to the webhook (`deliver`): never inside the request or job that notified, retried by the
host, and kept in the poison queue if the webhook stays down. Called by capacity flows.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from shared.adapters.queues import Queues

QUEUE_SETTING = "POOLKEEPER_NOTIFICATIONS_QUEUE"
WEBHOOK_SETTING = "POOLKEEPER_NOTIFY_WEBHOOK"
WEBHOOK_QUEUE_SETTING = "POOLKEEPER_WEBHOOK_QUEUE"


class WebhookFailed(Exception):
    """The webhook did not take a notification; names its host only (the URL is a credential)."""


SCHEMA = "poolkeeper/notification/v1"


class Notifier:
    def __init__(self, queues: Queues, settings: Mapping[str, str]) -> None:
        self._queues = queues
        self._queue = settings.get(QUEUE_SETTING) or "notifications"
        self._webhook = settings.get(WEBHOOK_SETTING) or None
        self._webhook_queue = settings.get(WEBHOOK_QUEUE_SETTING) or "notify-webhook"

    def send(
        self,
        *,
        pool: str,
        kind: str,
        severity: str,
        message: str,
        at: datetime,
        values: Mapping[str, Any] | None = None,
        advice: list[str] | None = None,
    ) -> dict:
        """Queue the notification, and for the webhook (delivered by `deliver`)."""
        body = {
            "schema": SCHEMA,
            "pool": pool,
            "kind": kind,
            "severity": severity,
            "message": message,
            "values": dict(values or {}),
            "advice": advice or [],
            "at": at.isoformat(),
        }
        text = json.dumps(body)
        self._queues.send(self._queue, text)
        if self._webhook:
            self._queues.send(self._webhook_queue, text)
        return body


def deliver(text: str, webhook: str, *, timeout: float = 5) -> None:
    """POST one queued notification to the webhook; WebhookFailed if it is not taken."""
    request = urllib.request.Request(
        webhook, data=text.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except OSError as error:
        host = urlsplit(webhook).hostname or "?"
        reason = getattr(error, "reason", None) or error
        raise WebhookFailed(f"notification webhook at {host} failed: {reason}") from None
