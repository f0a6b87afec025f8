"""The simulated world: scale sets, their instances and disks, images, and long-running operations.

State changes happen as timed events on the simulator's clock; every request first `settle()`s
the world up to now. The HTTP layers (`arm`, `monitor`, `admin`) translate to and from this.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import math
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from local.sim import guest as guestos
from local.sim import images, shell
from local.sim.clock import SimClock
from local.sim.scenario import Fault, ScaleSetSpec, Scenario, Throttle

BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
THROTTLED = (
    "The server rejected the request because too many requests have been received for this "
    "subscription."
)


class ArmError(Exception):
    """An ARM error response: status, error code and message (the body ARM sends)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def base36(number: int, width: int = 6) -> str:
    """VMSS computer-name suffix: the instance id in base 36, zero-padded (`10` -> `00000a`)."""
    digits = ""
    while number:
        number, rest = divmod(number, 36)
        digits = BASE36[rest] + digits
    return digits.rjust(width, "0")


@dataclass
class Instance:
    instance_id: int
    zone: str | None
    computer_name: str
    vm_id: str
    os_disk: str
    image: dict[str, Any]
    model_version: int
    created: datetime
    provisioning: str = "Creating"  # Creating, Succeeded, Updating, Deleting, Failed
    power: str = "starting"  # starting, running, stopping, stopped, deallocating, deallocated
    failure: str | None = None  # the error code of a failed provisioning
    booted_at: datetime | None = None  # the start of the current (or last) boot
    guest: guestos.Guest = field(default_factory=guestos.Guest)
    # What its OS disk was made from: a gallery version, or the base image (exactVersion).
    source: images.Source = field(default_factory=lambda: images.Source(None, None))
    # The last run command as its instance view shows it (the RunCommandLinux extension's
    # status: code, message, time): how a caller that lost the operation's token finds its result.
    last_run: tuple[tuple[str, str], ...] = ()


def kubelet_ready(instance: Instance) -> bool:
    """The instance's kubelet runs and posts Ready: the guest is up and its kubelet not broken."""
    return guest_up(instance) and not instance.guest.never_ready


def _ready(instances: list[Instance]) -> list[str]:
    return [str(i.instance_id) for i in instances if kubelet_ready(i)]


def guest_up(instance: Instance) -> bool:
    """The one rule for "the VM is up": running, not being created or deleted, its OS booted.
    (Azure shows power state running while the guest reboots; the guest decides.)"""
    return (
        instance.power == "running"
        and instance.provisioning not in ("Creating", "Deleting")
        and instance.guest.up
    )


@dataclass
class ScaleSet:
    spec: ScaleSetSpec
    subscription: str
    location: str
    capacity: int
    image: dict[str, Any]
    prefix: str
    unique_id: str
    created: datetime
    etag: int = 1
    model_version: int = 1
    tags: dict[str, str] = field(default_factory=dict)
    instances: dict[int, Instance] = field(default_factory=dict)
    next_id: int = 0
    updating_ops: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def resource_group(self) -> str:
        return self.spec.resource_group

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{self.name}"
        )

    def vm_name(self, instance: Instance) -> str:
        return f"{self.name}_{instance.instance_id}"

    def active(self) -> list[Instance]:
        """Instances that count toward capacity: everything not being deleted."""
        return [i for i in self.instances.values() if i.provisioning != "Deleting"]


@dataclass
class Operation:
    id: str
    operation: str  # the REST operationId that started it
    started: datetime
    status: str = "InProgress"  # InProgress, Succeeded, Failed
    ended: datetime | None = None
    error: tuple[str, str] | None = None  # ARM code, message
    result: dict[str, Any] | None = None  # what the Location URL answers once done
    resource_url: str | None = None


@dataclass
class ActiveFault:
    spec: Fault
    remaining: int | None


@dataclass
class CallRecord:
    operation: str
    method: str
    path: str
    status: int
    sim_time: str
    wall_time: float
    api_version: str = ""  # as the client sent it (any is accepted, as ARM does per route)


def fault_applies(
    spec: Fault,
    operation: str,
    scale_set: str | None,
    now: datetime,
    instance: str | None = None,
    image: str | None = None,
    script: str | None = None,
) -> bool:
    """Whether a fault covers this operation, scale set, instance, image version (a boot's),
    script (a run command's) and moment (count aside)."""
    if spec.operation.lower() != operation.lower():
        return False
    if spec.scale_set and (scale_set or "").lower() != spec.scale_set.lower():
        return False
    if spec.instance is not None and spec.instance != instance:
        return False
    if spec.image and (image or "").lower().rstrip("/") != spec.image.lower().rstrip("/"):
        return False
    if spec.match and (script is None or not re.search(spec.match, script)):
        return False
    return not ((spec.start and now < spec.start) or (spec.end and now >= spec.end))


def scale_in_victims(active: list[Instance], count: int) -> list[Instance]:
    """The Default scale-in policy (Uniform): balance zones, then the highest instance id goes.

    Fault-domain balancing is not modelled. Among equally large zones, the one holding the
    highest instance id gives first.
    """
    remaining = sorted(active, key=lambda i: i.instance_id)
    victims: list[Instance] = []
    for _ in range(min(count, len(remaining))):
        by_zone: dict[str | None, list[Instance]] = {}
        for instance in remaining:
            by_zone.setdefault(instance.zone, []).append(instance)
        zone = max(by_zone, key=lambda z: (len(by_zone[z]), by_zone[z][-1].instance_id))
        victim = by_zone[zone][-1]
        victims.append(victim)
        remaining.remove(victim)
    return victims


