"""Who is calling: the principal App Service Authentication (Easy Auth) puts in front of the app.

Easy Auth validates the caller's Entra ID sign-in (a browser session or a bearer token), strips
any `X-MS-CLIENT-PRINCIPAL*` header the client sent, and passes the caller on in those headers;
the app's roles are the token's `roles` claims. The headers are trusted only where Easy Auth is
on (App Service sets `WEBSITE_AUTH_ENABLED`), since without it anyone could write them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

READER = "Poolkeeper.Reader"
OPERATOR = "Poolkeeper.Operator"
# Azure Monitor's action group (a Secure Webhook) and Alertmanager (OAuth 2 client credentials):
# the role is assigned to their service principals, so an alert's sender is proven by Entra ID.
ALERT_SENDER = "Poolkeeper.AlertSender"
# An operator may read what it acts on; a reader may only read.
GRANTS = {
    READER: frozenset({READER, OPERATOR}),
    OPERATOR: frozenset({OPERATOR}),
    ALERT_SENDER: frozenset({ALERT_SENDER}),
}
PRINCIPAL_HEADER = "x-ms-client-principal"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
DOCS = "docs/deploy.md#security-model"


@dataclass(frozen=True)
class Caller:
    """A signed-in person or application, as Easy Auth passed it on."""

    id: str
    name: str
    provider: str
    roles: frozenset[str]

    def label(self) -> str:
        """How a job records who submitted it: the name, and the object id that cannot change."""
        return f"{self.name} ({self.id})" if self.id and self.id != self.name else self.name


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str


def easy_auth_on(environ: Mapping[str, str]) -> bool:
    return environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"


def _claims(encoded: str) -> tuple[dict[str, list[str]], dict[str, Any]] | None:
    try:
        data = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True))
        claims: dict[str, list[str]] = {}
        for claim in data.get("claims") or []:
            claims.setdefault(str(claim["typ"]), []).append(str(claim["val"]))
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return claims, data


def caller_of(headers: Mapping[str, str]) -> Caller | None:
    """The caller from Easy Auth's headers (names case-insensitive); None if there is none or
    it cannot be read."""
    lowered = {k.lower(): v for k, v in headers.items()}
    encoded = lowered.get(PRINCIPAL_HEADER, "")
    parsed = _claims(encoded) if encoded else None
    if parsed is None:
        return None
    claims, data = parsed
    role_type = str(data.get("role_typ") or "roles")
    roles = frozenset(r for typ in (role_type, *ROLE_CLAIMS) for r in claims.get(typ, []))
    name_type = str(data.get("name_typ") or "name")
    name = (
        lowered.get(f"{PRINCIPAL_HEADER}-name")
        or next(iter(claims.get(name_type, [])), "")
        or next(iter(claims.get("preferred_username", [])), "")
    )
    oid = (
        lowered.get(f"{PRINCIPAL_HEADER}-id")
        or next(iter(claims.get(OID_CLAIM, [])), "")
        or next(iter(claims.get("oid", [])), "")
    )
    if not (name or oid):
        return None
    provider = lowered.get(f"{PRINCIPAL_HEADER}-idp") or str(data.get("auth_typ") or "")
    return Caller(id=oid, name=name or oid, provider=provider, roles=roles)


def authorize(
    headers: Mapping[str, str], environ: Mapping[str, str], role: str
) -> Caller | Refusal:
    """The caller if Easy Auth is on and it holds `role` (or one that grants it); else why not:
    401 for no sign-in, 403 for a caller without the role."""
    if not easy_auth_on(environ):
        return Refusal(
            401,
            "sign-in is not set up: this route needs App Service Authentication (Easy Auth) with "
            f"Entra ID in front of the app (WEBSITE_AUTH_ENABLED is not true); see {DOCS}",
        )
    caller = caller_of(headers)
    if caller is None:
        return Refusal(401, f"sign in first: this route needs the app role {role}")
    if not caller.roles & GRANTS[role]:
        held = ", ".join(sorted(caller.roles)) or "none"
        return Refusal(
            403,
            f"{caller.label()} does not hold the app role {role} (roles held: {held}); "
            "an owner of the app's enterprise application can assign it",
        )
    return caller
