"""Test support for count-truth tests: the product's runner fed by a queue pump against Azurite
and the simulator, and a `Witness` that checks every DeleteInstances and capacity write against
the simulator at the moment it is sent (nodes cordoned and emptied, min size on the true count,
a capacity write only ever raising), then passes it through unchanged.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from shared.adapters.ledger import FINAL, JobRecord
from shared.adapters.scaleset import ScaleSets, ThrottleGate
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services, handle
from tests.jobs_support import Pump, job, settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

DELETE = "VirtualMachineScaleSets_DeleteInstances"
UPDATE = "VirtualMachineScaleSets_Update"
CANNOT_ALLOCATE = "CannotAllocateRemainingVMsInAvailabilitySet"
SPEED = 600  # simulated seconds per wall second: a 60 s delete takes 0.1 s


def vmss_id_of(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{name}"
    )


def true_counts(scale_set_state: dict[str, Any]) -> dict[str, int]:
    """The simulator's own count, in the product's words (live = Succeeded and running)."""
    instances = scale_set_state["instances"]
    return {
        "live": sum(
            i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
            for i in instances
        ),
        "deleting": sum(i["provisioning_state"] == "Deleting" for i in instances),
        "active": sum(i["provisioning_state"] != "Deleting" for i in instances),
        "total": len(instances),
    }


def workload_pods(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Pods on a node (from /_sim/kube/pods) that a drain must evict: not DaemonSet, not mirror."""
    return [
        p
        for p in node["pods"]
        if not (p["owner"] or "").startswith("DaemonSet/") and not p["mirror"]
    ]


