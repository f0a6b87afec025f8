"""The Azure simulator's Compute ARM behaviour, through the real `azure-mgmt-compute` over HTTPS."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceResponseError,
)

from local.sim import arm, tenancy
from tests.simulator import RG, STOPPED, SUBSCRIPTION, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

VMSS = "aks-workers-11111111-vmss"
OTHER = "aks-system-22222222-vmss"


def instances(sim: Simulator, name: str = VMSS) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in sim.scale_set_state(name)["instances"]}


def power(vm: Any) -> str:
    return next(s.code for s in vm.statuses if s.code.startswith("PowerState/"))


def instance_ids(body: dict[str, Any]) -> dict[str, list[str]]:
    return {"instanceIds": [str(i) for i in body]}


# -- scale sets ------------------------------------------------------------------------------------


def test_scale_set_get_list_and_create_or_update_with_if_match(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 3), scale_set(OTHER, 1)))
    compute = sim.compute()

    vmss = compute.virtual_machine_scale_sets.get(RG, VMSS)
    assert (vmss.sku.capacity, vmss.etag, vmss.properties.orchestration_mode) == (
        3,
        '"1"',
        "Uniform",
    )
    assert vmss.properties.virtual_machine_profile.os_profile.computer_name_prefix == VMSS
    assert sorted(s.name for s in compute.virtual_machine_scale_sets.list(RG)) == [OTHER, VMSS]
    assert {s.name for s in compute.virtual_machine_scale_sets.list_all()} == {OTHER, VMSS}

    vmss.tags = {"team": "platform"}
    updated = compute.virtual_machine_scale_sets.begin_create_or_update(
        RG, VMSS, vmss, etag=vmss.etag, match_condition=MatchConditions.IfNotModified
    ).result()
    assert (updated.tags, updated.etag, updated.sku.capacity) == ({"team": "platform"}, '"2"', 3)

    vmss.sku.capacity = 9  # written with the ETag of a read that is now stale
    with pytest.raises(ResourceModifiedError) as stale:
        compute.virtual_machine_scale_sets.begin_create_or_update(
            RG, VMSS, vmss, etag='"1"', match_condition=MatchConditions.IfNotModified
        )
    assert (stale.value.status_code, stale.value.error.code) == (412, "PreconditionFailed")
    assert sim.scale_set_state(VMSS)["capacity"] == 3
    assert len(instances(sim)) == 3


def test_patch_raising_capacity_creates_instances_creating_then_succeeded(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2), speed=STOPPED))
    compute = sim.compute()
    vmss = compute.virtual_machine_scale_sets.get(RG, VMSS)

    poller = compute.virtual_machine_scale_sets.begin_update(
        RG,
        VMSS,
        {"sku": {"capacity": 4}},
        etag=vmss.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceModifiedError):  # the ETag moved with the write
        compute.virtual_machine_scale_sets.begin_update(
            RG,
            VMSS,
            {"sku": {"capacity": 9}},
            etag=vmss.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    during = compute.virtual_machine_scale_sets.get(RG, VMSS)
    assert (during.sku.capacity, during.properties.provisioning_state) == (4, "Updating")
    vms = {v.instance_id: v for v in compute.virtual_machine_scale_set_vms.list(RG, VMSS)}
    assert [vms[i].properties.provisioning_state for i in "0123"] == [
        "Succeeded", "Succeeded", "Creating", "Creating",
    ]  # fmt: skip
    assert vms["2"].properties.os_profile.computer_name == f"{VMSS}000002"
    assert [vms[i].zones for i in "0123"] == [["1"], ["2"], ["3"], ["1"]]

    sim.advance(85)  # the create latency is 90 simulated seconds
    assert instances(sim)["3"]["provisioning_state"] == "Creating"
    assert not poller.done()
    sim.advance(6)
    assert poller.result().sku.capacity == 4
    view = compute.virtual_machine_scale_set_vms.get_instance_view(RG, VMSS, "3")
    assert (view.statuses[0].code, power(view)) == (
        "ProvisioningState/succeeded",
        "PowerState/running",
    )
    assert (
        compute.virtual_machine_scale_sets.get(RG, VMSS).properties.provisioning_state
        == "Succeeded"
    )


def test_lowering_capacity_by_a_write_deletes_instances_the_default_policy_picks(
    sim: Simulator,
) -> None:
    """The seed's failure: a smaller capacity deletes instances nobody named or drained."""
    sim.load(scenario(scale_set(VMSS, 9), speed=STOPPED))  # zones 1,2,3 round robin: ids 0..8
    compute = sim.compute()
    deleted = compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, VMSS, instance_ids([1, 4])
    )
    sim.advance(61)
    deleted.result()  # zone 2 keeps only 7; zones 1 and 3 keep three each

    poller = compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 5}})
    states = {i: s["provisioning_state"] for i, s in instances(sim).items()}
    assert [i for i, s in states.items() if s == "Deleting"] == ["6", "8"]  # not 7, the highest
    assert (
        compute.virtual_machine_scale_sets.get(RG, VMSS).properties.provisioning_state == "Updating"
    )
    assert not poller.done()  # the write's operation lasts until they are gone
    sim.advance(61)
    poller.result()
    left = [vm.instance_id for vm in compute.virtual_machine_scale_set_vms.list(RG, VMSS)]
    assert left == ["0", "2", "3", "5", "7"]
    assert sim.scale_set_state(VMSS)["capacity"] == 5


