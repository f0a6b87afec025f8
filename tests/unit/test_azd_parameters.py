"""What `azd provision` hands to infra/main.bicep, and what the Bicep makes of it: azd's
substitution of infra/main.parameters.json, applied by its own rules, delivers the pools file
unchanged; the resource groups the Bicep grants roles in are the ones the pools name."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
SUB_A = "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"
SUB_B = "0b4e8f6d-2c1a-4d3b-8e5f-7a9c1d2e3f40"


def _vmss(subscription: str, group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.Compute/virtualMachineScaleSets/{name}"
    )


# Every optional section, in every form it takes, over two subscriptions: two pools in one
# resource group (written in two cases, as ARM allows), one in another, an image gallery in a
# third. Memory thresholds whole, as the alert rules need (docs/alerts.md).
MAXIMAL_POOLS = {
    "clusters": [
        {
            "name": "capz-prod",
            "server": "https://capz-prod-1a2b.westeurope.cloudapp.azure.com:6443",
            # Inline PEM: newlines, which JSON writes as backslash escapes.
            "ca": {
                "pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n"
                "-----END CERTIFICATE-----\n"
            },
            "auth": {"mode": "token", "secret": "capz-prod-token"},
            "request_timeout_seconds": 20,
        },
        {"name": "kubeadm-gpu", "auth": {"mode": "kubeconfig", "secret": "kubeadm-gpu-kubeconfig"}},
    ],
    "pools": [
        {
            "name": "system",
            "vmss_id": _vmss(SUB_A, "rg-capz-prod", "capz-prod-system"),
            "node_group": "system",
            "min_nodes": 3,
            "max_nodes": 6,
            "cluster": "capz-prod",
            "repair": "off",
        },
        {
            "name": "workers",
            "vmss_id": _vmss(SUB_A, "RG-CAPZ-PROD", "capz-prod-workers").replace(
                "resourceGroups", "resourcegroups"
            ),
            "node_group": "workers",
            "min_nodes": 3,
            "max_nodes": 50,
            "cluster": "capz-prod",
            "capacity": {
                "p1_cpu": 92.5,
                "p1_memory": 80,
                "p2_cpu": 70,
                "p2_memory": 75,
                "cooldown_minutes": 45,
                "auto_scale_up_on_p2": True,
                "execute_downscale": False,
            },
            "patch": {
                "automatic": True,
                "window": {
                    "days": ["sat", "sun"],
                    "start": "22:00",
                    "end": "04:00",
                    "time_zone": "Europe/Stockholm",
                },
                "max_unavailable": 2,
                "soak_minutes": 10,
                "drain_timeout_minutes": 45,
                "ready_timeout_minutes": 20,
                "install_timeout_minutes": 60,
                "upgrade_timeout_minutes": 90,
                "blocking_pod_selectors": ["app=database,tier!=cache", "backup"],
                "undrainable": "quarantine",
                "mode": "reboot_only",
                "kured_daemonset": "kube-system/kured",
            },
            "image": {
                "automatic": True,
                "gallery": "/subscriptions/"
                + SUB_B
                + "/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/capz_images",
                "replicas": 2,
                "storage_type": "Standard_LRS",
                "history": 5,
                "min_ready_minutes": 120,
                "min_candidates": 2,
                "max_image_age_days": 14,
                "canary": True,
                "keep_canary": False,
                "canary_ready_minutes": 30,
                "canary_soak_minutes": 10,
                "rollout": "rolling",
                "allow_upgrade_policy": False,
                "ignore_annotation": "example.com/no-prototype",
            },
            "repair": {
                "enabled": True,
                "not_ready_minutes": 15,
                "stuck_minutes": 30,
                "ready_timeout_minutes": 12,
                "max_unhealthy_share": 0.25,
                "max_repairs_per_node_per_day": 2,
                "delete_orphan_nodes": True,
                "orphan_node_minutes": 120,
            },
        },
        {
            "name": "gpu",
            "vmss_id": _vmss(SUB_B, "rg-kubeadm-gpu", "kubeadm-gpu"),
            "node_group": "gpu",
            "min_nodes": 0,
            "max_nodes": 8,
            "cluster": "kubeadm-gpu",
            "image": {"rollout": "none"},
        },
    ],
}


def _pools_files() -> list[Any]:
    maximal = json.dumps(MAXIMAL_POOLS, indent=2, ensure_ascii=False) + "\n"
    example = (ROOT / "pools.example.json").read_text()
    return [pytest.param(example, id="pools.example.json"), pytest.param(maximal, id="maximal")]


@pytest.mark.parametrize("text", _pools_files())
def test_the_pools_files_are_valid_configurations(text: str) -> None:
    assert parse_config(text, source="test").pools


# -- azd's substitution ------------------------------------------------------------------------
# azd runs github.com/drone/envsubst v1.0.3 over the parameters file: `${NAME}` becomes the
# environment value as it is (no JSON escaping), and `${NAME=x}`, `${NAME:=x}`, `${NAME:-x}` all
# become x when the value is empty or unset. Before azd 1.15 it substituted the whole file, an
# unset name giving ""; since then it substitutes each parameter's JSON on its own
# (`{"value":"..."}`, as Go marshals it; ours are all strings, which is the path they take) and
# leaves out a string parameter that comes out empty from an unset name, so Bicep's default
# applies. Either way must give the same deployment.
_SUBSTITUTION = re.compile(r"\$\{(\w+)(?:(=|:=|:-)([^}$]*))?\}")


def envsubst(text: str, env: dict[str, str]) -> tuple[str, bool]:
    """The substituted text, and whether it named an unset variable."""
    unset = False

    def one(match: re.Match[str]) -> str:
        nonlocal unset
        name, operator, default = match.groups()
        unset |= name not in env
        value = env.get(name, "")
        return default if operator and not value else value

    result = _SUBSTITUTION.sub(one, text)
    left = _SUBSTITUTION.sub("", text)
    # Escapes ($$, \\, \/) and the other operators are envsubst's too: extend this if they appear.
    assert not re.search(r"\$[{$]|\\", left), f"not emulated here: {text!r}"
    return result, unset


def azd_whole_file(env: dict[str, str]) -> dict[str, Any]:
    text, _ = envsubst((ROOT / "infra/main.parameters.json").read_text(), env)
    return {name: p["value"] for name, p in json.loads(text)["parameters"].items()}


def azd_per_parameter(env: dict[str, str]) -> dict[str, Any]:
    template = json.loads((ROOT / "infra/main.parameters.json").read_text())["parameters"]
    resolved = {}
    for name, parameter in template.items():
        text, unset = envsubst(json.dumps(parameter, separators=(",", ":")), env)
        value = json.loads(text)["value"]
        if not (value == "" and unset):
            resolved[name] = value
    return resolved


AZD = [azd_whole_file, azd_per_parameter]


def _operator_env(pools_text: str) -> dict[str, str]:
    """What docs/deploy.md has the operator set, and what azd sets itself."""
    return {
        "AZURE_ENV_NAME": "prod",
        "AZURE_LOCATION": "westeurope",
        "AZURE_PRINCIPAL_ID": "7d3c1f0e-5b2a-4c8d-9e6f-1a2b3c4d5e6f",
        "POOLKEEPER_POOLS_B64": base64.b64encode(pools_text.encode()).decode(),
        # What earlier docs had the operator set: still in an azd environment made then.
        "POOLKEEPER_POOLS": pools_text,
        "POOLKEEPER_KUBE_SERVER": "https://capz-prod-1a2b.westeurope.cloudapp.azure.com:6443",
        "POOLKEEPER_ALERT_SECRET": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c",
        "POOLKEEPER_NOTIFY_WEBHOOK": "https://hooks.example.com/services/T0/B0/x?team=ops&env=prod",
    }


@pytest.mark.parametrize("azd", AZD)
@pytest.mark.parametrize("text", _pools_files())
def test_azd_delivers_the_pools_file_unchanged(azd: Any, text: str) -> None:
    parameters = azd(_operator_env(text))
    # Bicep decodes poolsB64 with base64ToString and sets it as POOLKEEPER_POOLS as it is.
    assert base64.b64decode(parameters["poolsB64"], validate=True).decode() == text
    assert parameters["alertSecret"] == _operator_env(text)["POOLKEEPER_ALERT_SECRET"]
    assert parameters["notifyWebhook"] == _operator_env(text)["POOLKEEPER_NOTIFY_WEBHOOK"]
    assert parameters["secretsOfficerId"] == _operator_env(text)["AZURE_PRINCIPAL_ID"]


def test_raw_json_in_a_parameter_does_not_survive_azd() -> None:
    """Why the pools travel base64-encoded: the JSON's own quotes end the string it is put in."""
    raw = '{ "value": "${POOLKEEPER_POOLS}" }'
    text, _ = envsubst(raw, {"POOLKEEPER_POOLS": (ROOT / "pools.example.json").read_text()})
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize("azd", AZD)
def test_unset_settings_give_the_bicep_defaults(azd: Any) -> None:
    bicep = BicepParser().parse(file_path=ROOT / "infra/main.bicep")["parameters"]
    env = {"AZURE_LOCATION": "westeurope", "POOLKEEPER_POOLS_B64": "e30="}
    parameters = azd(env)
    assert parameters["mode"] == "observe" == bicep["mode"]["default"]
    assert parameters["usageSource"] == "platform" == bicep["usageSource"]["default"]
    for name, value in parameters.items():
        assert name in bicep, f"main.parameters.json sets {name}, which main.bicep does not declare"
        # Older azd passes "" for an unset name: each such parameter must read "" as its default.
        if value == "" and name not in ("name", "location"):
            assert bicep[name]["default"] == "", f"{name}: '' must mean the default"
    assert azd({**env, "POOLKEEPER_MODE": "act"})["mode"] == "act"


