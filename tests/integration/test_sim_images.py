"""The Azure simulator's disks, snapshots and Compute Gallery, through the real SDK over HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.mgmt.compute.models import (
    CreationData,
    RunCommandInput,
    Snapshot,
    SnapshotProperties,
)
from kubernetes import client, config

from tests.simulator import RG, STOPPED, SUBSCRIPTION, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

VMSS = "aks-workers-11111111-vmss"
SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "scripts"
GALLERY = "poolkeeper_gallery"
IMAGE = "aks-workers"


def os_disk(compute: Any, instance: str = "0") -> Any:
    return compute.virtual_machine_scale_set_vms.get(RG, VMSS, instance).properties.storage_profile


def snapshot(compute: Any, name: str = "proto-snap") -> Any:
    disk_id = os_disk(compute).os_disk.managed_disk.id
    body = Snapshot(
        location="westeurope",
        properties=SnapshotProperties(
            creation_data=CreationData(create_option="Copy", source_resource_id=disk_id)
        ),
    )
    return compute.snapshots.begin_create_or_update(RG, name, body).result()


def image_definition(compute: Any) -> Any:
    compute.galleries.begin_create_or_update(
        RG, GALLERY, {"location": "westeurope", "properties": {"description": "prototypes"}}
    ).result()
    identifier = {"publisher": "poolkeeper", "offer": "aks-workers", "sku": "ubuntu-2204"}
    properties = {"osType": "Linux", "osState": "Specialized", "hyperVGeneration": "V2"}
    return compute.gallery_images.begin_create_or_update(
        RG,
        GALLERY,
        IMAGE,
        {"location": "westeurope", "properties": properties | {"identifier": identifier}},
    ).result()


def begin_version(compute: Any, source_id: str, version: str = "1.0.0") -> Any:
    storage = {"osDiskImage": {"source": {"id": source_id}}}
    return compute.gallery_image_versions.begin_create_or_update(
        RG,
        GALLERY,
        IMAGE,
        version,
        {"location": "westeurope", "properties": {"storageProfile": storage}},
    )


def test_disks_get_an_instance_os_disk(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()
    profile = os_disk(compute, "1")

    disk = compute.disks.get(RG, profile.os_disk.name)
    assert disk.id == profile.os_disk.managed_disk.id
    assert disk.managed_by.endswith(f"/virtualMachineScaleSets/{VMSS}/virtualMachines/1")
    assert (disk.zones, disk.properties.disk_state, disk.properties.os_type) == (
        ["2"],
        "Attached",
        "Linux",
    )
    assert disk.properties.creation_data.image_reference.id.endswith(
        "/Publishers/microsoft-aks/ArtifactTypes/VMImage/Offers/aks/Skus/aks-ubuntu-2204-gen2"
        "/Versions/2026.11.01"
    )
    with pytest.raises(ResourceNotFoundError):
        compute.disks.get(RG, "no-such-disk")


def test_snapshot_create_get_and_delete_from_an_instance_os_disk(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 1)))
    compute = sim.compute()
    disk = compute.disks.get(RG, os_disk(compute).os_disk.name)

    created = snapshot(compute)
    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.creation_data.source_resource_id == disk.id
    assert created.properties.creation_data.source_unique_id == disk.properties.unique_id
    assert created.properties.disk_size_gb == disk.properties.disk_size_gb
    assert compute.snapshots.get(RG, "proto-snap").id == created.id

    compute.snapshots.begin_delete(RG, "proto-snap").result()
    with pytest.raises(ResourceNotFoundError):
        compute.snapshots.get(RG, "proto-snap")
    missing = disk.id.rsplit("/", 1)[0] + "/no-such-disk"
    body = {"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}}}
    body["properties"]["creationData"]["sourceResourceId"] = missing
    with pytest.raises(ResourceNotFoundError):
        compute.snapshots.begin_create_or_update(RG, "orphan", body)


def test_galleries_image_definitions_and_versions_create_get_list_delete(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 1)))
    compute = sim.compute()
    source = snapshot(compute)
    image = image_definition(compute)

    assert compute.galleries.get(RG, GALLERY).properties.provisioning_state == "Succeeded"
    assert [g.name for g in compute.galleries.list_by_resource_group(RG)] == [GALLERY]
    assert image.properties.identifier.offer == "aks-workers"
    assert [i.name for i in compute.gallery_images.list_by_gallery(RG, GALLERY)] == [IMAGE]

    sim.post("clock", {"speed": STOPPED})  # the version stays Creating until the test advances
    poller = begin_version(compute, source.id)
    pending = compute.gallery_image_versions.get(RG, GALLERY, IMAGE, "1.0.0")
    assert pending.properties.provisioning_state == "Creating"
    assert not poller.done()  # an image version takes 30 simulated minutes
    sim.advance(1800)
    version = poller.result()
    sim.post("clock", {"speed": 600})  # the scenario's again: the deletes finish by themselves
    assert version.properties.provisioning_state == "Succeeded"
    assert version.properties.storage_profile.os_disk_image.source.id == source.id
    got = compute.gallery_image_versions.get(
        RG, GALLERY, IMAGE, "1.0.0", expand="ReplicationStatus"
    )
    assert got.properties.replication_status.aggregated_state == "Completed"
    versions = compute.gallery_image_versions.list_by_gallery_image(RG, GALLERY, IMAGE)
    assert [v.name for v in versions] == ["1.0.0"]

    with pytest.raises(ResourceExistsError) as nested:
        compute.gallery_images.begin_delete(RG, GALLERY, IMAGE)
    assert (nested.value.status_code, nested.value.error.code) == (409, "CannotDeleteResource")
    with pytest.raises(ResourceExistsError):
        compute.galleries.begin_delete(RG, GALLERY)

    compute.gallery_image_versions.begin_delete(RG, GALLERY, IMAGE, "1.0.0").result()
    compute.gallery_images.begin_delete(RG, GALLERY, IMAGE).result()
    compute.galleries.begin_delete(RG, GALLERY).result()
    for get in (
        lambda: compute.gallery_image_versions.get(RG, GALLERY, IMAGE, "1.0.0"),
        lambda: compute.gallery_images.get(RG, GALLERY, IMAGE),
        lambda: compute.galleries.get(RG, GALLERY),
    ):
        with pytest.raises(ResourceNotFoundError):
            get()


def test_a_scale_set_model_on_an_image_version_upgrades_old_and_boots_new_instances(
    sim: Simulator,
) -> None:
    sim.load(scenario(scale_set(VMSS, 2)))
    compute = sim.compute()
    image_definition(compute)
    poller = begin_version(compute, snapshot(compute).id)
    sim.advance(1800)
    version_id = poller.result().id
    ops = compute.virtual_machine_scale_sets

    def model(image: dict[str, str]) -> dict[str, Any]:
        profile = {"storageProfile": {"imageReference": image}}
        return {"properties": {"virtualMachineProfile": profile}}

    with pytest.raises(ResourceNotFoundError) as missing:
        ops.begin_update(RG, VMSS, model({"id": version_id.replace("1.0.0", "9.9.9")}))
    assert missing.value.error.code == "GalleryImageNotFound"
    vmss = ops.begin_update(RG, VMSS, model({"id": version_id})).result()
    assert vmss.properties.virtual_machine_profile.storage_profile.image_reference.id == version_id
    vms = {
        vm.instance_id: vm.properties for vm in compute.virtual_machine_scale_set_vms.list(RG, VMSS)
    }
    assert [vms[i].latest_model_applied for i in "01"] == [False, False]

    ops.begin_update_instances(RG, VMSS, {"instanceIds": ["0"]}).result()
    upgraded = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "0").properties
    assert (upgraded.latest_model_applied, upgraded.storage_profile.image_reference.id) == (
        True,
        version_id,
    )
    disk = compute.disks.get(RG, upgraded.storage_profile.os_disk.name)
    assert disk.properties.creation_data.gallery_image_reference.id == version_id
    assert not compute.virtual_machine_scale_set_vms.get(
        RG, VMSS, "1"
    ).properties.latest_model_applied

    ops.begin_update(RG, VMSS, {"sku": {"capacity": 3}}).result()
    new = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "2").properties
    assert (new.latest_model_applied, new.storage_profile.image_reference.id) == (True, version_id)
    assert sim.scale_set_state(VMSS)["instances"][2]["image"] == {"id": version_id}


KERNEL = "6.8.0-1017-azure"
DEFINITION = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute"
    f"/galleries/{GALLERY}/images/{IMAGE}"
)


def patched_world(sim: Simulator) -> Any:
    """Two nodes on the base image; a kernel and three package updates published yesterday;
    instance 0 patched and rebooted onto the new kernel."""
    sim.load(
        scenario(
            scale_set(VMSS, 2),
            speed=STOPPED,
            latencies={"reboot": 60},
            os_updates=[{"date": "2026-11-01T06:00:00Z", "kernel": KERNEL, "packages": 3}],
        )
    )
    compute = sim.compute()
    run(sim, compute, "0", "apt-get -y dist-upgrade\nsystemctl reboot")
    sim.advance(60)
    assert os_of(sim, "0")["running_kernel"] == KERNEL
    return compute


def finish(sim: Simulator, poller: Any, seconds: float) -> Any:
    sim.advance(seconds)
    return poller.result()


def run(sim: Simulator, compute: Any, instance: str, script: str) -> str:
    body = RunCommandInput(command_id="RunShellScript", script=script.splitlines())
    poller = compute.virtual_machine_scale_set_vms.begin_run_command(RG, VMSS, instance, body)
    return str(finish(sim, poller, 20).value[0].message)


def os_of(sim: Simulator, instance: str) -> dict[str, Any]:
    found = sim.scale_set_state(VMSS)["instances"]
    return next(i["os"] for i in found if i["instance_id"] == instance)


def node(sim: Simulator, instance: str) -> Any:
    api = client.CoreV1Api(config.new_client_from_config(config_file=sim.info["kubeconfig"]))
    name = f"{VMSS.removesuffix('-vmss')}-vmss{int(instance):06d}"
    found = api.read_node(name)
    ready = next(c.status for c in found.status.conditions if c.type == "Ready")
    return found.status.node_info, ready


def publish(sim: Simulator, compute: Any, version: str = "1.0.0", **publishing: Any) -> str:
    """Snapshot instance 0's OS disk now, and a version of it in the gallery (created here)."""
    disk_id = os_disk(compute).os_disk.managed_disk.id
    body = {"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}}}
    body["properties"]["creationData"]["sourceResourceId"] = disk_id
    taken = finish(sim, compute.snapshots.begin_create_or_update(RG, f"snap-{version}", body), 15)
    gallery = compute.galleries.begin_create_or_update(RG, GALLERY, {"location": "westeurope"})
    finish(sim, gallery, 10)
    identifier = {"publisher": "poolkeeper", "offer": "aks-workers", "sku": "ubuntu-2404"}
    properties = {"osType": "Linux", "osState": "Specialized", "identifier": identifier}
    definition = compute.gallery_images.begin_create_or_update(
        RG, GALLERY, IMAGE, {"location": "westeurope", "properties": properties}
    )
    finish(sim, definition, 10)
    storage = {"osDiskImage": {"source": {"id": taken.id}}}
    properties = {"storageProfile": storage, "publishingProfile": publishing}
    poller = compute.gallery_image_versions.begin_create_or_update(
        RG, GALLERY, IMAGE, version, {"location": "westeurope", "properties": properties}
    )
    return str(finish(sim, poller, 1800).id)


def point_model_at(sim: Simulator, compute: Any, image_id: str) -> Any:
    profile = {"storageProfile": {"imageReference": {"id": image_id}}}
    body = {"properties": {"virtualMachineProfile": profile}}
    return finish(sim, compute.virtual_machine_scale_sets.begin_update(RG, VMSS, body), 10)


def test_a_cleaned_capture_boots_new_and_upgraded_instances_patched_with_their_own_identity(
    sim: Simulator,
) -> None:
    compute = patched_world(sim)
    donor = node(sim, "0")[0]
    clean = "cp /dev/null /etc/machine-id\nrm -f /etc/hostname\nsystemctl poweroff"
    run(sim, compute, "0", clean)
    assert sim.scale_set_state(VMSS)["instances"][0]["power_state"] == "stopped"
    publish(sim, compute)
    finish(sim, compute.virtual_machine_scale_set_vms.begin_start(RG, VMSS, "0"), 45)
    restarted, ready = node(sim, "0")
    assert ready == "True" and restarted.machine_id not in ("", donor.machine_id)
    assert os_of(sim, "0")["hostname"] == f"{VMSS.removesuffix('-vmss')}-vmss000000"

    vmss = point_model_at(sim, compute, DEFINITION)  # "latest" of the definition
    assert vmss.properties.virtual_machine_profile.storage_profile.image_reference.id == DEFINITION
    stale = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "1").properties
    assert not stale.latest_model_applied
    assert stale.storage_profile.image_reference.exact_version == "2026.11.01"
    grow = compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 3}})
    finish(sim, grow, 90)
    old_boot = node(sim, "1")[0].boot_id
    upgrade = compute.virtual_machine_scale_sets.begin_update_instances(
        RG, VMSS, {"instanceIds": ["1"]}
    )
    finish(sim, upgrade, 60)

    for instance in ("1", "2"):
        info, ready = node(sim, instance)
        truth = os_of(sim, instance)
        assert (ready, info.kernel_version, truth["reboot_required"]) == ("True", KERNEL, False)
        assert truth["pending_updates"] == 0, "the donor's packages came with the image"
        assert info.machine_id not in ("", donor.machine_id, restarted.machine_id)
        assert truth["hostname"] == f"{VMSS.removesuffix('-vmss')}-vmss00000{instance}"
        vm = compute.virtual_machine_scale_set_vms.get(RG, VMSS, instance).properties
        reference = vm.storage_profile.image_reference
        assert (vm.latest_model_applied, reference.id, reference.exact_version) == (
            True,
            DEFINITION,
            "1.0.0",
        )
    assert node(sim, "1")[0].boot_id != old_boot
    assert node(sim, "1")[0].machine_id != node(sim, "2")[0].machine_id