# -- instances -------------------------------------------------------------------------------------


def test_vm_list_pages_230_instances_in_order_with_instance_view(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 230)))
    compute = sim.compute()

    vms = list(compute.virtual_machine_scale_set_vms.list(RG, VMSS, expand="instanceView"))
    assert [vm.instance_id for vm in vms] == [str(i) for i in range(230)]
    assert len({vm.properties.vm_id for vm in vms}) == 230
    assert sim.calls()["counters"]["VirtualMachineScaleSetVMs_List"] == 3  # pages of 100
    assert vms[10].properties.os_profile.computer_name == f"{VMSS}00000a"
    assert vms[229].properties.os_profile.computer_name == f"{VMSS}00006d"
    assert vms[229].properties.instance_view.computer_name == f"{VMSS}00006d"
    assert power(vms[0].properties.instance_view) == "PowerState/running"
    plain = next(iter(compute.virtual_machine_scale_set_vms.list(RG, VMSS)))
    assert plain.properties.instance_view is None


def test_vm_get_and_get_instance_view(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()

    vm = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "1")
    assert (vm.instance_id, vm.name, vm.zones) == ("1", f"{VMSS}_1", ["2"])
    assert vm.properties.latest_model_applied is True
    assert vm.properties.storage_profile.os_disk.managed_disk.id.startswith(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/"
    )
    expanded = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "1", expand="instanceView")
    assert power(expanded.properties.instance_view) == "PowerState/running"
    view = compute.virtual_machine_scale_set_vms.get_instance_view(RG, VMSS, "1")
    assert view.computer_name == f"{VMSS}000001"
    assert view.vm_agent.statuses[0].display_status == "Ready"
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machine_scale_set_vms.get(RG, VMSS, "7")


def test_delete_instances_with_and_without_force_deletion(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 4), speed=STOPPED))
    compute = sim.compute()

    forced = compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, VMSS, instance_ids([3]), force_deletion=True
    )
    plain = compute.virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([2]))
    assert sim.scale_set_state(VMSS)["capacity"] == 2  # at once, not when they are gone
    assert {i: s["provisioning_state"] for i, s in instances(sim).items()} == {
        "0": "Succeeded", "1": "Succeeded", "2": "Deleting", "3": "Deleting",
    }  # fmt: skip
    sim.advance(31)  # force deletion takes 30 simulated seconds, a plain delete 60
    forced.result()
    assert sorted(instances(sim)) == ["0", "1", "2"]
    assert not plain.done()
    sim.advance(30)
    plain.result()
    assert sorted(instances(sim)) == ["0", "1"]
    assert [vm.instance_id for vm in compute.virtual_machine_scale_set_vms.list(RG, VMSS)] == [
        "0",
        "1",
    ]


def test_restart_power_off_start_deallocate_and_reimage(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()
    ops = compute.virtual_machine_scale_sets
    view = compute.virtual_machine_scale_set_vms.get_instance_view

    ops.begin_power_off(RG, VMSS, instance_ids([0])).result()
    assert (power(view(RG, VMSS, "0")), power(view(RG, VMSS, "1"))) == (
        "PowerState/stopped",
        "PowerState/running",
    )
    ops.begin_start(RG, VMSS, instance_ids([0])).result()
    assert power(view(RG, VMSS, "0")) == "PowerState/running"
    ops.begin_deallocate(RG, VMSS, instance_ids([0])).result()
    assert power(view(RG, VMSS, "0")) == "PowerState/deallocated"
    ops.begin_restart(RG, VMSS).result()  # no ids: every instance
    assert {power(view(RG, VMSS, i)) for i in "01"} == {"PowerState/running"}

    disk = compute.virtual_machine_scale_set_vms.get(
        RG, VMSS, "0"
    ).properties.storage_profile.os_disk
    ops.begin_reimage(RG, VMSS, instance_ids([0])).result()
    after = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "0").properties
    assert after.storage_profile.os_disk.name != disk.name  # a new OS disk from the image
    assert power(view(RG, VMSS, "0")) == "PowerState/running"
    with pytest.raises(ResourceNotFoundError):
        compute.disks.get(RG, disk.name)