# -- what the Bicep grants, for the pools it is given ----------------------------------------


def _union(*values: Any) -> Any:
    """ARM's union: objects merged (later wins), arrays joined without repeats, first kept."""
    if all(isinstance(value, dict) for value in values):
        return {key: item for value in values for key, item in value.items()}
    joined: list[Any] = []
    for item in (item for value in values for item in value):
        if item not in joined:
            joined.append(item)
    return joined


# The few ARM functions that derive the role scopes, over plain Python values.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "base64_to_string": lambda s: base64.b64decode(s).decode(),
    "json": json.loads,
    "split": lambda s, d: s.split(d),
    "to_lower": str.lower,
    "trim": str.strip,
    "format": lambda f, *args: f.format(*args),
    "contains": lambda container, key: key in container,
    "empty": lambda value: not value,
    "first": lambda items: items[0],
    "last": lambda items: items[-1],
    "resource_group": lambda group, subscription: (subscription, group),
    "union": _union,
    "concat": lambda *arrays: [item for array in arrays for item in array],
}


class Bicep:
    """Evaluates main.bicep's variables for given parameters (FUNCTIONS). pycep writes names and
    string literals alike: a string is a name when one is in scope."""

    def __init__(self, path: str = "infra/main.bicep", **parameters: Any) -> None:
        self.parsed = BicepParser().parse(file_path=ROOT / path)
        defaults = {n: p["default"] for n, p in self.parsed["parameters"].items()}
        self.names = {**defaults, **parameters}

    def var(self, name: str) -> Any:
        return self.value(self.parsed["variables"][name]["value"], {})

    def value(self, node: Any, local: dict[str, Any]) -> Any:
        if isinstance(node, str):
            if node in local or node in self.names:
                return local.get(node, self.names.get(node))
            return self.var(node) if node in self.parsed["variables"] else node
        if isinstance(node, list):
            return [self.value(item, local) for item in node]
        if not isinstance(node, dict):
            return node
        if "loop_type" in node:
            loop = node["loop_type"]["detail"]
            items = self.value(loop["array_name"], local)
            return [self.value(node["config"], {**local, loop["item_name"]: i}) for i in items]
        if "function" in node:
            kind, args = node["function"]["type"], node["function"]["parameters"].values()
            values = [self.value(arg, local) for arg in args]
            return FUNCTIONS[kind](*values)
        if "operator" in node:
            kind, operands = node["operator"]["type"], node["operator"]["operands"]
            if kind in ("property_accessor", "index_accessor"):
                return self.value(operands["operand_1"], local)[operands["operand_2"]]
            if kind in ("or", "not_equals"):
                left, right = (self.value(operands[k], local) for k in ("operand_1", "operand_2"))
                return (left or right) if kind == "or" else left != right
            assert kind == "conditional", kind
            chosen = "true_value" if self.value(operands["condition"], local) else "false_value"
            return self.value(operands[chosen], local)
        return {key: self.value(item, local) for key, item in node.items()}

    def module_params(self, module: str) -> list[dict[str, Any]]:
        """The parameters of each instance of a module loop, but the identity's."""
        config = self.parsed["modules"][module]["config"]
        loop = config["loop_type"]["detail"]
        params = config["config"]["params"]
        # Not principalId: a deployed resource's property (and pycep nests `a.b.c` to the right).
        params = {name: value for name, value in params.items() if name != "principalId"}
        return [
            self.value(params, {loop["item_name"]: item})
            for item in self.value(loop["array_name"], {})
        ]

    def module_scopes(self, module: str) -> list[tuple[str, str]]:
        """The (subscription, resource group) of each instance of a module loop."""
        config = self.parsed["modules"][module]["config"]
        loop = config["loop_type"]["detail"]
        scope = config["config"]["scope"]
        return [
            self.value(scope, {loop["item_name"]: item})
            for item in self.value(loop["array_name"], {})
        ]