def test_an_uncleaned_capture_keeps_the_donor_machine_id_and_its_clones_never_get_ready(
    sim: Simulator,
) -> None:
    compute = patched_world(sim)
    version_id = publish(sim, compute)  # a running, uncleaned donor
    run(sim, compute, "0", "touch /etc/written-after-the-snapshot")
    vmss = compute.virtual_machine_scale_sets.get(RG, VMSS)
    profile = {"storageProfile": {"imageReference": {"id": version_id}}}
    body = {"properties": {"virtualMachineProfile": profile}}
    patch = compute.virtual_machine_scale_sets.begin_update(
        RG, VMSS, body, etag=vmss.etag, match_condition=MatchConditions.IfNotModified
    )
    updating = compute.virtual_machine_scale_sets.get(RG, VMSS)
    assert (patch.done(), updating.properties.provisioning_state) == (False, "Updating")
    assert updating.etag != vmss.etag
    with pytest.raises(ResourceModifiedError):  # a write on the old ETag
        compute.virtual_machine_scale_sets.begin_update(
            RG, VMSS, {"tags": {}}, etag=vmss.etag, match_condition=MatchConditions.IfNotModified
        )
    finish(sim, patch, 10)
    grow = compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 3}})
    finish(sim, grow, 90)

    donor, donor_ready = node(sim, "0")
    clone, clone_ready = node(sim, "2")
    assert clone.machine_id == donor.machine_id and (donor_ready, clone_ready) == ("True", "False")
    assert clone.kernel_version == KERNEL
    assert os_of(sim, "2")["guest"] == "up", "the VM runs; only its node stays NotReady"
    answer = run(sim, compute, "2", "[ -f /etc/written-after-the-snapshot ] && echo yes || echo no")
    assert "\nno\n" in answer, "the snapshot holds the disk as it was when it was taken"
    vm = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "2").properties
    assert (
        vm.storage_profile.image_reference.id,
        vm.storage_profile.image_reference.exact_version,
    ) == (
        version_id,
        "1.0.0",
    )


