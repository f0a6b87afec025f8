"""The real Azure CLI against the simulator: log in with its managed identity, then the scale-set,
snapshot and gallery commands platform teams use, each checked against the simulator's state.

The CLI comes from `make az` (.venv-az, pinned in requirements-az.txt). Operations the CLI waits
for take no simulated time here (its poller then finds them done on its first poll, instead of
sleeping 30 s); a stop is sent with --no-wait and finished by advancing the stopped clock.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from local import az_env
from local.azurite import ROOT
from tests.simulator import RG, STOPPED, SUBSCRIPTION, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

WORKERS = "aks-workers-22222222-vmss"
IMAGES_RG = "rg-images"
INSTANT = {
    name: 0
    for name in (
        "start",
        "run_command",
        "reboot",
        "snapshot",
        "gallery",
        "image_definition",
        "image_version",
        "model_update",
        "update_model",
        "resource_delete",
    )
}
SCENARIO = scenario(scale_set(WORKERS, 3), speed=STOPPED, latencies=INSTANT | {"power_off": 30})
# What --debug shows of a library (the SDKs, msrest, MSAL, urllib3) logging at WARNING or above:
# a payload it could not read, a retry. The CLI's own notices name no logger or a `cli.` one.
SDK_WARNING = re.compile(r"^(?:WARNING|ERROR|CRITICAL): (?:azure|msrest|msal|urllib3)\S*: .*", re.M)


@dataclass
class Cli:
    """The Azure CLI logged in to the simulator, with a config dir of its own."""

    binary: str
    env: dict[str, str]
    sim: Simulator

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, *args, "--debug"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,  # a hang guard: az takes seconds, minutes on a loaded machine
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"az {' '.join(args)}:\n{_errors(done.stderr)}"
        assert not SDK_WARNING.findall(done.stderr), _errors(done.stderr)
        return done

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--output", "json").stdout
        return json.loads(out) if out.strip() else None

    def fails(self, *args: str) -> str:
        """Run a command that must fail; its error, as the CLI printed it."""
        done = self.run(*args, ok=False)
        assert done.returncode != 0, f"az {' '.join(args)} succeeded: {done.stdout}"
        return _errors(done.stderr)


def _errors(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(("DEBUG", "INFO")))


def _az() -> str:
    if not az_env.VENV_AZ.exists():
        pytest.fail(f"the Azure CLI is not installed at {az_env.VENV_AZ}: run `make az`")
    return str(az_env.VENV_AZ)


@pytest.fixture(scope="module")
def cli(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One login for the module, the way docs/local-stack.md tells a user to log in."""
    simulator.load(SCENARIO)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_"))}
    env |= az_env.environment(simulator.info, tmp_path_factory.mktemp("azure"))
    cli = Cli(_az(), env, simulator)
    for args in az_env.login_commands(simulator.info):
        cli.run(*args)
    return cli


def _instances(sim: Simulator) -> list[dict[str, Any]]:
    return sim.scale_set_state(WORKERS)["instances"]


def _resources(sim: Simulator) -> list[str]:
    return [r.lower() for r in sim.state()["resources"]]


def test_login_finds_the_cloud_from_metadata_and_the_subscription_with_the_identity(
    cli: Cli,
) -> None:
    arm = cli.sim.info["arm"]
    cloud = cli.json("cloud", "show")
    assert cloud["name"] == az_env.CLOUD and cloud["isActive"]
    # From the simulator's /metadata/endpoints: its login endpoint and ARM's audience.
    assert cloud["endpoints"]["activeDirectory"] == f"{arm}/"
    assert cloud["endpoints"]["activeDirectoryResourceId"] == "https://management.core.windows.net/"
    account = cli.json("account", "show")
    assert account["id"] == SUBSCRIPTION == cli.sim.state()["subscription"]
    assert account["tenantId"] == cli.sim.info["tenant"]
    assert account["user"] == {
        "name": "systemAssignedIdentity",
        "type": "servicePrincipal",
        "assignedIdentityInfo": "MSI",
    }
    counters = cli.sim.calls()["counters"]
    assert counters["MetadataEndpoints_Get"] >= 1 and counters["Subscriptions_List"] >= 1