def _b64(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_a_role_in_every_resource_group_the_pools_name_once_each() -> None:
    config = parse_config(json.dumps(MAXIMAL_POOLS), source="test")
    bicep = Bicep(poolsB64=_b64(MAXIMAL_POOLS))
    expected = {(p.subscription_id.lower(), p.resource_group.lower()) for p in config.pools}
    scopes = bicep.module_scopes("nodeAccess")
    assert set(scopes) == expected == {(SUB_A, "rg-capz-prod"), (SUB_B, "rg-kubeadm-gpu")}
    assert len(scopes) == len(expected)
    # Alert rules: one module per pool, not per resource group.
    assert bicep.var("pools") == MAXIMAL_POOLS["pools"]


def test_the_gallery_role_goes_where_each_pools_images_go() -> None:
    # A pool's gallery is its image.gallery, else `poolkeeper` in its scale set's resource group
    # (shared/flows/image/plan.py gallery_id).
    galleries = Bicep(poolsB64=_b64(MAXIMAL_POOLS)).module_scopes("galleryAccess")
    assert galleries == [(SUB_A, "rg-capz-prod"), (SUB_B, "rg-images"), (SUB_B, "rg-kubeadm-gpu")]
    assert Bicep(poolsB64=_b64(MAXIMAL_POOLS), imageJobs=False).module_scopes("galleryAccess") == []


def test_network_resource_groups_get_the_reference_role() -> None:
    given = f" {SUB_A.upper()}/RG-Net, {SUB_B}/rg-identities,{SUB_A}/rg-net"
    bicep = Bicep(poolsB64=_b64(MAXIMAL_POOLS), networkResourceGroups=given)
    assert bicep.module_scopes("networkAccess") == [(SUB_A, "rg-net"), (SUB_B, "rg-identities")]
    assert Bicep(poolsB64=_b64(MAXIMAL_POOLS)).module_scopes("networkAccess") == []
    # The same role as in the pools' groups, less a donor's disk and snapshot.
    network = {a for p in bicep.module_params("networkAccess") for a in p["actions"]}
    node = {a for p in bicep.module_params("nodeAccess") for a in p["actions"]}
    assert network == set(bicep.var("referenceActions")) < node


def test_each_identity_the_scale_sets_carry_gets_the_assignment_role_once() -> None:
    kubelet = (
        f"/subscriptions/{SUB_A}/resourceGroups/RG-Identities/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/capz-kubelet"
    )
    gpu = (
        f"/subscriptions/{SUB_B}/resourceGroups/rg-gpu/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/gpu-agentpool"
    )
    second = kubelet.replace("capz-kubelet", "capz-node-2")
    given = f" {kubelet}, {gpu},{kubelet.lower()},{second}"  # a repeat in another case
    bicep = Bicep(poolsB64=_b64(MAXIMAL_POOLS), scaleSetIdentities=given)
    # The role defined once per group; assigned at each identity.
    assert bicep.module_scopes("identityRoles") == [(SUB_A, "rg-identities"), (SUB_B, "rg-gpu")]
    assert bicep.module_scopes("identityAccess") == [
        (SUB_A, "rg-identities"),
        (SUB_B, "rg-gpu"),
        (SUB_A, "rg-identities"),
    ]
    assert [p["identityName"] for p in bicep.module_params("identityAccess")] == [
        "capz-kubelet",
        "gpu-agentpool",
        "capz-node-2",
    ]
    assert Bicep(poolsB64=_b64(MAXIMAL_POOLS)).module_scopes("identityAccess") == []


def test_a_pools_group_holds_no_scale_set_action_and_disks_only_with_image_jobs() -> None:
    for image_jobs in (True, False):
        bicep = Bicep(poolsB64=_b64(MAXIMAL_POOLS), imageJobs=image_jobs)
        for params in bicep.module_params("nodeAccess"):
            disks = bicep.var("diskActions") if image_jobs else []
            assert params["actions"] == bicep.var("referenceActions") + disks
            assert not [a for a in params["actions"] if "virtualMachineScaleSets" in a]
            assert not [a for a in params["actions"] if "snapshots" in a]


def test_the_snapshot_role_goes_where_each_pools_snapshots_go() -> None:
    # image.snapshot_resource_group, in the scale set's subscription; else the scale set's group
    # (shared/flows/image/plan.py snapshot_group).
    pools = json.loads(json.dumps(MAXIMAL_POOLS))
    pools["pools"][1]["image"]["snapshot_resource_group"] = "RG-Snapshots"
    config = parse_config(json.dumps(pools), source="test")
    bicep = Bicep(poolsB64=_b64(pools))
    assert bicep.module_scopes("snapshotAccess") == [
        (SUB_A, "rg-capz-prod"),
        (SUB_A, "rg-snapshots"),
        (SUB_B, "rg-kubeadm-gpu"),
    ]
    assert config.pool("workers").image.snapshot_resource_group == "RG-Snapshots"
    actions = [p["actions"] for p in bicep.module_params("snapshotAccess")]
    assert actions == [bicep.var("snapshotActions")] * 3
    assert Bicep(poolsB64=_b64(pools), imageJobs=False).module_scopes("snapshotAccess") == []


def test_each_pools_scale_set_gets_its_roles_and_run_command_only_with_patch_or_image_jobs() -> (
    None
):
    pools = MAXIMAL_POOLS["pools"]
    for patch_jobs in (True, False):
        for image_jobs in (True, False):
            bicep = Bicep(poolsB64=_b64(MAXIMAL_POOLS), patchJobs=patch_jobs, imageJobs=image_jobs)
            scopes = bicep.module_scopes("scaleSetAccess")
            params = bicep.module_params("scaleSetAccess")
            assert len(params) == len(pools)  # one per pool, at its scale set's group
            for (subscription, group), given, pool in zip(scopes, params, pools, strict=True):
                assert f"/subscriptions/{subscription}/resourcegroups/{group}/".lower() in (
                    pool["vmss_id"].lower()
                )
                assert given["scaleSetName"] == pool["vmss_id"].split("/")[-1]
                module = Bicep("infra/modules/scale-set-access.bicep", **given)
                assert module.var("needsRunCommand") == (patch_jobs or image_jobs)
