"""Compute calls of image jobs: the donor instance's disk and power, snapshots, the gallery, its
image definitions and versions, the scale set's image reference and manual upgrades.

Every write is an LRO started without waiting; its continuation token goes into the job's state
and `status(op, token)` asks about it once per step, from any process; the operations are a table
in `shared.adapters.image_operations`. It shares the scale-set adapter's clients, Retry-After
gate and error mapping (`ScaleSets._call`), like `instances.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.adapters.image_operations import OPERATIONS, WITH_BODY, extra, gallery_ref, sub_rg
from shared.adapters.scaleset import (
    OperationStatus,
    PermanentAzureError,
    ScaleSets,
    _no_wait_polling,
    _Ref,
    _ref,
    operation_status_of,
    poll_once,
    sent_once,
)

ENDED = "ended-in-first-answer"


@dataclass(frozen=True)
class DonorDisk:
    """What the pipeline needs of the donor instance: its OS disk, generation and power."""

    os_disk_id: str
    hyper_v_generation: str  # V1 or V2
    power: str | None  # x of PowerState/x
    location: str
    zone: str | None


@dataclass(frozen=True)
class Model:
    """The scale set's model as image jobs see it."""

    etag: str
    location: str
    image_id: str | None  # imageReference.id, when the image is a gallery or managed image
    image: Mapping[str, str]  # every imageReference field that is set
    upgrade_mode: str | None
    tags: Mapping[str, str]
    provisioning: str = "Succeeded"  # Updating while a model write is being applied


@dataclass(frozen=True)
class Snapshot:
    """A snapshot of a resource group, with what image jobs tag theirs with."""

    id: str
    name: str
    provisioning: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class Version:
    """One gallery image version."""

    name: str
    id: str
    provisioning: str  # Creating, Succeeded, Failed, Deleting, ...
    exclude_from_latest: bool
    published: datetime | None
    replication: str | None  # aggregatedState: InProgress, Completed, Failed (with $expand)
    regions: Mapping[str, str] = field(default_factory=dict)  # region -> state / progress
    tags: Mapping[str, str] = field(default_factory=dict)


