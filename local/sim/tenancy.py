"""Azure Resource Manager's tenancy routes: cloud metadata, tenants, subscriptions, locations and
resource groups, so that the Azure CLI can register the simulator as a cloud and log in to it.

`server.Simulator.azure` asks `resolve` before the Compute routes of `arm`. Shapes and errors
follow Microsoft.Resources (tenants, subscriptions and locations as of 2022-12-01; resource
groups, whose shape every api-version shares) and ARM's metadata endpoint (2022-09-01: this
cloud; before 2020-06-01: a list of clouds).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from local.sim import bodies, naming
from local.sim.bodies import BodyError
from local.sim.gate import read_body, unreadable
from local.sim.identity import ARM_AUDIENCES, TokenIssuer, unauthorised
from local.sim.world import ArmError, World

CLOUD = "PoolkeeperSimulator"
RG_TYPE = "Microsoft.Resources/resourceGroups"
SUB = r"/subscriptions/(?P<sub>[^/]+)"
GROUP = SUB + r"/resourcegroups/(?P<rg>[^/]+)"


@dataclass
class Request:
    """One tenancy request as a handler sees it."""

    http: web.Request
    world: World
    match: dict[str, str]
    body: Any

    @property
    def base(self) -> str:
        return f"{self.http.scheme}://{self.http.host}"


Handler = Callable[[Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class Route:
    """A tenancy route: its REST operationId names it in the call log."""

    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Handler
    anonymous: bool = False


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def cloud(base: str) -> dict[str, Any]:
    """This cloud as ARM's metadata endpoint describes one: ARM, its token audiences and Log
    Analytics' audience (served under `/v1`).

    There is no Entra ID here (tokens come from the managed-identity endpoint), so the login
    endpoint is the simulator itself: an interactive login fails at once on a 404. Services the
    simulator does not serve (Graph, Storage, ...) are left out, so a command that needs one fails
    at once instead of calling public Azure; so is Key Vault's DNS suffix: its one vault is served
    at the ARM URL itself (local/sim/keyvault.py), not at `<name>.<suffix>`.
    """
    return {
        "name": CLOUD,
        "resourceManager": f"{base}/",
        "authentication": {
            "loginEndpoint": f"{base}/",
            "audiences": [a for a in ARM_AUDIENCES if a.endswith("/")],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "suffixes": {},
    }


async def metadata(request: Request) -> web.Response:
    found = cloud(request.base)
    # Before 2020-06-01 the endpoint answers with every cloud it knows of.
    older = request.http.query.get("api-version", "") < "2020-06-01"
    return _json([found] if older else found)


def tenant_body(world: World) -> dict[str, Any]:
    tenant = world.scenario.tenant
    return {
        "id": f"/tenants/{tenant}",
        "tenantId": tenant,
        "tenantCategory": "Home",
        "displayName": "Poolkeeper simulator",
        "domains": ["poolkeeper.local"],
        "defaultDomain": "poolkeeper.local",
        "tenantType": "AAD",
    }


async def list_tenants(request: Request) -> web.Response:
    return _json({"value": [tenant_body(request.world)]})


def subscription_body(world: World) -> dict[str, Any]:
    scenario = world.scenario
    return {
        "id": f"/subscriptions/{scenario.subscription}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": scenario.subscription,
        "tenantId": scenario.tenant,
        "displayName": "Poolkeeper simulator",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


async def list_subscriptions(request: Request) -> web.Response:
    return _json({"value": [subscription_body(request.world)]})


async def get_subscription(request: Request) -> web.Response:
    return _json(subscription_body(request.world))


async def list_locations(request: Request) -> web.Response:
    """The scenario's one region: every resource of the world is there."""
    world = request.world
    name = world.scenario.location
    return _json(
        {
            "value": [
                {
                    "id": f"/subscriptions/{world.scenario.subscription}/locations/{name}",
                    "name": name,
                    "type": "Region",
                    "displayName": name,
                    "regionalDisplayName": name,
                    "metadata": {"regionType": "Physical", "regionCategory": "Recommended"},
                }
            ]
        }
    )


def groups(world: World) -> dict[str, dict[str, Any]]:
    """Every resource group, by lower-cased name: those created by PUT, and those that hold a
    scale set or another resource (a scenario's groups exist without being created)."""
    found: dict[str, dict[str, Any]] = {}
    prefix = f"/subscriptions/{world.scenario.subscription}/resourceGroups/"

    def add(name: str, **extra: Any) -> None:
        found.setdefault(
            name.lower(),
            {
                "id": prefix + name,
                "name": name,
                "type": RG_TYPE,
                "location": world.scenario.location,
                "properties": {"provisioningState": "Succeeded"},
            }
            | extra,
        )

    for body in world.resources.values():
        if body["type"] == RG_TYPE:
            found[body["name"].lower()] = body
    for scale_set in world.scale_sets.values():
        add(scale_set.resource_group)
    for body in world.resources.values():
        held = re.match(r"/subscriptions/[^/]+/resourcegroups/([^/]+)/", body["id"], re.I)
        if held:
            add(held.group(1))
    return found


