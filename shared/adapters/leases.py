"""Blob leases: one writer per pool. A step runs only while it holds its pool's lease.

Called by the job runner around each invocation; the lease blob is `poolkeeper-leases/<pool>`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from shared.adapters.storage import StorageAccount

CONTAINER = "poolkeeper-leases"
LEASE_SECONDS = 60  # Azure allows 15-60 s or infinite; a step is far shorter


class LeaseLost(Exception):
    """The pool's lease expired or was taken: stop before the next write."""


class PoolLease:
    """A held lease on one pool; `check()` before every write, `release()` at the end."""

    def __init__(self, client: Any, pool: str) -> None:
        self._client = client
        self.pool = pool

    def check(self) -> None:
        """Renew the lease; raise LeaseLost when it is no longer ours."""
        from azure.core.exceptions import HttpResponseError

        try:
            self._client.renew()
        except HttpResponseError as error:
            raise LeaseLost(f"lease on pool {self.pool} lost: {error.error_code}") from error

    def release(self) -> None:
        from azure.core.exceptions import HttpResponseError

        with contextlib.suppress(HttpResponseError):  # expired already: nothing to give back
            self._client.release()


class Leases:
    def __init__(self, account: StorageAccount) -> None:
        self._service = account.blob_service()
        self._ready = False

    def acquire(self, pool: str) -> PoolLease | None:
        """The pool's lease, or None while another writer holds it."""
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        container = self._service.get_container_client(CONTAINER)
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
            self._ready = True
        blob = container.get_blob_client(pool)
        # Exists already, or is leased by someone (then upload is refused too): both fine.
        with contextlib.suppress(ResourceExistsError, HttpResponseError):
            blob.upload_blob(b"", overwrite=False)
        try:
            return PoolLease(blob.acquire_lease(lease_duration=LEASE_SECONDS), pool)
        except HttpResponseError as error:
            if error.status_code == 409:  # LeaseAlreadyPresent
                return None
            raise
