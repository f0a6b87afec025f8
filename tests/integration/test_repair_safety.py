"""Repair under faults (issue 18) end to end: a repair re-reads its reason right before each
destructive step and stands down when the node is Ready again; a restart is sent at most once,
whatever worker dies; no repair while an image canary is being proven; instances still being
created do not weaken the brake.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.instances import Instances
from shared.adapters.ledger import FINAL
from tests.jobs_support import WorkerKilled
from tests.repair_support import (
    NODE,
    VMSS,
    heal_world,
    not_ready,
    notifications,
    reconcile_and_repair,
    repairs,
    sick,
    submit_job,
)
from tests.simulator import Simulator, scale_set
from tests.truth_support import World, vmss_id_of


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


def test_a_node_back_ready_after_a_slow_reimage_is_given_back_not_replaced(
    sim: Simulator, azurite: Any
) -> None:
    # The restart's boot stays NotReady; the reimage takes 15 minutes longer than
    # ready_timeout_minutes (far more than the test's polls are apart), and its boot is Ready.
    world = sick(
        sim,
        azurite,
        boots=2,
        repair={"ready_timeout_minutes": 30},
        latencies={"reimage": 45 * 60},
    )
    record = reconcile_and_repair(world, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    rungs = record.outcome["repair"]["rungs"]
    assert rungs[0] == {"rung": "restart", "result": "not back Ready within 0:30:00 of the restart"}
    # Its boot is Ready soon after the reimage ends: the reimage rung sees it; or, when a loaded
    # machine's steps were further apart than the rung's 30 minutes, the re-check before the
    # climb does (the boot went Ready between the rung's look and that re-read, at 600x a few
    # milliseconds), or the replace rung's re-check, before it grows or deletes anything.
    assert rungs[1:] in (
        [{"rung": "reimage", "result": "back Ready"}],
        [{"rung": "reimage", "result": f"stopped: {NODE} is Ready again"}],
        [
            {"rung": "reimage", "result": "not back Ready within 0:30:00 of the reimage"},
            {"rung": "replace", "result": f"stopped: {NODE} is Ready again"},
        ],
    ), rungs
    assert _calls(sim, "VMs_Reimage") == 1
    assert world.witness.raises == [] and world.witness.deletes == []  # not replaced
    node = world.pump.services.kube.node(NODE)
    assert node is not None and node.ready and not node.unschedulable and not node.claim
    world.assert_truth()


def test_a_node_back_ready_while_its_replacement_grows_is_given_back_not_deleted(
    sim: Simulator, azurite: Any
) -> None:
    world = sick(sim, azurite, boots=3)  # neither the restart nor the reimage brings it back
    job_id = world.run("reconcile").outcome["repair"]["enqueued"]
    world.drive("scale", job_id, lambda r: r.step == "await_grow", timeout=120)
    # Meanwhile a person reboots it, and this boot is Ready.
    Instances(world.pump.services.scale_sets).begin_restart(vmss_id_of(VMSS), "1")
    sim.advance(3 * 60)
    assert world.pump.services.kube.node(NODE).ready
    record = world.drive("scale", job_id, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    note = record.outcome["note"]
    assert note.startswith(f"{NODE} is Ready again: not replaced"), note
    assert f"the replacement added by {job_id}-grow stays" in note
    assert world.witness.deletes == [] and len(world.witness.raises) == 1
    scale_set = sim.scale_set_state(VMSS)
    assert scale_set["capacity"] == 7 and "1" in {i["instance_id"] for i in scale_set["instances"]}
    node = world.pump.services.kube.node(NODE)
    assert node is not None and not node.unschedulable and not node.claim
    (entry,) = [e for e in repairs(world) if e["job"] == job_id]
    assert entry["status"] == "done" and "Ready again: not replaced" in entry["result"]
    world.assert_truth()


def test_a_worker_killed_right_after_sending_a_restart_restarts_the_node_once(
    sim: Simulator, azurite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sick(sim, azurite, boots=1)
    real = Instances.begin_restart
    killed: list[str] = []

    def dies_after_sending(self: Instances, vmss_id: str, instance_id: str) -> str:
        token = real(self, vmss_id, instance_id)
        if not killed:  # sent; the step's outcome is never recorded
            killed.append(instance_id)
            raise WorkerKilled("the worker died right after sending the restart")
        return token

    monkeypatch.setattr(Instances, "begin_restart", dies_after_sending)
    record = reconcile_and_repair(world)
    assert killed == ["1"]
    assert record.status == "done", (record.error, record.outcome)
    assert _calls(sim, "VMs_Restart") == 2  # the test's own, and the repair's one
    assert record.outcome["repair"]["rungs"] == [{"rung": "restart", "result": "back Ready"}]
    intent = record.state["intent"]
    assert intent["action"] == "restart" and intent["expect"]["boot_id_not"]
    notes = [n for step in record.steps for n in step.get("notes", [])]
    assert any("may have been sent before this delivery" in n for n in notes), notes
    world.assert_truth()


def test_a_replacement_that_never_comes_ends_the_repair_at_its_deadline_and_gives_the_node_back(
    sim: Simulator, azurite: Any
) -> None:
    # Every capacity write fails with a 503, for longer than the repair waits for its
    # replacement (the scale job keeps retrying for two hours).
    world = sick(sim, azurite, boots=None, settings={"POOLKEEPER_RETRY_MINUTES": "120"})
    sim.post(
        "faults", {"operation": "VirtualMachineScaleSets_Update", "kind": "error", "status": 503}
    )
    record = reconcile_and_repair(world, timeout=120)
    assert record.status == "failed", (record.error, record.outcome)
    node = world.pump.services.kube.node(NODE)
    assert node is not None and not node.unschedulable and not node.claim, node
    assert "did not come within 0:40:00 (the repair's grow deadline)" in record.error
    assert world.tables.job(f"{record.id}-grow").status not in ("done", "failed")
    (told,) = notifications(world, "repair_failed")
    assert "grow deadline" in told["message"] and "needs a person" in told["message"]
    assert world.witness.deletes == []


def test_a_worker_killed_right_after_deleting_a_failed_instance_settles_that_delete(
    sim: Simulator, azurite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = heal_world(
        sim,
        azurite,
        faults=[{"operation": "VirtualMachineScaleSets_Update", "kind": "lro_failed", "count": 1}],
        latencies={"delete": 6 * 3600},  # deleting until the test moves the clock on
    )
    assert world.run("scale", {"delta": 1}).status == "failed"  # instance 6 is left Failed
    # The killed delivery comes back a wall second later (the pump's visibility): at 60x that is
    # a minute, well within the scale-in's 30-minute settle deadline however busy the machine.
    sim.post("clock", {"speed": 60})
    scale_sets = world.pump.services.scale_sets
    real = scale_sets.begin_delete
    killed: list[str] = []

    def dies_after_sending(vmss_id: str, instance_ids: Any, *, force: bool = False) -> str:
        token = real(vmss_id, instance_ids, force=force)
        if not killed:
            killed.extend(instance_ids)
            raise WorkerKilled("the worker died right after sending the delete")
        return token

    monkeypatch.setattr(scale_sets, "begin_delete", dies_after_sending)
    job_id = world.run("reconcile").outcome["repair"]["enqueued"]
    settling = world.drive("scale", job_id, lambda r: r.step == "settle" or r.status in FINAL)
    assert killed == ["6"]
    assert (settling.status, settling.step) == ("waiting", "settle"), settling.outcome
    sim.advance(6 * 3600)
    record = world.drive("scale", job_id)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["deleted"] == ["6"]
    assert _calls(sim, "VirtualMachineScaleSets_DeleteInstances") == 1