def test_the_documented_way_lists_the_scale_sets(cli: Cli, tmp_path: Path) -> None:
    """docs/local-stack.md: eval what `python -m local.az_env <logs>` prints, then use az."""
    (tmp_path / "sim.json").write_text(json.dumps(cli.sim.info))  # as local.stack keeps it
    script = (
        f'eval "$({shlex.quote(sys.executable)} -m local.az_env {shlex.quote(str(tmp_path))})"'
        ' && az vmss list --query "[].name" --output tsv'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "IDENTITY_", "REQUESTS_"))
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert (done.returncode, done.stdout.split()) == (0, [WORKERS]), done.stderr
    assert (tmp_path / "azure" / "azureProfile.json").exists()  # its own config dir


# Each tenancy route's body read by the SDK models az uses (az ignores fields its models do not
# know, so --debug alone would not tell): a field that does not survive the trip is misnamed.
ROUND_TRIP = """
import json, sys
from azure.mgmt.resource.resources import models as resources
from azure.mgmt.resource.subscriptions import models as subscriptions

def lost(sent, kept, path=""):
    if isinstance(sent, dict):
        return [p for k, v in sent.items()
                for p in ([path + k] if k not in kept else lost(v, kept[k], path + k + "."))]
    if isinstance(sent, list):
        return [p for a, b in zip(sent, kept) for p in lost(a, b, path)]
    return []

for model, body in json.load(sys.stdin):
    module, name = model.split(".")
    cls = getattr(resources if module == "resources" else subscriptions, name)
    print(model, lost(body, cls.deserialize(body).serialize(keep_readonly=True)))
"""


def test_tenancy_routes_answer_in_shapes_the_cli_models_read(cli: Cli) -> None:
    info = cli.sim.info
    token = requests.get(
        info["identity_endpoint"],
        params={"api-version": "2019-08-01", "resource": "https://management.azure.com/"},
        headers={"X-IDENTITY-HEADER": info["identity_header"]},
        timeout=10,
    ).json()["access_token"]

    def get(path: str, api: str = "2022-12-01", **headers: str) -> requests.Response:
        return requests.get(
            f"{info['arm']}{path}",
            params={"api-version": api} if api else {},
            headers={"Authorization": f"Bearer {token}"} | headers,
            verify=info["ca_cert"],
            timeout=10,
        )

    sub = f"/subscriptions/{SUBSCRIPTION}"
    bodies = [
        ("subscriptions.TenantListResult", get("/tenants").json()),
        ("subscriptions.SubscriptionListResult", get("/subscriptions").json()),
        ("subscriptions.Subscription", get(sub).json()),
        ("subscriptions.LocationListResult", get(f"{sub}/locations").json()),
        ("resources.ResourceGroupListResult", get(f"{sub}/resourcegroups", "2024-11-01").json()),
        ("resources.ResourceGroup", get(f"{sub}/resourceGroups/{RG}", "2024-11-01").json()),
    ]
    checked = subprocess.run(
        [str(az_env.VENV_AZ.parent / "python"), "-c", ROUND_TRIP],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert checked == [f"{model} []" for model, _ in bodies]
    assert [t["tenantId"] for t in bodies[0][1]["value"]] == [info["tenant"]]
    # ARM's errors: metadata needs no token, the rest do; api-version and subscription checked.
    assert (
        requests.get(
            f"{info['arm']}/metadata/endpoints?api-version=2019-05-01", verify=info["ca_cert"]
        ).json()[0]["resourceManager"]
        == f"{info['arm']}/"
    )
    unauthenticated = requests.get(
        f"{info['arm']}/subscriptions?api-version=2022-12-01", verify=info["ca_cert"], timeout=10
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "AuthenticationFailed"
    assert get("/subscriptions", api="").json()["error"]["code"] == "MissingApiVersionParameter"
    missing = get("/subscriptions/00000000-0000-0000-0000-000000000000")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "SubscriptionNotFound")
    before = cli.sim.state()["resources"]
    nowhere = requests.put(
        f"{info['arm']}{sub}/resourcegroups/rg-nowhere?api-version=2024-11-01",
        json={"tags": {}},
        headers={"Authorization": f"Bearer {token}"},
        verify=info["ca_cert"],
        timeout=10,
    )
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (400, "LocationRequired")
    assert cli.sim.state()["resources"] == before


def test_resource_groups_show_exist_list_and_create(cli: Cli) -> None:
    group = cli.json("group", "show", "--name", RG)
    assert group["id"] == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}"
    assert group["location"] == "westeurope"
    assert cli.json("group", "exists", "--name", RG) is True
    assert cli.json("group", "exists", "--name", "rg-nowhere") is False
    assert "ResourceGroupNotFound" in cli.fails("group", "show", "--name", "rg-nowhere")
    created = cli.json(
        "group", "create", "--name", IMAGES_RG, "--location", "westeurope", "--tags", "team=pk"
    )
    assert created["tags"] == {"team": "pk"}
    assert f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{IMAGES_RG}" in _resources(cli.sim)
    assert {g["name"] for g in cli.json("group", "list")} == {RG, IMAGES_RG}
    # One region in this world: another is refused and changes nothing.
    refused = cli.fails("group", "create", "--name", "rg-east", "--location", "eastus")
    assert "LocationNotAvailableForResourceGroup" in refused
    assert {g["name"] for g in cli.json("group", "list")} == {RG, IMAGES_RG}
    assert [loc["name"] for loc in cli.json("account", "list-locations")] == ["westeurope"]


