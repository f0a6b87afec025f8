"""What the function's identity may do in a resource group: ARM's effective permissions for the
scope (Microsoft.Authorization/permissions, `azure-mgmt-authorization`). Read by the preflight
only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.adapters.scaleset import ARM_ENDPOINT_SETTING, CA_BUNDLE_SETTING, DEFAULT_ARM_ENDPOINT

# A preflight is one request: a few seconds per call, no long retries.
_CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 15, "retry_total": 1}


class Access:
    """The identity's effective permissions: one client per subscription, closed with it."""

    def __init__(self, credential: Any, *, endpoint: str, ca_bundle: str | None = None) -> None:
        self._credential, self._endpoint = credential, endpoint.rstrip("/")
        self._options: dict[str, Any] = dict(_CLIENT_OPTIONS)
        if ca_bundle:
            self._options["connection_verify"] = ca_bundle
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Access:
        """From app settings; the identity is whatever DefaultAzureCredential finds."""
        from azure.identity import DefaultAzureCredential

        return cls(
            DefaultAzureCredential(),
            endpoint=settings.get(ARM_ENDPOINT_SETTING) or DEFAULT_ARM_ENDPOINT,
            ca_bundle=settings.get(CA_BUNDLE_SETTING) or None,
        )

    def __enter__(self) -> Access:
        return self

    def __exit__(self, *_: object) -> None:
        for client in self._clients.values():
            client.close()
        self._clients = {}

    def permissions(self, subscription: str, resource_group: str) -> list[dict[str, list[str]]]:
        """ARM's list for the resource group: entries of `actions` and `not_actions`."""
        client = self._clients.get(subscription)
        if client is None:
            from azure.mgmt.authorization import AuthorizationManagementClient

            client = self._clients[subscription] = AuthorizationManagementClient(
                self._credential, subscription, base_url=self._endpoint, **self._options
            )
        return [
            {"actions": list(p.actions or []), "not_actions": list(p.not_actions or [])}
            for p in client.permissions.list_for_resource_group(resource_group)
        ]
