"""Who a request to one of the scenario's clusters comes from, and whether it may do what it asks.

Authentication, by the cluster's `auth.mode` (anonymous requests are refused, as with
`--anonymous-auth=false`):

- `token`: `Authorization: Bearer <the cluster's token>`; user
  `system:serviceaccount:kube-system:poolkeeper`;
- `client_certificate`: a TLS client certificate signed by the cluster's CA; user = its CN,
  groups = its O (the simulator's is CN=poolkeeper, O=poolkeeper). A certificate from another CA
  fails the TLS handshake (the real API server requests any certificate and answers 401);
- `entra`: a bearer JWT from the simulator's identity endpoint whose `aud` is the cluster's
  audience (also `api://<audience>` or `<audience>/.default`), not expired; user = its `oid`;
- `none`: everyone is `system:anonymous`.

A request without such credentials gets the API server's 401 `Unauthorized` Status, whatever its
path. Authorization: everything is allowed (discovery, `/version` and `/healthz` always) except
the rules an admin denied (`POST /_sim/kube/clusters/{name}/deny`): a denied request gets the
API server's 403 `Forbidden` Status naming the user, verb and resource, and a
SelfSubjectAccessReview answers from the same rules. A hang (`POST .../hang`) holds every request
of the cluster, before authentication, until it is released or its `seconds` have passed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from local.sim.identity import verified_claims
from local.sim.kube.model import ApiError
from local.sim.kube.requestinfo import RequestInfo

Mode = Literal["token", "client_certificate", "entra", "none"]
SERVICE_ACCOUNT = "system:serviceaccount:kube-system:poolkeeper"
CLIENT_NAME = "poolkeeper"  # the CN and O of the client certificate the simulator issues
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]


class Rule(BaseModel):
    """A denied permission: `*` (or leaving a field out) matches any verb, resource, group or
    namespace; `subresource` None matches requests for the resource itself, `*` any."""

    model_config = ConfigDict(extra="forbid")

    verb: str = "*"
    resource: str = "*"
    subresource: str | None = None
    group: str = "*"
    namespace: str = "*"

    def matches(
        self, verb: str, group: str, resource: str, subresource: str | None, namespace: str | None
    ) -> bool:
        asked = (verb, resource, subresource or None, group, namespace or "")
        rule = (self.verb, self.resource, self.subresource, self.group, self.namespace)
        # "*" in a rule matches anything; "*" asked (a review of `*`) matches any rule.
        return all(
            mine == "*" or mine == theirs or theirs == "*"
            for mine, theirs in zip(rule, asked, strict=True)
        )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: User, info: RequestInfo) -> ApiError:
    """The API server's 403 (responsewriters.Forbidden with apierrors.NewForbidden)."""
    resource = info.target or ""
    scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    why = (
        f'User "{user.name}" cannot {info.verb} resource "{resource}" in API group '
        f'"{info.group}" {scope}'
    )
    qualified = f"{info.resource}.{info.group}" if info.group else str(info.resource)
    subject = f'{qualified} "{info.name}"' if info.name else qualified
    details: dict[str, Any] = {}
    if info.name:
        details["name"] = info.name
    if info.group:
        details["group"] = info.group
    details["kind"] = info.resource
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


def _subject(certificate: Any) -> tuple[str | None, tuple[str, ...]]:
    """The CN and the O values of a certificate as `SSLObject.getpeercert()` gives it."""
    common: str | None = None
    organizations: list[str] = []
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common = value
            elif key == "organizationName":
                organizations.append(value)
    return common, tuple(organizations)


