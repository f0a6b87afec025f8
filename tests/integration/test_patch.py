"""Patch jobs (issue 10) end to end: the product's runner against Azurite and the simulator, whose
instances have an OS (kernels, updates published over time, reboots) and whose cluster shows it.

`Watch` wraps the product's own Kubernetes seam: at each claim it checks, against the simulator,
that no more than `max_unavailable` nodes are out and that the pool keeps `min_nodes` live.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from shared.adapters.kube import CLAIM_ANNOTATION, Kube, Node
from shared.adapters.ledger import FINAL, AlertLog
from shared.config.patch import Window
from tests.jobs_support import WorkerKilled
from tests.simulator import RG, Simulator
from tests.truth_support import SPEED, World, make_world

VMSS = "aks-patch-61616161-vmss"
OLD_KERNEL, NEW_KERNEL = "6.8.0-1015-azure", "6.8.0-1017-azure"
OS = {"name": "Ubuntu 24.04.1 LTS", "kernel": OLD_KERNEL, "packages": {"openssl": "3.0.13-1"}}
UPDATES = [{"date": "2026-11-01T06:00:00Z", "kernel": NEW_KERNEL, "packages": 3, "security": True}]
RESTART = "VirtualMachineScaleSetVMs_Restart"


@dataclass
class Watch:
    """Out-of-service nodes at every claim, checked against the simulator's truth."""

    sim: Simulator
    limit: int
    min_live: int
    out: set[str] = field(default_factory=set)
    most_out: int = 0
    claimed_order: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def wrap(self, kube: Kube) -> Kube:
        watch = self

        class Watched(Kube):
            def patch_if_unchanged(self, node: Node, **changes: Any) -> Node:
                written = super().patch_if_unchanged(node, **changes)
                value = (changes.get("annotations") or {}).get(CLAIM_ANNOTATION, "absent")
                if value is None:
                    watch.out.discard(node.name)
                elif value != "absent":
                    watch.claimed(node.name)
                return written

        return Watched(kube._core.api_client)

    def claimed(self, name: str) -> None:
        if name in self.out:  # the claim rewritten (e.g. to remember an annotation it set)
            return
        self.out.add(name)
        self.claimed_order.append(name)
        self.most_out = max(self.most_out, len(self.out))
        if len(self.out) > self.limit:
            self.violations.append(f"{sorted(self.out)} out at once (max {self.limit})")
        scale_set = next(s for s in self.sim.state()["scale_sets"] if s["name"] == VMSS)
        live = sum(
            i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
            for i in scale_set["instances"]
        )
        if live - len(self.out) < self.min_live:
            self.violations.append(f"{live} live with {len(self.out)} out: below {self.min_live}")


def _world(
    sim: Simulator,
    azurite: Any,
    *,
    capacity: int = 6,
    patch: dict[str, Any] | None = None,
    workloads: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    latencies: dict[str, float] | None = None,
) -> tuple[World, Watch]:
    notifications = f"notify-{uuid.uuid4().hex[:8]}"
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=capacity,
        min_nodes=2,
        max_nodes=capacity + 2,
        replicas=0,
        max_unavailable=1,
        workloads=workloads
        or {
            "daemonsets": [{"name": "kube-proxy"}],
            "deployments": [
                {
                    "name": "web",
                    "replicas": capacity,
                    "node_selector": {"elastisys.io/node-group": "patch"},
                    "termination_grace_seconds": 10,
                    "pdb": {"min_available": capacity - 1},
                }
            ],
        },
        pool_extra={"patch": {"soak_minutes": 1, "ready_timeout_minutes": 10} | (patch or {})},
        settings={
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            "POOLKEEPER_NOTIFICATIONS_QUEUE": notifications,
        },
        os=OS,
        os_updates=UPDATES,
        faults=faults or [],
        **({"latencies": latencies} if latencies else {}),
    )
    world.sim.advance(2 * 3600)  # an hour of usage history for the headroom check
    watch = Watch(sim, (patch or {}).get("max_unavailable", 1), 2)
    watched = watch.wrap(world.pump.services.kube)
    world.pump.services.kube_for = lambda pool: watched  # type: ignore[method-assign]
    assert world.run("reconcile").status == "done"
    return world, watch


