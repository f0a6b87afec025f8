"""Who else writes a scale set's capacity, read from its tags: a scale set that scales itself is
not Poolkeeper's to size (AKS reverts changes; a CAPZ MachinePool sets its replicas)."""

from __future__ import annotations

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
