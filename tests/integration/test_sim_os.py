"""The instance OS through the real SDK and the real kubernetes client: Poolkeeper's patch scripts
run by run command, a restart, and the node NotReady then Ready on the new kernel and boot id.

A stopped clock: every simulated second passes only when the test advances it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import RunCommandInput
from kubernetes import client, config

from tests.simulator import RG, STOPPED, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

VMSS = "aks-workers-11111111-vmss"
SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "scripts"
START = datetime.fromisoformat("2026-11-02T08:00:00+00:00")


def load(sim: Simulator) -> None:
    sim.load(
        scenario(
            scale_set(VMSS, 2),
            speed=STOPPED,
            latencies={"reboot": 90, "run_command": 20, "restart": 30},
            os_updates=[
                {"date": "2026-11-01T06:00:00Z", "kernel": "6.8.0-1017-azure", "packages": 3},
                {"date": "2026-11-09T06:00:00Z", "kernel": "6.8.0-1019-azure", "packages": 5},
            ],
        )
    )


def core(sim: Simulator) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=sim.info["kubeconfig"]))


def run(sim: Simulator, instance: str, script: str) -> str:
    poller = sim.compute().virtual_machine_scale_set_vms.begin_run_command(
        RG, VMSS, instance, RunCommandInput(command_id="RunShellScript", script=script.splitlines())
    )
    sim.advance(20)
    (status,) = poller.result().value
    assert (status.code, status.level) == ("ProvisioningState/succeeded", "Info")
    return str(status.message)


def os_of(sim: Simulator, instance: str) -> dict[str, Any]:
    found = sim.scale_set_state(VMSS)["instances"]
    return next(i["os"] for i in found if i["instance_id"] == instance)


def ready(node: Any) -> Any:
    return next(c for c in node.status.conditions if c.type == "Ready")


def test_check_install_restart_boots_the_newest_published_kernel(sim: Simulator) -> None:
    load(sim)
    api = core(sim)
    name = f"{VMSS.removesuffix('-vmss')}-vmss000001"
    before = api.read_node(name).status.node_info
    assert before.kernel_version == "6.8.0-1015-azure"

    check = run(sim, "1", (SCRIPTS / "patch_check.sh").read_text())
    assert check.startswith("Enable succeeded: \n[stdout]\n== upgrades\n")
    assert "Inst linux-image-6.8.0-1017-azure (6.8.0-1017.1 Ubuntu:24.04/noble-updates" in check
    assert "3 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\n== kernel\n" in check
    assert f"== kernel\n6.8.0-1015-azure\n== boot\n{before.boot_id}\n" in check
    assert "== reboot\nnot-required\n== done\n" in check
    assert check.endswith("\n[stderr]\n\n")
    assert os_of(sim, "1")["pending_updates"] == 4

    install = run(sim, "1", (SCRIPTS / "patch_install.sh").read_text())
    assert "Setting up linux-image-6.8.0-1017-azure (6.8.0-1017.1) ..." in install
    assert "== reboot\nrequired\n== done\n" in install
    truth = os_of(sim, "1")
    assert truth["reboot_required"] and truth["running_kernel"] == "6.8.0-1015-azure"
    assert truth["installed_kernels"] == ["6.8.0-1015-azure", "6.8.0-1017-azure"]

    vms = sim.compute().virtual_machine_scale_set_vms
    restarted = datetime.fromisoformat(sim.state()["now"])
    restart = vms.begin_restart(RG, VMSS, "1")
    sim.advance(1)
    assert ready(api.read_node(name)).status == "False"
    view = vms.get_instance_view(RG, VMSS, "1")
    assert "PowerState/running" in [s.code for s in view.statuses], "Azure shows running"
    sim.advance(30)
    restart.result()
    assert ready(api.read_node(name)).status == "False", "the restart LRO ends before the boot"
    sim.advance(120)
    node = api.read_node(name)
    info = node.status.node_info
    assert ready(node).status == "True"
    became_ready = ready(node).last_transition_time  # stamped at boot, not when read
    assert abs(became_ready - (restarted + timedelta(seconds=90))) < timedelta(seconds=1)
    assert info.kernel_version == "6.8.0-1017-azure", "the newest published by now"
    assert info.boot_id != before.boot_id and info.machine_id == before.machine_id
    truth = os_of(sim, "1")
    assert not truth["reboot_required"] and truth["pending_updates"] == 0
    assert truth["boot_id"] == info.boot_id
    check = run(sim, "1", (SCRIPTS / "patch_check.sh").read_text())
    assert "== reboot\nnot-required\n" in check


def test_exit_codes_show_only_in_the_output_and_typos_differ_from_limits(sim: Simulator) -> None:
    load(sim)
    failed = run(sim, "0", "set -e\necho start\nfrobnicate\necho never")
    assert failed == (
        "Enable succeeded: \n[stdout]\nstart\n\n[stderr]\n"
        "bash: line 3: frobnicate: command not found\n\n"
    )
    limited = run(sim, "0", "uname -r | tr a-z A-Z")
    assert "pipeline: not simulated" in limited


def test_run_command_faults_and_a_boot_fault(sim: Simulator) -> None:
    load(sim)
    vms = sim.compute().virtual_machine_scale_set_vms
    body = RunCommandInput(command_id="RunShellScript", script=["true"])
    operation = "VirtualMachineScaleSetVMs_RunCommand"
    sim.post("faults", {"operation": operation, "kind": "error", "count": 1, "status": 409})
    with pytest.raises(HttpResponseError) as refused:
        vms.begin_run_command(RG, VMSS, "0", body)
    assert refused.value.status_code == 409
    sim.post("faults", {"operation": operation, "kind": "lro_failed", "count": 1})
    poller = vms.begin_run_command(RG, VMSS, "0", body)
    sim.advance(20)
    with pytest.raises(HttpResponseError):
        poller.result()

    api = core(sim)
    name = f"{VMSS.removesuffix('-vmss')}-vmss000000"
    fault = {"operation": "Boot", "kind": "never_ready", "scale_set": VMSS, "instance": "0"}
    sim.post("faults", fault)
    assert ready(api.read_node(name)).status == "True", "the fault waits for the next boot"
    restart = vms.begin_restart(RG, VMSS, "0")
    sim.advance(3600)
    restart.result()
    assert ready(api.read_node(name)).status == "False"
    truth = os_of(sim, "0")
    assert truth["guest"] == "up" and truth["never_ready"] and truth["boots"] == 2
    assert "true" in run(sim, "0", "true && echo true"), "the VM itself answers"