def _os(sim: Simulator) -> dict[str, dict[str, Any]]:
    scale_set = next(s for s in sim.state()["scale_sets"] if s["name"] == VMSS)
    return {i["computer_name"]: i["os"] for i in scale_set["instances"]}


def _restarts(sim: Simulator) -> int:
    return sum(c["operation"] == RESTART for c in sim.calls()["calls"])


def _notifications(world: World) -> list[dict[str, Any]]:
    queue = world.pump.services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]
    client = world.pump.services.queues._queue(queue)
    return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]


# Until the nodes are checked the clock runs at CHECK_SPEED: a round of the job is at least a wall
# second (queue visibility is whole seconds), ten simulated minutes at 600x, and on a loaded
# machine the checks' 30-minute deadline passed before a round collected a check that had ended.
CHECK_STEPS = frozenset({"check", "await_checks"})
CHECK_SPEED = 60


def _patch(world: World, params: dict[str, Any] | None = None, *, timeout: float = 120) -> Any:
    """Run a patch job to its end, at CHECK_SPEED while it checks the nodes."""
    world.sim.post("clock", {"speed": CHECK_SPEED})
    slowed = True

    def done(record: Any) -> bool:
        nonlocal slowed
        if slowed and record.step not in CHECK_STEPS:
            world.sim.post("clock", {"speed": SPEED})
            slowed = False
        return record.status in FINAL

    try:
        return world.drive("patch", world.send("patch", params), done, timeout=timeout)
    finally:
        if slowed:
            world.sim.post("clock", {"speed": SPEED})


def _cordoned(world: World) -> list[str]:
    return sorted(n for n, v in world.cluster().items() if v["unschedulable"])


