"""The App Service managed-identity endpoint (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`) and the
bearer tokens it issues; the ARM and Monitor endpoints accept only those tokens.

Tokens are JWTs signed (HS256) with a key held by this process, so the simulator can tell a
token it issued from one it did not, and check expiry and audience the way ARM does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

from aiohttp import web

TOKEN_LIFETIME = 3600
_KEY = secrets.token_bytes(32)  # one simulator process, one signing key (survives reloads)

ARM_AUDIENCES = (
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
)
MONITOR_AUDIENCES = (
    "https://metrics.monitor.azure.com",
    "https://monitor.azure.com",
    "https://api.loganalytics.io",
    "https://api.loganalytics.azure.com",
)
# Without a per-endpoint list, any of the endpoints the simulator serves.
ACCEPTED = ARM_AUDIENCES + MONITOR_AUDIENCES + tuple(a + "/" for a in MONITOR_AUDIENCES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str) -> str:
    return _b64(hmac.new(_KEY, signing_input.encode(), hashlib.sha256).digest())


def _claims(authorization: str | None) -> dict[str, Any] | None:
    """The claims of a bearer token this process signed, or None."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    parts = authorization[len("Bearer ") :].strip().split(".")
    if len(parts) != 3 or not hmac.compare_digest(_sign(f"{parts[0]}.{parts[1]}"), parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def problem(
    authorization: str | None, audiences: tuple[str, ...] = ACCEPTED, now: float | None = None
) -> tuple[str, str] | None:
    """ARM's 401 error code and message for this Authorization header, or None if it is good."""
    if not authorization:
        return (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    claims = _claims(authorization)
    if claims is None:
        return "InvalidAuthenticationToken", "The access token is invalid."
    now = time.time() if now is None else now
    if float(claims.get("exp", 0)) <= now:
        expired = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(float(claims.get("exp", 0))))
        current = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(now))
        return (
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{expired}' is earlier than current UTC time "
            f"'{current}'.",
        )
    if claims.get("aud") not in audiences:
        allowed = ",".join(f"'{a}'" for a in audiences)
        return (
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource "
            f"'{claims.get('aud')}'. It should exactly match with one of the allowed audiences "
            f"{allowed}.",
        )
    return None


def signed_claims(authorization: str | None) -> dict[str, Any] | None:
    """The claims of a bearer token this process signed (expired or not, for any audience)."""
    return _claims(authorization)


def verified_claims(
    authorization: str | None, audiences: tuple[str, ...], now: float | None = None
) -> dict[str, Any] | None:
    """The claims of a good token (signed here, not expired, for one of `audiences`), or None."""
    if problem(authorization, audiences, now) is not None:
        return None
    return _claims(authorization)


class TokenIssuer:
    """Issues signed JWT-shaped tokens; survives scenario reloads."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.header_secret = secrets.token_urlsafe(24)
        self.principal = str(uuid.uuid4())

    def issue(self, resource: str, lifetime: int = TOKEN_LIFETIME) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "oid": self.principal,
            "sub": self.principal,
            "tid": self.tenant,
            "idtyp": "app",
        }
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims).encode())
        return f"{header}.{payload}.{_sign(f'{header}.{payload}')}", now + lifetime

    def valid(self, authorization: str | None, audiences: tuple[str, ...] = ACCEPTED) -> bool:
        return problem(authorization, audiences) is None

    async def token_endpoint(self, request: web.Request) -> web.Response:
        """GET /msi/token?api-version=2019-08-01&resource=... with the X-IDENTITY-HEADER secret."""
        if request.headers.get("X-IDENTITY-HEADER") != self.header_secret:
            return web.json_response(
                {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."}, status=401
            )
        resource = request.query.get("resource")
        if not resource:
            return web.json_response(
                {"statusCode": 400, "message": "Required query parameter 'resource' is missing."},
                status=400,
            )
        token, expires = self.issue(resource)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": request.query.get("client_id", self.principal),
            }
        )


def unauthorised(authorization: str | None, audiences: tuple[str, ...] = ACCEPTED) -> web.Response:
    """ARM's 401: a missing header, a token it did not issue, an expired one, a wrong audience."""
    code, message = problem(authorization, audiences) or (
        "InvalidAuthenticationToken",
        "The access token is invalid.",
    )
    challenge = (
        'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", '
        f'error_description="{message}"'
    )
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=401,
        headers={"WWW-Authenticate": challenge},
    )
