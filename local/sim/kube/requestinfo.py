"""What a request to the API server asks for, in the API server's words (its RequestInfo): the
verb, and for a resource request the group, version, namespace, resource, name and subresource.
Pure; `api` routes by it and `faults` selects requests by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WRITES = ("create", "update", "patch", "delete", "deletecollection")
VERBS = ("get", "list", "watch", *WRITES)


@dataclass(frozen=True)
class RequestInfo:
    """A request's attributes. A non-resource request (discovery, `/version`, `/healthz`) has
    the lower-cased HTTP method as its verb and no resource."""

    verb: str
    resource: str | None = None
    group: str = ""
    version: str = ""
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    extra: bool = False  # path segments past the subresource (no such route)

    @property
    def target(self) -> str | None:
        """`resource` or `resource/subresource`, as RBAC rules and faults name it."""
        if self.resource is None:
            return None
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _verb(method: str, name: str | None, query: Mapping[str, str]) -> str:
    if method == "GET":
        if name is not None:
            return "get"
        return "watch" if query.get("watch") in ("1", "true") else "list"
    if method == "DELETE" and name is None:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Parse `/api/v1/...` and `/apis/{group}/{version}/...` as the API server does
    (`namespaces/{ns}/{resource}/...` for namespaced ones); anything else is non-resource."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(method.lower())
    if not rest:
        return RequestInfo(method.lower(), group=group, version=version)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    return RequestInfo(
        verb=_verb(method, name, query),
        resource=rest[0],
        group=group,
        version=version,
        namespace=namespace,
        name=name,
        subresource=rest[2] if len(rest) > 2 else None,
        extra=len(rest) > 3,
    )
