"""Key Vault secrets through `azure-keyvault-secrets`, read with the function's identity.

Cluster credentials (tokens, client certificates, kubeconfigs, CA bundles) live here, never in
settings or logs. A value is cached until its `exp` or MAX_AGE, whichever is sooner, so that a
rotation is picked up within minutes without a read per Kubernetes call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CA_BUNDLE_SETTING = "POOLKEEPER_CA_BUNDLE"
MAX_AGE_SECONDS = 600.0
# (connect, read) seconds: a hung vault must not hold a worker past the Kubernetes call's own.
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 15}


class SecretError(Exception):
    """A secret that cannot be read; names the vault, the secret and what to do, never a value."""

    def __init__(self, vault: str, name: str, code: str, message: str) -> None:
        self.vault, self.name, self.code = vault, name, code
        hint = {
            "Forbidden": "grant the function's managed identity 'Key Vault Secrets User' on it",
            "SecretNotFound": "create it, or fix the secret name in the configuration",
        }.get(code, "")
        detail = f"; {hint}" if hint else ""
        super().__init__(f"secret {name!r} in {vault} not read: {code}: {message}{detail}")


@dataclass(frozen=True)
class _Cached:
    value: str
    until: float  # time.monotonic()


class Secrets:
    """The secrets of one or more vaults; thread-safe."""

    def __init__(self, credential: Any, *, ca_bundle: str | None = None) -> None:
        self._credential = credential
        self._options: dict[str, Any] = dict(TIMEOUTS)
        if ca_bundle:
            self._options["connection_verify"] = ca_bundle
        self._clients: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Secrets:
        """With whatever DefaultAzureCredential finds (the managed identity in Azure)."""
        from azure.identity import DefaultAzureCredential

        return cls(DefaultAzureCredential(), ca_bundle=settings.get(CA_BUNDLE_SETTING) or None)

    def get(self, vault: str, name: str) -> str:
        """The secret's current value (cached); SecretError if it cannot be read."""
        key = (vault.rstrip("/"), name)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and time.monotonic() < cached.until:
            return cached.value
        value, expires = self._read(*key)
        until = time.monotonic() + MAX_AGE_SECONDS
        if expires is not None:
            until = min(until, time.monotonic() + (expires - datetime.now(UTC)).total_seconds())
        with self._lock:
            self._cache[key] = _Cached(value, until)
        return value

    def _read(self, vault: str, name: str) -> tuple[str, datetime | None]:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            secret = self._client(vault).get_secret(name)
        except HttpResponseError as error:
            code = (error.error.code if error.error else None) or str(error.status_code)
            raise SecretError(vault, name, code, error.reason or str(error)) from None
        except AzureError as error:  # unreachable, timed out, no token
            raise SecretError(vault, name, type(error).__name__, str(error)) from None
        if secret.value is None:
            raise SecretError(vault, name, "NoValue", "the secret has no value")
        if secret.properties.enabled is False:
            raise SecretError(vault, name, "Disabled", "the secret is disabled")
        return secret.value, secret.properties.expires_on

    def _client(self, vault: str) -> Any:
        with self._lock:
            client = self._clients.get(vault)
            if client is None:
                from azure.keyvault.secrets import SecretClient

                client = SecretClient(vault, self._credential, **self._options)
                self._clients[vault] = client
            return client
