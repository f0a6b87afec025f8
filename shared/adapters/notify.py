"""Notifications: a message on the `notifications` queue (other systems read it) and, when
`POOLKEEPER_NOTIFY_WEBHOOK` is set, the same JSON POSTed there. Called by capacity flows.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from shared.adapters.queues import Queues

log = logging.getLogger("poolkeeper.notify")

QUEUE_SETTING = "POOLKEEPER_NOTIFICATIONS_QUEUE"
WEBHOOK_SETTING = "POOLKEEPER_NOTIFY_WEBHOOK"
SCHEMA = "poolkeeper/notification/v1"


class Notifier:
    def __init__(self, queues: Queues, settings: Mapping[str, str]) -> None:
        self._queues = queues
        self._queue = settings.get(QUEUE_SETTING) or "notifications"
        self._webhook = settings.get(WEBHOOK_SETTING) or None

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
        """Queue the notification; a failing outbound webhook is logged, never fatal."""
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
            request = urllib.request.Request(
                self._webhook,
                data=text.encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5):
                    pass
            except OSError as error:
                # The URL is a credential (Teams, Slack): its host only.
                host = urlsplit(self._webhook).hostname or "?"
                log.warning("Notification webhook at %s failed: %s", host, error)
        return body
