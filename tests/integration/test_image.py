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
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from shared.adapters.kube import CLAIM_ANNOTATION, SCALE_DOWN_DISABLED
from shared.adapters.ledger import FINAL, JobRecord
from tests.jobs_support import WorkerKilled
from tests.simulator import RG, Simulator
from tests.truth_support import SPEED, World, make_world

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


# Up to the donor's drained, the clock runs at DONOR_SPEED: a job's round is at least a wall second
# (queue visibility is whole seconds), ten simulated minutes at 600x, so the drain's 15-minute
# deadline saw two rounds, and a loaded machine's donor with a pod held by its budget failed.
DONOR_STEPS = frozenset({"", "plan", "gallery", "take_donor", "drain_donor"})
DONOR_SPEED = 60


def _drive(
    world: World,
    job_id: str,
    *,
    until: Callable[[JobRecord], bool] = lambda r: r.status in FINAL,
    timeout: float = 120,
    after: float | None = None,
) -> JobRecord:
    """Deliver image jobs and the scale and patch jobs they start, until `until` (the end); at
    DONOR_SPEED while the job has its donor still to drain, then at `after` (default: the speed
    the clock had, or SPEED after the donor)."""
    record = world.tables.job(job_id)
    slowed = record is None or record.step in DONOR_STEPS
    then = after or SPEED
    if slowed:
        world.sim.post("clock", {"speed": DONOR_SPEED})
    elif after is not None:
        world.sim.post("clock", {"speed": after})

    def paced(record: JobRecord) -> bool:
        nonlocal slowed
        if slowed and record.step not in DONOR_STEPS:
            world.sim.post("clock", {"speed": then})
            slowed = False
        return until(record)

    try:
        return world.drive(KINDS, job_id, paced, timeout=timeout)
    finally:
        if slowed:
            world.sim.post("clock", {"speed": then})


def _run(world: World, params: dict[str, Any] | None = None, **kw: Any) -> JobRecord:
    return _drive(world, world.send("image", params), **kw)


def _instances(sim: Simulator) -> dict[str, dict[str, Any]]:
    scale_set = next(s for s in sim.state()["scale_sets"] if s["name"] == VMSS)
    return {i["computer_name"]: i for i in scale_set["instances"]}


def _made(sim: Simulator) -> list[str]:
    """The snapshots and image versions in the simulator (ids)."""
    return [r for r in sim.state()["resources"] if "/snapshots/" in r or "/versions/" in r]


def _notified(world: World) -> list[str]:
    queue = world.pump.services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]
    told = world.pump.services.queues._queue(queue).peek_messages(max_messages=32)
    return [json.loads(m.content)["kind"] for m in told]


def _calls(sim: Simulator, operation: str) -> int:
    return int(sim.calls()["counters"].get(operation, 0))


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
    soaked = datetime.fromisoformat(canary["proven_at"]) - datetime.fromisoformat(
        canary["ready_since"]
    )
    assert soaked >= timedelta(minutes=5), "Ready for canary_soak_minutes before it is kept"
    # Everything given back: the canary gone, no snapshot left, the version in "latest".
    after = _instances(sim)
    assert set(after) == set(before)
    assert _made(sim) == [version_id], "the snapshot is gone; the version stays"
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