def test_a_restart_of_an_instance_being_deleted_is_refused(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2), speed=STOPPED))  # the delete lasts until advanced
    ops = sim.compute().virtual_machine_scale_sets

    deleting = ops.begin_delete_instances(RG, VMSS, instance_ids([1]))
    assert instances(sim)["1"]["provisioning_state"] == "Deleting"
    with pytest.raises(ResourceExistsError) as marked:
        ops.begin_restart(RG, VMSS, instance_ids([1]))
    assert marked.value.error.code == "OperationNotAllowed"
    assert "marked for deletion" in marked.value.error.message
    sim.advance(61)
    deleting.result()
    assert sorted(instances(sim)) == ["0"]


def test_update_instances_applies_a_changed_image_that_reimage_does_not(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()
    ops = compute.virtual_machine_scale_sets
    newer = {"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-ubuntu-2204-gen2"}
    newer["version"] = "2026.12.01"

    model = {"virtualMachineProfile": {"storageProfile": {"imageReference": newer}}}
    ops.begin_update(RG, VMSS, {"properties": model}).result()
    vms = {
        vm.instance_id: vm.properties for vm in compute.virtual_machine_scale_set_vms.list(RG, VMSS)
    }
    assert [vms[i].latest_model_applied for i in "01"] == [False, False]

    ops.begin_reimage(RG, VMSS, instance_ids([0])).result()
    vm0 = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "0").properties
    assert (vm0.latest_model_applied, vm0.storage_profile.image_reference.version) == (
        False,
        "2026.11.01",
    )

    ops.begin_update_instances(RG, VMSS, instance_ids([0])).result()
    vm0 = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "0").properties
    assert (vm0.latest_model_applied, vm0.storage_profile.image_reference.version) == (
        True,
        "2026.12.01",
    )
    assert not compute.virtual_machine_scale_set_vms.get(
        RG, VMSS, "1"
    ).properties.latest_model_applied
    with pytest.raises(HttpResponseError) as empty:
        ops.begin_update_instances(RG, VMSS, {"instanceIds": []})
    assert (empty.value.status_code, empty.value.error.code) == (400, "InvalidParameter")


def test_run_command_answers_from_the_scenario_table(sim: Simulator) -> None:
    table = [{"match": r"uptime", "stdout": " 08:00:00 up 3 days,  load average: 0.10"}]
    sim.load(scenario(scale_set(VMSS, 2), run_command=table))
    compute = sim.compute()
    run = compute.virtual_machine_scale_set_vms.begin_run_command

    result = run(RG, VMSS, "1", {"commandId": "RunShellScript", "script": ["uptime"]}).result()
    assert "[stdout]\n 08:00:00 up 3 days,  load average: 0.10\n" in result.value[0].message
    other = run(RG, VMSS, "1", {"commandId": "RunShellScript", "script": ["hostname"]}).result()
    # no entry matches: the instance's shell runs the script
    assert "[stdout]\naks-workers-11111111-vmss000001\n\n[stderr]" in other.value[0].message

    compute.virtual_machine_scale_sets.begin_power_off(RG, VMSS, instance_ids([0])).result()
    with pytest.raises(ResourceExistsError):  # 409: the VM is not running
        run(RG, VMSS, "0", {"commandId": "RunShellScript", "script": ["uptime"]})


# -- long-running operations -----------------------------------------------------------------------


def test_delete_resumed_from_a_continuation_token_by_a_new_client(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 3), speed=STOPPED))
    token = (
        sim.compute()
        .virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([2]))
        .continuation_token()
    )
    resumed = sim.compute().virtual_machine_scale_sets.begin_delete_instances(
        RG, VMSS, None, continuation_token=token
    )
    assert not resumed.done()
    sim.advance(61)
    assert resumed.result() is None
    assert sorted(instances(sim)) == ["0", "1"]