def fault_message(fault: Fault, scale_set: str | None = None, instance: str | None = None) -> str:
    """The message Azure sends with a fault's error code (or the fault's own message)."""
    vm = f"{scale_set or 'vmss'}_{instance or '0'}"
    return fault.message or {
        "CannotAllocateRemainingVMsInAvailabilitySet": (
            f"Delete/Deallocate operation on VM '{vm}' failed because the remaining VMs in the "
            f"Availability Set '_{scale_set or 'vmss'}_0' cannot be allocated together. Changes "
            "in Availability Set allocation need to be executed atomically. Please deallocate or "
            "delete some or all of these VMs before retrying the current operation."
        ),
        "AllocationFailed": (
            "Allocation failed. We do not have sufficient capacity for the requested VM size in "
            "this region."
        ),
        "QuotaExceeded": (
            "Operation could not be completed as it results in exceeding approved "
            "standardDSv5Family Cores quota."
        ),
        "OperationPreempted": "Operation execution has been preempted by a more recent operation.",
        "InternalExecutionError": "An internal execution error occurred. Please retry later.",
    }.get(fault.error, f"Simulated failure {fault.error}.")


def computer_name_prefix(spec: ScaleSetSpec) -> str:
    """What an instance's computer name (its node's name) starts with: base-36 id follows."""
    return spec.computer_name_prefix or f"{spec.name.removesuffix('-vmss')}-vmss"