def test_replication_progress_zrs_without_zones_and_a_failed_version_that_blocks_its_name(
    sim: Simulator,
) -> None:
    sim.load(
        scenario(scale_set(VMSS, 1), speed=STOPPED, zonal_regions=["westeurope", "northeurope"])
    )
    compute = sim.compute()
    versions = compute.gallery_image_versions
    publish(sim, compute, "1.0.0")
    snapshot_id = versions.get(RG, GALLERY, IMAGE, "1.0.0").properties.storage_profile
    snapshot_id = snapshot_id.os_disk_image.source.id

    def begin(version: str, storage: str, regions: list[str]) -> Any:
        targets = [{"name": r, "storageAccountType": storage} for r in regions]
        properties = {
            "storageProfile": {"osDiskImage": {"source": {"id": snapshot_id}}},
            "publishingProfile": {"targetRegions": targets, "excludeFromLatest": True},
        }
        body = {"location": "westeurope", "properties": properties}
        return versions.begin_create_or_update(RG, GALLERY, IMAGE, version, body)

    replicating = begin("1.1.0", "Standard_ZRS", ["westeurope", "northeurope"])
    sim.advance(900)
    status = versions.get(RG, GALLERY, IMAGE, "1.1.0", expand="ReplicationStatus").properties
    assert status.provisioning_state == "Creating" and not replicating.done()
    assert status.replication_status.aggregated_state == "InProgress"
    assert [(s.region, s.state, s.progress) for s in status.replication_status.summary] == [
        ("westeurope", "Replicating", 50),
        ("northeurope", "Replicating", 50),
    ]
    assert versions.get(RG, GALLERY, IMAGE, "1.1.0").properties.replication_status is None
    with pytest.raises(HttpResponseError) as failed:
        finish(sim, begin("1.2.0", "Standard_ZRS", ["westeurope", "westus"]), 10)
    assert failed.value.error.code == "InvalidParameter"
    assert "ZRS is not supported" in failed.value.error.message
    finish(sim, replicating, 900)
    listed = {
        v.name: v.properties.provisioning_state
        for v in versions.list_by_gallery_image(RG, GALLERY, IMAGE)
    }
    assert listed == {"1.0.0": "Succeeded", "1.1.0": "Succeeded", "1.2.0": "Failed"}
    with pytest.raises(ResourceExistsError) as blocked:
        begin("1.2.0", "Standard_LRS", ["westeurope", "westus"])
    assert blocked.value.error.code == "OperationNotAllowed"

    finish(sim, versions.begin_delete(RG, GALLERY, IMAGE, "1.2.0"), 10)
    finish(sim, begin("1.2.0", "Standard_LRS", ["westeurope", "westus"]), 1800)
    point_model_at(sim, compute, DEFINITION)
    finish(
        sim, compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 2}}), 90
    )
    vm = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "1").properties
    assert vm.storage_profile.image_reference.exact_version == "1.0.0", "the others are excluded"
    include = {"properties": {"publishingProfile": {"excludeFromLatest": False}}}
    update = versions.begin_update(RG, GALLERY, IMAGE, "1.2.0", include)
    assert versions.get(RG, GALLERY, IMAGE, "1.2.0").properties.provisioning_state == "Updating"
    finish(sim, update, 60)
    finish(sim, compute.virtual_machine_scale_set_vms.begin_reimage(RG, VMSS, "1"), 120)
    vm = compute.virtual_machine_scale_set_vms.get(RG, VMSS, "1").properties
    assert vm.storage_profile.image_reference.exact_version == "1.2.0", "latest, now included"


