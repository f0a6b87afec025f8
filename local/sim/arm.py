"""Azure Resource Manager (Microsoft.Compute) over HTTPS: the routes `azure-mgmt-compute` calls.

Bodies, headers, status codes and error codes follow the Compute REST API: ETags and If-Match,
`nextLink` paging, long-running operations with `Azure-AsyncOperation` and `Location`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from local.sim import bodies, images
from local.sim.bodies import BodyError
from local.sim.gate import check_name, read_body, unreadable
from local.sim.scenario import Fault
from local.sim.world import ArmError, Instance, Operation, ScaleSet, World, fault_message, guest_up

log = logging.getLogger("sim.arm")
PREFIX = r"/subscriptions/(?P<sub>[^/]+)"
RG = PREFIX + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
VMSS = RG + r"/virtualMachineScaleSets/(?P<vmss>[^/]+)"
GALLERY = RG + r"/galleries/(?P<gallery>[^/]+)"
IMAGE = GALLERY + r"/images/(?P<image>[^/]+)"

Handler = Callable[["Call"], Awaitable[web.Response]]


@dataclass
class Call:
    """One ARM request as a handler sees it."""

    request: web.Request
    world: World
    match: dict[str, str]
    operation: str
    fault: Fault | None
    body: Any

    @property
    def base(self) -> str:
        return f"{self.request.scheme}://{self.request.host}"

    @property
    def api_version(self) -> str:
        return self.request.query.get("api-version", "")


def _etag(scale_set: ScaleSet) -> str:
    return f'"{scale_set.etag}"'


def _identity(ids: list[str]) -> dict[str, Any]:
    """The model's `identity`, as ARM shows user-assigned ones (ids of their own, stable)."""
    if not ids:
        return {}
    assigned = {
        each: {
            "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, each + "#principal")),
            "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, each + "#client")),
        }
        for each in ids
    }
    return {"identity": {"type": "UserAssigned", "userAssignedIdentities": assigned}}