class World:
    """Everything the simulator knows, driven by `clock`; not thread-safe (one event loop)."""

    def __init__(self, scenario: Scenario, clock: SimClock) -> None:
        self.scenario = scenario
        self.clock = clock
        self.latency = scenario.latencies
        self.scale_sets: dict[tuple[str, str], ScaleSet] = {}
        self.resources: dict[str, dict[str, Any]] = {}  # lower-cased ARM id -> resource body
        self.operations: dict[str, Operation] = {}
        self.faults: list[ActiveFault] = [ActiveFault(f, f.count) for f in scenario.faults]
        self.throttles: list[Throttle] = list(scenario.throttling)
        self._throttle_log: dict[str, deque[datetime]] = {}
        self.calls: list[CallRecord] = []
        self._event_time: datetime | None = None
        self.render_cache: dict[Any, tuple[Any, str]] = {}  # arm.vm_json, by instance
        self.history: list[dict[str, Any]] = []  # deletions, and who asked for them
        self.run_log: list[dict[str, Any]] = []  # scripts run: when, where, exit code
        self.held: dict[int, dict[str, Any]] = {}  # requests done whose answer is held back
        # Called as an instance goes for good (the cluster notes what its node looked like).
        self.removal_observers: list[Callable[[ScaleSet, Instance], None]] = []
        # Called after each event, at the event's time (the cluster catches up to that moment).
        self.observers: list[Callable[[], None]] = []
        self._events: list[tuple[datetime, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        # OS disk contents by lower-cased disk id (snapshots and image versions can copy them).
        self.disks: dict[str, guestos.Disk] = {}
        self.package_names = guestos.package_names(scenario.os, list(scenario.os_updates))
        now = clock.now()
        for spec in scenario.scale_sets:
            key = (spec.resource_group.lower(), spec.name.lower())
            if key in self.scale_sets:
                raise ValueError(f"scale set {spec.resource_group}/{spec.name} is defined twice")
            scale_set = ScaleSet(
                spec=spec,
                subscription=scenario.subscription,
                location=scenario.location,
                capacity=spec.capacity,
                image=spec.image.model_dump(exclude_none=True),
                prefix=computer_name_prefix(spec),
                unique_id=str(uuid.uuid5(uuid.NAMESPACE_URL, spec.name)),
                created=now,
                tags=dict(spec.tags),
            )
            self.scale_sets[key] = scale_set
            for _ in range(spec.capacity):  # a scenario starts with booted, running instances
                instance = self._new_instance(scale_set, now)
                instance.provisioning, instance.power = "Succeeded", "running"
                self._boot(scale_set, instance, initial=now)

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        # While an event runs, "now" is when it fell due, so what it stamps (a boot time, an
        # operation's end) does not depend on when the next request happened to arrive.
        return self._event_time or self.clock.now()

    def after(self, seconds: float, action: Callable[[], None]) -> datetime:
        due = self.now() + timedelta(seconds=seconds)
        heapq.heappush(self._events, (due, next(self._sequence), action))
        return due

    def settle(self) -> None:
        """Apply every event that has fallen due, in order."""
        now = self.clock.now()
        while self._events and self._events[0][0] <= now:
            due, _, action = heapq.heappop(self._events)
            self._event_time = due
            try:
                action()
                for observe in self.observers:
                    observe()
            finally:
                self._event_time = None

    def next_event_in(self) -> float | None:
        """Simulated seconds until the next pending event, if any."""
        if not self._events:
            return None
        return max(0.0, (self._events[0][0] - self.now()).total_seconds())

    # -- faults and throttling ------------------------------------------------------------------

    def take_fault(
        self,
        operation: str,
        scale_set: str | None,
        instance: str | None = None,
        *,
        image: str | None = None,
        script: str | None = None,
    ) -> Fault | None:
        """The first active fault for this call (scale set, instance, image, script), consuming
        one use."""
        now = self.now()
        for active in self.faults:
            if not fault_applies(active.spec, operation, scale_set, now, instance, image, script):
                continue
            if active.remaining is not None:
                if active.remaining <= 0:
                    continue
                active.remaining -= 1
            return active.spec
        return None

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(ActiveFault(fault, fault.count))

    def check_throttle(self, operation: str) -> dict[str, str]:
        """Count a call against its budgets; 429 when one is spent. Returns rate-limit headers.

        Budgets are sliding windows per operation group (Compute's `...3Min` and `...30Min`);
        a rejected call is not counted. Retry-After is in wall seconds: what a client sleeps.
        """
        now = self.now()
        families = [t for t in self.throttles if operation in t.operations]
        used: dict[str, int] = {}
        exhausted: list[tuple[Throttle, datetime]] = []
        for throttle in families:
            calls = self._throttle_log.setdefault(throttle.family, deque())
            window = timedelta(seconds=throttle.window_seconds)
            while calls and now - calls[0] >= window:
                calls.popleft()
            used[throttle.family] = len(calls)
            if len(calls) >= throttle.limit:
                exhausted.append((throttle, calls[0] if calls else now))
        if not exhausted:
            for throttle in families:
                self._throttle_log[throttle.family].append(now)
                used[throttle.family] += 1
        header = ",".join(
            f"Microsoft.Compute/{t.family};{max(0, t.limit - used[t.family])}" for t in families
        )
        headers = {"x-ms-ratelimit-remaining-resource": header} if families else {}
        if not exhausted:
            return headers
        details = []
        free_at = now
        for throttle, first in exhausted:
            end = first + timedelta(seconds=throttle.window_seconds)
            free_at = max(free_at, end)
            group = {
                "operationGroup": throttle.family,
                "startTime": first.isoformat(),
                "endTime": end.isoformat(),
                "allowedRequestCount": throttle.limit,
                "measuredRequestCount": used[throttle.family] + 1,
            }
            details.append(
                {"code": "TooManyRequests", "target": throttle.family, "message": json.dumps(group)}
            )
        wait = math.ceil(self.clock.real_seconds((free_at - now).total_seconds())) or 1
        headers["Retry-After"] = str(wait)
        raise ArmError(429, "OperationNotAllowed", THROTTLED, headers, details)

    # -- scale sets -----------------------------------------------------------------------------

    def scale_set(self, resource_group: str, name: str) -> ScaleSet:
        found = self.scale_sets.get((resource_group.lower(), name.lower()))
        if found is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource "
                f"group '{resource_group}' was not found.",
            )
        return found

    def _new_instance(self, scale_set: ScaleSet, now: datetime) -> Instance:
        instance_id = scale_set.next_id
        scale_set.next_id += 1
        zones = scale_set.spec.zones
        zone = None
        if zones:
            counts = {z: 0 for z in zones}
            for other in scale_set.active():
                if other.zone in counts:
                    counts[other.zone] += 1
            zone = min(zones, key=lambda z: (counts[z], zones.index(z)))
        instance = Instance(
            instance_id=instance_id,
            zone=zone,
            computer_name=f"{scale_set.prefix}{base36(instance_id)}",
            vm_id=str(uuid.uuid4()),
            os_disk="",
            image=dict(scale_set.image),
            model_version=scale_set.model_version,
            created=now,
        )
        scale_set.instances[instance_id] = instance
        try:
            self._new_os_disk(scale_set, instance)
        except images.ImageError as error:  # e.g. the version was deleted after the model write
            instance.failure = error.code
            self._new_os_disk(scale_set, instance, source=images.Source(None, None))
        return instance

    def disk_id(self, scale_set: ScaleSet, disk: str) -> str:
        return (
            f"/subscriptions/{scale_set.subscription}/resourceGroups/{scale_set.resource_group}"
            f"/providers/Microsoft.Compute/disks/{disk}"
        )

    def _new_os_disk(
        self, scale_set: ScaleSet, instance: Instance, source: images.Source | None = None
    ) -> None:
        """A fresh OS disk from the instance's image reference, resolved now (creation, reimage,
        model upgrade): a copy of a gallery version's content, or the base image. Raises
        `images.ImageError` (and changes nothing) when the reference cannot be resolved."""
        if source is None:
            source = images.resolve(instance.image, scale_set.location, self.resources)
        if source.version_id:
            content = self.disks[source.version_id.lower().rstrip("/")].copy()
        else:
            content = guestos.base_disk(self.scenario.os, self.package_names, instance.vm_id)
        if instance.os_disk:
            self.resources.pop(self.disk_id(scale_set, instance.os_disk).lower(), None)
            self.disks.pop(self.disk_id(scale_set, instance.os_disk).lower(), None)
        name = f"{scale_set.name}_{instance.instance_id}_OsDisk_1_{uuid.uuid4().hex}"
        instance.os_disk, instance.source = name, source
        disk_id = self.disk_id(scale_set, name)
        self.disks[disk_id.lower()] = content
        image = instance.image
        if source.version_id:
            disk_source: dict[str, Any] = {"galleryImageReference": {"id": source.version_id}}
        else:  # a marketplace image, by the id Azure gives its version
            disk_source = {
                "imageReference": {
                    "id": f"/Subscriptions/{scale_set.subscription}/Providers/Microsoft.Compute"
                    f"/Locations/{scale_set.location}/Publishers/{image.get('publisher')}"
                    f"/ArtifactTypes/VMImage/Offers/{image.get('offer')}/Skus/{image.get('sku')}"
                    f"/Versions/{image.get('version')}"
                }
            }
        self.resources[disk_id.lower()] = {
            "id": disk_id,
            "name": name,
            "type": "Microsoft.Compute/disks",
            "location": scale_set.location,
            "managedBy": f"{scale_set.id}/virtualMachines/{instance.instance_id}",
            "sku": {"name": "Premium_LRS", "tier": "Premium"},
            **({"zones": [instance.zone]} if instance.zone else {}),
            "properties": {
                "osType": "Linux",
                "hyperVGeneration": "V2",
                "creationData": {"createOption": "FromImage", **disk_source},
                "diskSizeGB": 128,
                "diskState": "Attached",
                "provisioningState": "Succeeded",
                "timeCreated": self.now().isoformat(),
                "uniqueId": str(uuid.uuid5(uuid.NAMESPACE_URL, disk_id)),
            },
        }

    def new_operation(self, operation: str) -> Operation:
        op = Operation(id=str(uuid.uuid4()), operation=operation, started=self.now())
        self.operations[op.id] = op
        return op

    def finish(
        self,
        op: Operation,
        error: tuple[str, str] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        op.status = "Failed" if error else "Succeeded"
        op.error, op.result, op.ended = error, result, self.now()

    def check_etag(
        self, scale_set: ScaleSet, if_match: str | None, if_none_match: str | None
    ) -> None:
        current = f'"{scale_set.etag}"'
        if if_match and if_match.strip() not in ("*", current):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Etag provided in if-match header {if_match.strip()} does not match etag "
                f"{current} of resource.",
            )
        if if_none_match and if_none_match.strip() == "*":
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Etag provided in if-none-match header * matches the existing resource "
                f"'{scale_set.name}'.",
            )

    def _record(
        self,
        event: str,
        scale_set: ScaleSet,
        victims: list[Instance],
        op: str,
        ready: list[str],
    ) -> None:
        self.history.append(
            {
                "time": self.now().isoformat(),
                "event": event,
                "scale_set": scale_set.name,
                "operation": op,
                "instances": [str(v.instance_id) for v in victims],
                "computer_names": [v.computer_name for v in victims],
                "ready": ready,  # whose node was Ready as the delete was asked for
            }
        )

    async def hold(self, request: dict[str, Any], seconds: float) -> None:
        """Hold back the answer of a request that has taken effect (fault kind `held`), listed
        in `held` meanwhile: the client may die before it learns what it did."""
        key = next(self._sequence)
        self.held[key] = request | {"id": key, "at": self.now().isoformat()}
        try:
            await asyncio.sleep(seconds)
        finally:
            self.held.pop(key, None)

    def update_scale_set(
        self,
        scale_set: ScaleSet,
        *,
        capacity: int | None,
        image: dict[str, Any] | None,
        tags: dict[str, str] | None,
        fault: Fault | None,
        operation: str,
    ) -> Operation:
        """Apply a model write: new capacity (creating or scaling in), image, tags.

        A lower capacity deletes the instances the scale-in policy picks, drained or not: the
        failure Poolkeeper exists to prevent, so the simulator carries it out and records it.
        The operation ends when every created or deleted instance is done.
        """
        if capacity is not None and capacity > 1000:
            raise ArmError(
                400, "InvalidParameter", "The value of parameter sku.capacity must be at most 1000."
            )
        now = self.now()
        remodel = image is not None and _image_ref(image) != _image_ref(scale_set.image)
        if image is not None and remodel:
            try:  # Azure checks the image when the model is written, before anything changes
                images.resolve(image, scale_set.location, self.resources)
            except images.ImageError as error:
                raise ArmError(error.status, error.code, error.message) from None
        op = self.new_operation(operation)
        changed = False
        if tags is not None and tags != scale_set.tags:
            scale_set.tags, changed = dict(tags), True
        if image is not None and remodel:
            scale_set.image = dict(image)
            scale_set.model_version += 1
            changed = True
        created: list[Instance] = []
        removed: list[Instance] = []
        before: dict[int, tuple[str, str]] = {}
        if capacity is not None and capacity != scale_set.capacity:
            changed = True
            active = scale_set.active()
            scale_set.capacity = capacity
            if capacity > len(active):
                created = [
                    self._new_instance(scale_set, now) for _ in range(capacity - len(active))
                ]
            else:
                removed = scale_in_victims(active, len(active) - capacity)
                ready = _ready(removed)
                for victim in removed:
                    before[victim.instance_id] = (victim.provisioning, victim.power)
                    victim.provisioning, victim.power = "Deleting", "stopping"
                self._record("scale_in", scale_set, removed, operation, ready)
        if changed:
            scale_set.etag += 1
        failed = fault is not None and fault.kind == "lro_failed"
        error = (fault.error, fault_message(fault, scale_set.name)) if fault and failed else None
        if error is None and any(i.failure for i in created):
            try:
                images.resolve(scale_set.image, scale_set.location, self.resources)
            except images.ImageError as refused:  # the image went after the model was written
                error = (refused.code, refused.message)

        def done() -> None:
            scale_set.updating_ops -= 1
            for instance in created:
                if scale_set.instances.get(instance.instance_id) is not instance:
                    continue
                if instance.provisioning != "Creating":
                    continue  # scaled in or deleted meanwhile
                if error or instance.failure:
                    instance.provisioning, instance.power = "Failed", "stopped"
                    instance.failure = error[0] if error else instance.failure
                else:
                    instance.provisioning, instance.power = "Succeeded", "running"
                    self._boot(scale_set, instance)
            for victim in removed:
                if not error:
                    self._remove(scale_set, victim)
                elif scale_set.instances.get(victim.instance_id) is victim:
                    victim.provisioning, victim.power = before[victim.instance_id]
                    scale_set.capacity += 1
            self.finish(op, error)

        scale_set.updating_ops += 1
        latency = max(
            self.latency.create if created else 0,
            self.latency.delete if removed else 0,
            self.latency.model_update if remodel else 0,
        )
        if latency:
            self.after(latency, done)
        else:
            done()
        return op

    def _remove(self, scale_set: ScaleSet, instance: Instance) -> None:
        if scale_set.instances.get(instance.instance_id) is instance:
            for observe in self.removal_observers:
                observe(scale_set, instance)
            del scale_set.instances[instance.instance_id]
            self.resources.pop(self.disk_id(scale_set, instance.os_disk).lower(), None)
            self.disks.pop(self.disk_id(scale_set, instance.os_disk).lower(), None)

    def _instances(self, scale_set: ScaleSet, ids: list[str] | None) -> list[Instance]:
        """The named instances, or all when `ids` is None (as the action APIs document)."""
        if ids is None:
            return sorted(scale_set.instances.values(), key=lambda i: i.instance_id)
        if not ids:
            raise ArmError(
                400, "InvalidParameter", "The value of parameter instanceIds is invalid."
            )
        found = []
        for raw in ids:
            instance = scale_set.instances.get(int(raw)) if str(raw).isdigit() else None
            if instance is None:
                raise ArmError(
                    400,
                    "InvalidParameter",
                    f"The provided instanceId {raw} is not an active Virtual Machine Scale Set "
                    "VM instanceId.",
                )
            if instance not in found:
                found.append(instance)
        return found

    def delete_instances(
        self,
        scale_set: ScaleSet,
        ids: list[str],
        *,
        force: bool,
        fault: Fault | None,
        operation: str,
    ) -> Operation:
        """Delete named instances: capacity drops at once; they go after the delete latency.

        `lro_failed` puts every instance back; `partial_delete` removes the first `deleted`.
        """
        victims = self._instances(scale_set, ids)
        op = self.new_operation(operation)
        fresh = [v for v in victims if v.provisioning != "Deleting"]
        before = {v.instance_id: (v.provisioning, v.power) for v in fresh}
        ready = _ready(victims)
        for victim in fresh:
            victim.provisioning, victim.power = "Deleting", "stopping"
        scale_set.capacity = max(0, scale_set.capacity - len(fresh))
        scale_set.etag += 1
        self._record("delete_instances", scale_set, victims, operation, ready)

        def done() -> None:
            failed = fault is not None and fault.kind in ("lro_failed", "partial_delete")
            kept: list[Instance] = []
            if fault is not None and failed:
                kept = fresh[fault.deleted if fault.kind == "partial_delete" else 0 :]
                for instance in kept:
                    instance.provisioning, instance.power = before[instance.instance_id]
                if kept:
                    scale_set.capacity += len(kept)
                    scale_set.etag += 1
            for victim in victims:
                if victim not in kept:
                    self._remove(scale_set, victim)
            error = None
            if fault is not None and failed:
                first = str(kept[0].instance_id) if kept else None
                error = (fault.error, fault_message(fault, scale_set.name, first))
            self.finish(op, error)

        self.after(self.latency.force_delete if force else self.latency.delete, done)
        return op

    def instance_action(
        self,
        scale_set: ScaleSet,
        action: str,
        ids: list[str] | None,
        *,
        fault: Fault | None,
        operation: str,
    ) -> Operation:
        """restart, powerOff, start, deallocate, reimage or manualUpgrade on some instances.

        Reimage rebuilds the OS disk from the instance's own model; only manualUpgrade
        (UpdateInstances) applies the scale set's latest model.
        """
        targets = self._instances(scale_set, ids)
        for target in targets:
            if target.provisioning == "Deleting":
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"Operation '{action}' is not allowed on VM '{scale_set.vm_name(target)}' "
                    "since the VM is marked for deletion. You can only retry the Delete "
                    "operation (or wait for an ongoing one to complete).",
                )
        latency, during, after = {
            "restart": (self.latency.restart, "running", "running"),
            "powerOff": (self.latency.power_off, "stopping", "stopped"),
            "start": (self.latency.start, "starting", "running"),
            "deallocate": (self.latency.deallocate, "deallocating", "deallocated"),
            "reimage": (self.latency.reimage, "starting", "running"),
            "manualUpgrade": (self.latency.update_model, "starting", "running"),
        }[action]
        op = self.new_operation(operation)
        before = {t.instance_id: (t.provisioning, t.power) for t in targets}
        failed = fault is not None and fault.kind == "lro_failed"
        rebooting: list[Instance] = []  # a restart of a running VM: its guest reboots
        for target in targets:
            if action == "restart" and target.power == "running" and not failed:
                rebooting.append(target)
                self.reboot(scale_set, target)
            elif not failed:
                guestos.shut_down(target.guest)
            target.provisioning = "Updating"
            if target not in rebooting:
                target.power = "starting" if during == "running" else during

        def done() -> None:
            error = None
            for target in targets:
                if scale_set.instances.get(target.instance_id) is not target:
                    continue
                if target.provisioning == "Deleting":
                    continue
                if failed:
                    target.provisioning, target.power = before[target.instance_id]
                    continue
                target.provisioning, target.power = "Succeeded", after
                try:
                    self._new_image(scale_set, target, action)
                except images.ImageError as refused:  # the old disk stays; the VM shows Failed
                    target.provisioning, target.failure = "Failed", refused.code
                    error = (refused.code, refused.message)
                if after == "running" and target not in rebooting:
                    self._boot(scale_set, target)
            if fault is not None and failed:
                error = (fault.error, fault_message(fault, scale_set.name))
            self.finish(op, error)

        self.after(latency, done)
        return op

    def _new_image(self, scale_set: ScaleSet, target: Instance, action: str) -> None:
        """Reimage rebuilds the OS disk from the instance's own image reference (a definition
        resolves to its latest version now, as Azure does; a version id stays that version);
        manualUpgrade first moves the instance to the scale set's model, if it is not on it."""
        if action == "manualUpgrade" and target.model_version != scale_set.model_version:
            source = images.resolve(scale_set.image, scale_set.location, self.resources)
            target.image = dict(scale_set.image)
            target.model_version = scale_set.model_version
            self._new_os_disk(scale_set, target, source)
        elif action == "reimage":
            self._new_os_disk(scale_set, target)

    def run_command(
        self,
        scale_set: ScaleSet,
        instance: Instance,
        command_id: str,
        script: list[str],
        *,
        fault: Fault | None,
        operation: str,
    ) -> Operation:
        """RunShellScript (run command v1): the instance's shell runs the script when the run
        command's latency has passed (the scenario's `run_command` replies, if one matches,
        answer instead). The result is Azure's: `ProvisioningState/succeeded` and "Enable
        succeeded" whatever the script's exit code (Azure/azure-cli#14425: `exit 123` through
        RunShellScript still reports succeeded; only the output tells), with the last 4,096
        bytes of stdout and of stderr (the extension's tailFile, Azure/custom-script-extension-
        linux main/logtail.go; azure-docs linux/run-command.md "output is limited to the last
        4,096 bytes"). A reboot or power-off the script asks for happens once it has answered.
        """
        if command_id != "RunShellScript":
            raise ArmError(
                400,
                "InvalidParameter",
                f"Command '{command_id}' is not supported here; use RunShellScript.",
            )
        if instance.power != "running" or instance.provisioning == "Deleting":
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Cannot run a command on VM '{scale_set.vm_name(instance)}': it is not running.",
            )
        if not guest_up(instance):
            raise ArmError(409, "VMAgentStatusCommunicationError", _agent_down(scale_set, instance))
        text = "\n".join(script)
        op = self.new_operation(operation)
        self._run_status(instance, "transitioning", "Enable in progress")

        def done() -> None:
            if fault is not None and fault.kind == "lro_failed":
                self._run_status(instance, "failed", fault_message(fault, scale_set.name))
                self.finish(op, (fault.error, fault_message(fault, scale_set.name)))
                return
            if scale_set.instances.get(instance.instance_id) is not instance or not guest_up(
                instance
            ):
                self._run_status(instance, "failed", _agent_down(scale_set, instance))
                self.finish(
                    op, ("VMAgentStatusCommunicationError", _agent_down(scale_set, instance))
                )
                return
            reply = next((r for r in self.scenario.run_command if re.search(r.match, text)), None)
            if reply is not None:
                outcome = shell.Outcome(0, reply.stdout, reply.stderr)
            elif fault is not None and fault.kind == "lost_writes":
                # It runs and answers as usual, but what it wrote never reaches the disk.
                disk = self.disk_of(scale_set, instance).copy()
                scratch = replace(instance.guest, run=dict(instance.guest.run))
                outcome = shell.run(text, disk, scratch, self.repo())
            else:
                disk = self.disk_of(scale_set, instance)
                outcome = shell.run(text, disk, instance.guest, self.repo())
            message = (
                f"Enable succeeded: \n[stdout]\n{_tail(outcome.stdout)}\n"
                f"[stderr]\n{_tail(outcome.stderr)}\n"
            )
            status = {
                "code": "ProvisioningState/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
                "message": message,
            }
            self.run_log.append(
                {
                    "time": self.now().isoformat(),
                    "scale_set": scale_set.name,
                    "instance": str(instance.instance_id),
                    "exit": outcome.exit,
                    "power": outcome.power,
                }
            )

            def power() -> None:
                if scale_set.instances.get(instance.instance_id) is not instance:
                    return
                if not guest_up(instance) or instance.guest.boots != boots:
                    return  # went down or rebooted before a scheduled power action fell due
                if outcome.power == "reboot":
                    self.reboot(scale_set, instance)
                elif outcome.power == "poweroff":
                    guestos.shut_down(instance.guest)
                    instance.power = "stopped"

            def answer() -> None:
                self._run_status(instance, "succeeded", message)
                self.finish(op, result={"value": [status]})
                if outcome.power and outcome.power_delay:
                    self.after(outcome.power_delay, power)
                elif outcome.power:
                    power()

            boots = instance.guest.boots
            if outcome.seconds:
                self.after(outcome.seconds, answer)
            else:
                answer()

        self.after(self.latency.run_command, done)
        return op

    def _run_status(self, instance: Instance, state: str, message: str) -> None:
        instance.last_run = (
            ("code", f"ProvisioningState/{state}"),
            ("level", "Error" if state == "failed" else "Info"),
            ("displayStatus", f"Provisioning {state}"),
            ("message", message),
            ("time", self.now().isoformat()),
        )

    # -- the guest OS -------------------------------------------------------------------------

    def disk_of(self, scale_set: ScaleSet, instance: Instance) -> guestos.Disk:
        return self.disks[self.disk_id(scale_set, instance.os_disk).lower()]

    def repo(self) -> guestos.Repo:
        """The package archive now: updates whose date has passed."""
        return guestos.repo(self.scenario.os, list(self.scenario.os_updates), self.now())

    def reboot_seconds(self, scale_set: ScaleSet, instance: Instance) -> float:
        if self.latency.reboot is not None:
            return self.latency.reboot
        key = f"{self.scenario.seed}/{scale_set.name}/{instance.instance_id}/reboot"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return 60 + 60 * int.from_bytes(digest, "big") / 2**64

    def _boot(
        self, scale_set: ScaleSet, instance: Instance, *, initial: datetime | None = None
    ) -> None:
        """The only boot path (creation, start, restart, reimage, upgrade): the guest boots
        the newest installed kernel with a new boot id. A kernel published with `breaks`, a
        `never_ready` Boot fault, or a machine-id that another running guest already has leaves
        the kubelet never Ready (with `apply_after`: Ready for that long, then NotReady for the
        rest of the boot); a `never_boots` Boot fault leaves the guest hung before it
        starts anything. Boot faults skip the scenario's first boots (which happen at
        `initial`); they select by scale set, instance and the image version booted."""
        now = initial or self.now()
        fault = None
        if initial is None:
            fault = self.take_fault(
                "Boot",
                scale_set.name,
                str(instance.instance_id),
                image=instance.source.version_id,
            )
        if fault is not None and fault.kind == "never_boots":
            guestos.hang(instance.guest)
            return
        instance.booted_at = now
        disk = self.disk_of(scale_set, instance)
        number = instance.guest.boots + 1
        boot_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{instance.vm_id}/{number}/{now.isoformat()}")
        # systemd's new machine-id is random; this one is fixed by the VM, disk and boot.
        machine = uuid.uuid5(uuid.NAMESPACE_OID, f"{instance.vm_id}/{instance.os_disk}/{number}")
        guestos.boot(
            disk,
            instance.guest,
            boot_id=str(boot_id),
            hostname=instance.computer_name,
            machine_id=machine.hex,
            vm_id=instance.vm_id,
        )
        later = fault is not None and fault.kind == "never_ready" and fault.apply_after > 0
        instance.guest.never_ready = (
            self.repo().breaks(instance.guest.kernel)
            or (fault is not None and fault.kind == "never_ready" and not later)
            or (initial is None and self._machine_id_taken(instance, disk.machine_id()))
        )
        if later:
            assert fault is not None
            self.after(fault.apply_after, lambda: self._kubelet_fails(instance, number))

    def _kubelet_fails(self, instance: Instance, boot: int) -> None:
        """A `never_ready` Boot fault with `apply_after`: the node was Ready, and from now on
        this boot's kubelet posts NotReady (a component that dies minutes in)."""
        if instance.guest.boots == boot and guest_up(instance):
            instance.guest.never_ready = True

    def _machine_id_taken(self, booting: Instance, machine_id: str) -> bool:
        """Two nodes with one machine-id: the one that boots while the other runs never gets
        Ready. The simulator's rule, after what clones of an uncleaned image do: the CNI names
        its node after the machine-id (as weave's peer name does), so the second node's network
        never comes up and its kubelet reports NetworkPluginNotReady."""
        for scale_set in self.scale_sets.values():
            for other in scale_set.instances.values():
                if other is booting or not guest_up(other):
                    continue
                if self.disk_of(scale_set, other).machine_id() == machine_id:
                    return True
        return False

    def reboot(self, scale_set: ScaleSet, instance: Instance) -> None:
        """The guest goes down now and boots after the reboot latency (power stays running)."""
        guestos.shut_down(instance.guest)
        boots = instance.guest.boots

        def back() -> None:
            if scale_set.instances.get(instance.instance_id) is not instance:
                return
            if instance.power != "running" or instance.provisioning == "Deleting":
                return
            if instance.guest.up or instance.guest.boots != boots:
                return
            self._boot(scale_set, instance)

        self.after(self.reboot_seconds(scale_set, instance), back)

    # -- generic resources (snapshots, galleries, image definitions and versions) -----------------

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_id.lower().rstrip("/"))

    def put_resource(
        self,
        body: dict[str, Any],
        *,
        latency: float,
        fault: Fault | None,
        operation: str,
        on_ready: Callable[[dict[str, Any]], None] | None = None,
    ) -> Operation:
        """Create or replace a resource; it is `Creating` (`Updating`) until its latency passed."""
        op = self.new_operation(operation)
        existing = self.resources.get(body["id"].lower())
        body["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        self.resources[body["id"].lower()] = body

        def ready() -> None:
            if self.resources.get(body["id"].lower()) is not body:
                self.finish(op)  # deleted or replaced meanwhile
                return
            if fault is not None and fault.kind == "lro_failed":
                body["properties"]["provisioningState"] = "Failed"
                self.finish(op, (fault.error, fault_message(fault)))
                return
            body["properties"]["provisioningState"] = "Succeeded"
            if on_ready:
                on_ready(body)
            # Location answers the resource once done (the disk RP's final-state-via: location).
            self.finish(op, result=body)

        self.after(latency, ready)
        return op

    def copy_content(self, source_id: str, target_id: str) -> None:
        """A snapshot or image version holds its source's OS content as it is at this moment
        (Azure snapshots a running VM's disk too; a powered-off guest gives a clean copy)."""
        self.disks[target_id.lower().rstrip("/")] = self.disks[source_id.lower()].copy()

    def put_version(
        self, body: dict[str, Any], source_id: str, *, fault: Fault | None, operation: str
    ) -> Operation:
        """Create an image version: `Creating` while it replicates (the `image_version`
        latency), then `Succeeded`. A Standard_ZRS replica in a region without zones fails it
        early; a failed version stays, `Failed`, until deleted."""
        self.copy_content(source_id, body["id"])
        refusal = images.zrs_refusal(body, self.scenario.zonal_regions)
        latency = self.latency.image_version
        if refusal is not None and fault is None:
            fault = Fault(operation=operation, kind="lro_failed", error="InvalidParameter")
            fault = fault.model_copy(update={"message": refusal})
            latency = self.latency.gallery
        return self.put_resource(body, latency=latency, fault=fault, operation=operation)

    def delete_resource(
        self, resource_id: str, *, fault: Fault | None, operation: str
    ) -> Operation | None:
        """Delete a resource; None when there is none. Nested resources must go first."""
        key = resource_id.lower().rstrip("/")
        body = self.resources.get(key)
        if body is None:
            return None
        nested = sorted(
            b["id"].split("/providers/", 1)[1]
            for k, b in self.resources.items()
            if k.startswith(key + "/")
        )
        if nested:
            raise ArmError(
                409,
                "CannotDeleteResource",
                "Cannot delete resource while nested resources exist. Some existing nested "
                f"resource IDs include: '{', '.join(nested[:5])}'. Please delete all nested "
                "resources before deleting this resource.",
            )
        op = self.new_operation(operation)
        body["properties"]["provisioningState"] = "Deleting"

        def gone() -> None:
            if fault is not None and fault.kind == "lro_failed":
                body["properties"]["provisioningState"] = "Succeeded"
                self.finish(op, (fault.error, fault_message(fault)))
                return
            if self.resources.get(key) is body:
                del self.resources[key]
                self.disks.pop(key, None)
            self.finish(op)

        self.after(self.latency.resource_delete, gone)
        return op

    # -- load model -----------------------------------------------------------------------------

    def utilisation(
        self, scale_set: ScaleSet, instance: Instance, metric: str, at: datetime
    ) -> float:
        """CPU or memory use in percent at minute resolution.

        Deterministic for (scenario seed, scale set, instance, metric, minute).
        """
        load = scale_set.spec.load
        value = load.cpu if metric == "cpu" else load.memory
        for step in load.steps:
            stepped = step.cpu if metric == "cpu" else step.memory
            if step.at <= at and stepped is not None:
                value = stepped
        offset = load.instances.get(str(instance.instance_id))
        if offset is not None:
            value += offset.cpu if metric == "cpu" else offset.memory
        minute = int(at.timestamp() // 60)
        key = f"{self.scenario.seed}/{scale_set.name}/{instance.instance_id}/{metric}/{minute}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        jitter = int.from_bytes(digest, "big") / 2**64 * 2 - 1
        return min(100.0, max(0.0, value + jitter * load.noise))

    def set_load(self, scale_set: ScaleSet, cpu: float | None, memory: float | None) -> None:
        """Add a load step at the current simulated time (admin API)."""
        from local.sim.scenario import LoadStep

        scale_set.spec.load.steps.append(LoadStep(at=self.now(), cpu=cpu, memory=memory))


def _tail(text: str, limit: int = 4096) -> str:
    """The last `limit` bytes of a stream, as the run command extension reports it."""
    data = text.encode()
    return data[-limit:].decode(errors="ignore") if len(data) > limit else text


def _agent_down(scale_set: ScaleSet, instance: Instance) -> str:
    return (
        f"VM '{scale_set.vm_name(instance)}' has not reported status for VM agent or extensions. "
        "Verify that the OS is up and healthy, the VM has a running VM agent, and that it can "
        "establish outbound connections to Azure storage."
    )


def _image_ref(image: dict[str, Any]) -> dict[str, Any]:
    if image.get("id"):
        return {"id": image["id"]}
    return {k: image[k] for k in ("publisher", "offer", "sku", "version") if image.get(k)}
