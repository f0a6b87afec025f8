"""App Service Authentication (Easy Auth) as the local host emulates it, so tests and `make run`
go through the same sign-in and role checks as Azure.

On when the settings have `WEBSITE_AUTH_ENABLED=True` (App Service sets it when Easy Auth is on).
Then, as in Azure with `unauthenticatedClientAction: Return401`: client-sent
`X-MS-CLIENT-PRINCIPAL*` headers are dropped; a request with `Authorization: Bearer <token>` is
signed in if the token is valid (else 401); one without is signed in as the configured local
identity (a browser's session), if there is one; any other request is a 401, except on the
excluded path (health, anonymous).

Tokens are HS256 JWTs signed with `POOLKEEPER_LOCAL_AUTH_KEY` for the audience `AUDIENCE`, with
`name`, `oid` and `roles` claims, as Entra puts them in an access token for an app with app roles.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from local.host.config import HostConfigError

ENABLED_SETTING = "WEBSITE_AUTH_ENABLED"
SIGNED_IN_SETTING = "POOLKEEPER_LOCAL_SIGNED_IN"
KEY_SETTING = "POOLKEEPER_LOCAL_AUTH_KEY"
AUDIENCE = "api://poolkeeper-local"
ISSUER = "https://login.local.poolkeeper/"
# infra/main.bicep's authsettingsV2 globalValidation.excludedPaths: the same list.
EXCLUDED_PATHS = ("/api/health",)
PRINCIPAL_HEADERS = (
    "x-ms-client-principal",
    "x-ms-client-principal-name",
    "x-ms-client-principal-id",
    "x-ms-client-principal-idp",
)


@dataclass(frozen=True)
class Identity:
    name: str
    id: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class EasyAuth:
    signed_in: Identity | None
    key: str | None

    def excluded(self, path: str) -> bool:
        return path.rstrip("/") in EXCLUDED_PATHS

    def identify(
        self, authorization: str | None, *, cross_site: bool = False
    ) -> Identity | str | None:
        """The caller; None if nobody is signed in; a string saying why a token is refused.
        A cross-site request (another web page's) gets no session: a browser would not send
        Easy Auth's SameSite cookie with it."""
        if not authorization:
            return None if cross_site else self.signed_in
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Authorization must be 'Bearer <token>'"
        if not self.key:
            return f"no bearer tokens are accepted here: {KEY_SETTING} is not set"
        try:
            claims = jwt.decode(
                token.strip(),
                self.key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "oid"]},
            )
        except jwt.PyJWTError as error:
            return f"token refused: {error}"
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return "token refused: roles must be a list of strings"
        oid = str(claims["oid"])
        name = str(claims.get("name") or claims.get("preferred_username") or oid)
        return Identity(name=name, id=oid, roles=tuple(roles))


def principal_headers(identity: Identity) -> dict[str, str]:
    """The headers Easy Auth passes to the app for a signed-in caller."""
    claims = [{"typ": "name", "val": identity.name}]
    claims += [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": identity.id}
    ]
    claims += [{"typ": "roles", "val": role} for role in identity.roles]
    principal = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-NAME": identity.name,
        "X-MS-CLIENT-PRINCIPAL-ID": identity.id,
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }


def mint(key: str, name: str, roles: list[str], *, oid: str, lifetime: int = 3600) -> str:
    """A token the emulation accepts (tests, and a person trying roles by hand)."""
    now = int(time.time())
    claims = {"aud": AUDIENCE, "iss": ISSUER, "iat": now, "nbf": now, "exp": now + lifetime}
    return jwt.encode(claims | {"name": name, "oid": oid, "roles": roles}, key, algorithm="HS256")


def load_easy_auth(settings: Mapping[str, str]) -> EasyAuth | None:
    """The emulation's configuration, or None where Easy Auth is off."""
    if settings.get(ENABLED_SETTING, "").strip().lower() != "true":
        return None
    raw = settings.get(SIGNED_IN_SETTING, "").strip()
    signed_in = None
    if raw:
        try:
            data = json.loads(raw)
            roles = data.get("roles", [])
            if not isinstance(data.get("name"), str) or not data["name"]:
                raise ValueError("'name' must be a non-empty string")
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError("'roles' must be a list of strings")
            signed_in = Identity(
                name=data["name"], id=str(data.get("id") or data["name"]), roles=tuple(roles)
            )
        except (ValueError, AttributeError) as error:
            raise HostConfigError(
                f"{SIGNED_IN_SETTING}: expected JSON like "
                '{"name": "you@example.com", "roles": ["Poolkeeper.Operator"]}, '
                f"got {raw!r} ({error})"
            ) from error
    return EasyAuth(signed_in=signed_in, key=settings.get(KEY_SETTING) or None)
