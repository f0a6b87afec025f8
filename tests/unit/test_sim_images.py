"""The simulator's gallery rules (`local/sim/images.py`) as table tests, and the world's use of
them (new disks, reimage, boot faults by image) on a stopped clock, no HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from local.sim import images
from local.sim.kube.objects import node_ready
from local.sim.scenario import Fault
from tests.unit.test_sim_guest import Sim
from tests.unit.test_sim_kube_cluster import T0

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute"
DEFINITION = f"{SUB}/galleries/g/images/workers"


def version(
    name: str,
    state: str = "Succeeded",
    *,
    regions: tuple[str, ...] = ("westeurope",),
    excluded: bool = False,
    storage: str = "Standard_LRS",
) -> dict[str, Any]:
    request = {
        "location": "westeurope",
        "properties": {
            "publishingProfile": {
                "targetRegions": [{"name": r} for r in regions],
                "excludeFromLatest": excluded,
                "storageAccountType": storage,
            }
        },
    }
    source = {"id": f"{SUB}/snapshots/s", "properties": {"diskSizeGB": 64}}
    body = images.version_body(f"{DEFINITION}/versions/{name}", request, source, T0)
    body["properties"]["provisioningState"] = state
    return body


def gallery(*versions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        DEFINITION.lower(): {"id": DEFINITION, "type": images.DEFINITION_TYPE, "properties": {}}
    }
    for body in versions:
        found[body["id"].lower()] = body
    return found


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ([version("1.9.0"), version("1.10.0")], "1.10.0"),  # numbers, not text
        ([version("1.0.0"), version("2.0.0", excluded=True)], "1.0.0"),
        ([version("1.0.0"), version("2.0.0", "Creating")], "1.0.0"),  # still replicating
        ([version("1.0.0"), version("2.0.0", "Failed")], "1.0.0"),
        ([version("1.0.0"), version("2.0.0", "Updating")], "2.0.0"),  # e.g. excludeFromLatest
        ([version("1.0.0"), version("2.0.0", regions=("northeurope",))], "1.0.0"),
        ([version("1.0.0"), version("2.0.0", regions=("West Europe",))], "2.0.0"),
        ([version("1.0.0", excluded=True)], None),
    ],
)
def test_latest_is_the_highest_available_version_not_excluded(
    versions: list[dict[str, Any]], expected: str | None
) -> None:
    found = images.latest(versions, "westeurope")
    assert (found["name"] if found else None) == expected


def test_resolve_a_version_a_definition_or_a_marketplace_image() -> None:
    resources = gallery(version("1.0.0"), version("1.1.0", "Creating"))
    marketplace = {"publisher": "microsoft-aks", "offer": "aks", "version": "2026.11.01"}
    assert images.resolve(marketplace, "westeurope", resources) == images.Source(None, "2026.11.01")
    pinned = images.resolve({"id": f"{DEFINITION}/versions/1.0.0"}, "westeurope", resources)
    assert pinned == images.Source(f"{DEFINITION}/versions/1.0.0", "1.0.0")
    assert images.resolve({"id": DEFINITION.upper()}, "westeurope", resources) == pinned
    for reference, code in (
        ({"id": f"{DEFINITION}/versions/1.1.0"}, "GalleryImageNotFound"),  # Creating
        ({"id": f"{DEFINITION}/versions/9.9.9"}, "GalleryImageNotFound"),
        ({"id": f"{SUB}/galleries/g/images/other"}, "GalleryImageNotFound"),
        ({"id": f"{SUB}/images/managed-image"}, "InvalidParameter"),
    ):
        with pytest.raises(images.ImageError) as refused:
            images.resolve(reference, "westeurope", resources)
        assert refused.value.code == code
    with pytest.raises(images.ImageError) as empty:
        images.resolve({"id": DEFINITION}, "westeurope", gallery(version("1.0.0", excluded=True)))
    assert "no image version available for 'latest'" in empty.value.message


def test_replication_progress_per_region_until_done_or_failed() -> None:
    body = version("1.0.0", "Creating", regions=("westeurope", "northeurope"))
    halfway = images.replication(body, T0, T0 + timedelta(minutes=15), 1800)
    assert halfway == {
        "aggregatedState": "InProgress",
        "summary": [
            {"region": "westeurope", "state": "Replicating", "progress": 50},
            {"region": "northeurope", "state": "Replicating", "progress": 50},
        ],
    }
    body["properties"]["provisioningState"] = "Succeeded"
    done = images.replication(body, T0, T0 + timedelta(minutes=30), 1800)
    assert done["aggregatedState"] == "Completed" and done["summary"][0]["progress"] == 100
    body["properties"]["provisioningState"] = "Failed"
    assert images.replication(body, T0, T0, 1800)["aggregatedState"] == "Failed"


def test_zrs_needs_zones_and_a_failed_version_blocks_its_recreation() -> None:
    zonal = ["westeurope"]
    assert images.zrs_refusal(version("1.0.0", storage="Standard_ZRS"), zonal) is None
    lrs_elsewhere = version("1.0.0", regions=("westus",), storage="Standard_LRS")
    assert images.zrs_refusal(lrs_elsewhere, zonal) is None
    refusal = images.zrs_refusal(
        version("1.0.0", regions=("westus",), storage="Standard_ZRS"), zonal
    )
    assert refusal is not None and "ZRS is not supported" in refusal and "'westus'" in refusal
    assert images.recreate_refusal(version("1.0.0")) is None
    blocked = images.recreate_refusal(version("1.0.0", "Failed"))
    assert blocked is not None and (blocked.status, blocked.code) == (409, "OperationNotAllowed")


def test_a_version_update_keeps_its_source_and_date() -> None:
    existing = version("1.0.0", excluded=True)
    included = images.version_update(
        existing, {"properties": {"publishingProfile": {"excludeFromLatest": False}}}
    )
    profile = included["properties"]["publishingProfile"]
    assert profile["excludeFromLatest"] is False and profile["publishedDate"] == T0.isoformat()
    assert existing["properties"]["publishingProfile"]["excludeFromLatest"] is True
    other = {"storageProfile": {"osDiskImage": {"source": {"id": f"{SUB}/snapshots/x"}}}}
    with pytest.raises(images.ImageError) as refused:
        images.version_update(existing, {"properties": other})
    assert refused.value.code == "PropertyChangeNotAllowed"


def capture(sim: Sim, name: str, instance: int = 0) -> str:
    """A Succeeded version holding instance's OS content as it is now (what arm does over HTTP)."""
    scale_set = sim.scale_set
    disk_id = sim.world.disk_id(scale_set, scale_set.instances[instance].os_disk)
    body = version(name)
    body["id"] = f"{SUB}/galleries/g/images/workers/versions/{name}"
    sim.world.resources.setdefault(
        DEFINITION.lower(), {"id": DEFINITION, "type": images.DEFINITION_TYPE, "properties": {}}
    )
    sim.world.resources[body["id"].lower()] = body
    sim.world.copy_content(disk_id, body["id"])
    return str(body["id"])


