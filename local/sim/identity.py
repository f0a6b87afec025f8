"""The App Service managed-identity endpoint (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`) and the
bearer tokens it issues; the ARM and Monitor endpoints accept only those tokens.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid

from aiohttp import web

TOKEN_LIFETIME = 3600


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class TokenIssuer:
    """Issues JWT-shaped tokens and remembers them; survives scenario reloads."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.header_secret = secrets.token_urlsafe(24)
        self._issued: dict[str, float] = {}  # token -> expiry (unix seconds)
        self.principal = str(uuid.uuid4())

    def issue(self, resource: str) -> tuple[str, int]:
        expires = int(time.time()) + TOKEN_LIFETIME
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "oid": self.principal,
            "tid": self.tenant,
            "exp": expires,
        }
        token = f"{_b64({'typ': 'JWT', 'alg': 'none'})}.{_b64(claims)}.{secrets.token_urlsafe(16)}"
        self._issued[token] = expires
        return token, expires

    def valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        expiry = self._issued.get(authorization[len("Bearer ") :])
        return expiry is not None and expiry > time.time()

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


def unauthorised(authorization: str | None) -> web.Response:
    """ARM's 401: a missing header and a token it did not issue are told apart."""
    if not authorization:
        code, message = (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    else:
        code, message = "InvalidAuthenticationToken", "The access token is invalid."
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=401,
        headers={
            "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/", error="invalid_token", error_description="{message}"'
        },
    )
