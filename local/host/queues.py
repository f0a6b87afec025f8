"""Queue triggers on Azurite with the Functions host's retry and poison rules.

Fetch with a 10-minute lease; success deletes; failure makes the message visible again after
host.json `visibilityTimeout`; at `maxDequeueCount` failed attempts it moves to `<queue>-poison`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import Any

from azure.functions.queue import QueueMessage

from local.host.config import QueueOptions
from local.host.functions import HostedFunction
from shared.adapters.storage import StorageAccount

log = logging.getLogger("Host.Queues")

MIN_POLL = 0.1


class PoisonMessage(ValueError):
    """A message that must skip the retries: its body cannot be decoded."""


def decode_body(content: str, encoding: str) -> bytes:
    """The message body as the function sees it, per host.json `messageEncoding`."""
    if encoding == "none":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as error:
        raise PoisonMessage(
            f"message is not valid base64 ({error}); check messageEncoding"
        ) from error


class QueueListener:
    """Polls one queue for one function, with exponential back-off while it is empty."""

    def __init__(
        self,
        function: HostedFunction,
        queue_name: str,
        *,
        account: StorageAccount,
        options: QueueOptions,
        timeout: float | None,
        lease_seconds: int = 600,
    ) -> None:
        self.function = function
        self.lease_seconds = lease_seconds
        self.queue_name = queue_name
        self.options = options
        self.timeout = timeout
        service = account.queue_service()
        self.queue = service.get_queue_client(queue_name)
        # A queue whose name cannot take the suffix has no poison queue (the host's rule too).
        poison_name = f"{queue_name}-poison"
        self.poison = (
            service.get_queue_client(poison_name)
            if not queue_name.endswith("-poison") and len(poison_name) <= 63
            else None
        )

    def _receive(self) -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return list(
                self.queue.receive_messages(
                    max_messages=self.options.batch_size, visibility_timeout=self.lease_seconds
                )
            )
        except ResourceNotFoundError:
            return []  # the host does not create trigger queues; it waits for them

    def _to_poison(self, message: Any) -> None:
        from azure.core.exceptions import ResourceExistsError

        if self.poison is None:
            log.error(
                "Message %s on '%s' cannot be retried and has no poison queue; left invisible",
                message.id,
                self.queue_name,
            )
            return
        with contextlib.suppress(ResourceExistsError):
            self.poison.create_queue()
        self.poison.send_message(message.content)
        self.queue.delete_message(message)
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison.queue_name,
        )

    async def _process(self, message: Any) -> None:
        if message.dequeue_count > self.options.max_dequeue_count:
            await asyncio.to_thread(self._to_poison, message)
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except PoisonMessage as error:
            log.error("Message %s on '%s': %s", message.id, self.queue_name, error)
            await asyncio.to_thread(self._to_poison, message)
            return
        trigger_value = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            await self.function.invoke(
                trigger_value,
                reason=f"New queue message detected on '{self.queue_name}'.",
                timeout=self.timeout,
            )
        except Exception:  # noqa: BLE001 - a failed invocation is the retry rule's input
            if self.poison is None:
                # No poison queue to fall back on: the host leaves the message invisible rather
                # than risk a fast retry loop.
                log.error("Message %s on '%s' failed; left invisible", message.id, self.queue_name)
            elif message.dequeue_count >= self.options.max_dequeue_count:
                await asyncio.to_thread(self._to_poison, message)
            else:
                await asyncio.to_thread(
                    self.queue.update_message,
                    message,
                    visibility_timeout=int(self.options.visibility_timeout),
                )
            return
        await asyncio.to_thread(self.queue.delete_message, message)

    async def run(self) -> None:
        """Fetch a batch, run it concurrently, repeat; back off to maxPollingInterval when idle."""
        delay = MIN_POLL
        while True:
            try:
                messages = await asyncio.to_thread(self._receive)
            except Exception as error:  # noqa: BLE001 - storage hiccups must not end the listener
                log.error("Polling queue '%s' failed: %s", self.queue_name, error)
                messages = []
            if messages:
                delay = MIN_POLL
                results = await asyncio.gather(
                    *(self._process(message) for message in messages), return_exceptions=True
                )
                for error in (r for r in results if isinstance(r, Exception)):
                    log.error("Settling a message on '%s' failed: %s", self.queue_name, error)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.max_polling_interval)
