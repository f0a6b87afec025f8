"""Claims under concurrency (issue 9, acceptance): scale-ins named and by count, drain jobs and an
operator's cordons at once, with random delete faults, node writes whose answers are lost after
they landed, and worker kills, delivered in a random order through the product's runner against
Azurite and the simulator.

Never a delete of a node that was schedulable or had pods left to evict when it was sent (the
Witness checks each DeleteInstances against the cluster), never an operator's cordon undone,
every node left cordoned is one somebody asked for, and the recorded count equals the truth.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.adapters.kube import CLAIM_ANNOTATION
from shared.adapters.ledger import FINAL
from tests.jobs_support import job
from tests.simulator import Simulator
from tests.truth_support import CANNOT_ALLOCATE, DELETE, World, make_world

VMSS = "aks-race-51515151-vmss"
NODES = [f"{VMSS}{n:06d}" for n in range(7)]
BARE = NODES[6]  # runs a pod without a controller: every drain of it fails


def lose_answers(sim: Simulator, writes: set[int]) -> None:
    """The answers of the chosen conditional node writes (claims, releases, marks: the patches
    that carry a resourceVersion) are lost after they landed, as if their worker had died: the
    step that sent one is not recorded and runs again."""
    for n in sorted(writes):
        sim.post(
            "kube/faults",
            {
                "verbs": ["patch"],
                "resources": ["nodes"],
                "match": '"resourceVersion"',
                "kind": "timeout",
                "seconds": 0,
                "applied": True,
                "after": n - 1,
                "count": 1,
            },
        )


DELETE_FAULTS: list[dict[str, Any]] = [
    {"kind": "lro_failed", "error": CANNOT_ALLOCATE},
    {"kind": "error", "status": 500, "error": "InternalExecutionError"},
    {"kind": "error", "status": 409, "error": "OperationPreempted"},
    {"kind": "partial_delete", "deleted": 1, "error": "InternalExecutionError"},
    {"kind": "lost_answer", "apply_after": 40},
    {"kind": "lost_answer", "apply_after": 20, "outcome": "lro_failed", "error": CANNOT_ALLOCATE},
]

Action = tuple[str, int, int]
node_index = st.integers(min_value=0, max_value=len(NODES) - 1)
actions_strategy = st.lists(
    st.tuples(
        st.sampled_from(["in_named", "in_count", "drain", "cordon", "uncordon"]),
        node_index,
        node_index,
    ),
    min_size=3,
    max_size=7,
)


def _world(sim: Simulator, azurite: Any) -> World:
    return make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=len(NODES),
        min_nodes=3,
        max_nodes=9,
        replicas=0,
        max_unavailable=1,
        workloads={
            "daemonsets": [{"name": "kube-proxy"}],
            "deployments": [
                {
                    "name": "web",
                    "replicas": 5,
                    "node_selector": {"elastisys.io/node-group": "race"},
                    "termination_grace_seconds": 120,
                    "pdb": {"max_unavailable": 1},
                }
            ],
            "pods": [{"name": "debug", "node": BARE}],
        },
        latencies={"delete": 30},
    )


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    actions=actions_strategy,
    faults=st.lists(st.sampled_from(DELETE_FAULTS), max_size=2),
    lost=st.sets(st.integers(min_value=1, max_value=12), max_size=2),
    crash_after_send=st.integers(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=2**16),
)
# Always also the sequence: A names X and Y (Y's pods take a while to go); B names X and
# the node whose drain fails. B must not give X back; A must not delete X uncordoned.
@example(
    actions=[("in_named", 0, 1), ("in_named", 0, 6)],
    faults=[],
    lost=set(),
    crash_after_send=0,
    seed=0,
)
# And a scale-in of the node whose drain fails, whose claim is answered with a timeout after it
# landed: the step that runs again must know the claim (and its cordon) for its own, and give the
# node back schedulable.
@example(
    actions=[("in_named", 6, 6), ("drain", 4, 4)],
    faults=[],
    lost={1, 3},
    crash_after_send=0,
    seed=1,
)
def test_claims_hold_under_concurrent_scale_ins_drains_cordons_faults_and_kills(
    sim: Simulator,
    azurite: Any,
    actions: list[Action],
    faults: list[dict[str, Any]],
    lost: set[int],
    crash_after_send: int,
    seed: int,
) -> None:
    order = random.Random(seed)
    world = _world(sim, azurite)
    real = world.pump.services.kube
    lose_answers(world.sim, lost)
    world.witness.crash_after_send = crash_after_send
    operator = real  # the operator's kubectl: plain writes, no claims
    assert world.run("reconcile").status == "done"
    for fault in faults:
        world.sim.post("faults", {"operation": DELETE, "scale_set": VMSS, "count": 1} | fault)

    # Jobs go on the queues at once; the operator acts between deliveries.
    jobs: list[str] = []
    operator_steps: list[Action] = []
    for kind, n, m in actions:
        node = NODES[n]
        if kind == "in_named":
            jobs.append(world.send("scale", {"nodes": sorted({node, NODES[m]})}))
        elif kind == "in_count":
            jobs.append(world.send("scale", {"delta": -1 - n % 2}))
        elif kind == "drain":
            message = job("drain", world.pool["name"], {"node": node, "timeout_seconds": 600})
            world.pump.send("drain", message)
            jobs.append(str(message["id"]))
        else:
            operator_steps.append((kind, n, m))
    jobs.append(world.send("reconcile"))

    cordoned_by_operator: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = [world.tables.job(j) for j in jobs]
        if all(r is not None and r.status in FINAL for r in records) and not operator_steps:
            break
        if operator_steps and order.random() < 0.3:
            kind, n, _ = operator_steps.pop(0)
            found = operator.node(NODES[n])
            # The operator cordons a node nobody holds (on a held one, `kubectl cordon` finds it
            # cordoned already), and uncordons only what they cordoned themselves.
            if found is not None and kind == "cordon" and not found.claim:
                operator.set_unschedulable(found.name, True)
                cordoned_by_operator.add(found.name)
            elif found is not None and kind == "uncordon" and found.name in cordoned_by_operator:
                operator.set_unschedulable(found.name, False)
                cordoned_by_operator.discard(found.name)
            continue
        world.pump.once(order.choice(["scale", "drain", "reconcile"]))
        time.sleep(0.02)
    records = {j: world.tables.job(j) for j in jobs}
    unfinished = {
        j: r.status if r else None for j, r in records.items() if not r or r.status not in FINAL
    }
    assert not unfinished, f"jobs not finished: {unfinished}"

    # Settle: a last reconcile releases claims whose jobs ended (after their deletes settled).
    world.sim.advance(3600)
    assert world.run("reconcile").status == "done"
    assert world.witness.violations == []
    world.assert_truth(settled=False)
    nodes = {n.name: n for n in real.nodes() if n.name in NODES}
    for name in cordoned_by_operator & set(nodes):
        assert nodes[name].unschedulable, f"the operator's cordon on {name} was undone"
    handed_back = {
        json.loads(r.envelope)["params"]["node"]
        for r in records.values()
        if r is not None and r.kind == "drain" and r.status == "done"
    }
    for name, node in nodes.items():
        assert CLAIM_ANNOTATION not in node.annotations, (
            f"{name} is still claimed: {node.annotations}"
        )
        if node.unschedulable:
            assert name in cordoned_by_operator | handed_back, f"{name} left cordoned by nobody"
