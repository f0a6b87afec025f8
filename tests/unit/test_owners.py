"""A scale set's tags say when its capacity belongs to someone else (CAPZ, AKS)."""

from __future__ import annotations

from shared.decide.owners import autoscaler_groups, capacity_owner


def test_capz_and_aks_own_their_capacity_a_plain_scale_set_does_not() -> None:
    capz = {"sigs.k8s.io_cluster-api-provider-azure_cluster_prod": "owned"}
    assert "MachinePool" in (capacity_owner(capz) or "")
    assert "az aks nodepool scale" in (capacity_owner({"aks-managed-poolName": "np1"}) or "")
    assert capacity_owner({"Aks-Managed-createOperationID": "x"}) is not None  # keys ignore case
    assert capacity_owner({"team": "platform", "poolkeeper.writes": "x"}) is None


def test_autoscaler_groups_reads_both_status_formats() -> None:
    readable = (
        "Cluster-autoscaler status at 2026-11-02 08:00:00 +0000 UTC:\n"
        "Cluster-wide:\n  Health:      Healthy (ready=3)\n"
        "NodeGroups:\n  Name:        Capz-MD-0\n  Health:      Healthy\n"
        "  Name:        kubeadm-workers-vmss\n"
    )
    assert autoscaler_groups(readable) == {"capz-md-0", "kubeadm-workers-vmss"}
    as_yaml = "time: 2026-11-02\nnodeGroups:\n- name: engine-pool-12345678-vmss\n  health: {}\n"
    assert autoscaler_groups(as_yaml) == {"engine-pool-12345678-vmss"}
    assert autoscaler_groups("") == set()
