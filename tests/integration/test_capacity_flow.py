"""Capacity management end to end on the simulator: a node group at 97 % CPU for an hour raises
a P1, one scale-up (not one per evaluation), the scale set grows by one node, and the alert
resolves when the load drops."""

from __future__ import annotations

import uuid
from typing import Any

from shared.adapters.ledger import AlertLog
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.capacity.evaluation import evaluate_capacity
from shared.flows.jobs import Services
from tests.jobs_support import Pump, job, settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-batch-77777777-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)


def _pump(sim: Simulator, azurite: Any) -> Pump:
    sim.load(
        scenario(scale_set(VMSS, 3, zones=[], load={"cpu": 40, "memory": 40, "noise": 0}), speed=60)
    )
    pool = {
        "name": f"batch{uuid.uuid4().hex[:6]}",
        "vmss_id": VMSS_ID,
        "node_group": "batch",
        "min_nodes": 2,
        "max_nodes": 6,
    }
    settings = settings_for(sim, azurite.connection_string, [pool]) | {
        "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
        "POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
    }
    return Pump(
        Services(
            settings,
            clock_from_settings(settings),
            load_config(settings),
            StorageAccount.from_settings(settings),
        )
    )


def _reconcile(pump: Pump) -> None:
    pool = pump.services.config.pools[0].name
    message = job("reconcile", pool)
    pump.send("reconcile", message)
    assert pump.run("reconcile", message["id"]).status == "done"


def _group_p1(result: dict[str, Any]) -> str:
    return result["alerts"]["P1/group/batch"]


def test_hot_group_gets_one_scale_up_and_the_alert_resolves(sim: Simulator, azurite) -> None:
    pump = _pump(sim, azurite)
    pool = pump.services.config.pools[0].name
    sim.advance(2 * 3600)  # two quiet hours of history
    _reconcile(pump)
    (quiet,) = evaluate_capacity(pump.services)
    assert _group_p1(quiet) == "ok" and quiet["jobs"] == []

    sim.post("load", {"scale_set": VMSS, "cpu": 97})
    sim.advance(3660)  # an hour (and a minute) at 97 %
    (hot,) = evaluate_capacity(pump.services)
    assert _group_p1(hot) == "firing"
    assert len(hot["jobs"]) == 1
    (again,) = evaluate_capacity(pump.services)  # the next evaluation of the same episode
    assert _group_p1(again) == "firing" and again["jobs"] == []

    record = pump.run("scale", hot["jobs"][0])
    assert record.status == "done", record
    assert sim.scale_set_state(VMSS)["capacity"] == 4

    sim.post("load", {"scale_set": VMSS, "cpu": 30})
    sim.advance(3660)  # the new node now has a full hour of data too
    _reconcile(pump)
    (calm,) = evaluate_capacity(pump.services)
    assert _group_p1(calm) == "ok"
    states = {a["alert"]: a["state"] for a in AlertLog(pump.services.tables).alerts(pool)}
    assert states["P1/group/batch"] == "ok"


def test_missing_data_is_never_read_as_idle(sim: Simulator, azurite) -> None:
    pump = _pump(sim, azurite)
    sim.advance(2 * 3600)
    # A node that joined a minute ago has no hour of data: the group cannot be all clear.
    sim.compute().virtual_machine_scale_sets.begin_update(
        RG, VMSS, {"sku": {"capacity": 4}}
    ).result()
    sim.advance(120)
    _reconcile(pump)
    (result,) = evaluate_capacity(pump.services)
    assert _group_p1(result) == "unknown" and result["jobs"] == []


def test_unreachable_metrics_are_reported_and_nothing_is_decided(sim: Simulator, azurite) -> None:
    pump = _pump(sim, azurite)
    sim.advance(2 * 3600)
    _reconcile(pump)
    pump.services.settings["POOLKEEPER_METRICS_ENDPOINT"] = "https://127.0.0.1:9"
    (result,) = evaluate_capacity(pump.services)
    assert _group_p1(result) == "unknown" and result["jobs"] == []
    assert result["errors"] and "unavailable" in result["errors"][0]
