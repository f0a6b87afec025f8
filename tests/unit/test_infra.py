"""The deployment files agree with the code: Bicep parses, its app settings are the ones the
product reads, storage is identity-only, and the cluster role covers what a drain calls."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from local.host.easyauth import EXCLUDED_PATHS
from shared.auth import ALERT_SENDER, OPERATOR, READER
from shared.decide.permissions import (
    DISK_ACTIONS,
    GALLERY_ACTIONS,
    IDENTITY_ACTIONS,
    REFERENCE_ACTIONS,
    RUN_COMMAND_ACTIONS,
    SCALE_SET_ACTIONS,
    SNAPSHOT_ACTIONS,
)

ROOT = Path(__file__).resolve().parents[2]


def _bicep(path: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=ROOT / path)


@pytest.mark.parametrize(
    "path",
    [
        "infra/main.bicep",
        "infra/modules/access.bicep",
        "infra/modules/identity-access.bicep",
        "infra/modules/identity-role.bicep",
        "infra/modules/scale-set-access.bicep",
        "infra/modules/scale-set-roles.bicep",
        "infra/modules/pool-alerts.bicep",
        "infra/modules/workspace-reader.bicep",
    ],
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


def _get(path: str) -> Any:
    """`a.b.c` as pycep writes it: nested property accessors."""
    first, _, rest = path.partition(".")
    return first if not rest else _accessor(first, _get(rest))


def _accessor(operand: Any, name: Any) -> dict[str, Any]:
    return {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": operand, "operand_2": name},
        }
    }


def _conditional(condition: Any, true: Any, false: Any) -> dict[str, Any]:
    operands = {"condition": condition, "true_value": true, "false_value": false}
    return {"operator": {"type": "conditional", "operands": operands}}


def _empty(name: str) -> dict[str, Any]:
    return {"function": {"type": "empty", "parameters": {"item_to_test": name}}}


def test_the_app_receives_the_decoded_pools_the_mode_and_the_usage_source() -> None:
    from shared.adapters import usage
    from shared.config import POOLS_SETTING

    main = _bicep("infra/main.bicep")
    settings = _app_settings()
    assert settings[POOLS_SETTING] == "poolsText"
    assert main["variables"]["poolsText"]["value"] == {
        "function": {"type": "base64_to_string", "parameters": {"base64_value": "poolsB64"}}
    }
    assert settings["POOLKEEPER_MODE"] == "mode"
    mode = main["parameters"]["mode"]
    assert mode["default"] == "observe"
    assert {"type": "allowed", "argument": ["observe", "act"]} in mode["decorators"]
    assert settings[usage.SOURCE_SETTING] == "usageSource"
    assert {"type": "allowed", "argument": list(usage.SOURCES)} in main["parameters"][
        "usageSource"
    ]["decorators"]
    assert settings[usage.WORKSPACE_SETTING] == _conditional(
        "usesContainerInsights", _get("workspaceReader.outputs.customerId"), ""
    )
    assert "${metricsRegion}" in settings[usage.METRICS_ENDPOINT_SETTING]


def test_secrets_reach_the_app_as_key_vault_references_read_with_its_identity() -> None:
    from shared.adapters.notify import WEBHOOK_SETTING
    from shared.flows.capacity.alerts import SECRET_SETTING

    main = _bicep("infra/main.bicep")
    resources = main["resources"]
    settings = _app_settings()
    for setting, parameter, name in (
        (SECRET_SETTING, "alertSecret", "alertSecretName"),
        (WEBHOOK_SETTING, "notifyWebhook", "notifyWebhookName"),
    ):
        assert {"type": "secure"} in main["parameters"][parameter]["decorators"]
        assert main["parameters"][parameter]["default"] == ""
        # Given: a reference to the secret made from it; not given: no setting value at all.
        reference = f"${{secretReference}}${{{name}}})"
        assert settings[setting] == _conditional(_empty(parameter), "", reference)
        given = main["variables"][f"{parameter}Given"]["value"]
        secret = [{"name": name, "value": parameter}]
        assert given == _conditional(_empty(parameter), [], secret)
    assert main["variables"]["secretReference"]["value"] == (
        "@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/"
    )
    assert resources["secrets"]["config"]["loop_type"]["detail"]["array_name"] == "givenSecrets"
    assert settings["POOLKEEPER_KEY_VAULT_URL"] == _get("vault.properties.vaultUri")
    app = resources["app"]["config"]
    assert app["properties"]["keyVaultReferenceIdentity"] == _get("identity.id")
    assert {"insightsPublisher", "vaultReader", "secrets"} <= set(app["dependsOn"])


def test_key_vault_uses_rbac_and_keeps_deleted_secrets() -> None:
    vault = _bicep("infra/main.bicep")["resources"]["vault"]["config"]["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault


# (role assignment, what it is on, its role variable, the built-in role's id)
IDENTITY_ROLES = [
    (
        "insightsPublisher",
        "insights",
        "monitoringMetricsPublisher",
        "3913510d-42f4-4e42-8a64-420c390055eb",
    ),
    ("vaultReader", "vault", "keyVaultSecretsUser", "4633458b-17de-408a-b874-0445c86b69e6"),
]


@pytest.mark.parametrize(("assignment", "scope", "role", "role_id"), IDENTITY_ROLES)
def test_the_identity_holds_its_built_in_roles(
    assignment: str, scope: str, role: str, role_id: str
) -> None:
    main = _bicep("infra/main.bicep")
    config = main["resources"][assignment]["config"]
    assert config["scope"] == scope
    assert (
        config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        == role
    )
    assert config["properties"]["principalId"] == _get("identity.properties.principalId")
    assert main["variables"][role]["value"] == role_id


def test_insights_takes_entra_tokens_only() -> None:
    insights = _bicep("infra/main.bicep")["resources"]["insights"]["config"]["properties"]
    assert insights["DisableLocalAuth"] is True
    assert "Authorization=AAD" in _app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_sign_in_is_easy_auth_with_the_paths_and_roles_the_app_and_the_emulation_use() -> None:
    main = _bicep("infra/main.bicep")
    sign_in = main["resources"]["signIn"]["config"]
    assert sign_in["name"] == "authsettingsV2" and sign_in["parent"] == "app"
    validation = sign_in["properties"]["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert tuple(validation["excludedPaths"]) == EXCLUDED_PATHS
    assert main["parameters"]["signInClientId"]["default"] == ""  # no sign-in: 401, not open
    assert sign_in["properties"]["platform"]["enabled"] == {
        "operator": {"type": "not", "operands": {"bool_value": _empty("signInClientId")}}
    }
    roles = json.loads((ROOT / "infra/app-roles.json").read_text())
    members = {r["value"]: set(r["allowedMemberTypes"]) for r in roles}
    assert members == {
        READER: {"User", "Application"},
        OPERATOR: {"User", "Application"},
        ALERT_SENDER: {"Application"},  # Azure Monitor's and Alertmanager's principals
    }
    assert len({r["id"] for r in roles}) == len(roles)
    parameters = json.loads((ROOT / "infra/main.parameters.json").read_text())["parameters"]
    assert parameters["signInClientId"]["value"] == "${POOLKEEPER_SIGN_IN_CLIENT_ID}"


def test_storage_denies_other_networks_with_a_subnet_and_keeps_versions_and_deletes() -> None:
    main = _bicep("infra/main.bicep")
    storage = main["resources"]["storage"]["config"]["properties"]
    assert storage["networkAcls"] == _conditional(
        _empty("subnetId"), "openStorage", "subnetOnlyStorage"
    )
    assert main["variables"]["openStorage"]["value"]["defaultAction"] == "Allow"
    subnet_only = main["variables"]["subnetOnlyStorage"]["value"]
    assert subnet_only["defaultAction"] == "Deny"
    assert subnet_only["virtualNetworkRules"] == [{"id": "subnetId", "action": "Allow"}]
    blobs = main["resources"]["blobService"]["config"]["properties"]
    assert blobs["isVersioningEnabled"] is True
    assert blobs["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert blobs["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}


def test_basic_publishing_credentials_are_off() -> None:
    resources = _bicep("infra/main.bicep")["resources"]
    policies = {
        r["config"]["name"]: r["config"]["properties"]["allow"]
        for r in resources.values()
        if r["type"] == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    }
    assert policies == {"ftp": False, "scm": False}


def test_vnet_integration_only_when_a_subnet_is_given() -> None:
    main = _bicep("infra/main.bicep")
    app = main["resources"]["app"]["config"]["properties"]
    assert main["parameters"]["subnetId"]["default"] == ""
    assert app["virtualNetworkSubnetId"] == _conditional(_empty("subnetId"), None, "subnetId")


def test_container_insights_workspace_is_readable_by_the_identity() -> None:
    module = _bicep("infra/modules/workspace-reader.bicep")
    reader = module["resources"]["reader"]["config"]
    assert reader["scope"] == "workspace"
    assert (
        module["variables"]["logAnalyticsReader"]["value"] == "73c42c96-874c-492b-b04d-ab87d138a893"
    )
    assert module["outputs"]["customerId"]["value"] == _get("workspace.properties.customerId")
    main = _bicep("infra/main.bicep")
    assert main["modules"]["workspaceReader"]["config"]["condition"] == "usesContainerInsights"


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
    "read_namespaced_config_map": ("", "configmaps", "get"),
}
_KUBE_CALL = re.compile(r"(?:_core|V1Api\([^)]*\))\.(\w+)\(")
# Allowed to every authenticated user by the API server's default system:basic-user role.
EVERYONE_MAY = {"create_self_subject_access_review"}


def test_cluster_role_covers_every_call_the_kubernetes_adapter_makes() -> None:
    role = yaml.safe_load((ROOT / "infra/k8s/rbac.yaml").read_text())
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    code = (ROOT / "shared/adapters/kube.py").read_text()
    calls = set(_KUBE_CALL.findall(code)) - {"api_client"} - EVERYONE_MAY
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
# Every Compute SDK call the product makes, and the role whose action it needs.
SDK_ACTIONS = {
    "virtual_machine_scale_sets.get": ("scale_set", f"{VMSS}/read"),
    # Listed at the group, which the scale set roles do not cover: refused, the survey then
    # GETs each pool's scale set (shared/flows/reconcile.py).
    "virtual_machine_scale_sets.list": ("scale_set", f"{VMSS}/read"),
    "virtual_machine_scale_sets.begin_update": ("scale_set", f"{VMSS}/write"),
    "virtual_machine_scale_sets.begin_delete_instances": ("scale_set", f"{VMSS}/delete/action"),
    "virtual_machine_scale_sets.begin_update_instances": (
        "scale_set",
        f"{VMSS}/manualUpgrade/action",
    ),
    "virtual_machine_scale_set_vms.get": ("scale_set", f"{VMSS}/virtualMachines/read"),
    "virtual_machine_scale_set_vms.list": ("scale_set", f"{VMSS}/virtualMachines/read"),
    "virtual_machine_scale_set_vms.get_instance_view": (
        "scale_set",
        f"{VMSS}/virtualMachines/instanceView/read",
    ),
    "virtual_machine_scale_set_vms.begin_restart": (
        "scale_set",
        f"{VMSS}/virtualMachines/restart/action",
    ),
    "virtual_machine_scale_set_vms.begin_reimage": (
        "scale_set",
        f"{VMSS}/virtualMachines/reimage/action",
    ),
    "virtual_machine_scale_set_vms.begin_start": (
        "scale_set",
        f"{VMSS}/virtualMachines/start/action",
    ),
    "virtual_machine_scale_set_vms.begin_power_off": (
        "scale_set",
        f"{VMSS}/virtualMachines/powerOff/action",
    ),
    "virtual_machine_scale_set_vms.begin_run_command": (
        "run_command",
        f"{VMSS}/virtualMachines/runCommand/action",
    ),
    "disks.get": ("disk", f"{COMPUTE}/disks/read"),
    "snapshots.get": ("snapshot", f"{COMPUTE}/snapshots/read"),
    "snapshots.list_by_resource_group": ("snapshot", f"{COMPUTE}/snapshots/read"),
    "snapshots.begin_create_or_update": ("snapshot", f"{COMPUTE}/snapshots/write"),
    "snapshots.begin_delete": ("snapshot", f"{COMPUTE}/snapshots/delete"),
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


# Each custom role's actions, by the main.bicep variable that lists them.
ROLE_VARIABLES = {
    "scale_set": "scaleSetActions",
    "run_command": "runCommandActions",
    "disk": "diskActions",
    "snapshot": "snapshotActions",
    "reference": "referenceActions",
    "identity": "identityActions",
    "gallery": "galleryActions",
}


def _granted() -> dict[str, set[str]]:
    variables = _bicep("infra/main.bicep")["variables"]
    return {role: set(variables[name]["value"]) for role, name in ROLE_VARIABLES.items()}


# The group-scoped roles: one module instance per resource group (the loop's scopes:
# tests/unit/test_azd_parameters.py evaluates them for a pools file).
ACCESS_SCOPES = {
    "nodeAccess": "nodeScopes",
    "scaleSetRoles": "nodeScopes",
    "galleryAccess": "galleryScopes",
    "networkAccess": "networkScopes",
    "snapshotAccess": "snapshotScopes",
}


def _module(main: dict[str, Any], name: str) -> dict[str, Any]:
    """A module loop's body."""
    return main["modules"][name]["config"]["config"]


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
    assert f"{COMPUTE}/locations/operations/read" in granted["scale_set"] & granted["gallery"]