def test_a_failed_lro_raises_with_the_arm_error_code_and_puts_instances_back(
    sim: Simulator,
) -> None:
    sim.load(scenario(scale_set(VMSS, 3)))
    fault = {"operation": "VirtualMachineScaleSets_DeleteInstances", "kind": "lro_failed"}
    sim.post("faults", fault | {"error": "CannotAllocateRemainingVMsInAvailabilitySet"})
    compute = sim.compute()

    poller = compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, VMSS, instance_ids([1, 2])
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert failed.value.error.code == "CannotAllocateRemainingVMsInAvailabilitySet"
    assert poller.status() == "Failed"
    assert {i: s["provisioning_state"] for i, s in instances(sim).items()} == dict.fromkeys(
        "012", "Succeeded"
    )
    assert compute.virtual_machine_scale_sets.get(RG, VMSS).sku.capacity == 3


# -- faults ----------------------------------------------------------------------------------------


def test_cannot_allocate_error_leaves_every_instance_and_the_capacity(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 4)))
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_DeleteInstances",
            "scale_set": VMSS,
            "kind": "error",
            "error": "CannotAllocateRemainingVMsInAvailabilitySet",
            "status": 409,
            "count": 1,
        },
    )
    compute = sim.compute()

    with pytest.raises(ResourceExistsError) as refused:
        compute.virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([1, 3]))
    assert refused.value.status_code == 409
    assert refused.value.error.code == "CannotAllocateRemainingVMsInAvailabilitySet"
    assert f"VM '{VMSS}_1'" in refused.value.error.message
    assert compute.virtual_machine_scale_sets.get(RG, VMSS).sku.capacity == 4
    vms = list(compute.virtual_machine_scale_set_vms.list(RG, VMSS, expand="instanceView"))
    assert [(vm.instance_id, vm.properties.provisioning_state) for vm in vms] == [
        (str(i), "Succeeded") for i in range(4)
    ]
    assert {power(vm.properties.instance_view) for vm in vms} == {"PowerState/running"}

    # the fault was good for one call: the retry deletes
    compute.virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([3])).result()
    assert sorted(instances(sim)) == ["0", "1", "2"]


def test_a_partial_delete_removes_some_leaves_the_rest_and_fails(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 4)))
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_DeleteInstances",
            "kind": "partial_delete",
            "deleted": 1,
            "error": "InternalExecutionError",
        },
    )
    compute = sim.compute()

    poller = compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, VMSS, instance_ids([0, 1, 2])
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert failed.value.error.code == "InternalExecutionError"
    left = {
        vm.instance_id: vm.properties.provisioning_state
        for vm in compute.virtual_machine_scale_set_vms.list(RG, VMSS)
    }
    assert left == dict.fromkeys("123", "Succeeded")
    assert compute.virtual_machine_scale_sets.get(RG, VMSS).sku.capacity == 3


def test_a_timeout_fault_times_the_client_out_and_changes_nothing(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 3)))
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_DeleteInstances",
            "kind": "timeout",
            "seconds": 20,
            "count": 1,
        },
    )
    impatient = sim.compute(retry_total=0, read_timeout=0.3)

    began = time.monotonic()
    with pytest.raises(ServiceResponseError):
        impatient.virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([0]))
    # The client's read timeout ended it, not the fault's 504 (the bound is loose: a loaded
    # machine took 1.3 s for the 0.3 s timeout).
    assert time.monotonic() - began < 10
    assert sim.scale_set_state(VMSS)["capacity"] == 3
    assert {i: s["provisioning_state"] for i, s in instances(sim).items()} == dict.fromkeys(
        "012", "Succeeded"
    )


def test_a_call_answered_after_a_reset_is_logged_in_the_scenario_that_received_it(
    sim: Simulator,
) -> None:
    # A timeout fault's 504 once landed among the next test's calls, as a second DeleteInstances
    # (stop 27): the call log is the scenario's that received the request, not the one loaded
    # when it is answered.
    hang = {
        "operation": "VirtualMachineScaleSets_DeleteInstances",
        "kind": "timeout",
        "seconds": 1,
        "count": 1,
    }
    sim.load(scenario(scale_set(VMSS, 3)))
    sim.post("faults", hang)
    with pytest.raises(ServiceResponseError):
        sim.compute(
            retry_total=0, read_timeout=0.2
        ).virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, instance_ids([0]))
    sim.load(scenario(scale_set(VMSS, 3)))
    sim.post("faults", hang)
    # Sent after the first, with the same hang: the loop answers the first one before this one.
    with pytest.raises(HttpResponseError) as answered:
        sim.compute(retry_total=0).virtual_machine_scale_sets.begin_delete_instances(
            RG, VMSS, instance_ids([1])
        )
    assert answered.value.status_code == 504
    deletes = [c for c in sim.calls()["calls"] if c["operation"] == hang["operation"]]
    assert [c["status"] for c in deletes] == [504]
    assert sim.scale_set_state(VMSS)["capacity"] == 3


