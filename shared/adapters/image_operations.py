"""The write operations of image jobs, as one table: for each name (`create_snapshot`,
`point_model`, `power_off`, ...) the SDK method, the resource it acts on, and its body.

Read by `shared.adapters.images.Images.begin` and `status`; an adapter module like it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.adapters.scaleset import _Ref, _ref


def gallery_ref(gallery_id: str) -> tuple[_Ref, str]:
    """The gallery's reference (for the Retry-After gate and errors) and its name."""
    parts = gallery_id.strip("/").split("/")
    if len(parts) != 8 or parts[6].lower() != "galleries":
        raise ValueError(f"not a gallery resource id: {gallery_id!r}")
    return _Ref(parts[1], parts[3], parts[7], gallery_id.lower()), parts[7]


def sub_rg(resource_id: str) -> tuple[str, str]:
    """The subscription and resource group of a resource id."""
    parts = resource_id.strip("/").split("/")
    return parts[1], parts[3]


def extra(op: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments beyond the body: a model write is conditional on the read's ETag."""
    if op != "point_model":
        return {}
    from azure.core import MatchConditions

    return {"etag": args["etag"], "match_condition": MatchConditions.IfNotModified}


def _on_vmss(
    attribute: str, method: str, body: Callable[[Mapping[str, Any]], Any] | None, instance=False
) -> Callable[[Mapping[str, Any]], tuple[Callable[[Any], Any], _Ref, list[Any]]]:
    def build(args: Mapping[str, Any]) -> tuple[Callable[[Any], Any], _Ref, list[Any]]:
        ref = _ref(args["vmss_id"])
        positional: list[Any] = [ref.resource_group, ref.name]
        if instance:
            positional.append(args["instance_id"])
        if body is not None:
            positional.append(body(args))
        return (lambda compute: getattr(getattr(compute, attribute), method)), ref, positional

    return build


def _in_gallery(
    attribute: str, method: str, body: Callable[[Mapping[str, Any]], Any] | None, depth: int
) -> Callable[[Mapping[str, Any]], tuple[Callable[[Any], Any], _Ref, list[Any]]]:
    """An operation on the gallery (depth 0), a definition (1) or a version (2)."""

    def build(args: Mapping[str, Any]) -> tuple[Callable[[Any], Any], _Ref, list[Any]]:
        ref, gallery = gallery_ref(args["gallery_id"])
        positional: list[Any] = [ref.resource_group, gallery]
        positional += [args[k] for k in ("image", "version")[:depth]]
        if body is not None:
            positional.append(body(args))
        return (lambda compute: getattr(getattr(compute, attribute), method)), ref, positional

    return build


def _snapshot(
    method: str, body: Callable[[Mapping[str, Any]], Any] | None
) -> Callable[[Mapping[str, Any]], tuple[Callable[[Any], Any], _Ref, list[Any]]]:
    def build(args: Mapping[str, Any]) -> tuple[Callable[[Any], Any], _Ref, list[Any]]:
        sub, rg = sub_rg(args["snapshot_id"])
        name = args["snapshot_id"].rstrip("/").rsplit("/", 1)[-1]
        ref = _Ref(sub, rg, name, args["snapshot_id"].lower())
        positional: list[Any] = [rg, name] + ([body(args)] if body is not None else [])
        return (lambda compute: getattr(compute.snapshots, method)), ref, positional

    return build


def _version_body(args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "location": args["location"],
        "tags": dict(args.get("tags") or {}),
        "properties": {
            "publishingProfile": {
                "targetRegions": [
                    {
                        "name": args["location"],
                        "regionalReplicaCount": args["replicas"],
                        "storageAccountType": args["storage_type"],
                    }
                ],
                "replicaCount": args["replicas"],
                "storageAccountType": args["storage_type"],
                "excludeFromLatest": True,
            },
            "storageProfile": {"osDiskImage": {"source": {"id": args["snapshot_id"]}}},
        },
    }


OPERATIONS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "create_gallery": _in_gallery(
        "galleries",
        "begin_create_or_update",
        lambda a: {
            "location": a["location"],
            "properties": {"description": "Poolkeeper prototype images"},
        },
        0,
    ),
    "create_definition": _in_gallery(
        "gallery_images",
        "begin_create_or_update",
        lambda a: {
            "location": a["location"],
            "properties": {
                "osType": "Linux",
                "osState": "Generalized",
                "hyperVGeneration": a["hyper_v_generation"],
                "identifier": {
                    "publisher": "Poolkeeper",
                    "offer": a["offer"],
                    "sku": a["image"],
                },
            },
        },
        1,
    ),
    "create_version": _in_gallery(
        "gallery_image_versions", "begin_create_or_update", _version_body, 2
    ),
    "include_version": _in_gallery(
        "gallery_image_versions",
        "begin_update",
        # The source is required in the body of an update too; it must be the one it has.
        lambda a: {
            "properties": {
                "publishingProfile": {"excludeFromLatest": a["exclude"]},
                "storageProfile": {"osDiskImage": {"source": {"id": a["snapshot_id"]}}},
            }
        },
        2,
    ),
    "delete_version": _in_gallery("gallery_image_versions", "begin_delete", None, 2),
    "create_snapshot": _snapshot(
        "begin_create_or_update",
        lambda a: {
            "location": a["location"],
            "tags": dict(a.get("tags") or {}),
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": a["disk_id"]},
                "incremental": False,
                "hyperVGeneration": a["hyper_v_generation"],
            },
        },
    ),
    "delete_snapshot": _snapshot("begin_delete", None),
    # PATCH of the model's image reference only, with If-Match (never a whole-model PUT).
    "point_model": _on_vmss(
        "virtual_machine_scale_sets",
        "begin_update",
        lambda a: {
            "properties": {
                "virtualMachineProfile": {
                    "storageProfile": {"imageReference": dict(a["image_reference"])}
                }
            }
        },
    ),
    "start": _on_vmss("virtual_machine_scale_set_vms", "begin_start", None, instance=True),
    "restart": _on_vmss("virtual_machine_scale_set_vms", "begin_restart", None, instance=True),
    "power_off": _on_vmss("virtual_machine_scale_set_vms", "begin_power_off", None, instance=True),
    "upgrade": _on_vmss(
        "virtual_machine_scale_sets",
        "begin_update_instances",
        lambda a: {"instanceIds": [a["instance_id"]]},
    ),
}
WITH_BODY = frozenset(
    {
        "create_gallery",
        "create_definition",
        "create_version",
        "include_version",
        "create_snapshot",
        "point_model",
        "upgrade",
    }
)