def test_a_version_that_never_boots_hangs_the_instances_that_boot_it(sim: Simulator) -> None:
    compute = patched_world(sim)
    version_id = publish(sim, compute)
    sim.post("faults", {"operation": "Boot", "kind": "never_boots", "image": version_id.upper()})
    point_model_at(sim, compute, version_id)
    finish(
        sim, compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 3}}), 90
    )
    sim.advance(600)

    view = compute.virtual_machine_scale_set_vms.get_instance_view(RG, VMSS, "2")
    assert (view.hyper_v_generation, view.os_version) == ("V2", "24.04")
    assert [s.code for s in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    assert not view.vm_agent.statuses, "no agent reports from a guest that never booted"
    assert os_of(sim, "2")["guest"] == "hung"
    api = client.CoreV1Api(config.new_client_from_config(config_file=sim.info["kubeconfig"]))
    assert f"{VMSS.removesuffix('-vmss')}-vmss000002" not in [
        n.metadata.name for n in api.list_node().items
    ]
    body = RunCommandInput(command_id="RunShellScript", script=["true"])
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machine_scale_set_vms.begin_run_command(RG, VMSS, "2", body)
    assert refused.value.error.code == "VMAgentStatusCommunicationError"
    assert node(sim, "1")[1] == "True", "an instance still on the old image is untouched"


def test_a_never_ready_fault_with_apply_after_is_ready_for_that_long_then_not_ready(
    sim: Simulator,
) -> None:
    compute = patched_world(sim)
    run(sim, compute, "0", "cp /dev/null /etc/machine-id")  # its clones get their own
    version_id = publish(sim, compute)
    fault = {"operation": "Boot", "kind": "never_ready", "image": version_id, "apply_after": 300}
    sim.post("faults", fault)
    point_model_at(sim, compute, version_id)
    finish(
        sim, compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 3}}), 90
    )
    sim.advance(60)
    assert node(sim, "2")[1] == "True", "Ready at first"
    sim.advance(300)
    assert node(sim, "2")[1] == "False", "then NotReady, the guest still up"
    assert os_of(sim, "2")["guest"] == "up" and os_of(sim, "2")["never_ready"]
    assert node(sim, "1")[1] == "True"