def scale_set_body(world: World, scale_set: ScaleSet) -> dict[str, Any]:
    image = scale_set.image
    return {
        "id": scale_set.id,
        "name": scale_set.name,
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": scale_set.location,
        "tags": scale_set.tags,
        "etag": _etag(scale_set),
        "sku": {"name": scale_set.spec.sku, "tier": "Standard", "capacity": scale_set.capacity},
        **({"zones": scale_set.spec.zones} if scale_set.spec.zones else {}),
        **_identity(scale_set.spec.identities),
        "properties": {
            "provisioningState": "Updating" if scale_set.updating_ops else "Succeeded",
            "uniqueId": scale_set.unique_id,
            "timeCreated": scale_set.created.isoformat(),
            "orchestrationMode": "Uniform",
            "singlePlacementGroup": False,
            "overprovision": False,
            "upgradePolicy": {"mode": scale_set.spec.upgrade_mode},
            "scaleInPolicy": {"rules": ["Default"], "forceDeletion": False},
            "virtualMachineProfile": {
                "osProfile": {
                    "computerNamePrefix": scale_set.prefix,
                    "adminUsername": "azureuser",
                    "linuxConfiguration": {"disablePasswordAuthentication": True},
                },
                "storageProfile": {
                    "imageReference": dict(image),
                    "osDisk": {
                        "createOption": "FromImage",
                        "caching": "ReadOnly",
                        "osType": "Linux",
                        "diskSizeGB": 128,
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                },
            },
        },
    }


def _statuses(world: World, instance: Instance) -> list[dict[str, Any]]:
    state = instance.provisioning.lower()
    if instance.provisioning == "Failed" and instance.failure:
        provisioning = {
            "code": f"ProvisioningState/failed/{instance.failure}",
            "level": "Error",
            "displayStatus": "Provisioning failed",
            "message": f"Provisioning failed: {instance.failure}.",
        }
    else:
        provisioning = {
            "code": f"ProvisioningState/{state}",
            "level": "Info",
            "displayStatus": f"Provisioning {state}",
        }
    statuses = [provisioning | {"time": (instance.booted_at or instance.created).isoformat()}]
    if instance.provisioning != "Creating":
        power = instance.power
        statuses.append(
            {
                "code": f"PowerState/{power}",
                "level": "Info",
                "displayStatus": f"VM {power}",
            }
        )
    return statuses


def instance_view(world: World, scale_set: ScaleSet, instance: Instance) -> dict[str, Any]:
    return {
        "platformUpdateDomain": instance.instance_id % 5,
        "platformFaultDomain": instance.instance_id % 3,
        "computerName": instance.computer_name,
        "osName": "ubuntu",
        "osVersion": world.scenario.os.release,
        "hyperVGeneration": "V2",  # Kamino reads an image definition's generation here
        "vmAgent": {
            "vmAgentVersion": "2.11.1.12",
            "statuses": [
                {
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Ready",
                    "message": "Guest Agent is running",
                }
            ],
        }
        if guest_up(instance)
        else {"statuses": []},
        "disks": [
            {
                "name": instance.os_disk,
                "statuses": [
                    {
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                    }
                ],
            }
        ],
        "statuses": _statuses(world, instance),
    } | (
        {
            "extensions": [
                {
                    "name": "RunCommandLinux",
                    "type": "Microsoft.CPlat.Core.RunCommandLinux",
                    "typeHandlerVersion": "1.0.5",
                    "statuses": [dict(instance.last_run)],
                }
            ]
        }
        if instance.last_run
        else {}
    )


def image_reference(instance: Instance) -> dict[str, Any]:
    """The instance's model reference and, as Azure shows it, the exact version it runs."""
    exact = instance.source.exact_version
    return dict(instance.image) | ({"exactVersion": exact} if exact else {})


def vm_body(
    world: World, scale_set: ScaleSet, instance: Instance, *, expand: bool
) -> dict[str, Any]:
    vm_id = f"{scale_set.id}/virtualMachines/{instance.instance_id}"
    properties: dict[str, Any] = {
        "latestModelApplied": instance.model_version == scale_set.model_version,
        "vmId": instance.vm_id,
        "provisioningState": instance.provisioning,
        "hardwareProfile": {"vmSize": scale_set.spec.sku},
        "osProfile": {"computerName": instance.computer_name, "adminUsername": "azureuser"},
        "storageProfile": {
            "imageReference": image_reference(instance),
            "osDisk": {
                "osType": "Linux",
                "name": instance.os_disk,
                "createOption": "FromImage",
                "caching": "ReadOnly",
                "diskSizeGB": 128,
                "managedDisk": {
                    "storageAccountType": "Premium_LRS",
                    "id": world.disk_id(scale_set, instance.os_disk),
                },
            },
        },
        "timeCreated": instance.created.isoformat(),
    }
    if expand:
        properties["instanceView"] = instance_view(world, scale_set, instance)
    return {
        "instanceId": str(instance.instance_id),
        "id": vm_id,
        "name": scale_set.vm_name(instance),
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        "location": scale_set.location,
        "sku": {"name": scale_set.spec.sku, "tier": "Standard"},
        **({"zones": [instance.zone]} if instance.zone else {}),
        "properties": properties,
    }


def vm_json(world: World, scale_set: ScaleSet, instance: Instance, *, expand: bool) -> str:
    """`vm_body` as JSON text, re-rendered only when something it shows has changed.

    VM lists dominate the simulator's load (tests and benchmarks page through hundreds of
    instances); most instances do not change between two pages.
    """
    shown = (
        instance.provisioning,
        instance.power,
        instance.failure,
        instance.booted_at,
        instance.guest.state,
        instance.model_version == scale_set.model_version,
        instance.os_disk,
        tuple(sorted(instance.image.items())),
        instance.source,
        instance.zone,
        instance.last_run,
    )
    key = (scale_set.id, instance.instance_id, expand)
    cached = world.render_cache.get(key)
    if cached is None or cached[0] != shown:
        cached = (shown, json.dumps(vm_body(world, scale_set, instance, expand=expand)))
        world.render_cache[key] = cached
    return cached[1]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _operation_urls(call: Call, op: Operation) -> dict[str, str]:
    """Compute's status URLs: `operations` (CRP), `DiskOperations`, `capsOperations` (galleries)."""
    kind = {"Disks": "DiskOperations", "Snapshots": "DiskOperations"}.get(
        call.operation.split("_")[0],
        "capsOperations" if call.operation.startswith("Galler") else "operations",
    )
    status = (
        f"{call.base}/subscriptions/{call.world.scenario.subscription}/providers/Microsoft.Compute"
        f"/locations/{call.world.scenario.location}/{kind}/{op.id}"
    )
    return {
        "Azure-AsyncOperation": f"{status}?api-version={call.api_version}",
        "Location": f"{status}?monitor=true&api-version={call.api_version}",
    }


def accepted(call: Call, op: Operation) -> web.Response:
    """202 for an action: the client polls Azure-AsyncOperation, then GETs Location."""
    return web.Response(status=202, headers=_operation_urls(call, op))


def _scale_set(call: Call) -> ScaleSet:
    return call.world.scale_set(call.match["rg"], call.match["vmss"])


def _ids(body: Any, *, required: bool) -> list[str] | None:
    if body is None:
        if required:
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid: instanceIds is required.",
            )
        return None
    if not isinstance(body, dict) or not isinstance(body.get("instanceIds", []), list):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid: instanceIds must be a list.",
        )
    ids = body.get("instanceIds")
    return [str(i) for i in ids] if ids is not None else None


