"""Node claims (issue 9, part 1): one owner per node. The sequences that ended in an undrained
delete or an operator's cordon undone, driven through the product's runner against Azurite and
the simulator; the Witness checks every DeleteInstances against the cluster as it is sent.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.kube import CLAIM_ANNOTATION, NodeChanged
from shared.decide.claims import Claim
from shared.flows.claims import Claimed, Owner, Refused, claim, release
from tests.simulator import STOPPED, Simulator
from tests.truth_support import World, make_world

VMSS = "aks-claims-31313131-vmss"
GROUP = "claims"


def _node(n: int) -> str:
    return f"{VMSS}{n:06d}"


X, Y, Z, W = _node(0), _node(1), _node(2), _node(3)


def _workloads(*, slow_grace: int = 600) -> dict[str, Any]:
    """X empty; Y runs a pod that takes `slow_grace` simulated seconds to go; Z runs a bare pod
    (a drain with default flags refuses it); W runs nothing."""
    return {
        "daemonsets": [{"name": "kube-proxy"}],
        "deployments": [
            {
                "name": "slow",
                "replicas": 1,
                "node_selector": {"kubernetes.io/hostname": Y},
                "termination_grace_seconds": slow_grace,
            }
        ],
        "pods": [{"name": "debug", "node": Z}],
    }


def _world(sim: Simulator, azurite: Any, **extra: Any) -> World:
    return make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=6,
        min_nodes=1,
        max_nodes=9,
        replicas=0,
        max_unavailable=1,
        workloads=_workloads(),
        **extra,
    )


def _unschedulable(world: World, name: str) -> bool:
    return bool(world.cluster()[name]["unschedulable"])


def _claim_of(world: World, name: str) -> dict[str, Any] | None:
    node = world.pump.services.kube.node(name)
    raw = node.annotations.get(CLAIM_ANNOTATION) if node else None
    return json.loads(raw) if raw else None


def test_a_second_scale_in_naming_a_claimed_node_is_refused_and_the_first_deletes_it_cordoned(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    a = world.send("scale", {"nodes": [X, Y]})
    # A claims and cordons X and Y, drains X, and waits for Y's slow pod.
    first = world.drive("scale", a, lambda r: r.status == "waiting" and r.step == "drain")
    assert set(first.state["claimed"]) == {X, Y}
    assert _claim_of(world, X)["job"] == a
    b = world.tables.job(world.deliver_once("scale", {"nodes": [X, Z]}))
    assert b.status == "failed" and "claimed" in b.error and a in b.error
    assert _unschedulable(world, X) and _claim_of(world, X)["job"] == a  # untouched by B
    assert not _unschedulable(world, Z)  # B never got as far as touching Z
    # Other roads to an uncordon: a drain job on X is refused; one on Z fails on its bare pod
    # and gives back only Z.
    on_x = world.run("drain", {"node": X})
    assert on_x.status == "failed" and "claimed by scale job" in on_x.error
    on_z = world.run("drain", {"node": Z})
    assert on_z.status == "failed" and "pods block the drain" in on_z.error
    assert on_z.outcome["released"] == "uncordoned"
    assert _unschedulable(world, X) and not _unschedulable(world, Z)
    # A goes on; the Witness checks X and Y are cordoned and empty as the delete is sent.
    done = world.drive("scale", a, timeout=60)
    assert done.status == "done", done.error
    assert sorted(world.witness.deletes[0]) == ["0", "1"]
    world.assert_truth()


def test_an_operators_cordon_survives_a_failed_drain_and_a_refused_scale_in(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    kube = world.pump.services.kube
    kube.set_unschedulable(Z, True)  # the operator's `kubectl cordon`
    assert world.run("reconcile").status == "done"
    drained = world.run("drain", {"node": Z})
    assert drained.status == "failed"
    assert drained.outcome["released"] == "released, left cordoned (it was before the claim)"
    assert _unschedulable(world, Z) and _claim_of(world, Z) is None
    scaled = world.run("scale", {"nodes": [Z, W]})
    assert scaled.status == "failed" and "drain of" in scaled.error
    assert _unschedulable(world, Z)  # the operator's cordon stays
    assert not _unschedulable(world, W)  # ours is undone
    assert world.witness.deletes == []
    world.assert_truth(settled=False)
    assert [n for n, v in world.cluster().items() if v["unschedulable"]] == [Z]


def test_a_drained_node_is_handed_back_cordoned_and_never_picked_by_count(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    drained = world.run("drain", {"node": W})
    assert drained.status == "done"
    assert drained.outcome["node"] == "released, left cordoned as asked"
    assert _unschedulable(world, W) and _claim_of(world, W) is None
    planned = world.run("scale", {"delta": -2, "dry_run": True})
    assert W not in planned.outcome["plan"]["nodes"]


def test_a_victim_uncordoned_during_the_drain_is_not_deleted_and_the_job_says_why(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    a = world.send("scale", {"nodes": [X, Y]})
    world.drive("scale", a, lambda r: r.status == "waiting" and r.step == "drain")
    world.pump.services.kube.set_unschedulable(X, False)  # someone's `kubectl uncordon`
    done = world.drive("scale", a, timeout=60)
    assert done.status == "failed"
    assert "schedulable again" in done.outcome["held_back"]["0"]
    assert world.witness.deletes == [["1"]]  # only Y went
    assert X in world.cluster() and not _unschedulable(world, X)
    assert _claim_of(world, X) is None
    world.assert_truth()


def test_two_jobs_cannot_both_win_a_node(sim: Simulator, azurite: Any) -> None:
    world = _world(sim, azurite)
    kube = world.pump.services.kube
    stale = kube.node(X)
    now = world.pump.services.clock.now()
    assert isinstance(claim(kube, X, Owner("job-a", "scale"), now), Claimed)
    # B read the node before A's claim: its conditional write cannot land on A's.
    with pytest.raises(NodeChanged):
        kube.patch_if_unchanged(stale, annotations={CLAIM_ANNOTATION: "b"}, unschedulable=True)
    refused = claim(kube, X, Owner("job-b", "drain"), now)
    assert isinstance(refused, Refused) and refused.holder == "job-a"
    assert (
        release(kube, X, Owner("job-b", "drain")) == f"node {X} is claimed by job job-a; left alone"
    )
    assert release(kube, X, Owner("job-a", "scale")) == "uncordoned"
    assert not kube.node(X).unschedulable and CLAIM_ANNOTATION not in kube.node(X).annotations


def test_reconcile_releases_claims_whose_job_ended_and_keeps_live_ones(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    # The clock stands still: "recent" and "an hour ago" stay so, however slow this machine is.
    sim.post("clock", {"speed": STOPPED})
    kube = world.pump.services.kube
    now = world.pump.services.clock.now()
    ended = world.run("drain", {"node": W, "dry_run": True})  # a job that is done
    assert ended.status == "done"

    def leave(node: str, job_id: str, *, at: Any = now, was: bool = False) -> None:
        value = Claim(job_id, "scale", at.isoformat(), was).encode()
        kube.annotate(node, {CLAIM_ANNOTATION: value})
        kube.set_unschedulable(node, True)

    leave(W, ended.id)  # its job is done: released, uncordoned
    leave(Z, ended.id, was=True)  # likewise, but it was cordoned before: stays cordoned
    leave(X, "never-heard-of", at=now - timedelta(hours=2))  # unknown for long: released
    leave(Y, "just-started")  # unknown but recent: kept (its job may not be recorded yet)
    record = world.run("reconcile")
    assert record.status == "done"
    assert set(record.outcome["claims"]) == {W, Z, X}
    assert not _unschedulable(world, W) and _unschedulable(world, Z)
    assert not _unschedulable(world, X)
    assert _unschedulable(world, Y) and _claim_of(world, Y)["job"] == "just-started"
    assert all(_claim_of(world, n) is None for n in (W, Z, X))
    shown = world.tables.pool_status(world.pool["name"])["claims"]
    assert set(shown) == {W, Z, X, Y}  # the record read before the release shows them all


def test_a_node_the_operator_takes_back_during_a_scale_in_is_left_schedulable(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    kube = world.pump.services.kube
    kube.set_unschedulable(X, True)  # the operator cordons X, then asks to remove it and Y
    assert world.run("reconcile").status == "done"
    a = world.send("scale", {"nodes": [X, Y]})
    world.drive("scale", a, lambda r: r.status == "waiting" and r.step == "drain")
    kube.set_unschedulable(X, False)  # ... and changes their mind: X is theirs again
    done = world.drive("scale", a, timeout=60)
    assert "schedulable again" in done.outcome["held_back"]["0"]
    assert not _unschedulable(world, X) and _claim_of(world, X) is None  # not cordoned again
    world.assert_truth()


def test_a_claim_poolkeeper_did_not_write_is_left_alone_and_does_not_stop_reconcile(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    kube = world.pump.services.kube
    odd = {"job": "x/y#?", "kind": "manual", "at": "2026-01-01T00:00:00"}
    kube.annotate(X, {CLAIM_ANNOTATION: json.dumps(odd)})
    kube.annotate(W, {CLAIM_ANNOTATION: "kept by hand"})
    record = world.run("reconcile")
    assert record.status == "done" and "claims" not in record.outcome
    assert _claim_of(world, X) == odd
    refused = world.run("drain", {"node": W})
    assert refused.status == "failed" and "claimed by unreadable job ?" in refused.error


def test_a_release_puts_back_the_annotations_the_job_set_even_when_reconcile_releases(
    sim: Simulator, azurite: Any
) -> None:
    from shared.adapters.kube import SCALE_DOWN_DISABLED
    from shared.flows.claims import mark

    world = _world(sim, azurite)
    kube = world.pump.services.kube
    now = world.pump.services.clock.now()
    kube.annotate(Z, {SCALE_DOWN_DISABLED: "true"})  # someone else's, before any job
    ended = world.run("drain", {"node": W, "dry_run": True})
    for node in (W, Z):
        owner = Owner(ended.id, "patch")
        assert isinstance(claim(kube, node, owner, now), Claimed)
        assert mark(kube, node, owner, {SCALE_DOWN_DISABLED: "true"}) is None
        assert kube.node(node).annotations[SCALE_DOWN_DISABLED] == "true"
    assert world.run("reconcile").status == "done"  # the job has ended: its claims go
    assert SCALE_DOWN_DISABLED not in kube.node(W).annotations  # ours, removed
    assert kube.node(Z).annotations[SCALE_DOWN_DISABLED] == "true"  # theirs, kept
    assert not _unschedulable(world, W) and not _unschedulable(world, Z)
