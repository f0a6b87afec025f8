"""Test support for job flows: the product wired to Azurite and the simulator, and a small
queue pump that delivers messages the way the Functions host does (visibility, dequeue count)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.flows.api import services as _unused  # noqa: F401 - registers the flows
from shared.flows.jobs import Handled, Services, handle
from shared.jobs import SCHEMA
from tests.simulator import Simulator

QUEUES = {
    "scale": "scale-jobs",
    "drain": "drain-jobs",
    "reconcile": "reconcile-jobs",
    "patch": "patch-jobs",
    "image": "image-jobs",
}


def settings_for(sim: Simulator, storage: str, pools: list[dict[str, Any]]) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": storage,
        "POOLKEEPER_POOLS": json.dumps({"pools": pools}),
        "POOLKEEPER_CLOCK_FILE": sim.info["clock_file"],
        "POOLKEEPER_ARM_ENDPOINT": sim.info["arm"],
        "POOLKEEPER_CA_BUNDLE": sim.info["ca_cert"],
        # The local Easy Auth checks the simulator's Entra ID tokens (apps' client credentials).
        "POOLKEEPER_LOCAL_AUTH_ISSUER": f"{sim.info['arm']}/{sim.info['tenant']}/v2.0",
        "POOLKEEPER_KUBECONFIG": sim.info["kubeconfig"],
        "POOLKEEPER_SCALE_QUEUE": f"scale-{uuid.uuid4().hex[:8]}",
        "POOLKEEPER_DRAIN_QUEUE": f"drain-{uuid.uuid4().hex[:8]}",
        "POOLKEEPER_RECONCILE_QUEUE": f"reconcile-{uuid.uuid4().hex[:8]}",
        "POOLKEEPER_PATCH_QUEUE": f"patch-{uuid.uuid4().hex[:8]}",
        "POOLKEEPER_IMAGE_QUEUE": f"image-{uuid.uuid4().hex[:8]}",
        "POOLKEEPER_WEBHOOK_QUEUE": f"webhook-{uuid.uuid4().hex[:8]}",
    }


def job(kind: str, pool: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": f"{kind}-{uuid.uuid4().hex[:10]}",
        "kind": kind,
        "pool": pool,
        "params": params or {},
        "requested_by": "tests",
        "created_at": datetime.now(UTC).isoformat(),
    } | extra


class WorkerKilled(BaseException):
    """A test's way to kill the worker mid-step: no `except Exception` in the product catches
    it, and the Pump treats the message as a dead worker's."""


@dataclass
class Pump:
    """Delivers queue messages to `handle` like the host: success deletes, failure releases."""

    services: Services

    def queue(self, kind: str) -> str:
        return self.services.settings[f"POOLKEEPER_{kind.upper()}_QUEUE"]

    def send(self, kind: str, message: dict[str, Any] | str) -> None:
        raw = message if isinstance(message, str) else json.dumps(message)
        self.services.queues.send(self.queue(kind), raw)

    def once(self, kind: str) -> list[Handled]:
        """One receive of up to 16 visible messages, each handled. One request, not the SDK's
        `max_messages` (it asks again after each message, so on a slow machine a continuation
        that became visible meanwhile ran in the same call, and a test's `until` never saw the
        step before it)."""
        client = self.services.queues._queue(self.queue(kind))
        pages = client.receive_messages(messages_per_page=16, visibility_timeout=60).by_page()
        handled = []
        for message in next(pages, []):
            try:
                handled.append(handle(self.services, self.queue(kind), message.content))
            except WorkerKilled:
                # The worker died: its message is neither deleted nor finished, and comes back
                # shortly, like one whose visibility ran out.
                client.update_message(message, visibility_timeout=1)
                continue
            client.delete_message(message)
        return handled

    def run(self, kind: str, job_id: str, *, timeout: float = 240) -> Any:
        """Deliver messages until the job is done or failed; returns its ledger record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.once(kind)
            record = self.services.tables.job(job_id)
            if record is not None and record.status in ("done", "failed"):
                return record
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish: {self.services.tables.job(job_id)}")
