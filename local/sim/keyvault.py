"""Key Vault secrets, served on the ARM port (Key Vault's `/secrets...` paths do not collide with
ARM's) for the real `azure-keyvault-secrets` SecretClient, unmodified.

The scenario's `key_vault` section (every key optional)::

    "key_vault": {
      "name": "kv-poolkeeper", "resource_group": "rg-poolkeeper",   // named in 403 messages
      "readable": true,      // the managed identity holds "Key Vault Secrets User" on the vault
      "secrets": {
        "plain": "a value",                                    // the current version's value
        "full": {"value": "...", "content_type": "application/x-pem-file",
                 "exp": "2027-01-01T00:00:00Z", "nbf": null, "enabled": true, "tags": {}}
      }
    }

With `clusters`, the simulator also stores each cluster's credential (unless the scenario defines
a secret of that name): `<cluster>-kubeconfig`, `<cluster>-ca` (the CA's PEM), and
`<cluster>-token` (token clusters) or `<cluster>-client-certificate` (certificate and key PEM).

Clients: `SecretClient(vault_url=<info["key_vault"]["url"]>, credential=ManagedIdentityCredential(),
connection_verify=<info["ca_cert"]>)` with `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` set. The vault URL
is the ARM URL, `https://127.0.0.1:PORT`.

Authentication is Key Vault's challenge: a request without a bearer token gets 401 with
`WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="<resource>"`. As `<vault>.vault.azure.net`'s resource is `https://vault.azure.net`, the
resource is the request's host without its first label, at the same port: for `127.0.0.1:PORT`
it is `https://0.0.1:PORT`. The client checks that the vault host ends with "." + the resource's
host, which holds, so no `verify_challenge_resource=False` is needed. It then asks its credential
for `<resource>/.default`; the identity endpoint issues a token with that audience, and only such
tokens are accepted here (401 otherwise, with Key Vault's AKV messages).

Served (any api-version the SDK knows, 7.0 to 2026-04-01): GET /secrets (SecretItems, paged),
GET /secrets/{name}/versions (paged: `value` and `nextLink`, `maxresults` up to 25), GET
/secrets/{name}[/{version}] (a SecretBundle). A missing secret or version is 404
`SecretNotFound`; while the identity may not read (the vault, or that secret) every request is
403 `Forbidden` (inner `ForbiddenByRbac`) naming the action; a disabled version is 403
`SecretDisabled`. An expired one is still served, as Key Vault does. Writes are not served.

Admin (on the admin port): GET /_sim/keyvault (every secret, with values and versions), POST
/_sim/keyvault/secrets/{name} (a value or a secret object as in the scenario: a new version,
201), POST /_sim/keyvault/access `{"readable": false}` (or `true`; with `"secrets": [names]`
only those secrets).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from local.sim.bodies import BodyError, json_body
from local.sim.identity import problem, signed_claims
from local.sim.scenario import SECRET_NAME, KeyVaultSpec, SecretSpec

API_VERSIONS = (
    "2026-04-01",
    "2025-07-01",
    "7.6",
    "7.5",
    "7.4",
    "7.3",
    "7.2",
    "7.1",
    "7.0",
    "2016-10-01",
)
PAGE = 25  # Key Vault's largest page of a list
NOT_FOUND_HELP = (
    "If you recently deleted this secret you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)
GET_ACTION = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
LIST_ACTION = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
_PATH = re.compile(r"^/secrets(?:/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?)?/?$", re.IGNORECASE)


def serves(path: str) -> bool:
    """Whether a request path on the ARM port is Key Vault's."""
    return path.lower() == "/secrets" or path.lower().startswith("/secrets/")


@dataclass
class Version:
    """One version of a secret."""

    id: str
    value: str
    content_type: str | None
    enabled: bool
    created: int
    exp: int | None
    nbf: int | None
    tags: dict[str, str] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {"enabled": self.enabled}
        if self.nbf is not None:
            attributes["nbf"] = self.nbf
        if self.exp is not None:
            attributes["exp"] = self.exp
        return attributes | {
            "created": self.created,
            "updated": self.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }

    def item(self, secret_id: str) -> dict[str, Any]:
        """The SecretItem (list entry) or, with `value`, the SecretBundle's fields."""
        body: dict[str, Any] = {"id": secret_id, "attributes": self.attributes()}
        if self.tags:
            body["tags"] = dict(self.tags)
        if self.content_type is not None:
            body["contentType"] = self.content_type
        return body


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


