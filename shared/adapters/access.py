"""What the function's identity may do in a resource group or on a resource: ARM's effective
permissions for the scope (Microsoft.Authorization/permissions, `azure-mgmt-authorization`).
Read by the preflight only."""

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

    def _client(self, subscription: str) -> Any:
        client = self._clients.get(subscription)
        if client is None:
            from azure.mgmt.authorization import AuthorizationManagementClient

            client = self._clients[subscription] = AuthorizationManagementClient(
                self._credential, subscription, base_url=self._endpoint, **self._options
            )
        return client

    def permissions(self, subscription: str, resource_group: str) -> list[dict[str, list[str]]]:
        """ARM's list for the resource group: entries of `actions` and `not_actions`."""
        return _entries(
            self._client(subscription).permissions.list_for_resource_group(resource_group)
        )

    def resource_permissions(self, resource_id: str) -> list[dict[str, list[str]]]:
        """ARM's list for one resource (what is assigned at it and inherited from above), e.g. a
        scale set: `/subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>`."""
        parts = resource_id.strip("/").split("/")
        if len(parts) < 8 or [p.lower() for p in (parts[0], parts[2], parts[4])] != [
            "subscriptions",
            "resourcegroups",
            "providers",
        ]:
            raise ValueError(f"not a resource id: {resource_id!r}")
        subscription, group, namespace = parts[1], parts[3], parts[5]
        *parent, kind, name = parts[6:]
        found = self._client(subscription).permissions.list_for_resource(
            group, namespace, "/".join(parent), kind, name
        )
        return _entries(found)


def _entries(found: Any) -> list[dict[str, list[str]]]:
    return [
        {"actions": list(p.actions or []), "not_actions": list(p.not_actions or [])} for p in found
    ]
