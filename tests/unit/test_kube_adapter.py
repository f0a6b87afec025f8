"""The Kubernetes adapter's pure parts: providerID mapping and connection-setting errors."""

from __future__ import annotations

import pytest

from shared.adapters.kube import Kube, KubeConfigError, parse_provider_id

VMSS = (
    "/subscriptions/6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64/resourceGroups/mc_rg_aks_westeurope"
    "/providers/Microsoft.Compute/virtualMachineScaleSets/demo-workers-vmss"
)


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [
        (f"azure://{VMSS}/virtualMachines/12", (VMSS.lower(), "12")),
        (
            f"azure://{VMSS.replace('resourceGroups/mc_rg', 'resourcegroups/MC_RG')}"
            "/virtualMachines/0",
            (VMSS.lower(), "0"),
        ),
        (
            "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            None,
        ),
        ("kind://docker/kind/kind-control-plane", None),
        ("", None),
    ],
)
def test_provider_id_maps_a_node_to_its_scale_set_instance(provider_id: str, expected) -> None:
    assert parse_provider_id(provider_id) == expected


def test_missing_connection_settings_name_every_option() -> None:
    with pytest.raises(KubeConfigError) as raised:
        Kube.from_settings({})
    message = str(raised.value)
    for setting in (
        "POOLKEEPER_KUBECONFIG",
        "POOLKEEPER_KUBECONFIG_CONTENT",
        "POOLKEEPER_KUBE_SERVER",
    ):
        assert setting in message


def test_unusable_kubeconfig_content_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(KubeConfigError, match="POOLKEEPER_KUBECONFIG_CONTENT"):
        Kube.from_settings({"POOLKEEPER_KUBECONFIG_CONTENT": "apiVersion: v1\nkind: Config\n"})