class Vault:
    """The vault's secrets (each a list of versions, newest last) and who may read them."""

    def __init__(self, spec: KeyVaultSpec, now: Callable[[], datetime]) -> None:
        self.spec = spec
        self.now = now
        self.readable = spec.readable
        self.unreadable: set[str] = set()  # lower-case names the identity may not read
        self.secrets: dict[str, tuple[str, list[Version]]] = {}
        for name, entry in spec.secrets.items():
            self.set(name, SecretSpec.of(entry))

    def set(self, name: str, spec: SecretSpec) -> Version:
        """A new current version of `name` (created if new; its first spelling is kept)."""
        version = Version(
            id=uuid.uuid4().hex,
            value=spec.value,
            content_type=spec.content_type,
            enabled=spec.enabled,
            created=int(self.now().timestamp()),
            exp=_epoch(spec.exp),
            nbf=_epoch(spec.nbf),
            tags=dict(spec.tags),
        )
        self.secrets.setdefault(name.lower(), (name, []))[1].append(version)
        return version

    def add_default(self, name: str, value: str, content_type: str | None = None) -> bool:
        """Store `name` unless the vault has it already; whether it was stored."""
        if name.lower() in self.secrets:
            return False
        self.set(name, SecretSpec(value=value, content_type=content_type))
        return True

    def may_read(self, name: str | None) -> bool:
        return self.readable and (name is None or name.lower() not in self.unreadable)

    def view(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "readable": self.readable,
            "unreadable": sorted(self.unreadable),
            "secrets": {
                display: [
                    {"version": v.id, "value": v.value, "content_type": v.content_type}
                    | v.attributes()
                    for v in versions
                ]
                for display, versions in self.secrets.values()
            },
        }

    def resource_id(self, subscription: str, name: str | None) -> str:
        base = (
            f"/subscriptions/{subscription}/resourcegroups/{self.spec.resource_group.lower()}"
            f"/providers/microsoft.keyvault/vaults/{self.spec.name.lower()}"
        )
        return base + (f"/secrets/{name.lower()}" if name else "")


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status)


def resource_for(host: str) -> str:
    """The token audience a vault at `host` names in its challenge: the host without its first
    label, at the same port (`myvault.vault.azure.net` -> `https://vault.azure.net`)."""
    name, colon, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    labels = name.split(".")
    parent = ".".join(labels[1:]) if len(labels) > 1 else name
    return f"https://{parent}{colon}{port}"


def _challenge(host: str, tenant: str, code: str, message: str) -> web.Response:
    response = _error(401, "Unauthorized", f"{code}: {message}")
    response.headers["WWW-Authenticate"] = (
        f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
        f'resource="{resource_for(host)}"'
    )
    return response


@dataclass(frozen=True)
class Caller:
    """Who the vault sees, for its 403 message."""

    subscription: str
    tenant: str
    location: str
    authorization: str


def _forbidden(vault: Vault, caller: Caller, action: str, name: str | None) -> web.Response:
    principal = (signed_claims(caller.authorization) or {}).get("oid", "")
    message = (
        "Caller is not authorized to perform action on resource.\r\n"
        "If role assignments, deny assignments or role definitions were changed recently, please "
        "observe propagation time.\r\n"
        f"Caller: appid={principal};oid={principal};iss=https://sts.windows.net/{caller.tenant}/\r\n"
        f"Action: '{action}'\r\n"
        f"Resource: '{vault.resource_id(caller.subscription, name)}'\r\n"
        "Assignment: (not found)\r\n"
        "DenyAssignmentId: null\r\n"
        "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
        f"Vault: {vault.spec.name};location={caller.location}\r\n"
    )
    return _error(403, "Forbidden", message, "ForbiddenByRbac")


def operation(request: web.Request) -> str:
    """The REST operation a Key Vault request asks for (for the call log)."""
    match = _PATH.match(request.path)
    if request.method != "GET" or match is None:
        return "KeyVault_Unsupported"
    if match["name"] is None:
        return "GetSecrets"
    return "GetSecretVersions" if (match["version"] or "").lower() == "versions" else "GetSecret"