def test_snapshots_go_to_the_pools_snapshot_resource_group_and_are_deleted_there(
    sim: Simulator, azurite: Any
) -> None:
    # The identity may then make snapshots in that group only (infra/main.bicep snapshotAccess).
    world = _world(
        sim, azurite, image={"canary": False, "snapshot_resource_group": "rg-poolkeeper-snapshots"}
    )
    record = _run(world)
    assert record.status == "done", (record.error, record.outcome, record.steps)
    snapshot_id = record.state["names"]["snapshot_id"]
    assert "/resourceGroups/rg-poolkeeper-snapshots/providers/Microsoft.Compute/snapshots/" in (
        snapshot_id
    )
    calls = sim.calls()["calls"]
    made = [c["path"] for c in calls if c["operation"] == "Snapshots_CreateOrUpdate"]
    deleted = [c["path"] for c in calls if c["operation"] == "Snapshots_Delete"]
    assert [p.lower() for p in made] == [p.lower() for p in deleted] == [snapshot_id.lower()]
    assert _made(sim) == [record.outcome["version"]], "the snapshot is gone; the version stays"


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

        # From here on (once the donor is back) the clock runs at 30x and the scale-up's 20-minute
        # wait for its node is jumped over: it surely ends (never Ready) well inside the hour the
        # image job gives it. At 600x a loaded machine's slow steps ate that hour first, and the
        # image job gave the canary up as late instead; and a pump round at 600x could carry the
        # scale-up past its own 20 minutes before the reconcile below looked.
        _drive(world, job_id, until=lambda r: "canary-add" in r.state.get("children", {}), after=30)

        # The canary never registers a node: repair leaves it to the image job meanwhile.
        def adding(record: JobRecord) -> bool:
            scale_up = world.tables.job(f"{record.id}.canary-add")
            return scale_up is not None and scale_up.step == "await_ready"

        _drive(world, job_id, until=adding)
        sim.advance(21 * 60)
        reconciled = world.run("reconcile")
        assert "is proving a new image on a canary" in json.dumps(reconciled.outcome), (
            reconciled.outcome
        )
        # Meanwhile the autoscaler (here: a scale job) adds a node: it boots the bad version too.
        autoscaler = world.send("scale", {"delta": 1})
        world.drive("scale", autoscaler, until=lambda r: r.step == "await_ready")
    record = _drive(world, job_id, timeout=400)
    assert record.status == "failed", record.outcome
    assert "canary failed" in record.error
    assert record.outcome["rolled_back"]
    assert _model_image(world) == previous
    assert set(_instances(sim)) == set(before), "the canary (and any stray) is gone"
    if fault == "never_boots":
        strays = record.outcome["strays"]
        assert len(strays["instances"]) == 1 and strays["strays-instances"] == "removed", strays
        assert "never registered" in record.error and "canary_ready_minutes" in record.error
    (line,) = world.tables.image_lineage(world.pool["name"]).values()
    assert line["status"] == "rolled back" and line["canary"]["result"] == "failed"
    kinds = _notified(world)
    assert kinds.count("image_failed") == 1, kinds
    # Nothing of the failed run is left: nothing runs its version any more.
    assert record.outcome["leftovers"] == {"version": "deleted"}, record.outcome["leftovers"]
    sim.advance(600)
    assert _made(sim) == []
    _node_back(world, record.outcome["donor"]["name"])
    world.assert_truth()


def test_a_canary_scale_up_that_ends_after_its_deadline_has_what_it_added_removed(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False)
    before = _instances(sim)
    previous = _model_image(world)
    job_id = world.send("image")
    # Only image jobs run: the canary's scale-up stays queued (a busy queue, a slow write) ...
    world.drive("image", job_id, until=lambda r: "canary-add" in r.state.get("children", {}))
    sim.advance(61 * 60)  # ... past the 60 minutes the image job gives it
    waiting = world.drive(
        "image", job_id, until=lambda r: r.step == "late_canary" or r.status in FINAL
    )
    assert waiting.status == "waiting", "the image job ended before its late scale-up did"
    assert waiting.state["rolled_back"] and _model_image(world) == previous
    # Now the scale-up runs after all, on the restored model: its instance is removed too.
    record = _drive(world, job_id, timeout=180)
    assert record.status == "failed" and "had not ended" in record.error, record.error
    canary = record.outcome["canary"]
    assert canary["late_add"].startswith("added ") and canary["removed"] == "drained and deleted"
    late = world.drive("scale", f"{job_id}.canary-add")
    assert late.outcome["added"] == [canary["instance"]]
    assert set(_instances(sim)) == set(before), "what the late scale-up added is gone"
    assert _model_image(world) == previous
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
        (
            {
                "scale_set_extra": {
                    "tags": {"sigs.k8s.io_cluster-api-provider-azure_cluster_x": "owned"}
                }
            },
            "MachinePool",
        ),
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


