"""What ARM refuses before a route's handler runs: a body it cannot deserialize, and a name Azure
does not take for the resource a PUT or PATCH would create. `arm` and `tenancy` call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from local.sim import bodies, naming
from local.sim.bodies import BodyError
from local.sim.world import ArmError


def unreadable(error: BodyError) -> ArmError:
    """ARM's answer to a body it cannot deserialize or whose shape it refuses."""
    return ArmError(
        400,
        "InvalidRequestContent",
        f"The request content was invalid and could not be deserialized: '{error}'.",
    )


async def read_body(request: web.Request) -> Any:
    """The request's JSON body (None when empty); ARM's 400 when it cannot be read."""
    if not request.can_read_body:
        return None
    try:
        return bodies.decode(await request.read())
    except BodyError as error:
        raise unreadable(error) from None


# The names ARM checks when a resource is created: path parameter, rule, error code.
NAMES: dict[str, tuple[str, Callable[[str], str | None], str]] = {
    "VirtualMachineScaleSets_CreateOrUpdate": ("vmss", naming.scale_set, "InvalidResourceName"),
    "VirtualMachineScaleSets_Update": ("vmss", naming.scale_set, "InvalidResourceName"),
    "Snapshots_CreateOrUpdate": ("name", naming.snapshot, "InvalidResourceName"),
    "Galleries_CreateOrUpdate": ("gallery", naming.gallery, "InvalidResourceName"),
    "GalleryImages_CreateOrUpdate": ("image", naming.image_definition, "InvalidResourceName"),
    "GalleryImageVersions_CreateOrUpdate": ("version", naming.image_version, "InvalidParameter"),
}


def check_name(operation: str, match: dict[str, str]) -> None:
    """ARM's 400 for a resource a PUT or PATCH would create under a name Azure refuses."""
    if operation not in NAMES:
        return
    parameter, rule, code = NAMES[operation]
    refusal = rule(match[parameter])
    if refusal is not None:
        raise ArmError(400, code, refusal)