def test_faults_are_bounded_by_count_and_window_and_scoped_to_a_scale_set(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 1), scale_set(OTHER, 1), speed=STOPPED))
    get = "VirtualMachineScaleSets_Get"
    sim.post("faults", {"operation": get, "scale_set": VMSS, "status": 500, "count": 2})
    window = {"start": "2026-11-02T08:10:00Z", "end": "2026-11-02T08:20:00Z"}
    sim.post(
        "faults", {"operation": get, "scale_set": OTHER, "error": "OperationNotAllowed"} | window
    )
    compute = sim.compute(retry_total=0)

    def outcome(name: str) -> str:
        try:
            compute.virtual_machine_scale_sets.get(RG, name)
        except HttpResponseError as error:
            return f"{error.status_code} {error.error.code}"
        return "ok"

    assert [outcome(VMSS) for _ in range(3)] == [
        "500 InternalExecutionError", "500 InternalExecutionError", "ok",
    ]  # fmt: skip
    assert outcome(OTHER) == "ok"  # before its window
    sim.advance(600)
    assert (outcome(OTHER), outcome(VMSS)) == ("409 OperationNotAllowed", "ok")
    assert outcome(OTHER) == "409 OperationNotAllowed"  # no count: every call in the window
    sim.advance(600)
    assert outcome(OTHER) == "ok"


# -- throttling ------------------------------------------------------------------------------------

BUDGETS = [
    {
        "family": "HighCostGetVMScaleSet3Min",
        "operations": ["VirtualMachineScaleSets_Get"],
        "limit": 2,
        "window_seconds": 600,  # one wall second at 600x
    },
    {
        "family": "HighCostGetVMScaleSet30Min",
        "operations": ["VirtualMachineScaleSets_Get"],
        "limit": 900,
        "window_seconds": 1800,
    },
]


def test_a_throttled_get_is_429_with_retry_after_and_compute_rate_limit_header(
    sim: Simulator,
) -> None:
    sim.load(scenario(scale_set(VMSS, 1)))
    sim.post("throttling", BUDGETS)
    compute = sim.compute(retry_total=0)
    headers: list[dict[str, str]] = []

    def keep(response: Any, *_: Any) -> None:
        headers.append(dict(response.http_response.headers))

    compute.virtual_machine_scale_sets.get(RG, VMSS, cls=keep)
    assert headers[0]["x-ms-ratelimit-remaining-resource"] == (
        "Microsoft.Compute/HighCostGetVMScaleSet3Min;1,Microsoft.Compute/HighCostGetVMScaleSet30Min;899"
    )
    compute.virtual_machine_scale_sets.get(RG, VMSS)
    with pytest.raises(HttpResponseError) as throttled:
        compute.virtual_machine_scale_sets.get(RG, VMSS)
    error = throttled.value
    assert (error.status_code, error.error.code) == (429, "OperationNotAllowed")
    assert error.response.headers["Retry-After"] == "1"
    assert error.response.headers["x-ms-ratelimit-remaining-resource"] == (
        "Microsoft.Compute/HighCostGetVMScaleSet3Min;0,Microsoft.Compute/HighCostGetVMScaleSet30Min;898"
    )
    assert error.error.details[0].code == "TooManyRequests"
    assert error.error.details[0].target == "HighCostGetVMScaleSet3Min"


def test_the_sdk_retry_honours_retry_after_and_then_succeeds(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 1)))
    sim.post("throttling", BUDGETS)
    compute = sim.compute()  # the SDK's default retry policy
    compute.virtual_machine_scale_sets.get(RG, VMSS)
    compute.virtual_machine_scale_sets.get(RG, VMSS)

    began = time.monotonic()
    assert compute.virtual_machine_scale_sets.get(RG, VMSS).name == VMSS
    # It waited the Retry-After second (no upper bound: a loaded machine may take longer).
    assert time.monotonic() - began > 0.9
    gets = [
        c["status"] for c in sim.calls()["calls"] if c["operation"] == "VirtualMachineScaleSets_Get"
    ]
    assert gets == [200, 200, 429, 200]


