"""Self-healing pools (issue 12) end to end: drift set up in the simulator, reconcile enqueues a
repair job, the job repairs it through the real SDK clients — or the brake refuses, and says why.

The Witness checks every delete where it is sent (a node cordoned and emptied; min size) and
`assert_truth` where it lands; instances that never had a node are checked nodeless instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.decide.repair import QUARANTINE_ANNOTATION
from shared.flows import api
from shared.flows.reconcile import survey
from tests.repair_support import (
    DELETE,
    NODE,
    VMSS,
    assert_counts,
    heal_world,
    nodeless,
    not_ready,
    notifications,
    reconcile_and_repair,
    repairs,
    submit_job,
)
from tests.simulator import Simulator
from tests.truth_support import make_world


def test_a_not_ready_node_is_restarted_and_back_then_given_back(
    sim: Simulator, azurite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = heal_world(sim, azurite)
    assert survey(world.pump.services) == []  # read in full just now, nothing changed
    not_ready(world, "1", boots=1)
    sim.advance(11 * 60)
    # Counts and ETag are as they were: the NotReady node is what gets the pool a full read.
    assert len(survey(world.pump.services)) == 1
    record = reconcile_and_repair(world)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["repair"]["rung"] == "restart"
    assert record.outcome["repair"]["rungs"] == [{"rung": "restart", "result": "back Ready"}]
    node = world.pump.services.kube.node(NODE)
    assert node is not None and node.ready and not node.unschedulable and not node.claim
    assert world.witness.deletes == [] and world.witness.raises == []
    # The pool's status (GET /api/pools/{name}) lists the repair with its rung.
    monkeypatch.setattr(api, "intake", lambda: world.pump.services)
    status, body = api.pools(world.pool["name"])
    assert status == 200
    (entry,) = body["repairs"]
    assert (entry["status"], entry["rung"], entry["problem"], entry["acted"]) == (
        "done",
        "restart",
        "not_ready",
        True,
    )
    assert entry["rungs"] == [{"rung": "restart", "result": "back Ready"}]
    # The same episode is not repaired twice, and a healthy pool enqueues nothing.
    assert "repair" not in world.run("reconcile").outcome
    world.assert_truth()


def test_the_ladder_climbs_restart_reimage_replace_until_the_node_is_replaced(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(sim, azurite)
    not_ready(world, "1", boots=None)  # no boot of instance 1 ever gets Ready again
    sim.advance(11 * 60)
    record = reconcile_and_repair(world, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    assert [r["rung"] for r in record.outcome["repair"]["rungs"]] == ["restart", "reimage"]
    assert record.outcome["repair"]["rung"] == "replace"
    calls = [c["operation"] for c in sim.calls()["calls"]]
    assert calls.count("VirtualMachineScaleSetVMs_Reimage") == 1
    # One more through a scale job, then the dead one drained (its pod, evicted by the NotReady
    # taint long before, never finishes on a kubelet that is down: force-deleted) and deleted
    # through scale-in.
    assert len(world.witness.raises) == 1 and world.witness.deletes == [["1"]]
    notes = [n for step in record.steps for n in step.get("notes", [])]
    assert any(n.startswith("force-deleted 1 evicted pod(s)") for n in notes), notes
    scale_set = sim.scale_set_state(VMSS)
    assert "1" not in {i["instance_id"] for i in scale_set["instances"]}
    assert scale_set["capacity"] == 6
    assert notifications(world, "repair_failed") == []
    world.assert_truth()


def test_an_instance_whose_node_never_registered_climbs_the_ladder_like_a_not_ready_one(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(sim, azurite)
    not_ready(world, "1", boots=1)
    sim.advance(3 * 60)
    world.pump.services.kube.delete_node(NODE)  # its kubelet, never Ready, does not come back
    sim.advance(11 * 60)
    assert world.pump.services.kube.node(NODE) is None
    record = reconcile_and_repair(world)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["repair"]["problem"] == "never_registered"
    assert record.outcome["repair"]["rung"] == "restart"
    node = world.pump.services.kube.node(NODE)
    assert node is not None and node.ready and not node.claim
    assert world.witness.deletes == []
    world.assert_truth()


def test_a_failed_instance_is_deleted_with_no_node_to_drain(sim: Simulator, azurite: Any) -> None:
    world = heal_world(
        sim,
        azurite,
        faults=[{"operation": "VirtualMachineScaleSets_Update", "kind": "lro_failed", "count": 1}],
    )
    up = world.run("scale", {"delta": 1})
    assert up.status == "failed" and "InternalExecutionError" in up.error
    record = reconcile_and_repair(world)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["repair"]["problem"] == "failed_instance"
    assert world.witness.deletes == [["6"]] and world.witness.nodeless == {"6"}
    scale_set = sim.scale_set_state(VMSS)
    assert len(scale_set["instances"]) == 6 and scale_set["capacity"] == 6
    assert "repair" not in world.run("reconcile").outcome
    assert_counts(world)


def test_a_failed_instance_gets_a_replacement_first_when_its_delete_would_go_below_min(
    sim: Simulator, azurite: Any
) -> None:
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=2,  # below min_nodes 3: one more is asked for, and its creation fails
        min_nodes=3,
        max_nodes=5,
        replicas=2,
        max_unavailable=1,
        faults=[{"operation": "VirtualMachineScaleSets_Update", "kind": "lro_failed", "count": 1}],
    )
    world.witness = nodeless(world)
    assert world.run("scale", {"delta": 1}).status == "failed"
    record = reconcile_and_repair(world)
    assert record.status == "done", (record.error, record.outcome)
    assert len(world.witness.raises) == 2  # the failed one, then the replacement
    assert world.witness.deletes == [["2"]] and world.witness.nodeless == {"2"}
    scale_set = sim.scale_set_state(VMSS)
    assert scale_set["capacity"] == 3 and "2" not in {
        i["instance_id"] for i in scale_set["instances"]
    }
    assert_counts(world)


def test_an_instance_stuck_creating_whose_forced_delete_fails_is_escalated_once(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(sim, azurite, latencies={"create": 6 * 3600, "force_delete": 30})
    world.deliver_once("scale", {"delta": 1})  # the write is sent; its instance never comes
    assert world.run("reconcile").status == "done"  # first seen Creating
    sim.advance(21 * 60)
    sim.post("faults", {"operation": DELETE, "kind": "lro_failed", "count": 1})
    record = reconcile_and_repair(world)
    assert record.status == "failed" and record.outcome["repair"]["problem"] == "stuck_creating"
    assert world.witness.deletes == [["6"]] and world.witness.nodeless == {"6"}
    (told,) = notifications(world, "repair_failed")
    assert "needs a person" in told["message"]
    # Tried once: the next reconciles report it and leave it to a person.
    again = world.run("reconcile").outcome["repair"]
    assert again["action"] is None and "escalated" in again["left_out"][f"{VMSS}000006"]
    assert world.witness.deletes == [["6"]]
    assert_counts(world)


def test_an_instance_stuck_deleting_is_force_deleted_once(sim: Simulator, azurite: Any) -> None:
    world = heal_world(sim, azurite, latencies={"delete": 6 * 3600, "force_delete": 30})
    going = world.run("scale", {"nodes": [NODE]}, timeout=60)
    assert going.status == "failed" and "still unknown" in going.error
    sim.advance(21 * 60)
    record = reconcile_and_repair(world)
    assert record.status == "done", (record.error, record.outcome)
    assert record.outcome["repair"]["problem"] == "stuck_deleting"
    assert world.witness.deletes == [["1"], ["1"]]
    # Gone within the force delete's 30 s, not the 6 h of the first delete.
    assert "1" not in {i["instance_id"] for i in sim.scale_set_state(VMSS)["instances"]}
    world.assert_truth()


def test_a_node_whose_instance_is_gone_is_reported_and_deleted_when_allowed(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(
        sim, azurite, repair={"delete_orphan_nodes": True, "orphan_node_minutes": 30}
    )
    sim.post("kube/cloud-node-manager", {"running": False})
    assert world.run("scale", {"nodes": [NODE]}).status == "done"
    assert world.pump.services.kube.node(NODE) is not None  # left behind
    sim.advance(31 * 60)
    record = reconcile_and_repair(world)
    assert record.status == "done" and record.outcome["deleted_node"] == NODE
    assert record.outcome["repair"]["problem"] == "orphan_node"
    assert world.pump.services.kube.node(NODE) is None
    (told,) = notifications(world, "repair_orphan_node")
    assert NODE in told["message"]
    assert world.witness.deletes == [["1"]]  # the scale-in's; the repair deleted no instance
    world.assert_truth()


def test_half_a_pool_not_ready_at_once_is_an_outage_refused_with_the_brakes_reason(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(sim, azurite)
    for instance in ("0", "1", "2"):
        not_ready(world, instance, boots=None)
    sim.advance(11 * 60)
    record = world.run("reconcile")
    brake = record.outcome["repair"]["brake"]
    assert "3 of 6 instances of the pool are unhealthy" in brake and "outage" in brake
    assert record.outcome["repair"]["action"] is None
    (told,) = notifications(world, "repair_brake")
    assert told["severity"] == "P1" and "outage" in told["message"]
    world.run("reconcile")
    assert len(notifications(world, "repair_brake")) == 1  # told once while it lasts
    # A repair asked for by hand is refused the same way, and touches nothing.
    asked = submit_job(world, {"node": NODE})
    refused = world.drive("scale", asked)
    assert refused.status == "failed" and refused.error.startswith("refused (brake)")
    calls = {c["operation"] for c in sim.calls()["calls"]}
    assert not calls & {
        "VirtualMachineScaleSetVMs_Reimage",
        "VirtualMachineScaleSets_DeleteInstances",
    }
    assert not any(v["unschedulable"] for v in world.cluster().values())


def test_a_flapping_node_is_repaired_at_most_n_times_then_quarantined_and_reported(
    sim: Simulator, azurite: Any
) -> None:
    world = heal_world(sim, azurite, repair={"max_repairs_per_node_per_day": 2})
    for _ in range(2):
        not_ready(world, "1", boots=1)
        sim.advance(11 * 60)
        assert reconcile_and_repair(world).outcome["repair"]["rung"] == "restart"
    not_ready(world, "1", boots=1)
    sim.advance(11 * 60)
    record = reconcile_and_repair(world)
    assert record.status == "done" and record.outcome["quarantined"] == NODE
    assert "repaired 2 times in the last day" in record.outcome["reason"]
    node = world.pump.services.kube.node(NODE)
    assert node is not None and node.unschedulable and not node.claim
    assert "repaired 2 times" in json.loads(node.annotations[QUARANTINE_ANNOTATION])["reason"]
    (told,) = notifications(world, "repair_quarantined")
    assert NODE in told["message"]
    assert [e["status"] for e in repairs(world)] == ["done", "done", "quarantined"]
    # Quarantined: not repaired again, and reconcile's stale-claim release leaves it cordoned.
    sim.advance(3 * 3600)
    again = world.run("reconcile").outcome
    assert again["repair"]["action"] is None and "quarantined" in again["repair"]["left_out"][NODE]
    assert world.pump.services.kube.node(NODE).unschedulable
    restarts = [c for c in sim.calls()["calls"] if c["operation"].endswith("VMs_Restart")]
    assert len(restarts) == 5  # three flaps set up by the test, two repairs


def test_dry_runs_plan_and_change_nothing(sim: Simulator, azurite: Any) -> None:
    world = heal_world(sim, azurite)
    not_ready(world, "1", boots=None)
    sim.advance(11 * 60)
    before = sim.calls()["counters"]
    plan = world.run("reconcile", {"dry_run": True}).outcome["repair"]
    assert plan["dry_run"] and plan["action"]["first_rung"] == "restart"
    asked = submit_job(world, {"node": NODE, "dry_run": True})
    record = world.drive("scale", asked)
    assert record.status == "done" and record.outcome["dry_run"]
    assert record.outcome["plan"]["action"]["node"] == NODE
    after = sim.calls()["counters"]
    writes = ("Restart", "Reimage", "DeleteInstances", "VirtualMachineScaleSets_Update")
    assert {k: v for k, v in after.items() if k.endswith(writes)} == {
        k: v for k, v in before.items() if k.endswith(writes)
    }
    assert repairs(world) == [] and not world.pump.services.kube.node(NODE).unschedulable
