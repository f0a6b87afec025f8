"""Entra ID's v2.0 endpoints for apps, as much as senders that sign in with client credentials
need, and as much as a validator needs to check their tokens for real:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`: issuer, jwks_uri, token_endpoint;
- `GET /{tenant}/discovery/v2.0/keys`: the public signing key (RSA, `kid`, `x5t`);
- `POST /{tenant}/oauth2/v2.0/token` (`grant_type=client_credentials`, `client_id`,
  `client_secret`, `scope=<application id URI>/.default`): an RS256 access token for that
  application, with the app roles the scenario's `entra.applications` grant the client on it,
  as Entra issues for an app (`idtyp` app, `azp`, `oid`, no `name`).

The key is made once per simulator process. Errors are Entra's OAuth bodies (`error`,
`error_description` with its AADSTS code). Anonymous, as in Entra.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.sim.world import World

TOKEN_LIFETIME = 3600
_PATH = re.compile(
    r"/(?P<tenant>[^/]+)/(?:(?P<config>v2\.0/\.well-known/openid-configuration)"
    r"|(?P<keys>discovery/v2\.0/keys)|(?P<token>oauth2/v2\.0/token))"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """One RSA key for the process: the private half signs, the JWKS publishes the public."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._private.public_key().public_numbers()
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64(hashlib.sha1(der).digest())  # as Entra's x5t: a SHA-1 thumbprint
        self.jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes(3, "big")),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": self.kid})


KEY = SigningKey()


def serves(path: str) -> bool:
    return _PATH.fullmatch(path) is not None


def issuer(base: str, tenant: str) -> str:
    return f"{base}/{tenant}/v2.0"


def _oauth_error(status: int, error: str, code: str, description: str) -> web.Response:
    return web.json_response(
        {
            "error": error,
            "error_description": f"{code}: {description}",
            "error_codes": [int(code.removeprefix("AADSTS"))],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


async def handle(request: web.Request, world: World) -> web.Response:
    """One of the three endpoints, for the scenario's tenant only."""
    found = _PATH.fullmatch(request.path)
    assert found is not None
    tenant = world.scenario.tenant
    if found["tenant"].lower() != tenant.lower():
        return _oauth_error(
            400, "invalid_tenant", "AADSTS90002", f"Tenant '{found['tenant']}' not found."
        )
    base = f"https://{request.host}"
    if found["config"] and request.method == "GET":
        return web.json_response(
            {
                "issuer": issuer(base, tenant),
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "token id_token"],
                "subject_types_supported": ["pairwise"],
                "tenant_region_scope": "EU",
            }
        )
    if found["keys"] and request.method == "GET":
        return web.json_response({"keys": [KEY.jwk]})
    if found["token"] and request.method == "POST":
        return _token(await request.post(), world, issuer(base, tenant))
    return _oauth_error(405, "invalid_request", "AADSTS900561", "The endpoint only accepts GET.")


def _token(form: Any, world: World, iss: str) -> web.Response:
    """Client credentials: a token for the scope's application, with the client's roles on it."""
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003",
            "The app requested an unsupported grant type (here: client_credentials only).",
        )
    client_id = str(form.get("client_id", ""))
    client = next((a for a in world.scenario.entra.applications if a.client_id == client_id), None)
    if client is None:
        return _oauth_error(
            400,
            "unauthorized_client",
            "AADSTS700016",
            f"Application with identifier '{client_id}' was not found in the directory.",
        )
    if form.get("client_secret") != client.client_secret:
        return _oauth_error(
            401, "invalid_client", "AADSTS7000215", "Invalid client secret provided."
        )
    scope = str(form.get("scope", ""))
    if not scope.endswith("/.default"):
        return _oauth_error(
            400,
            "invalid_scope",
            "AADSTS1002012",
            "The provided value for scope is not valid. Client credential flows must have a "
            "scope value with /.default suffixed to the resource identifier.",
        )
    resource = scope.removesuffix("/.default")
    now = int(time.time())
    claims = {
        "aud": resource,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "azp": client.client_id,
        "azpacr": "1",
        "oid": client.object_id,
        "sub": client.object_id,
        "tid": world.scenario.tenant,
        "idtyp": "app",
        "ver": "2.0",
        "roles": list(client.roles.get(resource, [])),
    }
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": KEY.sign(claims),
        }
    )
