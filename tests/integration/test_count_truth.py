"""Acceptance of issue 5, count truth: the cluster-autoscaler seed, replayed against the simulator.

The seed: the autoscaler lowered a cached size when it *asked* for deletes; the deletes failed with
`CannotAllocateRemainingVMsInAvailabilitySet`, it believed 86 healthy instances were 48, wrote
capacity 53, and Azure deleted 33 undrained nodes. Here the product runs jobs through its real
runner (`handle`, fed by the test Pump as the Functions host would) against Azurite and the
simulator, and after every job the test compares what the product recorded with the simulator's
own truth (`GET /_sim/state`), its call log, its history of deletions (each with the operation that
caused it) and its cluster.

`Witness` watches the product's own scale-set adapter: each DeleteInstances and each capacity write
is checked against the simulator at the moment it is sent (the nodes cordoned and emptied of all
but DaemonSet pods, the min-size guard on the true count, a capacity write only ever raising), then
passed through unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.adapters.ledger import FINAL
from tests.simulator import Simulator
from tests.truth_support import (
    CANNOT_ALLOCATE,
    DELETE,
    UPDATE,
    World,
    make_world,
    true_counts,
    workload_pods,
)

# -- the seed --------------------------------------------------------------------------------------

SEED_VMSS = "aks-seed-86868686-vmss"
SEED_ROUNDS: list[tuple[str, str, str]] = [
    # (how the delete fails, which scale-in, when a reconcile comes in). A reconcile during the
    # drain needs victims with pods left to evict: the named ones (the `delta` victims, the
    # highest ids, were emptied in the first round).
    ("lro_failed", "delta", "during_delete"),
    ("error", "named", "during_drain"),
    ("lro_failed", "named", "after"),
    ("error", "delta", "after"),
    ("lro_failed", "delta", "during_delete"),
    ("error", "named", "during_drain"),
    ("lro_failed", "named", "during_drain"),
    ("error", "delta", "after"),
]
SLOW = 5  # clock speed while a doomed delete is in flight: its 60 s last 12 s of wall time
# The rounds' speed: the scale-in's 30-minute settle deadline is 15 wall seconds, not 3, so a
# busy machine's slow delivery cannot pass it before the job has read the delete's answer.
SEED_SPEED = 120


def _seed_fault(kind: str) -> dict[str, Any]:
    """The round's fault, armed for the round only: every DeleteInstances of the round fails so
    (a resend after a lost answer too), and none is left over for the next round."""
    fault: dict[str, Any] = {
        "operation": DELETE,
        "scale_set": SEED_VMSS,
        "kind": kind,
        "error": CANNOT_ALLOCATE,
    }
    if kind == "error":
        fault["status"] = 409
    return fault


def _named_victims(world: World, how_many: int, exclude: set[str]) -> list[str]:
    """Nodes that still carry the most workload pods (so their drain has work to do)."""
    cluster = world.cluster()
    ranked = sorted(
        (n for n in cluster if n not in exclude),
        key=lambda n: (-len(workload_pods(cluster[n])), n),
    )
    return ranked[:how_many]


def test_seed_failed_deletes_never_lower_the_count_or_delete_undrained_nodes(
    sim: Simulator, azurite: Any
) -> None:
    world = make_world(
        sim,
        azurite,
        vmss=SEED_VMSS,
        capacity=86,
        min_nodes=10,
        max_nodes=120,
        replicas=172,  # two per node: every drain has pods to evict
        max_unavailable=20,
        grace=5,
    )
    assert world.run("reconcile").status == "done"
    assert world.assert_truth()["live"] == 86
    highest = {i["computer_name"] for i in sim.scale_set_state(SEED_VMSS)["instances"][-3:]}
    sim.post("clock", {"speed": SEED_SPEED})

    resent = 0
    for number, (kind, intent, interleave) in enumerate(SEED_ROUNDS):
        params: dict[str, Any] = (
            {"delta": -3} if intent == "delta" else {"nodes": _named_victims(world, 2, highest)}
        )
        sim.post("faults", _seed_fault(kind))
        if interleave == "during_delete":
            # Slow the clock so the doomed delete is still in flight while the reconcile reads.
            sim.post("clock", {"speed": SLOW})
        scale_in = world.send("scale", params)
        if interleave == "during_drain":
            world.drive("scale", scale_in, lambda r: r.status == "waiting" and r.step == "drain")
            assert world.run("reconcile").status == "done"
            assert world.assert_truth(settled=False)["live"] == 86  # cordoned, not gone
        elif interleave == "during_delete":
            record = world.drive(
                "scale", scale_in, lambda r: r.status == "waiting" and r.step == "await_delete"
            )
            victims = len(record.state["plan"]["victims"])
            assert world.run("reconcile").status == "done"
            # Mid-delete the truth is "86 - victims live, victims deleting", and so is the record;
            # nothing about it is remembered once the delete fails.
            true = world.assert_truth(settled=False)
            assert (true["live"], true["deleting"], true["total"]) == (86 - victims, victims, 86)
            sim.post("clock", {"speed": SEED_SPEED})
        record = world.drive("scale", scale_in)
        assert record.status == "failed", (number, record)
        assert CANNOT_ALLOCATE in (record.error or ""), (number, record.error)
        assert record.outcome is not None
        assert record.outcome["survivors"] == record.state["plan"]["victims"]
        assert record.outcome["deleted"] == []
        assert set(record.outcome["uncordoned"]) == set(record.state["plan"]["nodes"])
        assert record.steps[-1]["step"] == "settle"  # re-read after the failed delete
        assert world.assert_truth()["live"] == 86, number
        if interleave == "after":
            assert world.run("reconcile").status == "done"
            assert world.assert_truth()["live"] == 86, number
        sim.delete("faults")
        # A second send only after an answer was lost (a loaded machine can time one out), and
        # then only once the victims were checked again.
        resent += bool(record.state.get("resent"))

    # One delete per scale-in, and a second only where the job says it resent.
    assert len(world.witness.deletes) == len(SEED_ROUNDS) + resent
    assert sim.scale_set_state(SEED_VMSS)["capacity"] == 86
    assert world.witness.raises == []
    # The drains did evict: every victim had workload pods, evicted before its first delete.
    evicted = world.witness.evicted_before_delete
    assert highest <= evicted.keys() and all(n > 0 for n in evicted.values()), evicted

    # The faults have run out: the next scale-in deletes exactly its drained victims.
    record = world.run("scale", {"delta": -3})
    assert record.status == "done", record
    assert sorted(record.outcome["deleted"]) == sorted(record.state["plan"]["victims"])
    true = world.assert_truth()
    assert (true["live"], true["active"], true["total"]) == (83, 83, 83)
    assert sim.scale_set_state(SEED_VMSS)["capacity"] == 83
    assert world.run("reconcile").status == "done"
    assert world.assert_truth()["live"] == 83


# -- the property ----------------------------------------------------------------------------------

PROP_VMSS = "aks-prop-12121212-vmss"
PROP_MIN, PROP_MAX = 3, 9

DELETE_FAULTS: list[dict[str, Any]] = [
    {"kind": "lro_failed", "error": code}
    for code in (CANNOT_ALLOCATE, "InternalExecutionError", "OperationPreempted")
] + [
    {"kind": "error", "status": 409, "error": CANNOT_ALLOCATE},
    {"kind": "error", "status": 500, "error": "InternalExecutionError"},
    {"kind": "error", "status": 409, "error": "OperationPreempted"},
    {"kind": "partial_delete", "deleted": 1, "error": "InternalExecutionError"},
]
ALLOCATION_FAILED_THEN_READ_ERROR: dict[str, Any] = {
    "operation": UPDATE,
    "kind": "lro_failed",
    "error": "AllocationFailed",
    "then": "read_error",
}
READ_ERROR = {
    "operation": "VirtualMachineScaleSets_Get",
    "scale_set": PROP_VMSS,
    "kind": "error",
    "status": 503,
    "error": "ServiceUnavailable",
    "count": 1,
}
FAULTS: list[dict[str, Any]] = (
    [{"operation": DELETE} | fault for fault in DELETE_FAULTS]
    + [
        {"operation": UPDATE, "kind": "error", "status": 412, "error": "PreconditionFailed"},
        {"operation": UPDATE, "kind": "lro_failed", "error": "AllocationFailed"},
        # A capacity write that fails, and then the re-read after it fails once too (armed by the
        # Witness as the write goes out): the report must wait for a read, not crash the step.
        ALLOCATION_FAILED_THEN_READ_ERROR,
        {"operation": UPDATE, "kind": "error", "status": 409, "error": "QuotaExceeded"}
        | {"then": "read_error"},
    ]
    + [{"throttle": operations} for operations in ("reads", "writes")]
)
THROTTLED = {
    # A small budget in a short window (600 simulated seconds, 1 s of wall time): calls get 429
    # with a Retry-After of about a second, and jobs that wait for it can always go on.
    "reads": ["VirtualMachineScaleSets_Get", "VirtualMachineScaleSetVMs_List"],
    "writes": [DELETE, UPDATE, "VirtualMachineScaleSets_Get"],
}

jobs_strategy = st.lists(
    st.tuples(
        st.sampled_from(["up", "in", "in_named", "reconcile"]),
        st.integers(min_value=1, max_value=3),
        st.none() | st.sampled_from(FAULTS),
    ),
    min_size=3,
    max_size=5,
)


def _inject(world: World, fault: dict[str, Any] | None) -> bool:
    """Arm one fault for the next job; True when it is a throttling budget to lift afterwards."""
    if fault is None:
        return False
    if "throttle" in fault:
        operations = THROTTLED[fault["throttle"]]
        budget = {"family": "Test3Min", "operations": operations, "limit": 3, "window_seconds": 600}
        world.sim.post("throttling", [budget])
        return True
    fault = dict(fault)
    if fault.pop("then", None) == "read_error":
        world.witness.arm_on_raise.append(READ_ERROR)
    world.sim.post("faults", fault | {"scale_set": PROP_VMSS, "count": 1})
    return False


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(jobs=jobs_strategy)
# Always also this one: a scale-up whose write fails (and the read after it, once), then scale-ups
# and a scale-in on a pool that now holds failed instances.
@example(jobs=[("up", 2, ALLOCATION_FAILED_THEN_READ_ERROR), ("up", 1, None), ("in", 1, None)])
def test_any_interleaving_of_jobs_and_faults_keeps_the_recorded_count_true(
    sim: Simulator, azurite: Any, jobs: list[tuple[str, int, dict[str, Any] | None]]
) -> None:
    world = make_world(
        sim,
        azurite,
        vmss=PROP_VMSS,
        capacity=5,
        min_nodes=PROP_MIN,
        max_nodes=PROP_MAX,
        replicas=6,
        max_unavailable=2,
        grace=5,
        # Creates and deletes end at the next request, so no job waits on a poll: each example
        # stays short (the seed test waits on deletes in flight).
        latencies={"create": 0, "delete": 0},
    )
    assert world.run("reconcile").status == "done"
    world.assert_truth()
    for kind, size, fault in jobs:
        throttled = _inject(world, fault)
        before = sim.scale_set_state(PROP_VMSS)
        capacity_before = before["capacity"]
        deletes_before = len(world.witness.deletes)
        if kind == "up":
            record = world.run("scale", {"delta": size})
        elif kind == "in":
            record = world.run("scale", {"delta": -size})
        elif kind == "in_named":
            live = [
                i["computer_name"]
                for i in sim.scale_set_state(PROP_VMSS)["instances"]
                if i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
            ]
            if not live:
                continue
            record = world.run("scale", {"nodes": live[: min(size, 2)]})
        else:
            record = world.run("reconcile")
        if throttled:
            sim.post("throttling", [])
        assert record.status in FINAL
        if "reconcile releases them" in (record.error or ""):
            # A delete with no definite answer was watched until its deadline (on a loaded
            # machine a round is minutes of simulated time): the job leaves its victims cordoned
            # and claimed, and says the next reconcile gives them back. It must.
            assert world.run("reconcile").status == "done"
        true = world.assert_truth()
        if len(world.witness.deletes) == deletes_before:  # no delete: capacity cannot have dropped
            assert sim.scale_set_state(PROP_VMSS)["capacity"] >= capacity_before
        assert true["live"] >= PROP_MIN
        if kind == "up" and record.status == "failed" and record.outcome:
            # A scale-up blames only instances it created, never older failed ones.
            existed = {i["instance_id"] for i in before["instances"]}
            assert not set(record.outcome.get("failed", {})) & existed, record.outcome


CONCURRENT_FAULTS = [f for f in FAULTS if "throttle" not in f and "then" not in f]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(["up", "in", "reconcile"]), st.integers(1, 2)),
        min_size=3,
        max_size=5,
    ),
    faults=st.lists(st.sampled_from(CONCURRENT_FAULTS), max_size=3),
    order=st.randoms(use_true_random=False),
)
def test_jobs_in_flight_together_with_faults_keep_the_count_true(
    sim: Simulator,
    azurite: Any,
    jobs: list[tuple[str, int]],
    faults: list[dict[str, Any]],
    order: Any,
) -> None:
    """All jobs queued at once and delivered in a random order of queues, so their steps
    interleave (waits, drains, leases); faults armed for whichever job meets them first."""
    world = make_world(
        sim,
        azurite,
        vmss=PROP_VMSS,
        capacity=5,
        min_nodes=PROP_MIN,
        max_nodes=PROP_MAX,
        replicas=6,
        max_unavailable=2,
        grace=5,
        latencies={"create": 0, "delete": 0},
    )
    assert world.run("reconcile").status == "done"
    for fault in faults:
        world.sim.post("faults", fault | {"scale_set": PROP_VMSS, "count": 1})
    sent = []
    for kind, size in jobs:
        if kind == "reconcile":
            sent.append(("reconcile", world.send("reconcile")))
        else:
            sent.append(("scale", world.send("scale", {"delta": size if kind == "up" else -size})))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        records = [world.tables.job(job_id) for _, job_id in sent]
        if all(r is not None and r.status in FINAL for r in records):
            break
        world.pump.once(order.choice(["scale", "reconcile"]))
        true = true_counts(sim.scale_set_state(PROP_VMSS))
        assert true["live"] >= PROP_MIN  # at every moment, not only after each job
        time.sleep(0.02)
    else:
        raise AssertionError(f"jobs did not finish: {records}")
    assert world.run("reconcile").status == "done"
    world.assert_truth()
