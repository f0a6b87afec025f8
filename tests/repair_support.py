"""Repair tests' world: a pool of six behind a NodelessWitness (an instance that never had a
node has nothing to drain), and the moves those tests make — a node NotReady for its next boots,
reconcile then the repair it enqueues, a job submitted by hand, the notifications told.
Used by tests/integration/test_repair.py and test_repair_safety.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import requests

from shared.adapters.instances import Instances
from shared.adapters.repair_log import RepairLog
from shared.flows.jobs import submit
from shared.jobs import SCHEMA
from tests.simulator import Simulator
from tests.truth_support import Witness, World, make_world, vmss_id_of

VMSS = "aks-heal-71717171-vmss"
NODE = f"{VMSS}000001"
DELETE = "VirtualMachineScaleSets_DeleteInstances"


class NodelessWitness(Witness):
    """The Witness's checks for instances with a node; one without a node (never booted, or
    never registered) has nothing to drain, and is recorded as such."""

    nodeless: set[str]

    def _check_delete(self, instance_ids: Sequence[str]) -> None:
        cluster = requests.get(f"{self.sim.admin}/kube/pods", timeout=10).json()["nodes"]
        names = {
            i["instance_id"]: i["computer_name"]
            for i in self.sim.scale_set_state(self.vmss)["instances"]
        }
        with_node = [i for i in instance_ids if names[str(i)] in cluster]
        self.nodeless = getattr(self, "nodeless", set()) | (set(instance_ids) - set(with_node))
        if with_node:
            super()._check_delete(with_node)
        if set(instance_ids) - set(with_node):
            self.deletes.append([i for i in instance_ids if i not in with_node])


def heal_world(
    sim: Simulator,
    azurite: Any,
    *,
    repair: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    capacity: int = 6,
    settings: dict[str, str] | None = None,
    **extra: Any,
) -> World:
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=capacity,
        min_nodes=2,
        max_nodes=8,
        replicas=6,
        max_unavailable=1,
        grace=10,
        pool_extra={"repair": {"ready_timeout_minutes": 3} | (repair or {})},
        settings={
            "POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
            # A week of simulated time between full reads: the survey looks only at changes.
            "POOLKEEPER_FULL_READ_MINUTES": "10080",
        }
        | (settings or {}),
        faults=faults or [],
        **extra,
    )
    world.witness = nodeless(world)
    assert world.run("reconcile").status == "done"
    return world


def nodeless(world: World) -> NodelessWitness:
    """The world's scale-set adapter witnessed by a NodelessWitness instead."""
    services = world.pump.services
    witness = NodelessWitness(world.sim, VMSS, world.witness.min_nodes)
    services.scale_sets = witness.adapter(dict(services.settings), services)
    return witness


def not_ready(world: World, instance: str, boots: int | None) -> None:
    """The instance's next `boots` boots (None: every one) leave its node NotReady; restart it."""
    fault = {"operation": "Boot", "kind": "never_ready", "scale_set": VMSS, "instance": instance}
    world.sim.post("faults", fault | ({"count": boots} if boots else {}))
    services = world.pump.services
    Instances(services.scale_sets).begin_restart(vmss_id_of(VMSS), instance)


def sick(sim: Simulator, azurite: Any, *, boots: int | None, **extra: Any) -> World:
    """A world whose node 1 has been NotReady for 11 minutes (its next `boots` boots too)."""
    world = heal_world(sim, azurite, **extra)
    not_ready(world, "1", boots=boots)
    sim.advance(11 * 60)
    return world


def reconcile_and_repair(world: World, *, timeout: float = 60) -> Any:
    """Reconcile (it enqueues the repair), then drive the scale queue until the repair ends."""
    record = world.run("reconcile")
    assert record.status == "done", record.error
    repair = record.outcome["repair"]
    job_id = repair.get("enqueued") or repair["waits_for"]  # or an earlier reconcile's
    return world.drive("scale", job_id, timeout=timeout)


def notifications(world: World, kind: str) -> list[dict[str, Any]]:
    queue = world.pump.services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]
    client = world.pump.services.queues._queue(queue)
    found = [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    return [n for n in found if n["kind"] == kind]


def repairs(world: World) -> list[dict[str, Any]]:
    return RepairLog(world.tables).entries(world.pool["name"])


def submit_job(world: World, params: dict[str, Any], *, kind: str = "repair") -> str:
    job_id = f"{kind}-by-hand-{uuid.uuid4().hex[:8]}"
    body = {
        "schema": SCHEMA,
        "id": job_id,
        "kind": kind,
        "pool": world.pool["name"],
        "params": params,
        "requested_by": "tests",
        "created_at": "2026-11-02T08:00:00Z",
    }
    submit(world.pump.services, json.dumps(body))
    return job_id


def assert_counts(world: World) -> None:
    """assert_truth's count checks, for a pool whose deleted instances never had a node."""
    scale_set = world.sim.scale_set_state(VMSS)
    recorded = world.tables.pool_status(world.pool["name"])
    assert recorded is not None and recorded["capacity"] == scale_set["capacity"]
    live = sum(
        i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
        for i in scale_set["instances"]
    )
    assert recorded["counts"]["live"] == live >= world.pool["min_nodes"]
    history = [h for h in world.sim.state()["history"] if h["scale_set"] == VMSS]
    assert all(h["operation"] == DELETE for h in history)
    removals = requests.get(f"{world.sim.admin}/kube/removals", timeout=10).json()["removals"]
    for gone in removals:
        if gone["node"] is not None:
            assert gone["unschedulable"] and not gone["pods"], gone
        else:
            assert gone["instance"] in world.witness.nodeless  # type: ignore[attr-defined]
