"""Who else writes a scale set's capacity, read from its tags: a scale set that scales itself is
not Poolkeeper's to size (AKS reverts changes; a CAPZ MachinePool sets its replicas)."""

from __future__ import annotations

import re
from collections.abc import Mapping

AKS_TAG_PREFIX = "aks-managed-"
CAPZ_TAG_PREFIX = "sigs.k8s.io_cluster-api-provider-azure_"


def capacity_owner(tags: Mapping[str, str]) -> str | None:
    """The other owner of this scale set's capacity and where to scale it instead, or None."""
    keys = [key.lower() for key in tags]
    if any(key.startswith(CAPZ_TAG_PREFIX) for key in keys):
        return (
            "Cluster API Provider Azure (a MachinePool): scale it with its MachinePool's "
            "spec.replicas (or the cluster-autoscaler's clusterapi provider)"
        )
    if any(key.startswith(AKS_TAG_PREFIX) for key in keys):
        return "AKS (a managed node pool): scale it with az aks nodepool scale or AKS's autoscaler"
    return None


AUTOSCALER_STATUS = ("kube-system", "cluster-autoscaler-status")  # its ConfigMap, key "status"
_GROUP_NAME = re.compile(r"^\s*(?:-\s*)?name:\s*(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def autoscaler_groups(status: str) -> set[str]:
    """The node groups (for Azure: scale set names, lower-cased) cluster-autoscaler's status
    names: `Name:` lines of the readable format (up to 1.29), `- name:` of the YAML one (1.30+)."""
    return {name.lower() for name in _GROUP_NAME.findall(status)}