async def get_scale_set(call: Call) -> web.Response:
    scale_set = _scale_set(call)
    return _json(scale_set_body(call.world, scale_set), headers={"ETag": _etag(scale_set)})


async def list_scale_sets(call: Call) -> web.Response:
    rg = call.match.get("rg")
    found = [
        scale_set_body(call.world, s)
        for (group, _), s in sorted(call.world.scale_sets.items())
        if rg is None or group == rg.lower()
    ]
    return _json({"value": found})


async def write_scale_set(call: Call) -> web.Response:
    """PUT (create or update) and PATCH (update) of a scale set, with If-Match."""
    scale_set = _scale_set(call)  # the simulator's world is fixed by its scenario: no new sets
    call.world.check_etag(
        scale_set, call.request.headers.get("If-Match"), call.request.headers.get("If-None-Match")
    )
    if call.body is not None and not isinstance(call.body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    body = call.body or {}
    put = call.request.method == "PUT"  # PUT replaces the model: absent tags are removed
    sku = bodies.obj(body.get("sku"), "sku")
    if sku.get("name") and sku["name"] != scale_set.spec.sku:
        raise ArmError(
            409, "OperationNotAllowed", "Changing the VM size of a scale set is not simulated."
        )
    capacity = sku.get("capacity")
    if capacity is not None and (
        not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0
    ):
        raise ArmError(400, "InvalidParameter", "The value of parameter sku.capacity is invalid.")
    properties = bodies.obj(body.get("properties"), "properties")
    profile = bodies.obj(properties.get("virtualMachineProfile"), "virtualMachineProfile")
    storage = bodies.obj(profile.get("storageProfile"), "virtualMachineProfile.storageProfile")
    image = storage.get("imageReference")
    if image is not None and not isinstance(image, dict):
        raise ArmError(400, "InvalidParameter", "imageReference must be an object.")
    if image is not None:  # the world checks that it resolves
        image = {
            k: bodies.text(v, f"imageReference.{k}")
            for k, v in image.items()
            if k in ("id", "publisher", "offer", "sku", "version") and v
        }
    op = call.world.update_scale_set(
        scale_set,
        capacity=capacity,
        image=image,
        tags=bodies.tags(body["tags"]) if "tags" in body else ({} if put else None),
        fault=call.fault,
        operation=call.operation,
    )
    headers = {"ETag": _etag(scale_set), **_async_only(call, op)}
    return _json(scale_set_body(call.world, scale_set), headers=headers)


async def delete_instances(call: Call) -> web.Response:
    scale_set = _scale_set(call)
    force = call.request.query.get("forceDeletion", "false").lower() == "true"
    op = call.world.delete_instances(
        scale_set,
        _ids(call.body, required=True) or [],
        force=force,
        fault=call.fault,
        operation=call.operation,
    )
    return accepted(call, op)


def _action(name: str, *, required: bool = False) -> Handler:
    async def handler(call: Call) -> web.Response:
        scale_set = _scale_set(call)
        op = call.world.instance_action(
            scale_set,
            name,
            _ids(call.body, required=required),
            fault=call.fault,
            operation=call.operation,
        )
        return accepted(call, op)

    return handler


def _vm_action(name: str) -> Handler:
    """The per-instance form of an action (`.../virtualMachines/{id}/restart`)."""

    async def handler(call: Call) -> web.Response:
        scale_set, instance = _instance(call)
        op = call.world.instance_action(
            scale_set,
            name,
            [str(instance.instance_id)],
            fault=call.fault,
            operation=call.operation,
        )
        return accepted(call, op)

    return handler


async def list_vms(call: Call) -> web.Response:
    scale_set = _scale_set(call)
    expand = call.request.query.get("$expand", "").lower() == "instanceview"
    size = call.world.scenario.page_size
    token = call.request.query.get("$skiptoken", "-1")
    if not token.lstrip("-").isdigit():
        raise ArmError(400, "InvalidParameter", f"The skip token '{token}' is not valid.")
    after = int(token)
    ordered = sorted(i for i in scale_set.instances if i > after)
    page = ordered[:size]
    items = ",".join(
        vm_json(call.world, scale_set, scale_set.instances[i], expand=expand) for i in page
    )
    next_link = ""
    if len(ordered) > size:
        query = {k: v for k, v in call.request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = str(page[-1])
        next_link = f', "nextLink": {json.dumps(str(call.request.url.with_query(query)))}'
    return web.Response(text=f'{{"value": [{items}]{next_link}}}', content_type="application/json")


def _instance(call: Call) -> tuple[ScaleSet, Instance]:
    scale_set = _scale_set(call)
    raw = call.match["instance"]
    instance = scale_set.instances.get(int(raw)) if raw.isdigit() else None
    if instance is None:
        raise ArmError(
            404,
            "NotFound",
            f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{scale_set.name}/"
            f"virtualMachines/{raw}' under resource group '{scale_set.resource_group}' was not "
            "found.",
        )
    return scale_set, instance


async def get_vm(call: Call) -> web.Response:
    scale_set, instance = _instance(call)
    expand = call.request.query.get("$expand", "").lower() == "instanceview"
    return _json(vm_body(call.world, scale_set, instance, expand=expand))


async def get_instance_view(call: Call) -> web.Response:
    scale_set, instance = _instance(call)
    return _json(instance_view(call.world, scale_set, instance))


async def run_command(call: Call) -> web.Response:
    scale_set, instance = _instance(call)
    body = call.body if isinstance(call.body, dict) else {}
    script = body.get("script") or []
    if not isinstance(script, list):
        raise ArmError(400, "InvalidParameter", "script must be a list of lines.")
    op = call.world.run_command(
        scale_set,
        instance,
        str(body.get("commandId", "")),
        [str(s) for s in script],
        fault=call.fault,
        operation=call.operation,
    )
    return accepted(call, op)


async def operation_status(call: Call) -> web.Response:
    op = call.world.operations.get(call.match["operation"])
    if op is None:
        raise ArmError(404, "NotFound", f"Operation {call.match['operation']} was not found.")
    if call.request.query.get("monitor") == "true":
        if op.status == "InProgress":
            return web.Response(status=202, headers={"Location": str(call.request.url)})
        if op.error:  # a client polling Location only learns of failure from the status code
            raise ArmError(500, *op.error)
        if op.result is not None:
            return _json(op.result)
        return web.Response(status=200)
    body: dict[str, Any] = {"startTime": op.started.isoformat(), "status": op.status, "name": op.id}
    if op.ended:
        body["endTime"] = op.ended.isoformat()
    if op.error:
        body["error"] = {"code": op.error[0], "message": op.error[1]}
    if op.result is not None and op.status == "Succeeded":
        body["properties"] = {"output": op.result}
    return _json(body)


def _found(call: Call) -> dict[str, Any]:
    """The resource at the request's path, or ARM's 404."""
    found = call.world.resource(call.request.path)
    if found is None:
        kind = call.operation.split("_")[0]
        raise ArmError(
            404, "ResourceNotFound", f"The {kind} resource '{call.request.path}' was not found."
        )
    return found


async def get_resource(call: Call) -> web.Response:
    return _json(_found(call))


def _list_children(type_name: str, parent_group: str) -> Handler:
    async def handler(call: Call) -> web.Response:
        parent = call.request.path.lower().rsplit("/", 1)[0]
        children = [
            body
            for key, body in sorted(call.world.resources.items())
            if body["type"] == type_name and key.rsplit("/", 2)[0] == parent
        ]
        if (
            parent_group != "rg"
            and call.world.resource(call.request.path.rsplit("/", 1)[0]) is None
        ):
            raise ArmError(
                404,
                "ParentResourceNotFound",
                f"Parent resource of '{call.request.path}' was not found.",
            )
        return _json({"value": children})

    return handler


async def delete_resource(call: Call) -> web.Response:
    op = call.world.delete_resource(call.request.path, fault=call.fault, operation=call.operation)
    if op is None:
        return web.Response(status=204)
    return accepted(call, op)


def _resource_id(call: Call) -> str:
    # ARM echoes ids with the casing of the request path.
    return call.request.path


def _require_parent(call: Call, parent_id: str, what: str) -> dict[str, Any]:
    parent = call.world.resource(parent_id)
    if parent is None:
        raise ArmError(
            404,
            "ParentResourceNotFound",
            "Can not perform requested operation on nested resource. Parent resource "
            f"'{what}' not found.",
        )
    return parent


def _request(call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    """A PUT's body and its `properties`, each checked to be an object; location and tags
    checked to be what ARM takes."""
    body = bodies.obj(call.body, "body")
    bodies.text(body.get("location"), "location")
    bodies.tags(body.get("tags"))
    return body, bodies.obj(body.get("properties"), "properties")


async def put_snapshot(call: Call) -> web.Response:
    body, properties = _request(call)
    creation = bodies.obj(properties.get("creationData"), "properties.creationData")
    source_id = bodies.text(
        creation.get("sourceResourceId") or creation.get("sourceUri"), "sourceResourceId"
    )
    if creation.get("createOption") != "Copy" or not source_id:
        raise ArmError(
            400,
            "InvalidParameter",
            "creationData must have createOption Copy and a sourceResourceId.",
        )
    source = call.world.resource(source_id)
    if source is None or source["type"] != "Microsoft.Compute/disks":
        raise ArmError(404, "NotFound", f"Resource {source_id} is not found.")
    resource = {
        "id": _resource_id(call),
        "name": call.match["name"],
        "type": "Microsoft.Compute/snapshots",
        "location": body.get("location") or call.world.scenario.location,
        "tags": body.get("tags") or {},
        "sku": {"name": "Standard_ZRS", "tier": "Standard"},
        "properties": {
            "osType": "Linux",
            "hyperVGeneration": source["properties"].get("hyperVGeneration", "V2"),
            "creationData": {
                "createOption": "Copy",
                "sourceResourceId": source["id"],
                "sourceUniqueId": source["properties"]["uniqueId"],
            },
            "diskSizeGB": source["properties"]["diskSizeGB"],
            "incremental": bool(properties.get("incremental", False)),
            "timeCreated": call.world.now().isoformat(),
            "diskState": "Unattached",
        },
    }
    op = call.world.put_resource(
        resource, latency=call.world.latency.snapshot, fault=call.fault, operation=call.operation
    )
    call.world.copy_content(source["id"], resource["id"])  # the disk as it is at this moment
    return _json(resource, 202, headers=_operation_urls(call, op))


def _async_only(call: Call, op: Operation) -> dict[str, str]:
    """PUT and PATCH answer with the resource and only Azure-AsyncOperation to poll."""
    headers = _operation_urls(call, op)
    headers.pop("Location")
    return headers


def _created(call: Call) -> int:
    """201 when a PUT creates the resource, 200 when it replaces one."""
    return 201 if call.world.resource(call.request.path) is None else 200


async def put_gallery(call: Call) -> web.Response:
    body, properties = _request(call)
    resource = {
        "id": _resource_id(call),
        "name": call.match["gallery"],
        "type": "Microsoft.Compute/galleries",
        "location": body.get("location") or call.world.scenario.location,
        "tags": body.get("tags") or {},
        "properties": {
            "description": bodies.text(properties.get("description"), "description") or "",
            "identifier": {
                "uniqueName": f"{call.world.scenario.subscription}-{call.match['gallery'].upper()}"
            },
        },
    }
    status = _created(call)
    op = call.world.put_resource(
        resource, latency=call.world.latency.gallery, fault=call.fault, operation=call.operation
    )
    return _json(resource, status, headers=_async_only(call, op))


async def put_image(call: Call) -> web.Response:
    gallery_id = _resource_id(call).rsplit("/images/", 1)[0]
    _require_parent(call, gallery_id, call.match["gallery"])
    body, properties = _request(call)
    identifier = bodies.obj(properties.get("identifier"), "properties.identifier")
    if (
        properties.get("osType") not in ("Linux", "Windows")
        or properties.get("osState") not in ("Generalized", "Specialized")
        or not all(identifier.get(k) for k in ("publisher", "offer", "sku"))
    ):
        raise ArmError(
            400,
            "InvalidParameter",
            "An image definition needs osType, osState and identifier {publisher, offer, sku}.",
        )
    resource = {
        "id": _resource_id(call),
        "name": call.match["image"],
        "type": "Microsoft.Compute/galleries/images",
        "location": body.get("location") or call.world.scenario.location,
        "tags": body.get("tags") or {},
        "properties": {
            "osType": properties["osType"],
            "osState": properties["osState"],
            "hyperVGeneration": properties.get("hyperVGeneration", "V2"),
            "identifier": identifier,
        },
    }
    status = _created(call)
    op = call.world.put_resource(
        resource,
        latency=call.world.latency.image_definition,
        fault=call.fault,
        operation=call.operation,
    )
    return _json(resource, status, headers=_async_only(call, op))


async def put_image_version(call: Call) -> web.Response:
    """Create a version from a snapshot or disk (its OS content copied now), or update one."""
    image_id = _resource_id(call).rsplit("/versions/", 1)[0]
    _require_parent(call, image_id, call.match["image"])
    body, properties = _request(call)
    existing = call.world.resource(call.request.path)
    if existing is not None:
        return await _update_version(call, existing, body)
    source_id = images.source_of(properties)
    source = call.world.resource(source_id) if source_id else None
    if source is None or source["type"] not in (
        "Microsoft.Compute/snapshots",
        "Microsoft.Compute/disks",
    ):
        raise ArmError(
            404, "NotFound", f"The source '{source_id}' of the image version was not found."
        )
    body = body | {"location": body.get("location") or call.world.scenario.location}
    resource = images.version_body(_resource_id(call), body, source, call.world.now())
    op = call.world.put_version(resource, source["id"], fault=call.fault, operation=call.operation)
    return _json(resource, 201, headers=_async_only(call, op))


async def _update_version(
    call: Call, existing: dict[str, Any], body: dict[str, Any]
) -> web.Response:
    refused = images.recreate_refusal(existing)
    if refused is not None:
        raise ArmError(refused.status, refused.code, refused.message)
    if existing["properties"].get("provisioningState") not in ("Succeeded", "Failed"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Gallery image version '{existing['name']}' has an operation in progress "
            f"({existing['properties'].get('provisioningState')}); retry when it has ended.",
        )
    try:
        resource = images.version_update(existing, body)
    except images.ImageError as error:
        raise ArmError(error.status, error.code, error.message) from None
    op = call.world.put_resource(
        resource,
        latency=call.world.latency.image_version_update,
        fault=call.fault,
        operation=call.operation,
    )
    return _json(resource, 200, headers=_async_only(call, op))


async def patch_image_version(call: Call) -> web.Response:
    body, _ = _request(call)
    return await _update_version(call, _found(call), body)


async def get_image_version(call: Call) -> web.Response:
    """A version; `$expand=ReplicationStatus` adds each region's replication progress."""
    found = _found(call)
    if call.request.query.get("$expand", "").lower() != "replicationstatus":
        return _json(found)
    started = datetime.fromisoformat(found["properties"]["publishingProfile"]["publishedDate"])
    status = images.replication(found, started, call.world.now(), call.world.latency.image_version)
    properties = found["properties"] | {"replicationStatus": status}
    return _json(found | {"properties": properties})


def _permission_entries(world: World, scope: str) -> list[Any] | None:
    """The scenario's `permissions` for a resource group's name or a resource's id, if listed."""
    wanted = scope.lower()
    return next(
        (found for key, found in world.scenario.permissions.items() if key.lower() == wanted),
        None,
    )


EVERY_ACTION = [{"actions": ["*"], "notActions": []}]


def _permissions(*listed: list[Any] | None) -> web.Response:
    """ARM's permissions list: the entries of each scope, or every action for a scope not
    listed; they add up, as assignments down the hierarchy do."""
    shown = [
        entry
        for found in listed
        for entry in (
            EVERY_ACTION
            if found is None
            else [{"actions": e.actions, "notActions": e.not_actions} for e in found]
        )
    ]
    return _json({"value": [e | {"dataActions": [], "notDataActions": []} for e in shown]})


async def list_permissions(call: Call) -> web.Response:
    """The caller's effective permissions in a resource group (Permissions_ListForResourceGroup):
    the scenario's `permissions` for it, else every action."""
    return _permissions(_permission_entries(call.world, call.match["rg"]))


async def list_resource_permissions(call: Call) -> web.Response:
    """The caller's effective permissions on one resource (Permissions_ListForResource): what
    its resource group grants (assignments there are inherited) and what is assigned at the
    resource, the scenario's `permissions` under the group's name and the resource's id. A group
    not listed grants every action, so its resources' own entries cannot narrow it."""
    resource = "/".join(part for part in call.match["resource"].split("/") if part)
    resource_id = (
        f"/subscriptions/{call.match['sub']}/resourceGroups/{call.match['rg']}/providers/{resource}"
    )
    own = _permission_entries(call.world, resource_id)
    return _permissions(_permission_entries(call.world, call.match["rg"]), *([own] if own else []))


# (method, path regex, REST operationId, handler); matched in order, case-insensitively like ARM.
ROUTES: list[tuple[str, str, str, Handler]] = [
    (
        "GET",
        PREFIX + r"/providers/Microsoft\.Compute/locations/(?P<location>[^/]+)"
        r"/(?:operations|DiskOperations|capsOperations)/(?P<operation>[^/]+)",
        "OperationStatus",
        operation_status,
    ),
    (
        "GET",
        PREFIX + r"/providers/Microsoft\.Compute/virtualMachineScaleSets",
        "VirtualMachineScaleSets_ListAll",
        list_scale_sets,
    ),
    (
        "GET",
        PREFIX + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Authorization/permissions",
        "Permissions_ListForResourceGroup",
        list_permissions,
    ),
    (
        "GET",
        PREFIX + r"/resourceGroups/(?P<rg>[^/]+)/providers/(?P<resource>.+?)"
        r"/providers/Microsoft\.Authorization/permissions",
        "Permissions_ListForResource",
        list_resource_permissions,
    ),
    ("GET", RG + r"/virtualMachineScaleSets", "VirtualMachineScaleSets_List", list_scale_sets),
    ("GET", VMSS, "VirtualMachineScaleSets_Get", get_scale_set),
    ("PUT", VMSS, "VirtualMachineScaleSets_CreateOrUpdate", write_scale_set),
    ("PATCH", VMSS, "VirtualMachineScaleSets_Update", write_scale_set),
    ("POST", VMSS + "/delete", "VirtualMachineScaleSets_DeleteInstances", delete_instances),
    ("POST", VMSS + "/restart", "VirtualMachineScaleSets_Restart", _action("restart")),
    ("POST", VMSS + "/poweroff", "VirtualMachineScaleSets_PowerOff", _action("powerOff")),
    ("POST", VMSS + "/start", "VirtualMachineScaleSets_Start", _action("start")),
    ("POST", VMSS + "/deallocate", "VirtualMachineScaleSets_Deallocate", _action("deallocate")),
    ("POST", VMSS + "/reimage", "VirtualMachineScaleSets_Reimage", _action("reimage")),
    (
        "POST",
        VMSS + "/manualupgrade",
        "VirtualMachineScaleSets_UpdateInstances",
        _action("manualUpgrade", required=True),
    ),
    ("GET", VMSS + "/virtualMachines", "VirtualMachineScaleSetVMs_List", list_vms),
    (
        "GET",
        VMSS + r"/virtualMachines/(?P<instance>[^/]+)",
        "VirtualMachineScaleSetVMs_Get",
        get_vm,
    ),
    (
        "GET",
        VMSS + r"/virtualMachines/(?P<instance>[^/]+)/instanceView",
        "VirtualMachineScaleSetVMs_GetInstanceView",
        get_instance_view,
    ),
    (
        "POST",
        VMSS + r"/virtualMachines/(?P<instance>[^/]+)/runCommand",
        "VirtualMachineScaleSetVMs_RunCommand",
        run_command,
    ),
    *(
        (
            "POST",
            VMSS + rf"/virtualMachines/(?P<instance>[^/]+)/{verb}",
            f"VirtualMachineScaleSetVMs_{verb[0].upper()}{verb[1:]}",
            _vm_action(verb),
        )
        for verb in ("restart", "start", "powerOff", "deallocate", "reimage")
    ),
    ("GET", RG + r"/disks/(?P<name>[^/]+)", "Disks_Get", get_resource),
    (
        "GET",
        RG + r"/snapshots",
        "Snapshots_ListByResourceGroup",
        _list_children("Microsoft.Compute/snapshots", "rg"),
    ),
    ("PUT", RG + r"/snapshots/(?P<name>[^/]+)", "Snapshots_CreateOrUpdate", put_snapshot),
    ("GET", RG + r"/snapshots/(?P<name>[^/]+)", "Snapshots_Get", get_resource),
    ("DELETE", RG + r"/snapshots/(?P<name>[^/]+)", "Snapshots_Delete", delete_resource),
    (
        "GET",
        RG + r"/galleries",
        "Galleries_ListByResourceGroup",
        _list_children("Microsoft.Compute/galleries", "rg"),
    ),
    ("PUT", GALLERY, "Galleries_CreateOrUpdate", put_gallery),
    ("GET", GALLERY, "Galleries_Get", get_resource),
    ("DELETE", GALLERY, "Galleries_Delete", delete_resource),
    (
        "GET",
        GALLERY + "/images",
        "GalleryImages_ListByGallery",
        _list_children("Microsoft.Compute/galleries/images", "gallery"),
    ),
    ("PUT", IMAGE, "GalleryImages_CreateOrUpdate", put_image),
    ("GET", IMAGE, "GalleryImages_Get", get_resource),
    ("DELETE", IMAGE, "GalleryImages_Delete", delete_resource),
    (
        "GET",
        IMAGE + "/versions",
        "GalleryImageVersions_ListByGalleryImage",
        _list_children("Microsoft.Compute/galleries/images/versions", "image"),
    ),
    (
        "PUT",
        IMAGE + r"/versions/(?P<version>[^/]+)",
        "GalleryImageVersions_CreateOrUpdate",
        put_image_version,
    ),
    (
        "PATCH",
        IMAGE + r"/versions/(?P<version>[^/]+)",
        "GalleryImageVersions_Update",
        patch_image_version,
    ),
    ("GET", IMAGE + r"/versions/(?P<version>[^/]+)", "GalleryImageVersions_Get", get_image_version),
    (
        "DELETE",
        IMAGE + r"/versions/(?P<version>[^/]+)",
        "GalleryImageVersions_Delete",
        delete_resource,
    ),
]
COMPILED = [(m, re.compile(p + "/?", re.IGNORECASE), op, h) for m, p, op, h in ROUTES]


def resolve(method: str, path: str) -> tuple[str, Handler, dict[str, str]] | None:
    """The operationId, handler and path parameters for a request, if ARM knows the route."""
    for route_method, pattern, operation, handler in COMPILED:
        found = pattern.fullmatch(path)
        if found and route_method == method:
            return operation, handler, found.groupdict()
    return None


async def handle(
    request: web.Request, world: World, operation: str, handler: Handler, match: dict[str, str]
) -> web.Response:
    """Validate, throttle, inject faults, then run the handler; ARM errors become ARM bodies.

    Every answer, errors included, carries ARM's request ids and the Compute rate-limit header.
    """
    ids = {
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-correlation-request-id": request.headers.get(
            "x-ms-correlation-request-id", str(uuid.uuid4())
        ),
    }
    rate_headers: dict[str, str] = {}
    try:
        if match.get("sub", "").lower() != world.scenario.subscription.lower():
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{match.get('sub')}' could not be found.",
            )
        if not request.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        check_name(operation, match)
        body = await read_body(request)
        rate_headers = world.check_throttle(operation)
        script = body.get("script") if isinstance(body, dict) else None
        fault = world.take_fault(
            operation,
            match.get("vmss"),
            match.get("instance"),
            script="\n".join(str(s) for s in script) if isinstance(script, list) else None,
        )
        if fault is not None and fault.kind == "error":
            first = _ids(body, required=False) if isinstance(body, dict) else None
            instance = match.get("instance") or (first[0] if first else None)
            raise ArmError(
                fault.status, fault.error, fault_message(fault, match.get("vmss"), instance)
            )
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(fault.seconds)
            raise ArmError(
                504,
                "GatewayTimeout",
                "The gateway did not receive a response from 'Microsoft.Compute' within the "
                "specified time period.",
            )
        if fault is not None and fault.kind == "lost_answer":
            call = Call(request, world, match, operation, None, body)
            await _apply_unanswered(world, fault, handler, call)
            raise ArmError(
                504,
                "GatewayTimeout",
                "The gateway did not receive a response from 'Microsoft.Compute' within the "
                "specified time period.",
            )
        if fault is not None and fault.kind == "dropped":
            # It takes effect, then the connection is cut before any answer (a reset on the way
            # back): the client cannot tell this from a request that never arrived.
            await handler(Call(request, world, match, operation, None, body))
            if request.transport is not None:
                request.transport.abort()
            raise ArmError(500, "ConnectionDropped", "The connection was cut (never sent).")
        if fault is not None and fault.kind == "held":
            response = await handler(Call(request, world, match, operation, None, body))
            await world.hold(_held(request, operation, match), fault.seconds)
        else:
            response = await handler(Call(request, world, match, operation, fault, body))
    except BodyError as error:  # a part of the body of a shape ARM does not take
        response = _json(unreadable(error).body(), 400)
    except ArmError as error:
        response = _json(error.body(), error.status, headers=error.headers)
    except Exception as error:
        log.exception("Unexpected error in %s", operation)
        response = _json(
            {"error": {"code": "InternalServerError", "message": f"Simulator error: {error!r}"}},
            500,
        )
    for key, value in (rate_headers | ids).items():
        response.headers.setdefault(key, value)
    return response


def _held(request: web.Request, operation: str, match: dict[str, str]) -> dict[str, Any]:
    """What `GET /_sim/held` shows of a request whose answer is held: enough for a test to tell
    which client sent it (the User-Agent, where AZURE_HTTP_USER_AGENT ends up) and what it did."""
    return {
        "operation": operation,
        "path": request.path,
        "scale_set": match.get("vmss"),
        "instance": match.get("instance"),
        "client": request.headers.get("User-Agent", ""),
    }


_UNANSWERED: set[asyncio.Future[None]] = set()


async def _apply_unanswered(world: World, fault: Fault, handler: Handler, call: Call) -> None:
    """A request Azure accepted but whose answer never reached the client: it takes effect at
    once, or `apply_after` simulated seconds later, and its operation ends as `outcome` says."""
    if fault.outcome == "lro_failed":
        call = Call(
            call.request,
            world,
            call.match,
            call.operation,
            fault.model_copy(update={"kind": "lro_failed"}),
            call.body,
        )

    async def apply() -> None:
        try:
            await handler(call)
        except BodyError as error:  # nobody waits for this answer: the log is its only reader
            log.info("Unanswered %s refused: %s", call.operation, unreadable(error).body())
        except ArmError as error:
            log.info("Unanswered %s refused: %s", call.operation, error.body())

    def later() -> None:
        task = asyncio.ensure_future(apply())
        _UNANSWERED.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_UNANSWERED.discard)

    if fault.apply_after:
        world.after(fault.apply_after, later)
    else:
        await apply()