class Access:
    """A cluster's authentication, its denied permissions and its hang."""

    def __init__(
        self, mode: Mode, *, token: str | None = None, audience: str | None = None
    ) -> None:
        if (mode == "token") != (token is not None) or (mode == "entra") != (audience is not None):
            raise ValueError("a token cluster needs its token, an entra cluster its audience")
        self.mode, self.token, self.audience = mode, token, audience
        self.denied: list[Rule] = []
        self._running = asyncio.Event()
        self._running.set()
        self._release: asyncio.TimerHandle | None = None
        self.held = 0  # requests waiting in a hang now

    @property
    def audiences(self) -> tuple[str, ...]:
        audience = self.audience or ""
        return (audience, f"api://{audience}", f"{audience}/.default")

    def authenticate(self, request: web.Request) -> User | None:
        """The user the request comes from, or None (a 401)."""
        if self.mode == "none":
            return User(ANONYMOUS, ("system:unauthenticated",))
        if self.mode == "client_certificate":
            common, organizations = _subject(
                request.transport and request.transport.get_extra_info("peercert")
            )
            if not common:
                return None
            return User(common, (*organizations, "system:authenticated"))
        authorization = request.headers.get("Authorization", "")
        if self.mode == "token":
            given = authorization.removeprefix("Bearer ").strip()
            if not authorization.startswith("Bearer ") or not hmac.compare_digest(
                given.encode(), str(self.token).encode()
            ):
                return None
            return User(
                SERVICE_ACCOUNT,
                (
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ),
            )
        claims = verified_claims(authorization, self.audiences)
        if claims is None:
            return None
        return User(str(claims.get("oid", "")), ("system:authenticated",))

    # -- authorization ----------------------------------------------------------------------------

    def allows(
        self, verb: str, group: str, resource: str, subresource: str | None, namespace: str | None
    ) -> bool:
        return not any(
            rule.matches(verb, group, resource, subresource, namespace) for rule in self.denied
        )

    def check(self, request: web.Request, info: RequestInfo) -> User:
        """The request's user if it may do what it asks; else the 401 or 403 to answer."""
        user = self.authenticate(request)
        if user is None:
            raise unauthorized()
        if info.resource is not None and not self.allows(
            info.verb, info.group, info.resource, info.subresource, info.namespace
        ):
            raise forbidden(user, info)
        return user

    def deny(self, rule: Rule) -> None:
        if rule not in self.denied:
            self.denied.append(rule)

    def allow(self, rule: Rule) -> None:
        """Take back a denied rule (the same fields)."""
        self.denied = [r for r in self.denied if r != rule]

    # -- hang -------------------------------------------------------------------------------------

    @property
    def hung(self) -> bool:
        return not self._running.is_set()

    def hang(self, seconds: float | None = None) -> None:
        """Hold every request from now on, until `release()` or `seconds` (wall) have passed."""
        self._running.clear()
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if seconds is not None:
            self._release = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        self._running.set()

    async def hold(self) -> None:
        """Wait while the cluster hangs."""
        if self._running.is_set():
            return
        self.held += 1
        try:
            await self._running.wait()
        finally:
            self.held -= 1

    def reset(self) -> None:
        """A new scenario: nothing denied, no hang."""
        self.denied.clear()
        self.release()

    def view(self) -> dict[str, Any]:
        return {
            "auth": self.mode,
            "denied": [rule.model_dump() for rule in self.denied],
            "hung": self.hung,
            "held": self.held,
        }


REVIEW_GROUP = "authorization.k8s.io"


def _invalid_review(field: str, value: str, why: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'SelfSubjectAccessReview.{REVIEW_GROUP} "" is invalid: {field}: Invalid value: '
        f"{value}: {why}",
        {
            "group": REVIEW_GROUP,
            "kind": "SelfSubjectAccessReview",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {value}: {why}",
                    "field": field,
                }
            ],
        },
    )


def review(access: Access | None, user: User | None, body: Any) -> dict[str, Any]:
    """A SelfSubjectAccessReview (POST .../selfsubjectaccessreviews) answered from the cluster's
    rules: `status.allowed`, and RBAC's reason when allowed. Non-resource paths are allowed."""
    if not isinstance(body, dict) or body.get("kind") not in (None, "SelfSubjectAccessReview"):
        raise ApiError(
            400, "BadRequest", "the body must be an authorization.k8s.io/v1 SelfSubjectAccessReview"
        )
    spec = body.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise _invalid_review(
            "spec.nonResourceAttributes",
            json.dumps(non_resource, separators=(",", ":")),
            "cannot be specified in combination with resourceAttributes",
        )
    if resource is None and non_resource is None:
        raise _invalid_review(
            "spec.resourceAttributes",
            '"null"',
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )
    attributes = resource if resource is not None else non_resource
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise ApiError(400, "BadRequest", "the review's attributes must map names to strings")
    allowed = True
    if resource is not None and access is not None:
        allowed = access.allows(
            attributes.get("verb", ""),
            attributes.get("group", ""),
            attributes.get("resource", ""),
            attributes.get("subresource") or None,
            attributes.get("namespace") or None,
        )
    status: dict[str, Any] = {"allowed": allowed}
    if allowed and user is not None:
        subject = (
            'ServiceAccount "poolkeeper/kube-system"'
            if user.name == SERVICE_ACCOUNT
            else f'User "{user.name}"'
        )
        status["reason"] = (
            f'RBAC: allowed by ClusterRoleBinding "poolkeeper" of ClusterRole "poolkeeper" to '
            f"{subject}"
        )
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": f"{REVIEW_GROUP}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {
            k: v for k, v in spec.items() if k in ("resourceAttributes", "nonResourceAttributes")
        },
        "status": status,
    }