def test_a_pool_is_patched_end_to_end_within_its_budgets(sim: Simulator, azurite: Any) -> None:
    # A soak long against a round of the rollout: three nodes are out at once however slowly
    # the machine runs the rounds (the simulated clock runs 600 times faster than the wall).
    world, watch = _world(
        sim, azurite, capacity=12, patch={"max_unavailable": 3, "soak_minutes": 20}
    )
    before = _os(sim)
    assert {o["running_kernel"] for o in before.values()} == {OLD_KERNEL}
    record = _patch(world, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    after = _os(sim)
    assert set(record.outcome["patched"]) == set(after)
    for name, seen in after.items():
        assert seen["running_kernel"] == NEW_KERNEL, (name, seen)
        assert seen["boot_id"] != before[name]["boot_id"]
        assert not seen["reboot_required"] and seen["pending_updates"] == 0
    assert watch.violations == [] and watch.most_out == 3
    assert _restarts(sim) == 12  # one restart a node
    # The budget held every eviction: the cluster refused the ones it had to.
    evictions = requests.get(f"{sim.admin}/kube/evictions", timeout=10).json()["evictions"]
    assert {e["outcome"] for e in evictions} <= {"evicted", "blocked"}
    budget = requests.get(f"{sim.admin}/kube/pdbs", timeout=10).json()["pdbs"][0]
    assert budget["current_healthy"] >= budget["desired_healthy"]
    nodes = {n.name: n for n in world.pump.services.kube.nodes()}
    for name in after:
        assert nodes[name].kernel == NEW_KERNEL and "poolkeeper.io/last-patched" in (
            nodes[name].annotations
        )
        assert "cluster-autoscaler.kubernetes.io/scale-down-disabled" not in nodes[name].annotations
    assert _cordoned(world) == []
    for name in after:  # the ledger lists each node's steps
        steps = [entry.split(" ", 1)[1] for entry in record.state["nodes"][name]["history"]]
        assert steps[0].startswith("taken down") and steps[-1].startswith("patched"), steps
        assert steps[-4:-1] == ["restarting", "ready", "soak"], steps
    recorded = world.tables.pool_status(world.pool["name"])["instances"]  # as the job left it
    assert not any(i["cordoned"] for i in recorded.values()), recorded
    shown = world.tables.patch_status(world.pool["name"])  # what GET /api/pools/{name} shows
    assert set(shown) == set(after)
    assert all(v["kernel"] == NEW_KERNEL and not v["reboot_required"] for v in shown.values())
    world.assert_truth()


def test_a_node_that_never_comes_back_halts_the_rollout_and_is_reported(
    sim: Simulator, azurite: Any
) -> None:
    first = f"{VMSS}000000"  # never patched, first by name: the first taken down
    world, watch = _world(
        sim,
        azurite,
        faults=[{"operation": "Boot", "kind": "never_ready", "scale_set": VMSS, "instance": "0"}],
    )
    record = _patch(world, timeout=60)
    assert record.status == "failed" and "halted" in record.error and first in record.error
    assert "not back Ready" in record.outcome["not_patched"][first]
    assert watch.claimed_order == [first]  # no other node was taken down after it
    assert len(record.outcome["not_reached"]) == 5
    halts = [n for n in _notifications(world) if n["kind"] == "patch_halted"]
    assert len(halts) == 1 and first in halts[0]["message"]


def test_an_undrainable_node_is_skipped_or_quarantined_and_the_rollout_goes_on(
    sim: Simulator, azurite: Any
) -> None:
    stuck = f"{VMSS}000001"
    workloads = {
        "deployments": [
            {
                "name": "single",
                "replicas": 1,
                "node_selector": {"kubernetes.io/hostname": stuck},
                "pdb": {"min_available": 1},  # never allows an eviction
            }
        ]
    }
    for policy in ("skip", "quarantine"):
        # Four nodes: with one quarantined (gone, as far as headroom goes) two still serve.
        world, _ = _world(
            sim,
            azurite,
            capacity=4,
            workloads=workloads,
            patch={"undrainable": policy, "drain_timeout_minutes": 2},
        )
        record = _patch(world, timeout=90)
        assert record.status == "done", record.error
        assert len(record.outcome["patched"]) == 3
        why = record.outcome["not_patched"][stuck]
        node = world.pump.services.kube.node(stuck)
        assert node is not None and CLAIM_ANNOTATION not in node.annotations
        if policy == "skip":
            assert why.startswith("skipped") and not node.unschedulable
        else:
            assert why.startswith("quarantined") and node.unschedulable
            assert node.labels["poolkeeper.io/patch-status"] == "quarantined"


def test_blockers_hold_the_rollout_until_they_clear(sim: Simulator, azurite: Any) -> None:
    world, watch = _world(sim, azurite, capacity=3)
    alerts = AlertLog(world.tables)
    now = world.pump.services.clock.now()
    alerts.record(world.pool["name"], "P1/group/patch", "firing", {}, now)
    job_id = world.send("patch")
    held = world.drive("patch", job_id, lambda r: "P1 alert" in (r.steps[-1].get("reason") or ""))
    assert held.status == "waiting" and watch.claimed_order == []
    alerts.record(world.pool["name"], "P1/group/patch", "ok", {}, now)
    assert world.drive("patch", job_id, timeout=60).status == "done"
    assert len(watch.claimed_order) == 3


def test_a_blocker_that_never_clears_ends_the_rollout_after_two_hours_with_why(
    sim: Simulator, azurite: Any
) -> None:
    world, watch = _world(sim, azurite, capacity=3)
    alerts = AlertLog(world.tables)
    alerts.record(
        world.pool["name"], "P1/group/patch", "firing", {}, world.pump.services.clock.now()
    )
    job_id = world.send("patch")
    world.drive("patch", job_id, lambda r: "P1 alert" in (r.steps[-1].get("reason") or ""))
    sim.advance(2 * 3600 + 60)  # the P1 lasts
    record = world.drive("patch", job_id, timeout=60)
    assert record.status == "done" and watch.claimed_order == []
    assert record.outcome["stopped"].startswith("no node could go down for 2:00:00")
    assert "P1 alert" in record.outcome["stopped"] and len(record.outcome["not_reached"]) == 3


def test_a_pod_matching_a_blocking_selector_holds_its_node_until_it_is_gone_not_the_others(
    sim: Simulator, azurite: Any
) -> None:
    first = f"{VMSS}000000"
    workloads = {"pods": [{"name": "db", "node": first, "labels": {"app": "database"}}]}
    world, watch = _world(
        sim,
        azurite,
        capacity=3,
        workloads=workloads,
        patch={"blocking_pod_selectors": ["app=database"]},
    )
    job_id = world.send("patch")
    # The others go on; the held node waits for as long as the pod is there.
    held = world.drive(
        "patch",
        job_id,
        lambda r: (
            "blocking selector" in (r.steps[-1].get("reason") or "") and not r.state["active"]
        ),
        timeout=90,
    )
    assert held.status == "waiting" and first not in watch.claimed_order
    assert len(watch.claimed_order) == 2
    # Its owner moves the database away (the pod is deleted): the hold clears.
    world.pump.services.kube._core.delete_namespaced_pod("db", "default", grace_period_seconds=0)
    record = world.drive("patch", job_id, timeout=90)
    assert record.status == "done", record.error
    assert watch.claimed_order[-1] == first and len(record.outcome["patched"]) == 3


def test_kureds_lock_on_a_node_of_the_pool_holds_every_node(sim: Simulator, azurite: Any) -> None:
    lock = json.dumps({"nodeID": f"{VMSS}000002", "metadata": {"unschedulable": False}})
    workloads = {
        "daemonsets": [
            {"name": "kured", "annotations": {"weave.works/kured-node-lock": lock}},
        ]
    }
    world, watch = _world(sim, azurite, capacity=3, workloads=workloads)
    job_id = world.send("patch")
    held = world.drive(
        "patch",
        job_id,
        lambda r: "kured holds its reboot lock" in (r.steps[-1].get("reason") or ""),
    )
    assert held.status == "waiting" and watch.claimed_order == []
    assert f"{VMSS}000002" in held.steps[-1]["reason"]


def test_a_window_that_closes_mid_rollout_takes_no_node_down_after_it(
    sim: Simulator, azurite: Any
) -> None:
    world, watch = _world(sim, azurite)
    now = world.pump.services.clock.now()
    closes = now + timedelta(minutes=15)
    window = {"days": ["mon"], "start": "00:00", "end": f"{closes:%H:%M}"}
    world.pump.services.config = world.pump.services.config.model_copy(
        update={
            "pools": tuple(
                p.model_copy(
                    update={"patch": p.patch.model_copy(update={"window": Window(**window)})}
                )
                for p in world.pump.services.config.pools
            )
        }
    )
    record = _patch(world, timeout=90)
    assert record.status == "done", record.error
    assert record.outcome["stopped"] == "the maintenance window has closed"
    assert record.outcome["not_reached"]  # six nodes take longer than a quarter of an hour
    limit = closes.replace(second=59)
    for name in watch.claimed_order:
        taken = record.state["nodes"][name]["history"][0].split(" ", 1)[0]
        assert datetime.fromisoformat(taken.replace("Z", "+00:00")) <= limit, (name, taken)
    assert _cordoned(world) == []


def test_outside_the_window_nothing_is_enqueued_and_a_closed_window_takes_no_new_node(
    sim: Simulator, azurite: Any
) -> None:
    from shared.flows.patch.rollout import enqueue_patches

    # The scenario starts Monday 08:00 UTC; the window is Sunday nights only.
    world, _ = _world(
        sim, azurite, patch={"automatic": True, "window": {"days": ["sun"], "start": "22:00"}}
    )
    assert enqueue_patches(world.pump.services) == []
    record = _patch(world)
    assert record.status == "done" and record.outcome["patched"] == {}
    assert record.outcome["stopped"] == "the maintenance window has closed"
    assert len(record.outcome["not_reached"]) == 6 and _cordoned(world) == []


def test_the_timer_enqueues_one_job_per_automatic_pool_in_its_window(
    sim: Simulator, azurite: Any
) -> None:
    from shared.flows.patch.rollout import enqueue_patches

    world, _ = _world(sim, azurite, patch={"automatic": True})
    (job_id,) = enqueue_patches(world.pump.services)
    assert world.drive("patch", job_id, timeout=90).status == "done"
    assert enqueue_patches(world.pump.services) == []  # once per window
    manual, _ = _world(sim, azurite)  # automatic is off by default
    assert enqueue_patches(manual.pump.services) == []


def test_a_dry_run_names_the_order_and_why_each_node_is_left_out(
    sim: Simulator, azurite: Any
) -> None:
    world, watch = _world(sim, azurite, capacity=5)
    kube = world.pump.services.kube
    kube.set_unschedulable(f"{VMSS}000003", True)  # an operator's cordon
    # A dry run runs nothing on the nodes: it plans from the checks recorded last (node 4 has
    # none: it is left out, saying so).
    checked = {"kernel": OLD_KERNEL, "boot_id": "b", "reboot_required": False, "pending": 3}
    world.tables.put_patch_checks(
        world.pool["name"],
        {f"{VMSS}00000{n}": checked | {"new_kernel": NEW_KERNEL} for n in range(4)},
    )
    record = _patch(world, {"dry_run": True})
    assert record.status == "done"
    assert record.outcome["order"] == [f"{VMSS}00000{n}" for n in range(3)]
    assert "cordoned by someone else" in record.outcome["left_out"][f"{VMSS}000003"]
    assert "not checked" in record.outcome["left_out"][f"{VMSS}000004"]
    assert watch.claimed_order == [] and _restarts(sim) == 0
    assert int(sim.calls()["counters"].get("VirtualMachineScaleSetVMs_RunCommand", 0)) == 0
    assert {o["running_kernel"] for o in _os(sim).values()} == {OLD_KERNEL}


def test_a_worker_killed_during_the_reboot_wait_resumes_without_a_second_restart(
    sim: Simulator, azurite: Any
) -> None:
    from shared.adapters import instances

    world, _ = _world(sim, azurite, capacity=3)
    killed = {"left": 1}
    real = instances.Instances.restart_status

    def dies_once(self: Any, vmss_id: str, instance_id: str, token: str) -> Any:
        if killed["left"]:
            killed["left"] -= 1
            raise WorkerKilled("the worker died while waiting for the reboot")
        return real(self, vmss_id, instance_id, token)

    instances.Instances.restart_status = dies_once  # type: ignore[method-assign]
    try:
        record = _patch(world, timeout=90)
    finally:
        instances.Instances.restart_status = real  # type: ignore[method-assign]
    assert killed["left"] == 0, (record.status, record.error, record.outcome, record.steps[-3:])
    assert record.status == "done", record.error
    assert _restarts(sim) == 3  # one a node, the killed worker's included


# -- safety under faults (issue 18) ---------------------------------------------------------------

UPGRADE = "VirtualMachineScaleSets_UpdateInstances"
RUN_COMMAND = "VirtualMachineScaleSetVMs_RunCommand"
NEWER_IMAGE = {"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-ubuntu-2204-gen2"}


def _after_send(
    world: World, operation: str, then: Callable[[], None], *, instance: str, skip: int = 0
) -> dict[str, int]:
    """Run `then` right after the product's scale-set seam has sent `operation` (its name in
    `ScaleSets._call`: restart, run_command, upgrade) for `instance`, once, after `skip` such
    sends; e.g. kill the worker before it can record what it sent."""
    scale_sets = world.pump.services.scale_sets
    real = scale_sets._call
    seen = {"skip": skip, "left": 1}

    @contextmanager
    def call(op: str, ref: Any, instance_ids: Any = ()) -> Iterator[Any]:
        with real(op, ref, instance_ids) as compute:
            yield compute
        if op != operation or (instance_ids and instance not in instance_ids):
            return
        if seen["skip"]:
            seen["skip"] -= 1
        elif seen["left"]:
            seen["left"] -= 1
            then()

    scale_sets._call = call  # type: ignore[method-assign]
    return seen


def _die() -> None:
    raise WorkerKilled("the worker died right after the send, before recording it")


def _calls_on(sim: Simulator, operation: str, instance: str | None = None) -> int:
    return sum(
        c["operation"] == operation
        and (instance is None or f"/virtualmachines/{instance}/" in c["path"].lower() + "/")
        for c in sim.calls()["calls"]
    )


def _outdate_model(world: World) -> None:
    """A newer image in the scale set's model: every instance is behind it (upgrade mode)."""
    model = {"virtualMachineProfile": {"storageProfile": {"imageReference": NEWER_IMAGE}}}
    ops = world.sim.compute().virtual_machine_scale_sets
    ops.begin_update(RG, VMSS, {"properties": model}).result()
    assert world.run("reconcile").status == "done"


@pytest.mark.parametrize("action", ["restart", "install", "upgrade"])
def test_a_worker_killed_right_after_sending_does_not_send_it_a_second_time(
    sim: Simulator, azurite: Any, action: str
) -> None:
    first = f"{VMSS}000000"
    world, _ = _world(sim, azurite, capacity=3)
    params: dict[str, Any] = {"nodes": [first]}
    if action == "upgrade":
        _outdate_model(world)
        params["action"] = "upgrade"
    # The install is the node's second run command (its check is the first).
    operation = {"restart": "restart", "install": "run_command", "upgrade": "upgrade"}[action]
    killed = _after_send(world, operation, _die, instance="0", skip=int(action == "install"))
    before = {name: seen["boot_id"] for name, seen in _os(sim).items()}
    record = _patch(world, params, timeout=90)
    assert killed["left"] == 0, "the worker was never killed"
    assert record.status == "done", (record.error, record.outcome)
    assert list(record.outcome["patched"]) == [first]
    assert _os(sim)[first]["boot_id"] != before[first]
    if action == "restart":
        assert _calls_on(sim, RESTART, "0") == 1
    elif action == "install":
        assert _calls_on(sim, RUN_COMMAND, "0") == 2  # its check, and one install
        assert _os(sim)[first]["running_kernel"] == NEW_KERNEL
    else:
        assert _calls_on(sim, UPGRADE) == 1
        assert _calls_on(sim, RESTART) == 0
    assert _cordoned(world) == []
    intent = record.state["nodes"][first]["intent"]  # the last one, where the chaos suite looks
    assert intent["action"] == ("manualupgrade" if action == "upgrade" else "restart")


def _given_back(world: World, name: str) -> None:
    node = world.pump.services.kube.node(name)
    assert node is not None and CLAIM_ANNOTATION not in node.annotations
    assert not node.unschedulable  # it was schedulable before the claim


def _halted_at(world: World, record: Any, name: str, setting: str) -> None:
    """The job failed naming the node and the deadline, and on-call heard of it once."""
    assert record.status == "failed", (record.status, record.outcome)
    assert name in record.error and setting in record.error, record.error
    assert setting in record.outcome["not_patched"][name]
    halts = [n for n in _notifications(world) if n["kind"] == "patch_halted"]
    assert len(halts) == 1 and name in halts[0]["message"] and setting in halts[0]["message"]


def test_a_manual_upgrade_that_never_ends_gives_the_node_back_at_its_deadline(
    sim: Simulator, azurite: Any
) -> None:
    first = f"{VMSS}000000"
    world, watch = _world(
        sim,
        azurite,
        capacity=3,
        latencies={"update_model": 30 * 24 * 3600},  # Azure never finishes it
    )
    _outdate_model(world)
    record = _patch(world, {"action": "upgrade"}, timeout=120)
    _halted_at(world, record, first, "upgrade_timeout_minutes")
    assert watch.claimed_order == [first]  # no other node was taken down after it
    _given_back(world, first)  # repair may have it now: it is nobody's any more
    assert _calls_on(sim, UPGRADE) == 1


def _status_outage_from(sim: Simulator, azurite: Any, operation: str, skip: int = 0) -> World:
    """A pool whose every operation status poll answers 503, for ever, once `operation` has been
    sent to instance 0."""
    world, _ = _world(sim, azurite, capacity=3)
    outage = {"operation": "OperationStatus", "kind": "error", "status": 503, "error": "Busy"}
    _after_send(world, operation, lambda: sim.post("faults", outage), instance="0", skip=skip)
    return world


def test_endless_temporary_errors_on_the_install_status_end_at_the_install_deadline(
    sim: Simulator, azurite: Any
) -> None:
    first = f"{VMSS}000000"
    world = _status_outage_from(sim, azurite, "run_command", skip=1)  # the check, then the install
    record = _patch(world, {"nodes": [first]}, timeout=120)
    _halted_at(world, record, first, "install_timeout_minutes")
    _given_back(world, first)
    assert _calls_on(sim, RESTART) == 0  # never restarted in the middle of an install


def test_endless_temporary_errors_on_the_restart_status_leave_the_node_to_tell(
    sim: Simulator, azurite: Any
) -> None:
    first = f"{VMSS}000000"
    world = _status_outage_from(sim, azurite, "restart")
    before = _os(sim)[first]["boot_id"]
    record = _patch(world, {"nodes": [first]}, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    assert list(record.outcome["patched"]) == [first]  # back Ready on a new boot: restarted
    assert _os(sim)[first]["boot_id"] != before and _calls_on(sim, RESTART, "0") == 1


def test_a_node_cordoned_or_claimed_by_others_mid_rollout_is_not_taken(
    sim: Simulator, azurite: Any
) -> None:
    from shared.flows.claims import Claimed, Owner, claim

    # Zone by zone, most overdue first: 0 and 3 (zone 1), 1 and 4, then 2 and 5 (zone 3).
    cordoned, held = f"{VMSS}000005", f"{VMSS}000004"
    world, watch = _world(sim, azurite, capacity=6, patch={"max_unavailable": 3})
    kube = world.pump.services.kube
    first_claim = watch.claimed

    def meanwhile(name: str) -> None:  # once the rollout has planned and taken its first node
        first_claim(name)
        if len(watch.claimed_order) == 1:
            kube.set_unschedulable(cordoned, True)  # an operator's `kubectl cordon`
            other = Owner("drain-by-someone-else", "drain")
            taken = claim(kube, held, other, world.pump.services.clock.now())
            assert isinstance(taken, Claimed)  # another job's claim

    watch.claimed = meanwhile  # type: ignore[method-assign]
    record = _patch(world, timeout=120)
    assert record.status == "done", (record.error, record.outcome)
    assert cordoned not in watch.claimed_order and _calls_on(sim, RESTART, "5") == 0
    assert set(record.outcome["patched"]) == {f"{VMSS}00000{n}" for n in range(4)}, record.outcome
    assert "cordoned by someone else" in record.outcome["not_reached"][cordoned]
    assert "claimed by drain job drain-by-someone-else" in record.outcome["not_reached"][held]
    node = kube.node(cordoned)
    assert node is not None and node.unschedulable and CLAIM_ANNOTATION not in node.annotations


def test_a_claim_whose_job_is_alive_but_past_its_deadline_shows_on_the_pool_status(
    sim: Simulator, azurite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.flows import api

    first = f"{VMSS}000000"
    world, _ = _world(sim, azurite, capacity=3, latencies={"update_model": 30 * 24 * 3600})
    _outdate_model(world)
    monkeypatch.setattr(api, "intake", lambda: world.pump.services)
    job_id = world.send("patch", {"action": "upgrade"})
    upgrading = world.drive(
        "patch",
        job_id,
        lambda r: r.state.get("nodes", {}).get(first, {}).get("phase") == "upgrading",
    )
    # Its messages stop coming (the job is alive: waiting, its ledger recent); reconcile reads
    # the pool and its claims meanwhile.
    assert world.run("reconcile").status == "done"
    assert api.pools(world.pool["name"])[1]["stalled_claims"] == []  # not late yet
    deadline = datetime.fromisoformat(upgrading.state["nodes"][first]["deadline"])
    sim.advance((deadline - world.pump.services.clock.now()).total_seconds() + 6 * 60)
    assert world.run("reconcile").status == "done"
    (stalled,) = api.pools(world.pool["name"])[1]["stalled_claims"]
    assert (stalled["node"], stalled["job"], stalled["kind"]) == (first, job_id, "patch")
    assert stalled["step"] == "rollout: upgrading" and stalled["deadline"] == deadline.isoformat()
    assert stalled["since"] == upgrading.state["nodes"][first]["since"]
    # Delivered again, the job acts on its deadline: the node is given back, nothing stalls.
    assert world.drive("patch", job_id, timeout=60).status == "failed"
    assert world.run("reconcile").status == "done"
    assert api.pools(world.pool["name"])[1]["stalled_claims"] == []
