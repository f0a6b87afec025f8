"""App Service Authentication (Easy Auth) as the local host emulates it, so tests and `make run`
go through the same sign-in and role checks as Azure.

On when the settings have `WEBSITE_AUTH_ENABLED=True` (App Service sets it when Easy Auth is on).
Then, as in Azure with `unauthenticatedClientAction: Return401`: client-sent
`X-MS-CLIENT-PRINCIPAL*` headers are dropped; a request with `Authorization: Bearer <token>` is
signed in if the token is valid (else 401); one without is signed in as the configured local
identity (a browser's session), if there is one; any other request is a 401, except on the
excluded path (health, anonymous).

Two kinds of bearer token are accepted, both for the audience `AUDIENCE`:
- RS256 tokens of the simulator's Entra ID (local/sim/entra.py, `POOLKEEPER_LOCAL_AUTH_ISSUER`):
  checked as Easy Auth checks Entra's, against the signing keys the issuer publishes (its
  OpenID configuration's `jwks_uri`), for issuer, audience and expiry; apps that sign in with
  client credentials (Alertmanager, Azure Monitor's secure webhook) get these;
- HS256 tokens signed with `POOLKEEPER_LOCAL_AUTH_KEY` (`mint`), with `name`, `oid` and `roles`
  claims, as Entra puts them in a person's access token: for trying roles by hand and in tests.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from local.host.config import HostConfigError

ENABLED_SETTING = "WEBSITE_AUTH_ENABLED"
SIGNED_IN_SETTING = "POOLKEEPER_LOCAL_SIGNED_IN"
KEY_SETTING = "POOLKEEPER_LOCAL_AUTH_KEY"
ISSUER_SETTING = "POOLKEEPER_LOCAL_AUTH_ISSUER"
CA_SETTING = "POOLKEEPER_CA_BUNDLE"
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
    issuer: str | None = None  # an Entra v2.0 issuer: https://<host>/<tenant>/v2.0
    ca_bundle: str | None = None

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
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "Authorization must be 'Bearer <token>'"
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as error:
            return f"token refused: {error}"
        if algorithm == "RS256":
            return self._entra(token)
        if not self.key:
            return f"no bearer tokens are accepted here: {KEY_SETTING} is not set"
        try:
            return _identity(_decode(token, self.key, "HS256", ISSUER))
        except jwt.PyJWTError as error:
            return f"token refused: {error}"

    def _entra(self, token: str) -> Identity | str:
        """An Entra token: its signature by a key the issuer publishes, its issuer, audience and
        expiry, as Easy Auth checks them."""
        if not self.issuer:
            return f"no Entra ID tokens are accepted here: {ISSUER_SETTING} is not set"
        down = time.monotonic() - _UNREACHABLE.get(self.issuer, -ISSUER_RETRY)
        if down < ISSUER_RETRY:  # each try holds the host's loop: not on every request
            return f"token refused: the issuer's keys were not readable {down:.0f} s ago"
        try:
            keys = _keys(self.issuer, self.ca_bundle)
        except Exception as error:  # noqa: BLE001 - whatever the issuer answered: no sign-in
            _UNREACHABLE[self.issuer] = time.monotonic()
            return f"token refused: the issuer's OpenID configuration is not readable: {error!r}"
        try:
            claims = _decode(token, keys.get_signing_key_from_jwt(token).key, "RS256", self.issuer)
        except jwt.PyJWKClientConnectionError as error:
            _UNREACHABLE[self.issuer] = time.monotonic()
            return f"token refused: {error}"
        except Exception as error:  # noqa: BLE001 - a token that does not check out: no sign-in
            return f"token refused: {error}"
        return _identity(claims)


def _decode(token: str, key: Any, algorithm: str, issuer: str) -> dict[str, Any]:
    """The claims of a token signed with `key`, for our audience from `issuer`, not expired."""
    return jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience=AUDIENCE,
        issuer=issuer,
        options={"require": ["exp", "iat", "oid"]},
    )


def _identity(claims: dict[str, Any]) -> Identity | str:
    """The caller a token's claims name: a person's `name`, an app's client id (`azp`)."""
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return "token refused: roles must be a list of strings"
    oid = str(claims["oid"])
    name = claims.get("name") or claims.get("preferred_username") or claims.get("azp") or oid
    return Identity(name=str(name), id=oid, roles=tuple(roles))


# An issuer whose keys could not be read is not asked again for this long (wall seconds): the
# emulation checks tokens on the host's event loop, and each try may wait for its timeout.
ISSUER_RETRY = 30.0
ISSUER_TIMEOUT = 5.0
_UNREACHABLE: dict[str, float] = {}


@functools.cache
def _keys(issuer: str, ca_bundle: str | None) -> jwt.PyJWKClient:
    """The issuer's signing keys, from its OpenID configuration's `jwks_uri` (kept once read,
    refreshed by PyJWT when a token names a key it does not have; a failure is not kept)."""
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=ISSUER_TIMEOUT, context=context) as answer:
        document = json.load(answer)
    if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
        raise ValueError(f"{url} names no jwks_uri")
    return jwt.PyJWKClient(document["jwks_uri"], timeout=ISSUER_TIMEOUT, ssl_context=context)


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
    return EasyAuth(
        signed_in=signed_in,
        key=settings.get(KEY_SETTING) or None,
        issuer=settings.get(ISSUER_SETTING) or None,
        ca_bundle=settings.get(CA_SETTING) or None,
    )
