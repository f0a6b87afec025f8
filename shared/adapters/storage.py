"""Storage adapter: queue, blob and table clients for the account in `AzureWebJobsStorage`.

Locally that setting is an Azurite connection string; in Azure it is the identity-based form
(`AzureWebJobsStorage__accountName` or `__queueServiceUri` etc. with a managed identity).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("queue", "table", "blob")

# Every storage call an HTTP request makes (health, jobs, pools, dashboard, alerts): one
# attempt, a second to connect and 2.5 to answer, so a request answers 503 at the first call
# that hangs, well within the 5 s its caller is promised (docs/jobs.md), and the caller retries
# itself. The SDK's defaults (retries with a 15 s back-off) held a request for ~55 s. Queue
# workers keep the defaults: there, patience is cheap and a failure costs a redelivery.
INTAKE_OPTIONS: dict[str, Any] = {"connection_timeout": 1, "read_timeout": 2.5, "retry_total": 0}
PROBE_OPTIONS = INTAKE_OPTIONS


class StorageUnavailable(Exception):
    """The storage account did not answer (connection, timeout, or a 5xx): try again later."""


@contextmanager
def unavailable_as_error() -> Iterator[None]:
    """Turn the SDK's "storage did not answer" errors into `StorageUnavailable`."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise StorageUnavailable(_first_line(error)) from error
    except HttpResponseError as error:
        if (error.status_code or 0) < 500:
            raise
        raise StorageUnavailable(f"{error.status_code}: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:300]


class StorageConfigError(ValueError):
    """The storage connection settings are missing or malformed."""


@dataclass(frozen=True)
class StorageAccount:
    """Where the account is and how to authenticate: a connection string or endpoints + identity."""

    connection_string: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    client_id: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], name: str = "AzureWebJobsStorage"
    ) -> StorageAccount:
        """Read a connection the way the Functions host does: `<name>` or `<name>__*` settings."""
        connection_string = settings.get(name, "").strip()
        if connection_string:
            return cls(connection_string=connection_string)
        account = settings.get(f"{name}__accountName", "").strip()
        endpoints = {}
        for service in SERVICES:
            uri = settings.get(f"{name}__{service}ServiceUri", "").strip()
            if uri:
                endpoints[service] = uri
            elif account:
                endpoints[service] = f"https://{account}.{service}.core.windows.net"
        if not endpoints:
            raise StorageConfigError(
                f"storage is not configured: set {name} to a connection string (locally, the "
                f"Azurite one) or {name}__accountName for a managed identity in Azure"
            )
        missing = [s for s in SERVICES if s not in endpoints]
        if missing:
            raise StorageConfigError(
                f"storage setting {name}__{missing[0]}ServiceUri is missing: with service URIs "
                f"instead of {name}__accountName, all of queue, table and blob are needed"
            )
        return cls(endpoints=endpoints, client_id=settings.get(f"{name}__clientId") or None)

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if self.client_id:
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential()

    def queue_service(self, **options: Any) -> Any:
        """A `QueueServiceClient` for this account."""
        from azure.storage.queue import QueueServiceClient

        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **options)
        return QueueServiceClient(self.endpoints["queue"], credential=self._credential(), **options)

    def blob_service(self, **options: Any) -> Any:
        """A `BlobServiceClient` for this account."""
        from azure.storage.blob import BlobServiceClient

        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **options)
        return BlobServiceClient(self.endpoints["blob"], credential=self._credential(), **options)

    def table_service(self, **options: Any) -> Any:
        """A `TableServiceClient` for this account."""
        from azure.data.tables import TableServiceClient

        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **options)
        return TableServiceClient(self.endpoints["table"], credential=self._credential(), **options)


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    endpoint: str
    ok: bool
    error: str | None = None


def _probe(service: str, client: Any) -> ServiceStatus:
    endpoint = client.url
    try:
        client.get_service_properties()
    except Exception as error:  # noqa: BLE001 - any failure means "does not answer"
        reason = getattr(error, "error_code", None) or type(error).__name__
        message = str(error).splitlines()[0] if str(error) else ""
        return ServiceStatus(service, endpoint, False, f"{reason}: {message}"[:300])
    finally:
        client.close()
    return ServiceStatus(service, endpoint, True)


def probe_services(account: StorageAccount) -> list[ServiceStatus]:
    """Ask the queue, table and blob services for their properties, in parallel."""
    # Clients are built here, not in the threads: concurrent first imports of azure.core
    # modules can observe each other half-initialised.
    clients = [getattr(account, f"{service}_service")(**PROBE_OPTIONS) for service in SERVICES]
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        return list(pool.map(_probe, SERVICES, clients))