def test_an_image_job_aborted_by_half_an_hour_of_503s_at_the_version_step_deletes_its_snapshot(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False)
    sim.post(
        "faults",
        {
            "operation": "GalleryImageVersions_CreateOrUpdate",
            "kind": "error",
            "status": 503,
            "error": "ServiceUnavailable",
        },
    )
    record = _run(world, timeout=240)
    assert record.status == "failed" and "gave up on step version" in record.error, record.error
    aborted = record.outcome["aborted"]
    assert aborted["snapshot"].startswith("deleting"), aborted
    assert "version" not in aborted, "none was made"
    sim.advance(600)
    assert _made(sim) == [], "no snapshot left for ever"
    _node_back(world, world.tables.job(record.id).state["donor"]["name"])
    world.assert_truth()


def test_a_later_run_deletes_the_snapshot_and_failed_version_an_earlier_run_left(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False, image={"canary": False})
    # The first run's version fails, and both deletes of its clean-up are refused: it says so.
    for fault in (
        {"operation": "GalleryImageVersions_CreateOrUpdate", "kind": "lro_failed", "count": 1},
        {
            "operation": "Snapshots_Delete",
            "error": "AuthorizationFailed",
            "status": 403,
            "count": 1,
        },
        {
            "operation": "GalleryImageVersions_Delete",
            "error": "AuthorizationFailed",
            "status": 403,
            "count": 1,
        },
    ):
        sim.post("faults", fault)
    first = _run(world)
    assert first.status == "failed" and "image version not created" in first.error, first.error
    left = first.outcome["leftovers"]
    assert "not deleted" in left["snapshot"] and "not deleted" in left["version"], left
    names = world.tables.job(first.id).state["names"]
    assert sorted(_made(sim)) == sorted([names["snapshot_id"], names["version_id"]])

    second = _run(world)
    assert second.status == "done", (second.error, second.outcome)
    earlier = second.outcome["earlier"]
    snapshot_name = names["snapshot_id"].rsplit("/", 1)[1]
    assert earlier["snapshots"] == {snapshot_name: "deleting"}, earlier
    assert earlier["versions"] == {names["version"]: "deleting"}, earlier
    sim.advance(600)
    assert _made(sim) == [second.outcome["version"]], "only the version in use stays"
    world.assert_truth()


def test_an_aborted_image_job_leaves_a_model_an_operator_changed_alone(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, patched=False, latencies={"model_update": 3600})
    job_id = world.send("image")
    _drive(
        world, job_id, until=lambda r: "token" in ((r.state.get("ops") or {}).get("point") or {})
    )
    # The model write is still being applied (an hour) when its status polls start failing...
    sim.post(
        "faults",
        {"operation": "OperationStatus", "kind": "error", "status": 503, "error": "ServerBusy"},
    )
    # ...and an operator points the scale set at an image of their own (az vmss update).
    theirs = {
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "1",
    }
    body = {"properties": {"virtualMachineProfile": {"storageProfile": {"imageReference": theirs}}}}
    sim.compute().virtual_machine_scale_sets.begin_update(RG, VMSS, body)
    record = _drive(world, job_id, timeout=240)
    assert record.status == "failed" and "gave up on step point" in record.error, record.error
    model = world.pump.services.scale_sets.read(world.pool["vmss_id"]).model_image
    assert {k: model.get(k) for k in theirs} == theirs, "the operator's image stays"
    assert "left alone" in record.outcome["aborted"]["model"], record.outcome["aborted"]
    requests.delete(f"{sim.admin}/faults", timeout=10)
    sim.advance(600)
    assert _made(sim) == [], "its version (nothing uses it) and its snapshot are gone"


