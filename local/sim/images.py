"""Compute Gallery rules over plain ARM bodies: which version an image reference boots, "latest",
replication progress, and why a version fails. Pure (no clock, no world): `world` and `arm` call
these for scale-set writes, new OS disks, reimage and manual upgrade.

An image reference is either a marketplace image (`publisher/offer/sku/version`: the scenario's
base OS), a gallery image version id (`.../galleries/g/images/i/versions/1.0.0`), or an image
definition id (`.../galleries/g/images/i`), which means its latest version: the highest version
that is `Succeeded`, fully replicated to the region, and not `excludeFromLatest`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from local.sim import bodies

DEFINITION_TYPE = "Microsoft.Compute/galleries/images"
VERSION_TYPE = "Microsoft.Compute/galleries/images/versions"
GALLERY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/[^/]+"
    r"/images/[^/]+(?P<version>/versions/[^/]+)?/?$",
    re.IGNORECASE,
)
# Regions with availability zones (learn.microsoft.com reliability/regions-list, 2026): the
# default of the scenario's `zonal_regions`; Standard_ZRS replicas need one of them.
ZONAL_REGIONS = (
    "australiaeast",
    "brazilsouth",
    "canadacentral",
    "centralindia",
    "centralus",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "germanywestcentral",
    "italynorth",
    "japaneast",
    "koreacentral",
    "northeurope",
    "norwayeast",
    "polandcentral",
    "southafricanorth",
    "southcentralus",
    "southeastasia",
    "swedencentral",
    "switzerlandnorth",
    "uaenorth",
    "uksouth",
    "westeurope",
    "westus2",
    "westus3",
)


class ImageError(Exception):
    """Why an image reference or a version cannot be used: ARM's status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Source:
    """What an OS disk is made from: a gallery version (its id and name), or the base image."""

    version_id: str | None
    exact_version: str | None


def region(name: str) -> str:
    """`West Europe` and `westeurope` are one region."""
    return name.replace(" ", "").lower()


def version_key(name: str) -> tuple[int, ...]:
    """Versions order by their numbers (`1.10.0` after `1.9.0`)."""
    return tuple(int(n) for n in re.findall(r"\d+", name))


def target_regions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The version's regions with their effective replica count and storage account type."""
    profile = body["properties"].get("publishingProfile") or {}
    return [
        {
            "name": r["name"],
            "regionalReplicaCount": r.get("regionalReplicaCount", profile.get("replicaCount", 1)),
            "storageAccountType": r.get(
                "storageAccountType", profile.get("storageAccountType", "Standard_LRS")
            ),
        }
        for r in profile.get("targetRegions") or []
    ]


def available_in(body: Mapping[str, Any], location: str) -> bool:
    """A version boots VMs in `location` once it is Succeeded there (replicated); an update
    of its publishing profile (Updating) does not take it away."""
    state = body["properties"].get("provisioningState")
    return state in ("Succeeded", "Updating") and any(
        region(r["name"]) == region(location) for r in target_regions(body)
    )


def latest(versions: list[Mapping[str, Any]], location: str) -> Mapping[str, Any] | None:
    """What a definition id means: the highest available version not excluded from latest."""
    eligible = [
        v
        for v in versions
        if available_in(v, location)
        and not (v["properties"].get("publishingProfile") or {}).get("excludeFromLatest")
    ]
    return max(eligible, key=lambda v: version_key(v["name"]), default=None)


def _not_available(reference: str, location: str) -> ImageError:
    return ImageError(
        404,
        "GalleryImageNotFound",
        f"The gallery image {reference} is not available in {location} region. Please contact "
        "image owner to replicate to this region, or change your requested region.",
    )


def resolve(
    reference: Mapping[str, Any], location: str, resources: Mapping[str, Mapping[str, Any]]
) -> Source:
    """The source an OS disk in `location` gets from an image reference, now.

    `resources` maps lower-cased ARM ids to bodies (the world's). Raises `ImageError` for a
    gallery id that is missing, not (yet) available in the region, or a definition without an
    eligible version; other resource ids (managed images) are not simulated.
    """
    image_id = reference.get("id")
    if not image_id:
        return Source(None, reference.get("version"))
    found = GALLERY_ID.match(image_id)
    if found is None:
        raise ImageError(
            400,
            "InvalidParameter",
            f"Image reference {image_id} is not a gallery image or image version; the simulator "
            "boots marketplace images and Compute Gallery images only.",
        )
    key = image_id.lower().rstrip("/")
    body = resources.get(key)
    if body is None:
        raise _not_available(image_id, location)
    if found["version"]:
        if not available_in(body, location):
            raise _not_available(image_id, location)
        return Source(body["id"], body["name"])
    versions = [
        b
        for k, b in resources.items()
        if b["type"] == VERSION_TYPE and k.rsplit("/versions/", 1)[0] == key
    ]
    chosen = latest(versions, location)
    if chosen is None:
        raise ImageError(
            404,
            "GalleryImageNotFound",
            f"The gallery image {image_id} has no image version available for 'latest' in "
            f"{location} region (none is Succeeded, replicated there and not excluded from "
            "latest).",
        )
    return Source(chosen["id"], chosen["name"])


