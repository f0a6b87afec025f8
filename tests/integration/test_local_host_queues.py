"""Queue triggers on Azurite with the Functions host's rules: delete, retry, poison, encoding."""

from __future__ import annotations

import base64
import json
import time
import uuid

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from tests.conftest import DEFAULT_HOST_JSON


def _queues(azurite, name: str):
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    queue = service.get_queue_client(name)
    queue.create_queue()
    return queue, service.get_queue_client(f"{name}-poison")


def _settings(azurite, queue: str) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "WORK_QUEUE": queue,
        "TICK_SCHEDULE": "0 0 0 1 1 *",
    }


def _count(queue) -> int:
    """Messages in the queue; 0 when the queue does not exist (yet)."""
    try:
        return queue.get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return 0


def _wait_for_message(queue, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _count(queue):
        time.sleep(0.1)


def test_always_failing_message_lands_in_poison_after_exactly_five_dequeues(
    start_host, azurite
) -> None:
    name = f"work-{uuid.uuid4().hex[:8]}"
    queue, poison = _queues(azurite, name)
    host = start_host(settings=_settings(azurite, name))
    queue.send_message("fail please")

    records = host.wait_for_records(lambda r: len(r) >= 5)
    _wait_for_message(poison)
    poisoned = [m.content for m in poison.receive_messages(max_messages=32)]
    time.sleep(1.5)  # a sixth attempt, if the host were to make one, would show up by now
    attempts = [r["dequeue_count"] for r in host.records() if r["function"] == "work"]
    assert attempts == [1, 2, 3, 4, 5]
    assert poisoned == ["fail please"]
    assert _count(queue) == 0
    assert len(records) >= 5


def test_successful_message_is_deleted_after_one_invocation(start_host, azurite) -> None:
    name = f"work-{uuid.uuid4().hex[:8]}"
    queue, poison = _queues(azurite, name)
    host = start_host(settings=_settings(azurite, name))
    queue.send_message(json.dumps({"job": 1}))
    records = host.wait_for_records(lambda r: len(r) == 1)
    assert records[0]["body"] == '{"job": 1}'
    deadline = time.monotonic() + 10
    while _count(queue) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _count(queue) == 0 and _count(poison) == 0


def test_failed_message_waits_visibility_timeout_before_retry(start_host, azurite) -> None:
    name = f"work-{uuid.uuid4().hex[:8]}"
    queue, _ = _queues(azurite, name)
    host_json = json.loads(json.dumps(DEFAULT_HOST_JSON))
    host_json["extensions"]["queues"]["visibilityTimeout"] = "00:00:03"
    host = start_host(settings=_settings(azurite, name), host_json=host_json)
    queue.send_message("fail once")
    host.wait_for_records(lambda r: len(r) >= 1)
    first = time.monotonic()
    host.wait_for_records(lambda r: len(r) >= 2)
    assert time.monotonic() - first >= 2.5


def test_base64_encoding_decodes_bodies_and_poisons_undecodable_ones(start_host, azurite) -> None:
    name = f"work-{uuid.uuid4().hex[:8]}"
    queue, poison = _queues(azurite, name)
    host_json = json.loads(json.dumps(DEFAULT_HOST_JSON))
    host_json["extensions"]["queues"]["messageEncoding"] = "base64"
    host = start_host(settings=_settings(azurite, name), host_json=host_json)
    queue.send_message(base64.b64encode(b"encoded job").decode())
    queue.send_message("not base64 at all!")
    records = host.wait_for_records(lambda r: len(r) >= 1)
    _wait_for_message(poison)
    assert [r["body"] for r in records] == ["encoded job"]
    assert [m.content for m in poison.receive_messages()] == ["not base64 at all!"]


def test_message_already_past_max_dequeue_count_goes_to_poison_unrun(start_host, azurite) -> None:
    name = f"work-{uuid.uuid4().hex[:8]}"
    queue, poison = _queues(azurite, name)
    queue.send_message("stale")
    for _ in range(5):  # five earlier deliveries that never finished (a crashed worker)
        message = next(iter(queue.receive_messages(visibility_timeout=1)))
        queue.update_message(message, visibility_timeout=0)
    host = start_host(settings=_settings(azurite, name))
    _wait_for_message(poison)
    assert [m.content for m in poison.receive_messages()] == ["stale"]
    assert host.records() == []