def test_a_canary_that_goes_not_ready_during_its_soak_fails_and_is_rolled_back(
    sim: Simulator, azurite: Any
) -> None:
    # A long soak, so that the canary's Ready spell is long in wall time too (this clock is fast).
    world = _world(sim, azurite, patched=False, image={"canary_soak_minutes": 60})
    before, previous = _instances(sim), _model_image(world)
    job_id = world.send("image")
    version_id = _drive(world, job_id, until=lambda r: "names" in r.state).state["names"][
        "version_id"
    ]
    # The canary boots and is Ready, and 40 minutes later its node fails, within the soak. The
    # rest runs at 60x: the job must see the canary Ready before then (40 wall seconds, however
    # busy the machine), or it fails the canary as never Ready, which is right but not this case.
    fault = {"operation": "Boot", "kind": "never_ready", "image": version_id, "apply_after": 2400}
    sim.post("faults", fault | {"count": 1})
    record = _drive(world, job_id, timeout=300, after=60)
    assert record.status == "failed" and "went NotReady during its soak" in record.error, (
        record.error
    )
    assert record.outcome["rolled_back"] and _model_image(world) == previous
    assert set(_instances(sim)) == set(before), "the canary is gone"
    assert _notified(world).count("image_failed") == 1
    world.assert_truth()


@pytest.mark.parametrize("how", ["killed after the send", "answer lost"])
def test_a_power_off_of_the_donor_is_sent_once(sim: Simulator, azurite: Any, how: str) -> None:
    from shared.flows import jobs

    # The clean-up answers but the OS never powers itself off: Azure's power-off is needed,
    # and it takes a while (the donor shows "stopping" for 20 minutes).
    reply = {"match": "cloud-init clean", "stdout": "== cleaned\n== done\n"}
    world = _world(sim, azurite, patched=False, run_command=[reply], latencies={"power_off": 1200})
    operation = "VirtualMachineScaleSetVMs_PowerOff"
    flow = jobs.FLOWS[jobs.JobKind.IMAGE]
    real = flow.steps["power_off"]
    killed: list[int] = []

    def dies_right_after_the_send(ctx: Any, state: dict[str, Any]) -> Any:
        sent = _calls(sim, operation)
        outcome = real(ctx, state)
        if _calls(sim, operation) > sent and not killed:
            killed.append(sent)
            raise WorkerKilled("killed right after the power-off was sent")
        return outcome

    if how == "answer lost":  # Azure takes it, the answer never comes, it lands a minute later
        sim.post("faults", {"operation": operation, "kind": "lost_answer", "apply_after": 60})
    else:
        flow.steps["power_off"] = dies_right_after_the_send  # type: ignore[index]
    try:
        job_id = world.send("image")
        record = _drive(world, job_id, until=lambda r: "snapshot" in (r.state.get("ops") or {}))
    finally:
        flow.steps["power_off"] = real  # type: ignore[index]
    assert _calls(sim, operation) == 1, "one power-off, however often the step ran"
    assert killed or how == "answer lost"
    assert "intent" in record.state["power_off"]


def test_a_model_write_whose_answer_was_lost_is_sent_once(sim: Simulator, azurite: Any) -> None:
    world = _world(sim, azurite, patched=False, image={"canary": False})
    # The write reaches Azure, its answer is lost, and it lands two minutes later.
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_Update",
            "kind": "lost_answer",
            "apply_after": 120,
            "count": 1,
        },
    )
    record = _run(world)
    assert record.status == "done", (record.error, record.outcome)
    assert _model_image(world) == record.outcome["version"]
    assert _calls(sim, "VirtualMachineScaleSets_Update") == 1, "no second write while it may land"
    world.assert_truth()