@dataclass
class Witness:
    """What the product sent to Azure through its scale-set adapter, each send checked first."""

    sim: Simulator
    vmss: str
    min_nodes: int
    deletes: list[list[str]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # wall time of each delete, as the sim's
    evicted_before_delete: dict[str, int] = field(default_factory=dict)  # node -> pods evicted
    raises: list[tuple[int, int]] = field(default_factory=list)  # (capacity then, asked for)
    model_writes: list[str] = field(default_factory=list)  # image reference PATCHes (no sku)
    arm_on_raise: list[dict[str, Any]] = field(default_factory=list)  # faults for what follows
    violations: list[str] = field(default_factory=list)
    crash_after_send: int = 0  # this many DeleteInstances raise once sent, as a dying worker

    def on_delete(self, instance_ids: Sequence[str]) -> None:
        try:
            self._check_delete(instance_ids)
        except AssertionError as violation:
            # The runner retries a step that raises: keep what was seen for assert_truth.
            self.violations.append(str(violation))
            raise

    def _check_delete(self, instance_ids: Sequence[str]) -> None:
        ids = [str(i) for i in instance_ids]
        state = self.sim.scale_set_state(self.vmss)
        by_id = {i["instance_id"]: i for i in state["instances"]}
        cluster = requests.get(f"{self.sim.admin}/kube/pods", timeout=10).json()["nodes"]
        evictions = requests.get(f"{self.sim.admin}/kube/evictions", timeout=10).json()
        for instance_id in ids:
            name = by_id[instance_id]["computer_name"]
            node = cluster.get(name)
            if node is None:  # it never registered a node: nothing ran there to drain
                continue
            assert node["unschedulable"], f"{name} is deleted without being cordoned"
            left = workload_pods(node)
            assert not left, f"{name} is deleted with pods still on it: {left}"
            self.evicted_before_delete[name] = sum(
                e["node"] == name and e["outcome"] == "evicted" for e in evictions["evictions"]
            )
        live = true_counts(state)["live"]
        live_in_batch = sum(
            by_id[i]["provisioning_state"] == "Succeeded" and by_id[i]["power_state"] == "running"
            for i in ids
        )
        assert live - live_in_batch >= self.min_nodes, (
            f"deleting {live_in_batch} of {live} live instances goes below {self.min_nodes}"
        )
        self.deletes.append(ids)
        self.sent_at.append(time.time())

    def on_raise(self, new_capacity: int) -> None:
        state = self.sim.scale_set_state(self.vmss)
        assert new_capacity > state["capacity"], (
            f"a capacity write of {new_capacity} would not raise capacity {state['capacity']}"
        )
        assert new_capacity > true_counts(state)["active"], "a capacity write below the active"
        self.raises.append((state["capacity"], new_capacity))
        while self.arm_on_raise:  # e.g. make the read that follows this write fail
            self.sim.post("faults", self.arm_on_raise.pop(0))

    def adapter(self, settings: dict[str, str], services: Services) -> ScaleSets:
        witness = self

        class Witnessed(ScaleSets):
            def begin_delete(
                self, vmss_id: str, instance_ids: Sequence[str], *, force: bool = False
            ) -> str:
                witness.on_delete(instance_ids)
                token = super().begin_delete(vmss_id, instance_ids, force=force)
                if witness.crash_after_send:
                    witness.crash_after_send -= 1
                    raise RuntimeError("the worker died after sending DeleteInstances")
                return token

            def raise_capacity(
                self,
                vmss_id: str,
                new_capacity: int,
                etag: str,
                tags: Mapping[str, str] | None = None,
            ) -> str:
                witness.on_raise(new_capacity)
                return super().raise_capacity(vmss_id, new_capacity, etag, tags)

            def _call(self, operation: str, ref: Any, instance_ids: Sequence[str] = ()) -> Any:
                if operation == "point_model":  # image jobs' model writes: no capacity in them
                    witness.model_writes.append(ref.vmss_id)
                return super()._call(operation, ref, instance_ids)

        # A gate of its own: a Retry-After from one test never holds up the next.
        return Witnessed.from_settings(settings, clock=services.clock, gate=ThrottleGate())


@dataclass
class World:
    sim: Simulator
    pump: Pump
    witness: Witness
    pool: dict[str, Any]
    vmss: str

    @property
    def tables(self) -> Any:
        return self.pump.services.tables

    def send(self, kind: str, params: dict[str, Any] | None = None) -> str:
        message = job(kind, self.pool["name"], params)
        self.pump.send(kind, message)
        return str(message["id"])

    def drive(
        self,
        kind: str | tuple[str, ...],
        job_id: str,
        until: Callable[[JobRecord], bool] = lambda r: r.status in FINAL,
        *,
        timeout: float = 120,
    ) -> JobRecord:
        """Deliver `kind` messages (waits, throttling and lease retries included) until `until`;
        several kinds for a job that starts jobs of other kinds. `until` is asked after every
        receive; `timeout` (wall seconds) only ends a job that hangs, so it is generous."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for each in (kind,) if isinstance(kind, str) else kind:
                self.pump.once(each)
            record = self.tables.job(job_id)
            if record is not None and until(record):
                return record
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never got there: {self.tables.job(job_id)}")

    def deliver_once(self, kind: str, params: dict[str, Any] | None = None) -> str:
        """A new job's first delivery straight through the runner (not through the queue): no
        message of another job is delivered meanwhile, so the order does not depend on timing.
        Its continuation stays queued until the test drives the queue."""
        message = job(kind, self.pool["name"], params)
        handle(self.pump.services, self.pump.queue(kind), json.dumps(message))
        return str(message["id"])

    def run(
        self, kind: str, params: dict[str, Any] | None = None, *, timeout: float = 120
    ) -> JobRecord:
        job_id = self.send(kind, params)
        return self.drive(kind, job_id, timeout=timeout)

    def cluster(self) -> dict[str, Any]:
        nodes = requests.get(f"{self.sim.admin}/kube/pods", timeout=10).json()["nodes"]
        return {n: v for n, v in nodes.items() if v["node_group"] == self.pool["node_group"]}

    def assert_truth(self, *, settled: bool = True) -> dict[str, int]:
        """The invariants after a job; `settled` when no job is half-way (nothing cordoned)."""
        assert self.witness.violations == []
        state = self.sim.state()
        scale_set_state = next(s for s in state["scale_sets"] if s["name"] == self.vmss)
        true = true_counts(scale_set_state)
        recorded = self.tables.pool_status(self.pool["name"])
        assert recorded is not None
        counts = recorded["counts"]
        assert (counts["live"], counts["active"]) == (true["live"], true["active"]), (
            f"recorded {counts} but the simulator has {true}"
        )
        assert counts["deleting"] == true["deleting"] and counts["total"] == true["total"]
        assert recorded["capacity"] == scale_set_state["capacity"]
        assert true["live"] >= self.pool["min_nodes"], f"live {true['live']} below min_nodes"
        # Never a capacity write that lowered: the simulator records every deletion with the
        # operation that caused it, and a lowering capacity write records a `scale_in`.
        history = [h for h in state["history"] if h["scale_set"] == self.vmss]
        assert [h for h in history if h["event"] != "delete_instances"] == []
        assert all(h["operation"] == DELETE for h in history)
        # Every instance ever named in a DeleteInstances was checked drained when it was sent.
        witnessed = {i for batch in self.witness.deletes for i in batch}
        assert {i for h in history for i in h["instances"]} <= witnessed
        calls = self.sim.calls()["calls"]
        sent = [c for c in calls if c["operation"] == DELETE]
        assert len(sent) <= len(self.witness.deletes), (
            f"the simulator saw {len(sent)} DeleteInstances, the product sent "
            f"{len(self.witness.deletes)}: {sent} vs {self.witness.deletes} "
            f"at {self.witness.sent_at}"
        )
        updates = len(self.witness.raises) + len(self.witness.model_writes)
        assert sum(c["operation"] == UPDATE for c in calls) <= updates
        # Every instance that went, checked at the moment it went (a delete whose answer was
        # lost lands later than it was sent): its node cordoned, no pod left to move.
        removals = requests.get(f"{self.sim.admin}/kube/removals", timeout=10).json()["removals"]
        for gone in removals:
            if gone["scale_set"] != self.vmss or gone["node"] is None:  # no node: nothing ran
                continue
            assert gone["unschedulable"], f"instance {gone['instance']} went while schedulable"
            assert not gone["pods"], f"instance {gone['instance']} went with pods: {gone['pods']}"
        if settled:
            cordoned = [n for n, v in self.cluster().items() if v["unschedulable"]]
            assert cordoned == [], f"nodes left cordoned: {cordoned}"
        return true


def make_world(
    sim: Simulator,
    azurite: Any,
    *,
    vmss: str,
    capacity: int,
    min_nodes: int,
    max_nodes: int,
    replicas: int,
    max_unavailable: int,
    grace: int = 30,
    workloads: dict[str, Any] | None = None,
    settings: dict[str, str] | None = None,
    pool_extra: dict[str, Any] | None = None,
    zones: list[str] | None = None,
    scale_set_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> World:
    node_group = vmss.split("-")[1]
    sim.load(
        scenario(
            scale_set(vmss, capacity, zones=zones or [], **(scale_set_extra or {})),
            speed=SPEED,
            workloads=workloads
            or {
                "deployments": [
                    {
                        "name": "web",
                        "replicas": replicas,
                        "node_selector": {"elastisys.io/node-group": node_group},
                        "termination_grace_seconds": grace,
                        "pdb": {"max_unavailable": max_unavailable},
                    }
                ],
                "daemonsets": [{"name": "kube-proxy"}],
            },
            **extra,
        )
    )
    pool = {
        "name": f"{node_group}-{uuid.uuid4().hex[:8]}",  # a fresh pool record and lease each time
        "vmss_id": vmss_id_of(vmss),
        "node_group": node_group,
        "min_nodes": min_nodes,
        "max_nodes": max_nodes,
    } | (pool_extra or {})
    wired = settings_for(sim, azurite.connection_string, [pool]) | (settings or {})
    services = Services(
        wired,
        clock_from_settings(wired),
        load_config(wired),
        StorageAccount.from_settings(wired),
    )
    witness = Witness(sim, vmss, min_nodes)
    services.scale_sets = witness.adapter(wired, services)
    return World(sim, Pump(services), witness, pool, vmss)
