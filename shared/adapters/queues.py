"""Queue storage: enqueue a job message, now or after a visibility delay.

Messages are plain JSON text (host.json `messageEncoding: none`), so other systems can write them.
"""

from __future__ import annotations

import contextlib
from typing import Any

from shared.adapters.storage import StorageAccount


class Queues:
    def __init__(self, account: StorageAccount, **options: Any) -> None:
        """`options` go to the SDK client (timeouts, retries: see storage.INTAKE_OPTIONS)."""
        self._service = account.queue_service(**options)
        self._ready: set[str] = set()

    def _queue(self, name: str) -> Any:
        from azure.core.exceptions import ResourceExistsError

        client = self._service.get_queue_client(name)
        if name not in self._ready:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._ready.add(name)
        return client

    def send(self, queue: str, message: str, *, delay_seconds: int = 0) -> None:
        """Put `message` on `queue`, invisible for `delay_seconds` (whole seconds, <= 7 days)."""
        self._queue(queue).send_message(message, visibility_timeout=delay_seconds or None)
