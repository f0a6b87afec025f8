"""A pool's `image` section (docs/images.md): where prototype images go, how many to keep, how a
donor is chosen, whether a canary proves a new version, and whether existing nodes move to it.

Part of the pool configuration (`shared.config.Pool.image`); every field is optional.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

# Azure's rule: 1-90 letters, digits, underscores, hyphens, periods and parentheses, not ending
# in a period.
RESOURCE_GROUP_NAME = re.compile(r"[A-Za-z0-9_.()-]{0,89}[A-Za-z0-9_()-]")
GALLERY_ID = re.compile(
    r"/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    rf"/resourceGroups/{RESOURCE_GROUP_NAME.pattern}"
    r"/providers/Microsoft\.Compute/galleries/[A-Za-z0-9][A-Za-z0-9_.]{0,78}[A-Za-z0-9]",
    re.IGNORECASE | re.ASCII,
)

IMAGE_ALLOWED = {
    "automatic": "true or false (default false: the image timer leaves the pool alone; jobs "
    "submitted by hand or by other systems still run)",
    "gallery": (
        "a gallery resource id like /subscriptions/<guid>/resourceGroups/<rg>/providers/"
        "Microsoft.Compute/galleries/<name> (default: a gallery named poolkeeper in the scale "
        "set's resource group)"
    ),
    "snapshot_resource_group": (
        "the name of a resource group in the scale set's subscription where donor snapshots "
        "are made and deleted (default: the scale set's own), e.g. rg-poolkeeper-snapshots"
    ),
    "replicas": "a whole number of replicas per region from 1 to 100 (default 3)",
    "storage_type": (
        "Standard_ZRS, Standard_LRS or Premium_LRS (default Standard_ZRS; falls back to "
        "Standard_LRS in a region without zones)"
    ),
    "history": "a whole number of versions to keep from 2 to 50 (default 3)",
    "min_ready_minutes": "a whole number of minutes from 0 to 10080 (default 60)",
    "min_candidates": "a whole number of donor candidates from 1 to 100 (default 1)",
    "max_image_age_days": (
        "a whole number of days from 0 to 365 (default 7; 0 never relaxes the patch-date filter)"
    ),
    "canary": "true or false (default true: a new version is proven on one new instance first)",
    "keep_canary": "true or false (default false: the canary is drained and removed once proven)",
    "canary_ready_minutes": "a whole number of minutes from 1 to 240 (default 20)",
    "canary_soak_minutes": (
        "a whole number of minutes from 0 to 240 (default 5): how long the canary must stay "
        "Ready before the version is kept"
    ),
    "rollout": "none (new nodes only) or rolling (existing nodes move too, one at a time)",
    "allow_upgrade_policy": (
        "true or false (default false: a scale set with an Automatic or Rolling upgrade policy "
        "is refused, since Azure itself would roll every instance onto an unproven image)"
    ),
    "ignore_annotation": "a node annotation key that keeps a node from being a donor",
}


class ImageSettings(BaseModel):
    """A pool's image section; the defaults keep three versions and prove each on a canary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    automatic: StrictBool = False
    gallery: StrictStr | None = None
    snapshot_resource_group: StrictStr | None = None
    replicas: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    storage_type: Literal["Standard_ZRS", "Standard_LRS", "Premium_LRS"] = "Standard_ZRS"
    history: Annotated[StrictInt, Field(ge=2, le=50)] = 3
    min_ready_minutes: Annotated[StrictInt, Field(ge=0, le=10080)] = 60
    min_candidates: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    max_image_age_days: Annotated[StrictInt, Field(ge=0, le=365)] = 7
    canary: StrictBool = True
    keep_canary: StrictBool = False
    canary_ready_minutes: Annotated[StrictInt, Field(ge=1, le=240)] = 20
    canary_soak_minutes: Annotated[StrictInt, Field(ge=0, le=240)] = 5
    rollout: Literal["none", "rolling"] = "none"
    allow_upgrade_policy: StrictBool = False
    ignore_annotation: StrictStr = "poolkeeper.io/no-prototype"

    @field_validator("gallery")
    @classmethod
    def _gallery_id(cls, value: str | None) -> str | None:
        if value is not None and not GALLERY_ID.fullmatch(value):
            raise ValueError("must be a gallery resource id")
        return value

    @field_validator("snapshot_resource_group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and not RESOURCE_GROUP_NAME.fullmatch(value):
            raise ValueError("must be a resource group name like rg-poolkeeper-snapshots")
        return value

    @field_validator("ignore_annotation")
    @classmethod
    def _annotation_key(cls, value: str) -> str:
        if not re.fullmatch(
            r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?", value
        ):
            raise ValueError("must be an annotation key like example.com/name")
        return value
