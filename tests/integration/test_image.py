"""Image jobs (issue 11) end to end: the product's runner against Azurite and the simulator, whose
snapshots and image versions carry the OS of the disk they came from.

A pool is patched first (the story: patched nodes are the donors), then an image job captures one,
publishes a version, proves it on a canary and gives everything back; afterwards a plain scale-up
boots patched. The failure paths end with the previous image and the canary gone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from shared.adapters.kube import CLAIM_ANNOTATION, SCALE_DOWN_DISABLED
from shared.adapters.ledger import FINAL, JobRecord
from tests.jobs_support import WorkerKilled
from tests.simulator import Simulator
from tests.truth_support import World, make_world

VMSS = "aks-image-31313131-vmss"
OLD_KERNEL, NEW_KERNEL = "6.8.0-1015-azure", "6.8.0-1017-azure"
OS = {"name": "Ubuntu 24.04.1 LTS", "kernel": OLD_KERNEL, "packages": {"openssl": "3.0.13-1"}}
UPDATES = [{"date": "2026-11-01T06:00:00Z", "kernel": NEW_KERNEL, "packages": 3, "security": True}]
KINDS = ("image", "scale", "patch")


def _world(
    sim: Simulator,
    azurite: Any,
    *,
    capacity: int = 3,
    image: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    patched: bool = True,
    **extra: Any,
) -> World:
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=capacity,
        min_nodes=2,
        max_nodes=capacity + 3,
        replicas=0,
        max_unavailable=1,
        workloads={
            "daemonsets": [{"name": "kube-proxy"}],
            "deployments": [
                {
                    "name": "web",
                    "replicas": capacity,
                    "node_selector": {"elastisys.io/node-group": "image"},
                    "termination_grace_seconds": 10,
                    "pdb": {"min_available": capacity - 1},
                }
            ],
        },
        pool_extra={
            "patch": {"soak_minutes": 1, "ready_timeout_minutes": 10},
            "image": {"min_ready_minutes": 5, "replicas": 1} | (image or {}),
        },
        settings={
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            "POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
        },
        os=OS,
        os_updates=UPDATES,
        faults=faults or [],
        **extra,
    )
    world.sim.advance(2 * 3600)  # an hour of usage history for the patch's headroom check
    assert world.run("reconcile").status == "done"
    if patched:
        record = world.run("patch", timeout=120)
        assert record.status == "done", (record.error, record.outcome)
    # Unpatched, the marketplace image counts as older than max_image_age: any node may donate.
    world.sim.advance(15 * 60)  # the nodes have been Ready for longer than min_ready
    return world


def _drive(
    world: World,
    job_id: str,
    *,
    until: Callable[[JobRecord], bool] = lambda r: r.status in FINAL,
    timeout: float = 120,
) -> JobRecord:
    """Deliver image jobs and the scale and patch jobs they start, until `until` (the end)."""
    return world.drive(KINDS, job_id, until, timeout=timeout)


def _run(world: World, params: dict[str, Any] | None = None, **kw: Any) -> JobRecord:
    return _drive(world, world.send("image", params), **kw)


def _instances(sim: Simulator) -> dict[str, dict[str, Any]]:
    scale_set = next(s for s in sim.state()["scale_sets"] if s["name"] == VMSS)
    return {i["computer_name"]: i for i in scale_set["instances"]}


def _model_image(world: World) -> str | None:
    return world.pump.services.scale_sets.read(world.pool["vmss_id"]).model_image.get("id")


def _node_back(world: World, name: str) -> None:
    node = world.pump.services.kube.node(name)
    assert node is not None and node.ready and not node.unschedulable, node
    assert CLAIM_ANNOTATION not in node.annotations
    assert SCALE_DOWN_DISABLED not in node.annotations


def test_a_patched_donor_is_captured_proven_on_a_canary_and_new_nodes_boot_patched(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    before = _instances(sim)
    record = _run(world)
    assert record.status == "done", (record.error, record.outcome, record.steps)
    outcome = record.outcome
    donor = outcome["donor"]["name"]
    assert outcome["donor"]["kernel"] == NEW_KERNEL
    _node_back(world, donor)
    # Out of service from the cordon to its own Ready, given back before the version replicates
    # (how long that takes is bench/image_pipeline.py's question: this clock jumps per delivery).
    assert outcome["donor"]["out_of_service"] > 0
    steps = [entry["step"] for entry in record.steps]
    assert steps.index("replication") > max(i for i, s in enumerate(steps) if s == "donor_back"), (
        steps
    )
    version_id = outcome["version"]
    assert _model_image(world) == version_id
    canary = outcome["canary"]
    assert canary["proven"] and canary["removed"] == "drained and deleted", canary
    assert canary["node"] not in before
    # Everything given back: the canary gone, no snapshot left, the version in "latest".
    after = _instances(sim)
    assert set(after) == set(before)
    assert sim.state().get("snapshots", []) == [] or all(
        "poolkeeper" not in s.get("name", "") for s in sim.state().get("snapshots", [])
    )
    lineage = world.tables.image_lineage(world.pool["name"])
    (line,) = lineage.values()
    assert line["status"] == "in use" and line["canary"]["result"] == "passed", line
    assert line["source_node"] == donor and line["kernel"] == NEW_KERNEL
    world.assert_truth()

    # The point of it all: a node the autoscaler adds now boots patched.
    grown = world.run("scale", {"delta": 1}, timeout=60)
    assert grown.status == "done", grown.error
    (new,) = set(_instances(sim)) - set(before)
    os = _instances(sim)[new]["os"]
    assert os["running_kernel"] == NEW_KERNEL
    assert not os["reboot_required"] and os["pending_updates"] == 0
    assert os["machine_id"] not in {i["os"]["machine_id"] for n, i in after.items()}
    shown = world.tables.pool_status(world.pool["name"])["instances"]  # GET /api/pools/{name}
    assert shown[_instances(sim)[new]["instance_id"]]["image"] == version_id.rsplit("/", 1)[1]
    world.assert_truth()


def test_dry_run_names_the_donor_and_the_steps_and_changes_nothing(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False)
    calls = len(sim.calls()["calls"])
    record = _run(world, {"dry_run": True})
    assert record.status == "done" and record.outcome["dry_run"]
    assert record.outcome["donor"].startswith(VMSS)
    assert any("snapshot" in step for step in record.outcome["steps"])
    writes = [c for c in sim.calls()["calls"][calls:] if c.get("method") not in ("GET", None)]
    assert writes == []
    assert world.tables.image_lineage(world.pool["name"]) == {}


def test_no_donor_names_each_nodes_reason(sim: Simulator, azurite: Any) -> None:
    world = _world(sim, azurite, patched=False, image={"min_ready_minutes": 24 * 60})
    record = _run(world)
    assert record.status == "done" and record.outcome["published"] is None
    assert set(record.outcome["excluded"]) == set(_instances(sim))
    assert all("less than 1440 min" in why for why in record.outcome["excluded"].values())


@pytest.mark.parametrize("fault", ["lost_writes", "never_boots"])
def test_a_bad_image_fails_its_canary_and_is_rolled_back(
    sim: Simulator, azurite: Any, fault: str
) -> None:
    world = _world(sim, azurite, patched=False)
    before = _instances(sim)
    previous = _model_image(world)
    if fault == "lost_writes":  # the clean-up "succeeds" but the image keeps its machine-id
        sim.post(
            "faults",
            {
                "operation": "VirtualMachineScaleSetVMs_RunCommand",
                "kind": "lost_writes",
                "match": "truncate -s 0 /etc/machine-id",
            },
        )
    job_id = world.send("image")
    if fault == "never_boots":  # every instance booting the new version hangs
        waiting = _drive(world, job_id, until=lambda r: "names" in r.state)
        version_id = waiting.state["names"]["version_id"]
        sim.post("faults", {"operation": "Boot", "kind": "never_boots", "image": version_id})

        # The canary never registers a node: repair leaves it to the image job meanwhile.
        def adding(record: JobRecord) -> bool:
            scale_up = world.tables.job(f"{record.id}.canary-add")
            return scale_up is not None and scale_up.step == "await_ready"

        _drive(world, job_id, until=adding)
        sim.advance(11 * 60)
        reconciled = world.run("reconcile")
        assert "is proving a new image on a canary" in json.dumps(reconciled.outcome), (
            reconciled.outcome
        )
        # Meanwhile the autoscaler (here: a scale job) adds a node: it boots the bad version too.
        world.send("scale", {"delta": 1})
    record = _drive(world, job_id, timeout=180)
    assert record.status == "failed", record.outcome
    assert "canary failed" in record.error
    assert record.outcome["rolled_back"]
    assert _model_image(world) == previous
    assert set(_instances(sim)) == set(before), "the canary (and any stray) is gone"
    if fault == "never_boots":
        strays = record.outcome["strays"]
        assert len(strays["instances"]) == 1 and strays["strays-instances"] == "removed", strays
    (line,) = world.tables.image_lineage(world.pool["name"]).values()
    assert line["status"] == "rolled back" and line["canary"]["result"] == "failed"
    queue = world.pump.services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]
    told = world.pump.services.queues._queue(queue).peek_messages(max_messages=32)
    kinds = [json.loads(m.content)["kind"] for m in told]
    assert kinds.count("image_failed") == 1, kinds
    _node_back(world, record.outcome["donor"]["name"])
    world.assert_truth()


def test_a_worker_killed_after_each_step_resumes_without_a_second_snapshot_version_or_canary(
    sim: Simulator, azurite: Any
) -> None:
    from shared.flows import jobs

    world = _world(sim, azurite, patched=False)
    before = _instances(sim)
    flow = jobs.FLOWS[jobs.JobKind.IMAGE]
    real = dict(flow.steps)
    killed: list[str] = []

    def dies_once_after(name: str) -> Any:
        def step(ctx: Any, state: dict[str, Any]) -> Any:
            outcome = real[name](ctx, state)
            if name not in killed:  # the step's writes happened; its outcome is never recorded
                killed.append(name)
                raise WorkerKilled(f"killed after {name}")
            return outcome

        return step

    flow.steps.update({name: dies_once_after(name) for name in real})  # type: ignore[attr-defined]
    try:
        record = _run(world, timeout=180)
    finally:
        flow.steps.update(real)  # type: ignore[attr-defined]
    assert record.status == "done", (record.error, record.outcome)
    assert {"snapshot", "version", "canary_add", "point"} <= set(killed), killed
    calls = [c["operation"] for c in sim.calls()["calls"]]
    assert calls.count("Snapshots_CreateOrUpdate") == 1
    assert calls.count("GalleryImageVersions_CreateOrUpdate") == 1
    canary = world.tables.job(f"{record.id}.canary-add")
    assert canary is not None and len(canary.outcome["added"]) == 1
    # One model write for the version, one capacity write for the canary: never a second.
    assert calls.count("VirtualMachineScaleSets_Update") == 2, calls
    assert set(_instances(sim)) == set(before)
    world.assert_truth()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"scale_set_extra": {"tags": {"aks-managed-poolName": "np1"}}}, "node-image-only"),
        ({"scale_set_extra": {"upgrade_mode": "Rolling"}}, "allow_upgrade_policy"),
    ],
)
def test_aks_managed_and_self_upgrading_scale_sets_are_refused_untouched(
    sim: Simulator, azurite: Any, extra: dict[str, Any], words: str
) -> None:
    world = _world(sim, azurite, patched=False, **extra)
    calls = len(sim.calls()["calls"])
    record = _run(world)
    assert record.status == "failed" and words in record.error, record.error
    assert [c for c in sim.calls()["calls"][calls:] if c["method"] != "GET"] == []


def test_a_region_without_zones_falls_back_from_zrs_to_lrs(sim: Simulator, azurite: Any) -> None:
    world = _world(sim, azurite, patched=False, zonal_regions=[], image={"canary": False})
    record = _run(world)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["storage_type"] == "Standard_LRS"
    calls = [c["operation"] for c in sim.calls()["calls"]]
    # The failed ZRS version deleted before the same name was created again with LRS.
    assert calls.count("GalleryImageVersions_CreateOrUpdate") == 2
    assert "GalleryImageVersions_Delete" in calls
    assert _model_image(world) == record.outcome["version"]
    world.assert_truth()


def test_rolling_mode_moves_every_node_to_the_new_image_one_at_a_time(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, capacity=6, patched=False, image={"rollout": "rolling"})
    out: set[str] = set()
    most: list[int] = [0]
    kube = world.pump.services.kube
    real = kube.patch_if_unchanged

    def watched(node: Any, **changes: Any) -> Any:
        written = real(node, **changes)
        claim = (changes.get("annotations") or {}).get(CLAIM_ANNOTATION, "absent")
        if claim is None:
            out.discard(node.name)
        elif claim != "absent":
            out.add(node.name)
            out.intersection_update(n for n in out if real.__self__.node(n) is not None)
            most[0] = max(most[0], len(out))  # a deleted node (the canary) is out no more
        return written

    kube.patch_if_unchanged = watched  # type: ignore[method-assign]
    record = _run(world, timeout=240)
    assert record.status == "done", (record.error, record.outcome)
    rollout = record.outcome["rollout"]
    assert rollout["status"] == "done" and len(rollout["upgraded"]) == 6, rollout  # donor too
    version = record.outcome["version"]
    for name, instance in _instances(sim).items():
        assert (instance["image_version"] or "").lower() == version.lower(), name
    assert world.run("reconcile").status == "done"
    shown = world.tables.pool_status(world.pool["name"])["instances"]  # GET /api/pools/{name}
    assert all(i["latest_model"] for i in shown.values()), shown
    assert most[0] == 1  # one node out at a time (the donor, the canary's removal, each upgrade)
    budget = requests.get(f"{sim.admin}/kube/pdbs", timeout=10).json()["pdbs"][0]
    assert budget["current_healthy"] >= budget["desired_healthy"]
    evictions = requests.get(f"{sim.admin}/kube/evictions", timeout=10).json()["evictions"]
    assert {e["outcome"] for e in evictions} <= {"evicted", "blocked"}
    world.assert_truth()


def test_the_image_timer_enqueues_once_a_day_for_pools_that_ask(
    sim: Simulator, azurite: Any
) -> None:
    from shared.flows.image.pipeline import enqueue_images

    manual = _world(sim, azurite, patched=False)
    assert enqueue_images(manual.pump.services) == []
    nightly = _world(sim, azurite, patched=False, image={"automatic": True})
    (job_id,) = enqueue_images(nightly.pump.services)
    assert job_id.startswith(f"image-{nightly.pool['name']}-")
    nightly.pump.once("image")  # it runs: recorded under that id
    assert nightly.tables.job(job_id) is not None
    assert enqueue_images(nightly.pump.services) == []  # once a day


def test_a_second_image_job_on_a_pool_is_refused_while_the_first_runs(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False)
    first = world.send("image")
    _drive(world, first, until=lambda r: r.step not in ("plan", "gallery"))
    second = _run(world)
    assert second.status == "failed" and f"image job {first} is still running" in second.error
    assert _drive(world, first, timeout=120).status == "done"


def test_an_image_job_waits_for_the_pools_patch_job_to_end(sim: Simulator, azurite: Any) -> None:
    world = _world(sim, azurite, patched=False)
    patch = world.send("patch")
    world.drive("patch", patch, lambda r: r.status == "waiting")
    image = world.send("image")
    waiting = world.drive(
        "image", image, lambda r: "waiting for patch job" in (r.steps[-1].get("reason") or "")
    )
    assert waiting.step == "plan" and set(waiting.state) == {"patch_wait_since"}, "nothing taken"
    sim.advance(12 * 3600 + 60)  # a patch job that never ends (e.g. its message was lost)
    given_up = world.drive("image", image)
    assert given_up.status == "failed" and "has not ended in 12:00:00" in given_up.error