def test_snapshots_are_listed_per_resource_group_with_their_tags(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 1)))
    compute = sim.compute()
    disk_id = os_disk(compute).os_disk.managed_disk.id
    for name, tags in (("a", {"poolkeeper-pool": "web"}), ("b", {})):
        body = {
            "location": "westeurope",
            "tags": tags,
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}},
        }
        compute.snapshots.begin_create_or_update(RG, name, body).result()
    listed = {s.name: s.tags for s in compute.snapshots.list_by_resource_group(RG)}
    assert listed == {"a": {"poolkeeper-pool": "web"}, "b": {}}
    assert list(compute.snapshots.list_by_resource_group("other-rg")) == []


def test_the_clean_up_script_answers_then_powers_off_and_a_fault_can_lose_its_writes(
    sim: Simulator,
) -> None:
    compute = patched_world(sim)
    vms = compute.virtual_machine_scale_set_vms
    script = (SCRIPTS / "image_clean.sh").read_text()
    fault = {"operation": "VirtualMachineScaleSetVMs_RunCommand", "kind": "lost_writes"}
    sim.post("faults", fault | {"instance": "1", "match": r"truncate -s 0 /etc/machine-id"})
    before = {i: os_of(sim, i)["machine_id"] for i in "01"}
    body = RunCommandInput(command_id="RunShellScript", script=script.splitlines())
    pollers = {i: vms.begin_run_command(RG, VMSS, i, body) for i in "01"}
    sim.advance(20)
    answers = {i: p.result().value[0].message for i, p in pollers.items()}

    assert answers["0"] == answers["1"], "a lost write answers exactly like a real one"
    assert "[stdout]\n== agent\n" in answers["0"] and "== poweroff\n== done\n" in answers["0"]
    assert [power(vms.get_instance_view(RG, VMSS, i)) for i in "01"] == ["running"] * 2
    sim.advance(5)
    assert [power(vms.get_instance_view(RG, VMSS, i)) for i in "01"] == ["stopped"] * 2
    assert [node(sim, i)[1] for i in "01"] == ["False", "False"]
    assert os_of(sim, "0")["machine_id"] == "" and os_of(sim, "1")["machine_id"] == before["1"]

    for instance in "01":
        finish(sim, vms.begin_start(RG, VMSS, instance), 45)
        assert node(sim, instance)[1] == "True" and os_of(sim, instance)["hostname"].endswith(
            f"00000{instance}"
        )
    assert node(sim, "0")[0].machine_id not in ("", before["0"]), "a new one for the emptied id"
    assert node(sim, "1")[0].machine_id == before["1"]


def power(view: Any) -> str:
    return next(s.code for s in view.statuses if s.code.startswith("PowerState/")).split("/")[1]


def test_the_api_versions_the_installed_sdk_sends_are_the_researched_ones(sim: Simulator) -> None:
    compute = patched_world(sim)
    publish(sim, compute)
    point_model_at(sim, compute, DEFINITION)
    sent: dict[str, set[str]] = {}
    for call in sim.calls()["calls"]:
        assert call["status"] < 400, call
        family = call["operation"].split("_")[0].removeprefix("GalleryImageVersions")
        family = family.removeprefix("GalleryImages") or "Galleries"
        sent.setdefault(family, set()).add(call["api_version"])
    assert sent == {
        "VirtualMachineScaleSetVMs": {"2026-04-01"},
        "VirtualMachineScaleSets": {"2026-04-01"},
        "Snapshots": {"2026-03-02"},
        "Galleries": {"2026-03-03"},
        "OperationStatus": {"2026-04-01", "2026-03-02", "2026-03-03"},  # each LRO's own
    }
