"""The Azure actions Poolkeeper's identity needs, and which of them a scope's effective
permissions lack. The lists are infra/main.bicep's custom roles (tests/unit/test_infra.py holds
them equal); ARM's permissions list for a scope is what the preflight compares them with."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

COMPUTE = "Microsoft.Compute"

# In each resource group that holds a pool's scale set.
NODE_ACTIONS = (
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
    f"{COMPUTE}/virtualMachineScaleSets/virtualMachines/runCommand/action",
    f"{COMPUTE}/locations/operations/read",
    f"{COMPUTE}/disks/read",
    f"{COMPUTE}/snapshots/read",
    f"{COMPUTE}/snapshots/write",
    f"{COMPUTE}/snapshots/delete",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
)

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
    """ARM's action wildcard: `*` matches any run of characters; case does not matter."""
    return re.compile(".*".join(re.escape(part) for part in action.split("*")), re.IGNORECASE)


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