class Images:
    """Snapshots, gallery images and the scale set's image, for one job's steps."""

    def __init__(self, scale_sets: ScaleSets) -> None:
        self._scale_sets = scale_sets

    # -- reads -------------------------------------------------------------------------------------

    def donor_disk(self, vmss_id: str, instance_id: str) -> DonorDisk:
        """The instance's OS disk id, Hyper-V generation and power state (one GET)."""
        ref = _ref(vmss_id)
        with self._scale_sets._call("read_instance", ref, [instance_id]) as compute:
            vm = compute.virtual_machine_scale_set_vms.get(
                ref.resource_group, ref.name, instance_id, expand="instanceView"
            )
        props = vm.properties
        view = props.instance_view if props else None
        disk = props.storage_profile.os_disk.managed_disk if props else None
        power = next(
            (
                s.code.removeprefix("PowerState/")
                for s in (view.statuses if view else None) or []
                if (s.code or "").startswith("PowerState/")
            ),
            None,
        )
        return DonorDisk(
            os_disk_id=(disk.id if disk else "") or "",
            hyper_v_generation=_text(view.hyper_v_generation if view else None) or "V1",
            power=power,
            location=vm.location,
            zone=vm.zones[0] if vm.zones else None,
        )

    def model(self, vmss_id: str) -> Model:
        """The scale set's ETag, image reference, upgrade policy and tags (one GET)."""
        ref = _ref(vmss_id)
        with self._scale_sets._call("read_model", ref) as compute:
            vmss = compute.virtual_machine_scale_sets.get(ref.resource_group, ref.name)
        props = vmss.properties
        profile = props.virtual_machine_profile if props else None
        storage = profile.storage_profile if profile else None
        image = storage.image_reference if storage else None
        policy = props.upgrade_policy if props else None
        fields = {k: str(v) for k, v in dict(image or {}).items() if v is not None}
        return Model(
            etag=vmss.etag,
            location=vmss.location,
            image_id=fields.get("id"),
            image=fields,
            upgrade_mode=_text(policy.mode) if policy else None,
            tags=dict(vmss.tags or {}),
            provisioning=_text(props.provisioning_state if props else None) or "Succeeded",
        )

    def exists(self, kind: str, resource_id: str) -> bool:
        """Does the gallery or image definition at `resource_id` exist?"""
        gallery_id, _, rest = resource_id.partition("/images/")
        ref, gallery = gallery_ref(gallery_id)
        try:
            with self._scale_sets._call(f"read_{kind}", ref) as compute:
                if rest:
                    compute.gallery_images.get(ref.resource_group, gallery, rest)
                else:
                    compute.galleries.get(ref.resource_group, gallery)
        except PermanentAzureError as error:
            if error.status == 404:
                return False
            raise
        return True

    def versions(self, definition_id: str) -> list[Version]:
        """Every version of an image definition (none if the definition does not exist)."""
        gallery_id, _, image = definition_id.partition("/images/")
        ref, gallery = gallery_ref(gallery_id)
        try:
            with self._scale_sets._call("list_versions", ref) as compute:
                found = list(
                    compute.gallery_image_versions.list_by_gallery_image(
                        ref.resource_group, gallery, image
                    )
                )
        except PermanentAzureError as error:
            if error.status == 404:
                return []
            raise
        return [_version(v) for v in found]

    def version(self, version_id: str) -> Version | None:
        """One version with its replication status; None if it does not exist."""
        gallery_id, _, rest = version_id.partition("/images/")
        image, _, name = rest.partition("/versions/")
        ref, gallery = gallery_ref(gallery_id)
        try:
            with self._scale_sets._call("read_version", ref) as compute:
                found = compute.gallery_image_versions.get(
                    ref.resource_group, gallery, image, name, expand="ReplicationStatus"
                )
        except PermanentAzureError as error:
            if error.status == 404:
                return None
            raise
        return _version(found)

    def snapshot_state(self, snapshot_id: str) -> str | None:
        """The snapshot's provisioningState; None if it does not exist."""
        sub, rg = sub_rg(snapshot_id)
        name = snapshot_id.rstrip("/").rsplit("/", 1)[-1]
        ref = _Ref(sub, rg, name, snapshot_id.lower())
        try:
            with self._scale_sets._call("read_snapshot", ref) as compute:
                found = compute.snapshots.get(rg, name)
        except PermanentAzureError as error:
            if error.status == 404:
                return None
            raise
        return _text(found.provisioning_state) or "Unknown"

    def snapshots(self, resource_group_id: str) -> list[Snapshot]:
        """Every snapshot in a resource group (`/subscriptions/<s>/resourceGroups/<rg>`)."""
        sub, rg = sub_rg(resource_group_id)
        ref = _Ref(sub, rg, rg, resource_group_id.lower())
        with self._scale_sets._call("list_snapshots", ref) as compute:
            found = list(compute.snapshots.list_by_resource_group(rg))
        return [
            Snapshot(
                id=s.id,
                name=s.name,
                provisioning=_text(getattr(s.properties, "provisioning_state", None)) or "Unknown",
                tags=dict(s.tags or {}),
            )
            for s in found
        ]

    # -- writes (each an LRO: the continuation token comes back) -----------------------------------

    def begin(self, op: str, **args: Any) -> str:
        """Start operation `op` (see OPERATIONS) with `args`; the LRO's continuation token."""
        method, ref, positional = self._operation(op, args)
        with self._scale_sets._call(op, ref, args.get("instance_ids", ())) as compute:
            poller = method(compute)(*positional, **extra(op, args), **sent_once())
        if poller.status().lower() == "succeeded":
            # Ended in its first answer (e.g. a delete of what is already gone: 204, no status
            # URL to ask later): a token that `status` answers without asking Azure.
            return ENDED
        return poller.continuation_token()

    def status(self, op: str, token: str, **args: Any) -> OperationStatus:
        """One status check of an operation started with `begin(op, **args)`."""
        if token == ENDED:
            return OperationStatus("Succeeded")
        method, ref, positional = self._operation(op, args)
        polling = _no_wait_polling()()
        blanks = [*positional[:-1], None] if op in WITH_BODY else positional
        with self._scale_sets._call("operation_status", ref) as compute:
            method(compute)(*blanks, continuation_token=token, polling=polling)
            status = poll_once(polling)
        return operation_status_of(status, polling)

    def _operation(
        self, op: str, args: Mapping[str, Any]
    ) -> tuple[Callable[[Any], Callable[..., Any]], _Ref, list[Any]]:
        if op not in OPERATIONS:
            raise ValueError(f"unknown image operation {op!r}")
        return OPERATIONS[op](args)


def _text(value: Any) -> str | None:
    """An SDK enum's value (its str() is the member's name), or the string as it came."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _version(found: Any) -> Version:
    props = found.properties if hasattr(found, "properties") else found
    publishing = getattr(props, "publishing_profile", None)
    replication = getattr(props, "replication_status", None)
    regions = {
        str(s.region): f"{_text(s.state)}" + (f" {s.progress}%" if s.progress is not None else "")
        for s in (getattr(replication, "summary", None) or [])
    }
    return Version(
        name=found.name,
        id=found.id,
        provisioning=_text(getattr(props, "provisioning_state", None)) or "Unknown",
        exclude_from_latest=bool(getattr(publishing, "exclude_from_latest", False)),
        published=getattr(publishing, "published_date", None),
        replication=_text(replication.aggregated_state) if replication is not None else None,
        regions=regions,
        tags=dict(found.tags or {}),
    )