def replication(
    body: Mapping[str, Any], started: datetime, now: datetime, seconds: float
) -> dict[str, Any]:
    """`replicationStatus` as `$expand=ReplicationStatus` shows it: every target region
    replicates in parallel over `seconds` from `started`; a Failed version failed everywhere."""
    state = body["properties"].get("provisioningState")
    done = 1.0 if seconds <= 0 else min(1.0, (now - started).total_seconds() / seconds)
    summary = []
    for target in target_regions(body):
        if state == "Failed":
            summary.append({"region": target["name"], "state": "Failed", "progress": 0})
        elif state in ("Succeeded", "Deleting") or done >= 1.0:
            summary.append({"region": target["name"], "state": "Completed", "progress": 100})
        else:
            progress = min(99, int(done * 100))
            summary.append({"region": target["name"], "state": "Replicating", "progress": progress})
    states = {s["state"] for s in summary}
    aggregated = (
        "Failed" if "Failed" in states else "InProgress" if "Replicating" in states else "Completed"
    )
    return {"aggregatedState": aggregated, "summary": summary}


def zrs_refusal(body: Mapping[str, Any], zonal_regions: list[str]) -> str | None:
    """Why replication fails: a Standard_ZRS replica in a region without availability zones."""
    zonal = {region(r) for r in zonal_regions}
    for target in target_regions(body):
        if target["storageAccountType"] == "Standard_ZRS" and region(target["name"]) not in zonal:
            return (
                f"Storage account type Standard_ZRS is not supported in region "
                f"'{region(target['name'])}'. ZRS is not supported in regions without "
                "availability zones; use Standard_LRS or Premium_LRS there."
            )
    return None


def recreate_refusal(existing: Mapping[str, Any] | None) -> ImageError | None:
    """A version whose creation failed stays, Failed, until deleted: a PUT of it is refused."""
    if existing is None or existing["properties"].get("provisioningState") != "Failed":
        return None
    return ImageError(
        409,
        "OperationNotAllowed",
        f"Gallery image version '{existing['name']}' is in Failed provisioning state and cannot "
        "be updated. Delete the image version and create it again.",
    )


def _publishing(properties: Mapping[str, Any], location: str) -> dict[str, Any]:
    """The publishing profile a request asks for, defaults filled in; `BodyError` for one
    whose parts are not what ARM takes."""
    requested = bodies.obj(properties.get("publishingProfile"), "publishingProfile")
    replicas = requested.get("replicaCount", 1)
    storage = bodies.text(requested.get("storageAccountType"), "storageAccountType")
    storage = storage or "Standard_LRS"
    regions = bodies.objects(requested.get("targetRegions"), "targetRegions")
    return {
        "targetRegions": [
            {
                "name": bodies.text(r.get("name"), f"targetRegions[{n}].name") or location,
                "regionalReplicaCount": r.get("regionalReplicaCount", replicas),
                "storageAccountType": bodies.text(
                    r.get("storageAccountType"), f"targetRegions[{n}].storageAccountType"
                )
                or storage,
            }
            for n, r in enumerate(regions or [{"name": location}])
        ],
        "replicaCount": replicas,
        "excludeFromLatest": bool(requested.get("excludeFromLatest", False)),
        "storageAccountType": storage,
    }


def source_of(properties: Mapping[str, Any]) -> str | None:
    """The snapshot or disk a version is made from (`storageProfile.source.id` or
    `storageProfile.osDiskImage.source.id`)."""
    storage = bodies.obj(properties.get("storageProfile"), "storageProfile")
    disk_image = bodies.obj(storage.get("osDiskImage"), "storageProfile.osDiskImage")
    return bodies.text(
        bodies.obj(storage.get("source"), "storageProfile.source").get("id")
        or bodies.obj(disk_image.get("source"), "osDiskImage.source").get("id"),
        "source.id",
    )


def version_body(
    resource_id: str, request: Mapping[str, Any], source: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """A new image version as ARM stores it (replicationStatus is shown only on request)."""
    properties = bodies.obj(request.get("properties"), "properties")
    location = request["location"]
    return {
        "id": resource_id,
        "name": resource_id.rstrip("/").rsplit("/", 1)[1],
        "type": VERSION_TYPE,
        "location": location,
        "tags": request.get("tags", {}),
        "properties": {
            "publishingProfile": _publishing(properties, location)
            | {"publishedDate": now.isoformat()},
            "storageProfile": {
                "osDiskImage": {
                    "source": {"id": source["id"]},
                    "sizeInGB": source["properties"].get("diskSizeGB", 128),
                    "hostCaching": "ReadOnly",
                }
            },
        },
    }


def version_update(existing: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """A PUT of an existing version or a PATCH: publishing profile and tags change; the source
    cannot (Azure refuses it) and the content stays."""
    properties = bodies.obj(request.get("properties"), "properties")
    source = source_of(properties)
    current = existing["properties"]["storageProfile"]["osDiskImage"]["source"]["id"]
    if source and source.lower() != current.lower():
        raise ImageError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'galleryImageVersion.properties.storageProfile.osDiskImage.source"
            ".id' is not allowed.",
        )
    updated = {**existing, "properties": dict(existing["properties"])}
    if "tags" in request:
        updated["tags"] = bodies.tags(request["tags"])
    if properties.get("publishingProfile"):
        old = existing["properties"]["publishingProfile"]
        merged = {**old, **bodies.obj(properties["publishingProfile"], "publishingProfile")}
        profile = _publishing({"publishingProfile": merged}, existing["location"])
        updated["properties"]["publishingProfile"] = profile | {
            "publishedDate": old["publishedDate"]
        }
    return updated