_THIS_GROUP = {
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


def test_the_roles_hold_exact_actions_scoped_to_their_resource_groups() -> None:
    granted = _granted()
    for actions in granted.values():
        assert not [a for a in actions if "*" in a], "no wildcards: least privilege"
    main = _bicep("infra/main.bicep")
    for module, scopes in ACCESS_SCOPES.items():
        loop = main["modules"][module]["config"]["loop_type"]["detail"]
        assert loop["array_name"] == scopes
        group = loop["item_name"]
        # resourceGroup(first(split(group, '/')), last(split(group, '/'))): '<subscription>/<group>'
        part = {
            "function": {"type": "split", "parameters": {"input_string": group, "delimiter": "/"}}
        }
        assert _module(main, module)["scope"] == {
            "function": {
                "type": "resource_group",
                "parameters": {
                    "resource_group_name": {
                        "function": {"type": "last", "parameters": {"arg_1": part}}
                    },
                    "subscription_id": {
                        "function": {"type": "first", "parameters": {"arg_1": part}}
                    },
                },
            }
        }
    access = _bicep("infra/modules/access.bicep")["resources"]
    role = access["role"]["config"]["properties"]
    assert role["permissions"] == [{"actions": "actions", "notActions": []}]
    assert role["assignableScopes"] == [_THIS_GROUP]  # resourceGroup().id: nowhere else
    # No built-in role at a group any more (Virtual Machine Contributor, Contributor, Owner, nor
    # Monitoring Reader: it is assigned at each scale set).
    for module in ("nodeAccess", "galleryAccess", "networkAccess", "snapshotAccess"):
        assert "builtInRoles" not in _module(main, module)["params"], module


def test_the_scale_sets_roles_are_assigned_at_each_scale_set_and_run_command_only_if_needed() -> (
    None
):
    main = _bicep("infra/main.bicep")
    roles = _module(main, "scaleSetRoles")["params"]
    assert roles == {
        "scaleSetActions": "scaleSetActions",
        "runCommandActions": "runCommandActions",
    }
    defined = _bicep("infra/modules/scale-set-roles.bicep")["resources"]
    assert {name: r["config"]["properties"]["permissions"] for name, r in defined.items()} == {
        "scaleSet": [{"actions": "scaleSetActions", "notActions": []}],
        "runCommand": [{"actions": "runCommandActions", "notActions": []}],
    }
    assert all(
        r["config"]["properties"]["assignableScopes"] == [_THIS_GROUP] for r in defined.values()
    )
    # One module per pool, at its scale set's resource group, with its patch mode.
    loop = main["modules"]["scaleSetAccess"]["config"]["loop_type"]["detail"]
    assert (loop["array_name"], loop["item_name"]) == ("pools", "pool")
    module = _bicep("infra/modules/scale-set-access.bicep")
    assigned = module["resources"]
    assert set(assigned) == {"vmss", "scaleSet", "runCommand", "metrics"}
    assert assigned["vmss"]["existing"] is True
    for name in ("scaleSet", "runCommand", "metrics"):
        body = assigned[name]["config"]
        body = body.get("config", body)  # a condition wraps the body
        assert body["scope"] == "vmss", name  # at the scale set, nothing wider
    assert assigned["runCommand"]["config"]["condition"] == "needsRunCommand"
    assert (
        module["variables"]["monitoringReader"]["value"] == "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
    )


def test_an_identity_is_assignable_only_at_each_identity_the_scale_sets_carry() -> None:
    main = _bicep("infra/main.bicep")
    loop = main["modules"]["identityAccess"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "identityIds"
    roles = main["modules"]["identityRoles"]["config"]["loop_type"]["detail"]
    assert roles["array_name"] == "identityScopes"  # one per group: its role defined once
    assert _module(main, "identityRoles")["params"]["actions"] == "identityActions"
    for role in ("referenceActions", "scaleSetActions", "diskActions", "snapshotActions"):
        assert not [a for a in main["variables"][role]["value"] if "ManagedIdentity" in a], role
    module = _bicep("infra/modules/identity-access.bicep")["resources"]
    assert module["assigned"]["existing"] is True
    assert module["assignment"]["config"]["scope"] == "assigned"  # at the identity, no wider
    role = _bicep("infra/modules/identity-role.bicep")["resources"]["role"]["config"]
    assert role["properties"]["assignableScopes"] == [_THIS_GROUP]


def test_the_preflight_checks_the_actions_the_roles_grant() -> None:
    """shared/decide/permissions.py's lists are the Bicep roles' (the preflight compares ARM's
    permissions list with them)."""
    granted = _granted()
    assert set(SCALE_SET_ACTIONS) == granted["scale_set"]
    assert set(RUN_COMMAND_ACTIONS) == granted["run_command"]
    assert set(DISK_ACTIONS) == granted["disk"]
    assert set(SNAPSHOT_ACTIONS) == granted["snapshot"]
    assert set(REFERENCE_ACTIONS) == granted["reference"]
    assert set(IDENTITY_ACTIONS) == granted["identity"]
    assert set(GALLERY_ACTIONS) == granted["gallery"]
