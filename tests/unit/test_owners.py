"""A scale set's tags say when its capacity belongs to someone else (CAPZ, AKS)."""

from __future__ import annotations

from shared.decide.owners import capacity_owner


def test_capz_and_aks_own_their_capacity_a_plain_scale_set_does_not() -> None:
    capz = {"sigs.k8s.io_cluster-api-provider-azure_cluster_prod": "owned"}
    assert "MachinePool" in (capacity_owner(capz) or "")
    assert "az aks nodepool scale" in (capacity_owner({"aks-managed-poolName": "np1"}) or "")
    assert capacity_owner({"Aks-Managed-createOperationID": "x"}) is not None  # keys ignore case
    assert capacity_owner({"team": "platform", "poolkeeper.writes": "x"}) is None