def test_vmss_list_instances_and_show_match_the_simulator(cli: Cli) -> None:
    state = cli.sim.scale_set_state(WORKERS)
    listed = cli.json("vmss", "list")
    assert [(s["name"], s["resourceGroup"], s["sku"]["capacity"]) for s in listed] == [
        (WORKERS, RG, state["capacity"])
    ]
    instances = cli.json("vmss", "list-instances", "--resource-group", RG, "--name", WORKERS)
    assert [
        (i["instanceId"], i["provisioningState"], i["zones"], i["latestModelApplied"])
        for i in instances
    ] == [
        (i["instance_id"], i["provisioning_state"], [i["zone"]], i["latest_model_applied"])
        for i in state["instances"]
    ]
    shown = cli.json("vmss", "show", "-g", RG, "-n", WORKERS, "--instance-id", "1")
    assert (shown["instanceId"], shown["osProfile"]["computerName"], shown["zones"]) == (
        "1",
        state["instances"][1]["computer_name"],
        [state["instances"][1]["zone"]],
    )
    # The simulated scale sets carry no VM extensions: the CLI lists none, and reads the model.
    assert cli.json("vmss", "extension", "list", "-g", RG, "--vmss-name", WORKERS) is None
    assert cli.sim.calls()["counters"]["VirtualMachineScaleSets_Get"] >= 1


def _disks(cli: Cli) -> list[str]:
    """The OS disks' ids, as the VM bodies name them (the admin state leaves disks out)."""
    return [
        vm["storageProfile"]["osDisk"]["managedDisk"]["id"]
        for vm in cli.json("vmss", "list-instances", "-g", RG, "-n", WORKERS)
    ]


def test_stop_without_waiting_then_start_and_run_command(cli: Cli) -> None:
    cli.run("vmss", "stop", "-g", RG, "-n", WORKERS, "--instance-ids", "1", "--no-wait")
    assert [i["power_state"] for i in _instances(cli.sim)] == ["running", "stopping", "running"]
    cli.sim.advance(60)
    assert _instances(cli.sim)[1]["power_state"] == "stopped"
    view = cli.json("vmss", "get-instance-view", "-g", RG, "-n", WORKERS, "--instance-id", "1")
    assert "PowerState/stopped" in [s["code"] for s in view["statuses"]]
    cli.run("vmss", "start", "-g", RG, "-n", WORKERS, "--instance-ids", "1")
    assert _instances(cli.sim)[1]["power_state"] == "running"

    result = cli.json(
        "vmss", "run-command", "invoke", "-g", RG, "-n", WORKERS, "--instance-id", "2",
        "--command-id", "RunShellScript", "--scripts", "hostname && uname -r",
    )  # fmt: skip
    os_state = _instances(cli.sim)[2]["os"]
    message = result["value"][0]["message"]
    assert f"[stdout]\n{os_state['hostname']}\n{os_state['running_kernel']}\n" in message
    ran = cli.sim.state()["run_commands"][-1]
    assert (ran["scale_set"], ran["instance"], ran["exit"]) == (WORKERS, "2", 0)


