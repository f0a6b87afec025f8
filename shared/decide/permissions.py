"""The Azure actions Poolkeeper's identity needs, and which of them a scope's effective
permissions lack. The lists are infra/main.bicep's custom roles (tests/unit/test_infra.py holds
them equal): the scale-set roles are assigned at each pool's scale set, the others at resource
groups. ARM's permissions list for a scope is what the preflight compares them with."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

COMPUTE = "Microsoft.Compute"

# On each pool's scale set (assigned at the scale set, nothing wider): read it and its instances,
# raise capacity and point the model (If-Match), delete named instances, restart, reimage, stop
# and start them, roll them to the model, and follow the long-running operations.
SCALE_SET_ACTIONS = (
    f"{COMPUTE}/virtualMachineScaleSets/read",
    f"{COMPUTE}/virtualMachineScaleSets/write",
    f"{COMPUTE}/virtualMachineScaleSets/delete/action",
    f"{COMPUTE}/virtualMachineScaleSets/manualUpgrade/action",
    f"{COMPUTE}/virtualMachineScaleSets/instanceView/read",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/read",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/instanceView/read",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/restart/action",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/reimage/action",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/start/action",
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/powerOff/action",
    f"{COMPUTE}/locations/operations/read",
)

# Patch jobs (their node check and installs) and image jobs (the donor's clean-up): root on
# every instance, so granted only with those jobs on.
RUN_COMMAND_ACTIONS = (f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/runCommand/action",)

# In each resource group that holds a pool's scale set, with image jobs: the donor's OS disk,
# the snapshot's source.
DISK_ACTIONS = (f"{COMPUTE}/disks/read",)

# In each pool's snapshot resource group (image.snapshot_resource_group, else the scale set's),
# with image jobs: the donor's snapshot is made there, and deleted after.
SNAPSHOT_ACTIONS = (
    f"{COMPUTE}/snapshots/read",
    f"{COMPUTE}/snapshots/write",
    f"{COMPUTE}/snapshots/delete",
)

# In each resource group that holds a pool's scale set (and in networkResourceGroups): ARM checks
# a model write against what the model references, so a capacity write needs these joins.
REFERENCE_ACTIONS = (
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
    "Microsoft.Network/networkSecurityGroups/join/action",
)

# On each user-assigned identity a pool's scale set carries (e.g. the kubelet's), assigned at the
# identity: a model write carries it again. No other identity may be assigned.
IDENTITY_ACTIONS = ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",)

# In each resource group that holds a pool's gallery (image jobs).
GALLERY_ACTIONS = (
    f"{COMPUTE}/galleries/read",
    f"{COMPUTE}/galleries/write",
    f"{COMPUTE}/galleries/images/read",
    f"{COMPUTE}/galleries/images/write",
    f"{COMPUTE}/galleries/images/versions/read",
    f"{COMPUTE}/galleries/images/versions/write",
    f"{COMPUTE}/galleries/images/versions/delete",
    f"{COMPUTE}/locations/operations/read",
)


def _pattern(action: str) -> re.Pattern[str]:
    """ARM's action wildcard: `*` matches any run of characters, and a `/*/` segment none too
    (Managed Identity Operator's `userAssignedIdentities/*/assign/action` grants
    `userAssignedIdentities/assign/action`); case does not matter."""
    segments = [
        ".*".join(re.escape(part) for part in piece.split("*")) for piece in action.split("/*/")
    ]
    return re.compile("/(?:.*/)?".join(segments), re.IGNORECASE)


def _matches(action: str, patterns: Iterable[str]) -> bool:
    return any(_pattern(p).fullmatch(action) for p in patterns)


def missing_actions(
    needed: Sequence[str], permissions: Iterable[Mapping[str, Sequence[str]]]
) -> list[str]:
    """The actions of `needed` that no entry of `permissions` (ARM's list for a scope: each with
    `actions` and `not_actions`) allows."""
    entries = list(permissions)
    return [
        action
        for action in needed
        if not any(
            _matches(action, entry.get("actions", ()))
            and not _matches(action, entry.get("not_actions", ()))
            for entry in entries
        )
    ]