def _group(request: Request) -> dict[str, Any]:
    found = groups(request.world).get(request.match["rg"].lower())
    if found is None:
        raise ArmError(
            404,
            "ResourceGroupNotFound",
            f"Resource group '{request.match['rg']}' could not be found.",
        )
    return found


async def get_group(request: Request) -> web.Response:
    return _json(_group(request))


async def group_exists(request: Request) -> web.Response:
    _group(request)
    return web.Response(status=204)


async def list_groups(request: Request) -> web.Response:
    if "$filter" in request.http.query:
        raise ArmError(
            400,
            "InvalidFilter",
            "The simulator does not filter resource groups ($filter); list them all.",
        )
    found = sorted(groups(request.world).values(), key=lambda g: g["name"].lower())
    return _json({"value": found})


async def put_group(request: Request) -> web.Response:
    """Create a resource group or replace its tags (its location cannot change)."""
    body = request.body
    location = body.get("location") if isinstance(body, dict) else None
    if not isinstance(location, str) or not location:
        raise ArmError(
            400, "LocationRequired", "The location property is required for this definition."
        )
    world = request.world
    name = request.match["rg"]
    existing = groups(world).get(name.lower())
    if location.replace(" ", "").lower() != world.scenario.location.lower():
        raise ArmError(
            400 if existing is None else 409,
            "LocationNotAvailableForResourceGroup"
            if existing is None
            else "InvalidResourceGroupLocation",
            f"The simulated world has one region, '{world.scenario.location}'; "
            f"resource group '{name}' cannot be in '{location}'.",
        )
    tags = bodies.tags(body.get("tags"))
    group = {
        "id": f"/subscriptions/{world.scenario.subscription}/resourceGroups/"
        + (existing["name"] if existing else name),
        "name": existing["name"] if existing else name,
        "type": RG_TYPE,
        "location": world.scenario.location,
        "tags": {str(k): str(v) for k, v in tags.items()},
        "properties": {"provisioningState": "Succeeded"},
    }
    world.resources[group["id"].lower()] = group
    return _json(group, 200 if existing else 201)


ROUTES = [
    Route(
        "GET",
        re.compile(r"/metadata/endpoints/?", re.I),
        "MetadataEndpoints_Get",
        metadata,
        anonymous=True,
    ),
    *(
        Route(method, re.compile(pattern + "/?", re.I), operation, handler)
        for method, pattern, operation, handler in (
            ("GET", r"/tenants", "Tenants_List", list_tenants),
            ("GET", r"/subscriptions", "Subscriptions_List", list_subscriptions),
            ("GET", SUB, "Subscriptions_Get", get_subscription),
            ("GET", SUB + "/locations", "Subscriptions_ListLocations", list_locations),
            ("GET", SUB + "/resourcegroups", "ResourceGroups_List", list_groups),
            ("GET", GROUP, "ResourceGroups_Get", get_group),
            ("HEAD", GROUP, "ResourceGroups_CheckExistence", group_exists),
            ("PUT", GROUP, "ResourceGroups_CreateOrUpdate", put_group),
        )
    ),
]


def resolve(method: str, path: str) -> Route | None:
    """The tenancy route for a request, if it is one."""
    for route in ROUTES:
        if route.method == method and route.pattern.fullmatch(path):
            return route
    return None


async def handle(
    http: web.Request, world: World, issuer: TokenIssuer, route: Route
) -> web.Response:
    """Check the token (metadata is anonymous, as in ARM), the api-version and the
    subscription, then run the route; ARM errors become ARM bodies with ARM's request ids."""
    match = route.pattern.fullmatch(http.path)
    assert match is not None  # resolve matched it
    params = match.groupdict()
    authorization = http.headers.get("Authorization")
    if not route.anonymous and not issuer.valid(authorization, ARM_AUDIENCES):
        return unauthorised(authorization, ARM_AUDIENCES)
    try:
        if not http.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if "sub" in params and params["sub"].lower() != world.scenario.subscription.lower():
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{params['sub']}' could not be found.",
            )
        refusal = naming.resource_group(params["rg"]) if "rg" in params else None
        if refusal is not None:
            raise ArmError(400, "InvalidResourceGroup", refusal)
        body = await read_body(http)  # ARM's 400 for a body that is not JSON
        response = await route.handler(Request(http, world, params, body))
    except BodyError as error:  # a part of the body of a shape ARM does not take
        response = _json(unreadable(error).body(), 400)
    except ArmError as error:
        response = _json(error.body(), error.status)
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    response.headers["x-ms-correlation-request-id"] = http.headers.get(
        "x-ms-correlation-request-id", str(uuid.uuid4())
    )
    return response