def test_snapshot_gallery_version_and_the_scale_sets_image(cli: Cli) -> None:
    disk = cli.json("vmss", "show", "-g", RG, "-n", WORKERS, "--instance-id", "0")[
        "storageProfile"
    ]["osDisk"]["managedDisk"]["id"]
    snap = cli.json("snapshot", "create", "-g", RG, "-n", "proto", "--source", disk)
    assert snap["creationData"]["sourceResourceId"] == disk
    assert snap["id"].lower() in _resources(cli.sim)

    cli.run("group", "create", "-n", IMAGES_RG, "-l", "westeurope")
    gallery = cli.json(
        "sig", "create", "-g", IMAGES_RG, "-r", "pk_gallery"
    )  # location: the group's
    assert cli.json("sig", "show", "-g", IMAGES_RG, "-r", "pk_gallery")["id"] == gallery["id"]
    definition = cli.json(
        "sig", "image-definition", "create", "-g", IMAGES_RG, "-r", "pk_gallery",
        "-i", "workers", "--os-type", "Linux", "--os-state", "Specialized",
        "-p", "poolkeeper", "-f", "aks-workers", "-s", "ubuntu-2204",
    )  # fmt: skip
    assert definition["osState"] == "Specialized"
    version = cli.json(
        "sig", "image-version", "create", "-g", IMAGES_RG, "-r", "pk_gallery",
        "-i", "workers", "-e", "1.0.0", "--os-snapshot", snap["id"],
        "--replica-count", "3", "--storage-account-type", "Standard_ZRS",
    )  # fmt: skip
    assert version["provisioningState"] == "Succeeded"
    assert version["publishingProfile"]["replicaCount"] == 3
    assert version["storageProfile"]["osDiskImage"]["source"]["id"] == snap["id"]
    listed = cli.json("sig", "image-version", "list", "-g", IMAGES_RG, "-r", "pk_gallery",
                      "-i", "workers")  # fmt: skip
    assert [v["name"] for v in listed] == ["1.0.0"]
    assert {gallery["id"].lower(), definition["id"].lower(), version["id"].lower()} <= set(
        _resources(cli.sim)
    )

    cli.run(
        "vmss", "update", "-g", RG, "-n", WORKERS,
        "--set", f"virtualMachineProfile.storageProfile.imageReference.id={version['id']}",
    )  # fmt: skip
    state = cli.sim.scale_set_state(WORKERS)
    assert state["model_image"] == {"id": version["id"]}
    assert not any(i["latest_model_applied"] for i in state["instances"])

    cli.run("snapshot", "delete", "-g", RG, "-n", "proto")
    assert snap["id"].lower() not in _resources(cli.sim)


def test_zrs_replicas_fail_where_the_region_has_no_zones_and_lrs_is_the_fallback(
    cli: Cli,
) -> None:
    cli.sim.load(
        scenario(
            scale_set(WORKERS, 1, zones=[]),
            speed=STOPPED,
            latencies=INSTANT,
            location="ukwest",  # a region without availability zones
        )
    )
    disk = _disks(cli)[0]
    snap = cli.json("snapshot", "create", "-g", RG, "-n", "proto", "--source", disk)
    cli.run("sig", "create", "-g", RG, "-r", "pk_gallery")
    cli.run(
        "sig", "image-definition", "create", "-g", RG, "-r", "pk_gallery", "-i", "workers",
        "--os-type", "Linux", "--os-state", "Specialized",
        "-p", "poolkeeper", "-f", "aks-workers", "-s", "ubuntu-2204",
    )  # fmt: skip
    create = ["sig", "image-version", "create", "-g", RG, "-r", "pk_gallery", "-i", "workers",
              "-e", "1.0.0", "--os-snapshot", snap["id"], "--replica-count", "3"]  # fmt: skip
    error = cli.fails(*create, "--storage-account-type", "Standard_ZRS")
    assert "Standard_ZRS" in error
    shown = cli.json("sig", "image-version", "show", "-g", RG, "-r", "pk_gallery",
                     "-i", "workers", "-e", "1.0.0")  # fmt: skip
    assert shown["provisioningState"] == "Failed"

    cli.run("sig", "image-version", "delete", "-g", RG, "-r", "pk_gallery", "-i", "workers",
            "-e", "1.0.0")  # fmt: skip
    assert shown["id"].lower() not in _resources(cli.sim)
    version = cli.json(*create, "--storage-account-type", "Standard_LRS")
    assert version["provisioningState"] == "Succeeded"
    assert version["publishingProfile"]["storageAccountType"] == "Standard_LRS"
    assert version["id"].lower() in _resources(cli.sim)
