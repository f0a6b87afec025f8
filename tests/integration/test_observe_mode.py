"""Observe mode (POOLKEEPER_MODE=observe): over a simulated day with a P1 load and a NotReady
node, the timers decide as in act mode and record dry runs, and nothing is written to Azure or
to the cluster; operators' jobs are refused with 409 unless they are dry runs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from shared.adapters.ledger import AlertLog
from shared.flows.capacity.evaluation import evaluate_capacity
from shared.flows.jobs import Services, submit
from shared.flows.reconcile import survey
from shared.jobs import Job, Rejection
from tests.jobs_support import job
from tests.repair_support import VMSS as HEAL_VMSS
from tests.repair_support import not_ready
from tests.simulator import Simulator
from tests.truth_support import World, make_world

VMSS = HEAL_VMSS  # repair_support.not_ready acts on it
READS = ("_Get", "_List", "MetricsBatch_", "Metrics_", "Query_")  # metrics and log queries read


def _observing(sim: Simulator, azurite: Any) -> World:
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=4,
        min_nodes=2,
        max_nodes=8,
        replicas=4,
        max_unavailable=1,
        pool_extra={"repair": {"not_ready_minutes": 10}},
        settings={
            "POOLKEEPER_MODE": "observe",
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            "POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
        },
        scale_set_extra={"load": {"cpu": 40, "memory": 40, "noise": 0}},
    )
    return world


def _writes(sim: Simulator) -> list[str]:
    azure = [
        c["operation"]
        for c in sim.calls()["calls"]
        if not any(read in c["operation"] for read in READS)
    ]
    kube = requests.get(f"{sim.admin}/kube/requests", timeout=10).json()["calls"]
    return azure + [f"{c['method']} {c.get('path', '')}" for c in kube if c["method"] != "GET"]


def _deliver_all(world: World) -> None:
    """Every queued job of every kind, until the queues are quiet."""
    for _ in range(50):
        if not any(world.pump.once(kind) for kind in ("scale", "reconcile", "patch", "image")):
            return
    raise AssertionError("the queues never went quiet")


def test_a_day_of_p1_load_and_a_not_ready_node_changes_nothing_and_records_what_it_would_do(
    sim: Simulator, azurite: Any
) -> None:
    world = _observing(sim, azurite)
    not_ready(world, "1", boots=None)  # the test's own restart, before the day begins
    sim.advance(2 * 3600)
    sim.post("load", {"scale_set": VMSS, "cpu": 97})
    before = len(_writes(sim))
    decided: list[dict[str, Any]] = []
    reconciles: list[str] = []
    for _ in range(24):  # a simulated day, the timers once an hour
        sim.advance(3600)
        reconciles += survey(world.pump.services)
        decided += evaluate_capacity(world.pump.services)
        _deliver_all(world)
    assert _writes(sim)[before:] == []
    state = sim.scale_set_state(VMSS)
    assert state["capacity"] == 4 and len(state["instances"]) == 4
    # What act mode would have done is in the ledger, as dry runs.
    scale_ups = [j for result in decided for j in result.get("jobs", [])]
    assert scale_ups, decided
    record = world.tables.job(scale_ups[0])
    assert record is not None and record.status == "done", record
    assert record.outcome["dry_run"] is True and record.outcome["plan"], record.outcome
    assert json.loads(record.envelope)["params"]["dry_run"] is True
    # The dry runs keep their own cooldown: none counts as a scale-up that happened (the real
    # cooldown and the downscale review's anti-oscillation window start clean once acting).
    assert AlertLog(world.tables).last_scale_up(world.pool["name"]) is None
    # ... and the repair of the NotReady node, planned and not sent.
    planned = [
        r.outcome["repair"]
        for r in map(world.tables.job, reconciles)
        if r is not None and r.outcome and "repair" in r.outcome
    ]
    assert any(p.get("dry_run") for p in planned), planned


def test_an_operators_job_is_refused_with_409_saying_how_to_act_unless_a_dry_run(
    sim: Simulator, azurite: Any
) -> None:
    world = _observing(sim, azurite)
    services = world.pump.services
    with pytest.raises(Rejection) as refused:
        submit(services, json.dumps(job("scale", world.pool["name"], {"delta": 1})))
    assert refused.value.status == 409
    assert "POOLKEEPER_MODE=act" in refused.value.reason
    assert '"dry_run": true' in refused.value.reason
    dry = job("scale", world.pool["name"], {"delta": 1, "dry_run": True})
    submit(services, json.dumps(dry))
    record = world.drive("scale", dry["id"])
    assert record.status == "done" and record.outcome["dry_run"] is True, record
    # A job another system puts on the queue directly is recorded as rejected, not run.
    direct = job("scale", world.pool["name"], {"delta": 1})
    world.pump.send("scale", direct)
    (handled,) = world.pump.once("scale")
    assert handled.result == "rejected" and "observe mode" in (handled.reason or "")
    assert sim.scale_set_state(VMSS)["capacity"] == 4


def test_after_a_switch_to_observe_a_job_under_way_is_held_until_act_and_a_pending_one_ends(
    sim: Simulator, azurite: Any
) -> None:
    world = _observing(sim, azurite)
    services = world.pump.services
    now = services.clock.now()
    # Started in act mode: a repair under way, and a scale-up submitted but not yet run.
    parent = Job.model_validate(job("repair", world.pool["name"], {"instance": "1"}))
    services.tables.create_job(parent, first_step="plan", now=now, status="running")
    pending = Job.model_validate(job("scale", world.pool["name"], {"delta": 1}))
    services.tables.create_job(pending, first_step="plan", now=now, status="queued")

    child = job("scale", world.pool["name"], {"delta": 1}, parent=parent.id)
    orphan = job("scale", world.pool["name"], {"delta": 1}, parent="repair-gone")
    for message in (child, orphan, pending.to_message()):
        world.pump.send("scale", message)
    handled = {h.job_id: h.result for h in world.pump.once("scale")}
    assert handled == {child["id"]: "held", orphan["id"]: "rejected", pending.id: "rejected"}
    assert world.tables.job(pending.id).status == "failed"  # type: ignore[union-attr]
    assert "observe mode" in (world.tables.job(pending.id).error or "")  # type: ignore[union-attr]
    assert world.tables.job(child["id"]) is None  # not started
    sim.advance(3600)
    assert _writes(sim) == []  # nothing written while it was held

    # Back to act: the held job goes on, for real.
    acting = Services.from_settings(dict(services.settings) | {"POOLKEEPER_MODE": "act"})
    acting.scale_sets = services.scale_sets  # the witnessed adapter
    world.pump.services = acting
    record = world.drive("scale", child["id"], timeout=240)
    assert record.status == "done", record
    assert sim.scale_set_state(VMSS)["capacity"] == 5
    # An operator cannot pass a job off as another job's child.
    with pytest.raises(Rejection, match="parent is set by Poolkeeper only"):
        submit(acting, json.dumps(job("scale", world.pool["name"], {"delta": 1}, parent="x")))