def act(sim: Sim, action: str, instance: int, seconds: float = 300) -> None:
    op = sim.world.instance_action(
        sim.scale_set, action, [str(instance)], fault=None, operation=action
    )
    sim.advance(seconds)
    assert op.status == "Succeeded", op.error


def test_reimage_keeps_the_instance_image_and_manual_upgrade_takes_the_model() -> None:
    sim = Sim(os_updates=[{"date": T0.isoformat(), "kernel": "6.8.0-1017-azure"}])
    sim.run(0, "apt-get -y dist-upgrade")
    first = capture(sim, "1.0.0")
    sim.world.update_scale_set(
        sim.scale_set, capacity=None, image={"id": first}, tags=None, fault=None, operation="w"
    )
    sim.advance(10)
    act(sim, "manualUpgrade", 1)
    upgraded = sim.scale_set.instances[1]
    assert upgraded.source == images.Source(first, "1.0.0")
    assert upgraded.guest.kernel == "6.8.0-1017-azure"
    sim.run(1, "touch /etc/local-change")
    sim.world.update_scale_set(
        sim.scale_set, capacity=None, image={"id": DEFINITION}, tags=None, fault=None, operation="w"
    )
    sim.advance(10)
    act(sim, "reimage", 1)
    assert upgraded.source.version_id == first, "the instance's own model: the pinned version"
    assert "/etc/local-change" not in sim.world.disk_of(sim.scale_set, upgraded).files
    assert upgraded.model_version != sim.scale_set.model_version
    act(sim, "reimage", 2)
    assert sim.scale_set.instances[2].source.version_id is None, "still the marketplace image"


def test_a_version_that_never_boots_hangs_its_instances_and_only_them() -> None:
    sim = Sim()
    bad = capture(sim, "2.0.0")
    sim.world.add_fault(Fault(operation="Boot", kind="never_boots", image=bad))
    sim.world.update_scale_set(
        sim.scale_set, capacity=4, image={"id": bad}, tags=None, fault=None, operation="w"
    )
    act(sim, "restart", 1)  # still on the base image: boots
    sim.advance(300)
    new = sim.scale_set.instances[3]
    assert (new.provisioning, new.power, new.guest.state) == ("Succeeded", "running", "hung")
    assert ("", new.computer_name) not in sim.cluster.store["nodes"], "its kubelet never starts"
    assert node_ready(sim.node(1))
    act(sim, "manualUpgrade", 1)
    assert sim.scale_set.instances[1].guest.state == "hung" and not node_ready(sim.node(1))


def test_a_new_instance_fails_when_its_model_version_is_gone() -> None:
    sim = Sim()
    pinned = capture(sim, "1.0.0")
    sim.world.update_scale_set(
        sim.scale_set, capacity=None, image={"id": pinned}, tags=None, fault=None, operation="w"
    )
    sim.advance(10)
    del sim.world.resources[pinned.lower()]  # deleted after the model write, as Azure allows
    op = sim.world.update_scale_set(
        sim.scale_set, capacity=4, image=None, tags=None, fault=None, operation="w"
    )
    sim.advance(300)
    new = sim.scale_set.instances[3]
    assert (new.provisioning, new.failure, new.guest.state) == (
        "Failed",
        "GalleryImageNotFound",
        "down",
    )
    assert op.status == "Failed" and op.error is not None
    assert op.error[0] == "GalleryImageNotFound" and pinned in op.error[1]
    assert sim.scale_set.capacity == 4, "Azure keeps the count; the instance stays, Failed"