def handle(request: web.Request, vault: Vault, caller: Caller) -> web.Response:
    """Serve one Key Vault request (the path is one `serves` accepts)."""
    host = request.host
    resource = resource_for(host)
    authorization = request.headers.get("Authorization")
    if not authorization or not authorization.startswith("Bearer "):
        return _challenge(
            host, caller.tenant, "AKV10000", "Request is missing a Bearer or PoP token."
        )
    trouble = problem(authorization, (resource, resource + "/"))
    if trouble is not None:
        code, message = trouble
        if code == "InvalidAuthenticationTokenAudience":
            audience = (signed_claims(authorization) or {}).get("aud")
            message = f"Invalid audience. Expected {resource}, found: {audience}."
            return _challenge(host, caller.tenant, "AKV10022", message)
        return _challenge(host, caller.tenant, "AKV10000", message)
    version_asked = request.query.get("api-version")
    if not version_asked:
        return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
    if version_asked not in API_VERSIONS:
        return _error(
            400,
            "BadParameter",
            f"The specified version ({version_asked}) is not recognized. Consider using the "
            f"latest supported version ({API_VERSIONS[0]}).",
        )
    match = _PATH.match(request.path)
    if request.method != "GET" or match is None:
        return _error(
            405, "BadParameter", "The simulator serves reading secrets only (GET /secrets...)."
        )
    base = f"https://{host}"
    name, version = match["name"], match["version"] or ""
    if name is not None and not re.match(SECRET_NAME, name):
        return _error(
            400, "BadParameter", f"The secret name '{name}' is invalid: 1-127 letters, digits, -."
        )
    listing = name is None or version.lower() == "versions"
    if not vault.may_read(name):
        return _forbidden(vault, caller, LIST_ACTION if listing else GET_ACTION, name)
    if name is None:
        items = [
            versions[-1].item(f"{base}/secrets/{display}")
            for display, versions in vault.secrets.values()
        ]
        return _list(request, base, items)
    found = vault.secrets.get(name.lower())
    if found is None:
        return _not_found(name)
    display, versions = found
    if listing:
        return _list(request, base, [v.item(f"{base}/secrets/{display}/{v.id}") for v in versions])
    chosen = versions[-1] if not version else next((v for v in versions if v.id == version), None)
    if chosen is None:
        return _not_found(f"{name}/{version}")
    if not chosen.enabled:
        return _error(
            403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
        )
    bundle = {"value": chosen.value} | chosen.item(f"{base}/secrets/{display}/{chosen.id}")
    return web.json_response(bundle)


def _not_found(what: str) -> web.Response:
    return _error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. {NOT_FOUND_HELP}",
    )


def _list(request: web.Request, base: str, items: list[dict[str, Any]]) -> web.Response:
    """A page of `items` after `$skiptoken`, `maxresults` long, with the next page's link."""
    query = request.query
    try:
        size = int(query.get("maxresults") or PAGE)
        start = int(base64.urlsafe_b64decode(query.get("$skiptoken", "MA==")).decode() or 0)
    except ValueError:
        return _error(400, "BadParameter", "The value of maxresults or $skiptoken is not valid.")
    if not 1 <= size <= PAGE:
        return _error(400, "BadParameter", f"The value of maxresults must be between 1 and {PAGE}.")
    link = None
    if start + size < len(items):
        token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        link = (
            f"{base}{request.path}?api-version={query['api-version']}&$skiptoken={token}"
            f"&maxresults={size}"
        )
    return web.json_response({"value": items[start : start + size], "nextLink": link})


def add_admin_routes(app: web.Application, current: Callable[[], Vault]) -> None:
    """GET /_sim/keyvault, POST /_sim/keyvault/secrets/{name}, POST /_sim/keyvault/access."""

    async def view(_: web.Request) -> web.Response:
        return web.json_response(current().view())

    async def set_secret(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not re.match(SECRET_NAME, name):
            return web.json_response(
                {"error": "a secret name is 1-127 letters, digits and hyphens"}, status=400
            )
        try:
            body = await json_body(request)
            spec = SecretSpec.of(body if isinstance(body, str) else SecretSpec.model_validate(body))
        except (BodyError, ValidationError) as error:
            return web.json_response(
                {"error": f'body must be a value or {{"value": ..., ...}}: {error}'}, status=400
            )
        version = current().set(name, spec)
        return web.json_response(
            {"name": name, "version": version.id, "value": version.value} | version.attributes(),
            status=201,
        )

    async def access(request: web.Request) -> web.Response:
        try:
            body = await json_body(request)
        except BodyError:
            body = None
        names = body.get("secrets") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("readable"), bool)
            or set(body) - {"readable", "secrets"}
            or not (
                names is None
                or (isinstance(names, list) and all(isinstance(n, str) for n in names))
            )
        ):
            return web.json_response(
                {"error": 'body must be {"readable": true|false} with "secrets": [names] optional'},
                status=400,
            )
        vault = current()
        if names is None:
            vault.readable = body["readable"]
            if body["readable"]:
                vault.unreadable.clear()
        elif body["readable"]:
            vault.unreadable -= {n.lower() for n in names}
        else:
            vault.unreadable |= {n.lower() for n in names}
        return web.json_response(vault.view())

    app.router.add_get("/_sim/keyvault", view)
    app.router.add_post("/_sim/keyvault/secrets/{name}", set_secret)
    app.router.add_post("/_sim/keyvault/access", access)