# -- identity and the call log ---------------------------------------------------------------------


def test_default_credential_gets_a_token_and_arm_refuses_other_tokens(sim: Simulator) -> None:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    from azure.mgmt.compute import ComputeManagementClient

    sim.load(scenario(scale_set(VMSS, 1)))
    credential = DefaultAzureCredential()
    token = credential.get_token("https://management.azure.com/.default")
    assert token.expires_on > time.time() + 3000
    compute = ComputeManagementClient(
        credential, SUBSCRIPTION, base_url=sim.info["arm"], connection_verify=sim.info["ca_cert"]
    )
    assert compute.virtual_machine_scale_sets.get(RG, VMSS).name == VMSS

    url = (
        f"{sim.info['arm']}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers"
        f"/Microsoft.Compute/virtualMachineScaleSets/{VMSS}?api-version=2026-04-01"
    )

    def answer(authorization: str | None) -> tuple[int, str]:
        headers = {"Authorization": authorization} if authorization else {}
        got = requests.get(url, headers=headers, verify=sim.info["ca_cert"], timeout=10)
        return got.status_code, got.json().get("error", {}).get("code", "")

    assert answer(f"Bearer {token.token}") == (200, "")
    assert answer(None) == (401, "AuthenticationFailed")
    forged = token.token.rsplit(".", 1)[0] + ".c2lnbmVkLWJ5LXNvbWVvbmUtZWxzZQ"
    assert answer(f"Bearer {forged}") == (401, "InvalidAuthenticationToken")
    vault = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token
    assert answer(f"Bearer {vault}") == (401, "InvalidAuthenticationTokenAudience")
    metrics = credential.get_token("https://metrics.monitor.azure.com/.default").token
    assert answer(f"Bearer {metrics}") == (401, "InvalidAuthenticationTokenAudience")


