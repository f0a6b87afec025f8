"""Repair under faults (issue 18) end to end: a repair re-reads its reason right before each
destructive step and stands down when the node is Ready again; a restart is sent at most once,
whatever worker dies; no repair while an image canary is being proven; instances still being
created do not weaken the brake.
"""

from __future__ import annotations

from typing import Any

from tests.repair_support import (
    NODE,
    VMSS,
    heal_world,
    not_ready,
    reconcile_and_repair,
    repairs,
    sick,
    submit_job,
)
from tests.simulator import Simulator, scale_set
from tests.truth_support import World


def _calls(sim: Simulator, suffix: str) -> int:
    return sum(c["operation"].endswith(suffix) for c in sim.calls()["calls"])


def test_instances_being_created_do_not_weaken_the_brake(sim: Simulator, azurite: Any) -> None:
    # Another pool of four healthy nodes: the cluster's share (2 of 7) stays below the brake.
    world = heal_world(
        sim,
        azurite,
        capacity=3,
        scale_sets=[scale_set(VMSS, 3, zones=[]), scale_set("aks-system-52525252-vmss", 4)],
        latencies={"create": 6 * 3600},
    )
    for instance in ("0", "1"):
        not_ready(world, instance, boots=None)
    sim.advance(11 * 60)
    held = world.run("reconcile").outcome["repair"]
    assert held["action"] is None and "2 of 3 instances" in held["brake"], held
    world.deliver_once("scale", {"delta": 3})  # the write is sent; its instances are creating
    creating = [
        i for i in sim.scale_set_state(VMSS)["instances"] if i["provisioning_state"] == "Creating"
    ]
    assert len(creating) == 3
    repair = world.run("reconcile").outcome["repair"]
    assert repair["action"] is None and "enqueued" not in repair, repair
    assert "2 of 3 instances" in repair["brake"], repair["brake"]
    assert "3 instances still coming up not counted" in repair["brake"]
    assert _calls(sim, "VMs_Restart") == 2  # the test's own
    assert not any(v["unschedulable"] for v in world.cluster().values())


def test_a_repair_refuses_while_an_image_canary_is_proven_and_runs_once_it_ended(
    sim: Simulator, azurite: Any
) -> None:
    world = sick(sim, azurite, boots=1)
    queued = world.run("reconcile").outcome["repair"]["enqueued"]  # before the model changed
    image = _proving_a_canary(world)
    asked = submit_job(world, {"node": NODE})  # and one asked for by hand meanwhile
    for job_id in (queued, asked):
        record = world.drive("scale", job_id)
        assert record.status == "failed", (record.error, record.outcome)
        assert record.error.startswith(f"refused: waits: image job {image} is proving"), record
    assert _calls(sim, "VMs_Restart") == 1  # the test's own: the repairs touched nothing
    assert not any(v["unschedulable"] for v in world.cluster().values())
    assert [e["status"] for e in repairs(world)] == ["refused", "refused"]
    # The canary ended: the episode is repaired after all, by a new attempt.
    record = world.tables.job(image)
    world.tables.update_job(record, status="done", outcome={"canary": "kept"})
    record = reconcile_and_repair(world)
    assert record.id == f"{queued}.r1" and record.status == "done", (record.id, record.error)
    assert record.outcome["repair"]["rungs"] == [{"rung": "restart", "result": "back Ready"}]
    world.assert_truth()


def _proving_a_canary(world: World) -> str:
    """An image job of the pool at its canary step, as the ledger shows one (the image flow
    itself is tests/integration/test_image.py's; its message is never delivered here)."""
    job_id = submit_job(world, {}, kind="image")
    record = world.tables.job(job_id)
    world.tables.update_job(record, status="waiting", step="canary_check")
    return job_id
