"""The deployment files agree with the code: Bicep parses, its app settings are the ones the
product reads, storage is identity-only, and the cluster role covers what a drain calls."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]


def _bicep(path: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=ROOT / path)


@pytest.mark.parametrize(
    "path", ["infra/main.bicep", "infra/modules/access.bicep", "infra/modules/pool-alerts.bicep"]
)
def test_bicep_files_parse(path: str) -> None:
    assert _bicep(path)["resources"]


def _app_settings() -> dict[str, Any]:
    app = _bicep("infra/main.bicep")["resources"]["app"]["config"]
    return {s["name"]: s["value"] for s in app["properties"]["siteConfig"]["appSettings"]}


def test_app_settings_give_identity_based_storage_and_the_pools() -> None:
    settings = _app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__clientId",
        "POOLKEEPER_POOLS",
        "POOLKEEPER_KUBE_SERVER",
    } <= settings.keys()
    assert "AzureWebJobsStorage" not in settings  # no connection string, no account key


def test_every_poolkeeper_setting_in_the_bicep_is_read_by_the_product() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    for name in _app_settings():
        if name.startswith("POOLKEEPER_"):
            assert f'"{name}"' in code, f"{name} is set in infra but nothing reads it"


def test_storage_account_refuses_shared_keys_and_old_tls() -> None:
    storage = _bicep("infra/main.bicep")["resources"]["storage"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["allowBlobPublicAccess"] is False


def test_function_runtime_matches_the_projects_python() -> None:
    app = _bicep("infra/main.bicep")["resources"]["app"]["config"]["properties"]
    runtime = app["functionAppConfig"]["runtime"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert runtime["name"] == "python"
    assert re.search(rf">={runtime['version']}\b", project["requires-python"])


# Every Kubernetes API call of the adapter, and the permission it needs: (group, resource, verb).
KUBE_CALLS = {
    "list_node": ("", "nodes", "list"),
    "read_node": ("", "nodes", "get"),
    "patch_node": ("", "nodes", "patch"),
    "delete_node": ("", "nodes", "delete"),
    "list_pod_for_all_namespaces": ("", "pods", "list"),
    "read_namespaced_pod": ("", "pods", "get"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "create_namespaced_pod_eviction": ("", "pods/eviction", "create"),
    "read_namespaced_daemon_set": ("apps", "daemonsets", "get"),
}
_KUBE_CALL = re.compile(r"(?:_core|V1Api\([^)]*\))\.(\w+)\(")


def test_cluster_role_covers_every_call_the_kubernetes_adapter_makes() -> None:
    role = yaml.safe_load((ROOT / "infra/k8s/rbac.yaml").read_text())
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    calls = set(_KUBE_CALL.findall((ROOT / "shared/adapters/kube.py").read_text())) - {"api_client"}
    unknown = calls - KUBE_CALLS.keys()
    assert not unknown, f"map these Kubernetes calls to the permission they need: {sorted(unknown)}"
    for call in sorted(calls):
        assert KUBE_CALLS[call] in granted, (
            f"{call} needs {KUBE_CALLS[call]} in infra/k8s/rbac.yaml"
        )
    # What a drain needs (eviction, so budgets hold), whether or not the adapter is read right.
    assert ("", "pods/eviction", "create") in granted
    assert not any(v in ("*", "create", "update") for _, r, v in granted if r == "nodes")


COMPUTE = "Microsoft.Compute"
VMSS = f"{COMPUTE}/virtualMachineScaleSets"
# Every Compute SDK call the product makes, and the action it needs: ("node" or "gallery" role).
SDK_ACTIONS = {
    "virtual_machine_scale_sets.get": ("node", f"{VMSS}/read"),
    "virtual_machine_scale_sets.list": ("node", f"{VMSS}/read"),
    "virtual_machine_scale_sets.begin_update": ("node", f"{VMSS}/write"),
    "virtual_machine_scale_sets.begin_delete_instances": ("node", f"{VMSS}/delete/action"),
    "virtual_machine_scale_sets.begin_update_instances": ("node", f"{VMSS}/manualUpgrade/action"),
    "virtual_machine_scale_set_vms.get": ("node", f"{VMSS}/virtualMachines/read"),
    "virtual_machine_scale_set_vms.list": ("node", f"{VMSS}/virtualMachines/read"),
    "virtual_machine_scale_set_vms.get_instance_view": (
        "node",
        f"{VMSS}/virtualMachines/instanceView/read",
    ),
    "virtual_machine_scale_set_vms.begin_restart": (
        "node",
        f"{VMSS}/virtualMachines/restart/action",
    ),
    "virtual_machine_scale_set_vms.begin_reimage": (
        "node",
        f"{VMSS}/virtualMachines/reimage/action",
    ),
    "virtual_machine_scale_set_vms.begin_start": ("node", f"{VMSS}/virtualMachines/start/action"),
    "virtual_machine_scale_set_vms.begin_power_off": (
        "node",
        f"{VMSS}/virtualMachines/powerOff/action",
    ),
    "virtual_machine_scale_set_vms.begin_run_command": (
        "node",
        f"{VMSS}/virtualMachines/runCommand/action",
    ),
    "disks.get": ("node", f"{COMPUTE}/disks/read"),
    "snapshots.get": ("node", f"{COMPUTE}/snapshots/read"),
    "snapshots.list_by_resource_group": ("node", f"{COMPUTE}/snapshots/read"),
    "snapshots.begin_create_or_update": ("node", f"{COMPUTE}/snapshots/write"),
    "snapshots.begin_delete": ("node", f"{COMPUTE}/snapshots/delete"),
    "galleries.get": ("gallery", f"{COMPUTE}/galleries/read"),
    "galleries.begin_create_or_update": ("gallery", f"{COMPUTE}/galleries/write"),
    "gallery_images.get": ("gallery", f"{COMPUTE}/galleries/images/read"),
    "gallery_images.begin_create_or_update": ("gallery", f"{COMPUTE}/galleries/images/write"),
    "gallery_image_versions.get": ("gallery", f"{COMPUTE}/galleries/images/versions/read"),
    "gallery_image_versions.list_by_gallery_image": (
        "gallery",
        f"{COMPUTE}/galleries/images/versions/read",
    ),
    "gallery_image_versions.begin_create_or_update": (
        "gallery",
        f"{COMPUTE}/galleries/images/versions/write",
    ),
    "gallery_image_versions.begin_update": (
        "gallery",
        f"{COMPUTE}/galleries/images/versions/write",
    ),
    "gallery_image_versions.begin_delete": (
        "gallery",
        f"{COMPUTE}/galleries/images/versions/delete",
    ),
}
# What image jobs do (issue #11), whether or not their adapter calls it yet.
IMAGE_JOBS = [
    "snapshots.begin_create_or_update",
    "snapshots.get",
    "snapshots.begin_delete",
    "snapshots.list_by_resource_group",  # a later run finds earlier runs' snapshots by tag
    "disks.get",
    "galleries.begin_create_or_update",
    "gallery_images.begin_create_or_update",
    "gallery_image_versions.begin_create_or_update",
    "gallery_image_versions.begin_update",
    "gallery_image_versions.get",
    "gallery_image_versions.begin_delete",
    "virtual_machine_scale_sets.begin_update",
    "virtual_machine_scale_sets.begin_update_instances",
    "virtual_machine_scale_set_vms.begin_run_command",
    "virtual_machine_scale_set_vms.begin_start",
    "virtual_machine_scale_set_vms.begin_power_off",
]
_GROUPS = (
    "virtual_machine_scale_sets|virtual_machine_scale_set_vms|disks|snapshots|galleries"
    "|gallery_images|gallery_image_versions"
)
# Called directly (`compute.snapshots.get(`) or named in a table (`"snapshots", "begin_delete"`).
_SDK_CALL = re.compile(rf"\b({_GROUPS})\.(\w+)\(|[\"']({_GROUPS})[\"'],\s*[\"'](\w+)[\"']")


def _granted() -> dict[str, set[str]]:
    main = _bicep("infra/main.bicep")
    variables = {name: v["value"] for name, v in main["variables"].items()}
    return {
        role: set(variables[main["modules"][module]["config"]["params"]["actions"]])
        for role, module in (("node", "nodeAccess"), ("gallery", "galleryAccess"))
    }


def _sdk_calls() -> set[str]:
    adapters = (ROOT / "shared" / "adapters").rglob("*.py")
    found = (m for path in adapters for m in _SDK_CALL.findall(path.read_text()))
    return {f"{a or c}.{b or d}" for a, b, c, d in found}


def test_every_compute_call_of_the_adapters_and_of_image_jobs_is_granted() -> None:
    calls = _sdk_calls() | set(IMAGE_JOBS)
    unknown = calls - SDK_ACTIONS.keys()
    assert not unknown, f"map these SDK calls to the action they need: {sorted(unknown)}"
    granted = _granted()
    for call in sorted(calls):
        role, action = SDK_ACTIONS[call]
        assert action in granted[role], f"{call} needs {action} in the {role} role"
    assert f"{COMPUTE}/locations/operations/read" in granted["node"] & granted["gallery"]


def test_the_roles_hold_exact_actions_scoped_to_their_resource_groups() -> None:
    granted = _granted()
    for actions in granted.values():
        assert not [a for a in actions if "*" in a], "no wildcards: least privilege"
    main = _bicep("infra/main.bicep")
    scopes = {
        name: main["modules"][name]["config"]["scope"]["function"]["parameters"][
            "resource_group_name"
        ]
        for name in ("nodeAccess", "galleryAccess")
    }
    assert scopes == {"nodeAccess": "nodeResourceGroup", "galleryAccess": "galleryResourceGroup"}
    assert main["parameters"]["galleryResourceGroup"]["default"] == "nodeResourceGroup"
    access = _bicep("infra/modules/access.bicep")["resources"]
    role = access["role"]["config"]["properties"]
    assert role["permissions"] == [{"actions": "actions", "notActions": []}]
    this_group = {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": {
                    "function": {
                        "type": "resource_group",
                        "parameters": {"resource_group_name": None, "subscription_id": None},
                    }
                },
                "operand_2": "id",
            },
        }
    }
    assert role["assignableScopes"] == [this_group]  # resourceGroup().id: nowhere else
    # No broad built-in role any more (Virtual Machine Contributor, Contributor, Owner).
    built_in = main["modules"]["nodeAccess"]["config"]["params"]["builtInRoles"]
    assert built_in == ["monitoringReader"]
    assert main["variables"]["monitoringReader"]["value"] == "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