def test_the_call_log_counts_each_operation_id(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()
    compute.virtual_machine_scale_sets.get(RG, VMSS)
    compute.virtual_machine_scale_sets.get(RG, VMSS)
    list(compute.virtual_machine_scale_set_vms.list(RG, VMSS))
    compute.virtual_machine_scale_sets.begin_restart(RG, VMSS, instance_ids([0])).result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machine_scale_sets.get(RG, "missing-vmss")

    log = sim.calls()
    counters = log["counters"]
    assert counters["VirtualMachineScaleSets_Get"] == 3
    assert counters["VirtualMachineScaleSetVMs_List"] == 1
    assert counters["VirtualMachineScaleSets_Restart"] == 1
    assert counters["OperationStatus"] >= 1
    assert sum(counters.values()) == log["total"] == len(log["calls"])
    gets = [c["status"] for c in log["calls"] if c["operation"] == "VirtualMachineScaleSets_Get"]
    assert gets == [200, 200, 404]


def test_malformed_requests_get_arm_errors_not_crashes(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    token = sim.credential().get_token("https://management.azure.com/.default").token
    base = (
        f"{sim.info['arm']}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers"
        f"/Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
    )
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, url: str, **kwargs) -> tuple[int, str]:
        got = requests.request(
            method, url, headers=headers, verify=sim.info["ca_cert"], timeout=10, **kwargs
        )
        return got.status_code, got.json()["error"]["code"]

    api = "?api-version=2026-04-01"
    assert call("GET", f"{base}/virtualMachines{api}&$skiptoken=abc") == (400, "InvalidParameter")
    image = {"properties": {"virtualMachineProfile": {"storageProfile": {"imageReference": "x"}}}}
    assert call("PATCH", f"{base}{api}", json=image) == (400, "InvalidParameter")
    assert call("PATCH", f"{base}{api}", json=[1, 2]) == (400, "InvalidRequestContent")
    assert sim.scale_set_state(VMSS)["capacity"] == 2
    statuses = [c["status"] for c in sim.calls()["calls"]]
    assert statuses[-3:] == [400, 400, 400]  # recorded in the call log too


# -- hostile bodies and names ---------------------------------------------------------------------

DEPTH_BOMB = b"[" * 5000 + b"]" * 5000
NOT_UTF8 = b'{"location": "westeurope", "tags": {"a": "\xff\xfe"}}'
# Bodies of the wrong shape, each somewhere a route reads: every one is ARM's 4xx, never a 500.
MISSHAPEN: list[Any] = [
    [1, 2],
    "x",
    7,
    {"properties": "x"},
    {"location": 5, "tags": [1]},
    {"tags": {"team": {"nested": 1}}},
    {"sku": 7, "properties": {"virtualMachineProfile": {"storageProfile": 3}}},
    {"properties": {"virtualMachineProfile": {"storageProfile": {"imageReference": {"id": 5}}}}},
    {"properties": {"creationData": "x", "identifier": 3, "description": []}},
    {"properties": {"creationData": {"createOption": "Copy", "sourceResourceId": 9}}},
    {"properties": {"storageProfile": {"source": {"id": 7}}}},
    {"properties": {"storageProfile": {"osDiskImage": []}, "publishingProfile": [1]}},
    {"properties": {"publishingProfile": {"targetRegions": [1, {"name": 5}]}}},
    {"properties": {"publishingProfile": {"targetRegions": [{"storageAccountType": {}}]}}},
    {"instanceIds": [{"a": 1}], "script": "reboot", "commandId": []},
    {"resourceids": [[1]], "query": 5, "timespan": {}},
]


def _arm(sim: Simulator, audience: str = "https://management.azure.com") -> Any:
    token = sim.credential().get_token(f"{audience}/.default").token

    def send(method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        return requests.request(
            method,
            f"{sim.info['arm']}{path}",
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            verify=sim.info["ca_cert"],
            timeout=30,
        )

    return send


def _body_routes(sim: Simulator) -> list[tuple[str, str, str]]:
    """Every route that takes a body, as (audience, method, path): those of ARM (Compute and
    resource groups, with both a resource that exists and one that does not) and Monitor's."""
    arm = _arm(sim)
    sub = f"/subscriptions/{SUBSCRIPTION}"
    compute = f"{sub}/resourceGroups/{RG}/providers/Microsoft.Compute"
    vmss = f"{compute}/virtualMachineScaleSets/{VMSS}"
    gallery = f"{compute}/galleries/hostile"
    api = "?api-version=2026-04-01"
    disk = arm("GET", f"{vmss}/virtualMachines/0{api}").json()
    disk_id = disk["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
    snapshot = {"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}}}
    snapshot["properties"]["creationData"]["sourceResourceId"] = disk_id
    definition = {"osType": "Linux", "osState": "Specialized"}
    definition["identifier"] = {"publisher": "p", "offer": "o", "sku": "s"}
    version = {"storageProfile": {"osDiskImage": {"source": {"id": f"{compute}/snapshots/snap"}}}}
    for method, path, body in (
        ("PUT", f"{compute}/snapshots/snap", snapshot),
        ("PUT", gallery, {"location": "westeurope"}),
        ("PUT", f"{gallery}/images/def", {"location": "westeurope", "properties": definition}),
        ("PUT", f"{gallery}/images/def/versions/1.0.0", {"properties": version}),
    ):
        assert arm(method, path + api, body).status_code < 300, path
    sim.advance(7200)  # every one of them done
    arm_routes = [
        ("PUT", f"{sub}/resourcegroups/hostile"),
        ("PUT", vmss),
        ("PATCH", vmss),
        *(
            ("POST", f"{vmss}/{action}")
            for action in ("delete", "restart", "poweroff", "start", "deallocate", "reimage")
        ),
        ("POST", f"{vmss}/manualupgrade"),
        ("POST", f"{vmss}/virtualMachines/0/runCommand"),
        *(
            ("POST", f"{vmss}/virtualMachines/0/{action}")
            for action in ("restart", "powerOff", "start", "deallocate", "reimage")
        ),
        ("PUT", f"{compute}/snapshots/snap"),
        ("PUT", f"{compute}/snapshots/other"),
        ("PUT", gallery),
        ("PUT", f"{gallery}/images/def"),
        ("PUT", f"{gallery}/images/def/versions/1.0.0"),
        ("PUT", f"{gallery}/images/def/versions/2.0.0"),
        ("PATCH", f"{gallery}/images/def/versions/1.0.0"),
    ]
    monitor = [
        ("https://metrics.monitor.azure.com", "POST", f"{sub}/metrics:getBatch"),
        ("https://api.loganalytics.io", "POST", "/v1/workspaces/w/query"),
    ]
    return [("https://management.azure.com", m, p) for m, p in arm_routes] + monitor


ARM = "https://management.azure.com"
CODES = {  # what each service calls a body it cannot read
    ARM: "InvalidRequestContent",
    "https://metrics.monitor.azure.com": "BadRequest",
    "https://api.loganalytics.io": "BadArgumentError",
}


def _operation(method: str, path: str) -> str:
    found = arm.resolve(method, path)
    route = tenancy.resolve(method, path)
    assert found is not None or route is not None, path
    return found[0] if found is not None else route.operation  # type: ignore[union-attr]


def test_hostile_bodies_get_arm_400s_on_every_route_that_takes_a_body(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    routes = _body_routes(sim)
    takes_body = {
        (method, operation)
        for method, operation in [(m, op) for m, _, op, _ in arm.ROUTES]
        + [(r.method, r.operation) for r in tenancy.ROUTES]
        if method in ("PUT", "PATCH", "POST")
    }
    probed = {(m, _operation(m, p)) for audience, m, p in routes if audience == ARM}
    assert takes_body <= probed, f"not probed: {takes_body - probed}"
    query = "?api-version=2026-04-01&metricnamespace=Microsoft.Compute/virtualMachineScaleSets"
    before = sim.state()
    for audience, method, path in routes:
        send = _arm(sim, audience)
        for raw in (DEPTH_BOMB, NOT_UTF8, b"{not json"):
            answer = send(method, path + query, raw=raw)
            assert (answer.status_code, answer.json()["error"]["code"]) == (400, CODES[audience]), (
                method,
                path,
                raw[:12],
                answer.text,
            )
    after = sim.state()
    assert (after["scale_sets"], after["resources"]) == (before["scale_sets"], before["resources"])
    for audience, method, path in routes:
        send = _arm(sim, audience)
        for body in MISSHAPEN:  # refused, or (an action ignoring what it does not read) taken
            answer = send(method, path + query, body)
            assert answer.status_code < 500, (method, path, body, answer.text)
            if answer.status_code >= 400:
                assert answer.json()["error"]["code"], (method, path, body, answer.text)


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("a" * 90, 201, None),
        ("MC_rg-(test)_aks.westeurope", 201, None),
        ("a" * 91, 400, "InvalidResourceGroup"),
        ("trailing.", 400, "InvalidResourceGroup"),
        ("with space", 400, "InvalidResourceGroup"),
        ("star*", 400, "InvalidResourceGroup"),
    ],
)
def test_resource_group_names_follow_arm_rules(
    sim: Simulator, name: str, status: int, code: str | None
) -> None:
    send = _arm(sim)
    path = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{name}?api-version=2022-09-01"
    created = send("PUT", path, {"location": "westeurope"})
    assert created.status_code == status, created.text
    if code is not None:
        assert created.json()["error"]["code"] == code
        assert send("GET", path).status_code == 400  # ARM refuses the name whatever the verb
        assert not any(g.endswith(f"/{name}".lower()) for g in sim.state()["resources"])
    else:
        assert send("GET", path).json()["name"] == name


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("snapshots/snap.", "InvalidResourceName"),  # ends with a period
        ("snapshots/" + "s" * 81, "InvalidResourceName"),
        ("snapshots/-snap", "InvalidResourceName"),
        ("galleries/my-gallery", "InvalidResourceName"),  # no hyphens in a gallery's name
        ("galleries/g.", "InvalidResourceName"),
        ("galleries/ok_gallery/images/def_", "InvalidResourceName"),
        ("galleries/ok_gallery/images/def/versions/1.0", "InvalidParameter"),
        ("galleries/ok_gallery/images/def/versions/1.0.2147483648", "InvalidParameter"),
        ("virtualMachineScaleSets/vmss.", "InvalidResourceName"),
    ],
)
def test_compute_resources_are_refused_under_names_azure_does_not_take(
    sim: Simulator, path: str, code: str
) -> None:
    send = _arm(sim)
    url = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/{path}"
        "?api-version=2026-04-01"
    )
    answer = send("PUT", url, {"location": "westeurope"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, code), answer.text
    assert sim.state()["resources"] == []


def test_the_admin_api_answers_400_to_bodies_it_cannot_read(sim: Simulator) -> None:
    for path in ("scenario", "faults", "throttling", "clock", "load"):
        for raw in (DEPTH_BOMB, NOT_UTF8):
            answer = requests.post(f"{sim.admin}/{path}", data=raw, timeout=10)
            assert answer.status_code == 400, (path, raw[:12], answer.text)
            assert "error" in answer.json()
