"""What the demo talks to, each as an operator or another system would: the product's HTTP API
(function key), its notifications queue (read and deleted, as an on-call integration does), and
the simulator's admin API (the world: load, faults, clock, and its own truth).

Used by `local.demo.story`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import requests

from local.demo.running import DemoError

TIMEOUT = 15  # seconds for one HTTP answer


def _checked(response: requests.Response) -> Any:
    if response.status_code >= 400:
        raise DemoError(
            f"{response.request.method} {response.url.split('?')[0]} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response.json()


class Product:
    """Poolkeeper's HTTP API on the local Functions host."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self._http = requests.Session()
        self._http.headers["x-functions-key"] = key

    def pool(self, name: str) -> dict[str, Any]:
        """`GET /api/pools/{name}`: the recorded truth, patch checks and image lineage."""
        return _checked(self._http.get(f"{self.url}/api/pools/{name}", timeout=TIMEOUT))

    def job(self, job_id: str) -> dict[str, Any] | None:
        """`GET /api/jobs/{id}`, or None while the ledger does not know it."""
        response = self._http.get(f"{self.url}/api/jobs/{job_id}", timeout=TIMEOUT)
        return None if response.status_code == 404 else _checked(response)

    def submit(
        self, kind: str, pool: str, params: dict[str, Any], *, job_id: str, now: datetime
    ) -> str:
        """`POST /api/jobs` with a `poolkeeper/job/v1` envelope; returns the job id."""
        envelope = {
            "schema": "poolkeeper/job/v1",
            "id": job_id,
            "kind": kind,
            "pool": pool,
            "params": params,
            "requested_by": "demo:operator",
            "created_at": now.isoformat(),
        }
        return _checked(self._http.post(f"{self.url}/api/jobs", json=envelope, timeout=TIMEOUT))[
            "id"
        ]

    def dashboard_url(self, pool: str | None = None) -> str:
        """The status page; the local host signs a browser in as its local operator."""
        return f"{self.url}/api/dashboard{'/' + pool if pool else ''}"

    def dashboard(self, pool: str | None = None) -> requests.Response:
        return requests.get(
            self.dashboard_url(pool), headers={"accept": "text/html"}, timeout=TIMEOUT
        )


class World:
    """The Azure simulator's admin API (`/_sim`): the demo's hand on the world, and its truth."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self._http = requests.Session()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return _checked(self._http.post(f"{self.admin}/{path}", json=body, timeout=TIMEOUT))

    def now(self) -> datetime:
        """The simulated clock the product reads too."""
        clock = _checked(self._http.get(f"{self.admin}/clock", timeout=TIMEOUT))
        return datetime.fromisoformat(clock["now"])

    def advance(self, delta: timedelta) -> datetime:
        """Jump the clock forward; the timers notice within half a second."""
        return datetime.fromisoformat(
            self._post("clock", {"advance_seconds": delta.total_seconds()})["now"]
        )

    def load(self, scale_set: str, cpu: float) -> None:
        """A load step on every instance of the scale set, from now on."""
        self._post("load", {"scale_set": scale_set, "cpu": cpu})

    def fault(self, fault: dict[str, Any]) -> None:
        self._post("faults", fault)

    def scale_set(self, name: str) -> dict[str, Any]:
        """The simulator's own view of one scale set: capacity, model image, instances."""
        state = _checked(self._http.get(f"{self.admin}/state", timeout=TIMEOUT))
        return next(s for s in state["scale_sets"] if s["name"] == name)

    def calls(self) -> list[dict[str, Any]]:
        """The ARM call log (operation, path, status, times)."""
        return _checked(self._http.get(f"{self.admin}/calls", timeout=TIMEOUT))["calls"]


class Cluster:
    """The simulated cluster's Kubernetes API, read as kubectl would."""

    def __init__(self, url: str) -> None:
        self.url = url

    def cordoned(self) -> list[str]:
        """Nodes marked unschedulable."""
        nodes = _checked(requests.get(f"{self.url}/api/v1/nodes", timeout=TIMEOUT))["items"]
        return sorted(n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable"))


def live(scale_set: dict[str, Any]) -> int:
    """Instances the simulator has provisioned and running (what Poolkeeper calls live)."""
    return sum(
        i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
        for i in scale_set["instances"]
    )


class Notifications:
    """The product's `notifications` queue, consumed: each message is read once and deleted."""

    def __init__(self, connection_string: str, queue: str = "notifications") -> None:
        from azure.storage.queue import QueueClient

        self._queue = QueueClient.from_connection_string(connection_string, queue)
        self.seen: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        """The messages that arrived since the last poll (none while the queue does not exist)."""
        from azure.core.exceptions import ResourceNotFoundError

        new = []
        try:
            for message in self._queue.receive_messages(max_messages=32, visibility_timeout=30):
                new.append(json.loads(message.content))
                self._queue.delete_message(message)
        except ResourceNotFoundError:
            return []
        self.seen += new
        return new
