"""The downscale review through its flow: months of Poolkeeper's own daily summaries in table
storage, a recommendation recorded and notified, executed only where the pool allows it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from shared.adapters.ledger import AlertLog, DailySummaries
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.capacity.downscale import review_pool
from shared.flows.jobs import Services
from tests.jobs_support import settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-quiet-88888888-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)


def _services(sim: Simulator, azurite: Any, *, execute: bool) -> tuple[Services, str]:
    sim.load(scenario(scale_set(VMSS, 8, zones=[])))
    name = f"quiet{uuid.uuid4().hex[:6]}"
    pool = {
        "name": name,
        "vmss_id": VMSS_ID,
        "node_group": "quiet",
        "min_nodes": 3,
        "max_nodes": 12,
        "capacity": {"execute_downscale": execute},
    }
    settings = settings_for(sim, azurite.connection_string, [pool]) | {
        "POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}"
    }
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    services.tables.put_pool_status(name, {"counts": {"live": 8}})
    return services, name


def _history(
    services: Services, pool: str, *, cpu: float, weekly_peak: float | None = None, days: int = 180
) -> None:
    store = DailySummaries(services.tables)
    today = services.clock.now().date()
    for back in range(1, days + 1):
        day = today - timedelta(days=back)
        peak = weekly_peak if weekly_peak is not None and day.weekday() == 0 else cpu + 5
        store.put(
            pool,
            day.isoformat(),
            {
                "evaluations": 288,
                "node_count": 8,
                "cpu_sum": cpu,
                "cpu_n": 1,
                "cpu_peak": peak,
                "memory_sum": cpu,
                "memory_n": 1,
                "memory_peak": cpu + 5,
                "largest_node_share": 1 / 8,
            },
        )


def _queued(services: Services, setting: str) -> int:
    return (
        services.queues._queue(services.settings[setting])
        .get_queue_properties()
        .approximate_message_count
    )


def test_months_at_thirty_percent_recommend_one_node_and_notify(sim, azurite) -> None:
    services, pool = _services(sim, azurite, execute=False)
    _history(services, pool, cpu=30)
    result = review_pool(services, services.config.pool(pool))
    assert (result["verdict"], result["remove"], result["job"]) == ("remove", 1, None)
    assert _queued(services, "POOLKEEPER_NOTIFICATIONS_QUEUE") == 1
    assert _queued(services, "POOLKEEPER_SCALE_QUEUE") == 0  # execution is off by default
    recorded = {a["alert"]: a for a in AlertLog(services.tables).alerts(pool)}
    assert recorded["downscale-review"]["state"] == "remove"


def test_execution_enabled_enqueues_a_scale_in_of_the_recommended_size(sim, azurite) -> None:
    services, pool = _services(sim, azurite, execute=True)
    _history(services, pool, cpu=30)
    result = review_pool(services, services.config.pool(pool))
    assert result["job"] and _queued(services, "POOLKEEPER_SCALE_QUEUE") == 1


def test_a_weekly_peak_at_eighty_percent_recommends_nothing(sim, azurite) -> None:
    services, pool = _services(sim, azurite, execute=True)
    _history(services, pool, cpu=30, weekly_peak=80)
    result = review_pool(services, services.config.pool(pool))
    assert result["verdict"] == "keep" and result["job"] is None


def test_review_right_after_a_scale_up_is_refused(sim, azurite) -> None:
    services, pool = _services(sim, azurite, execute=True)
    _history(services, pool, cpu=30)
    AlertLog(services.tables).claim_scale_up(pool, services.clock.now() - timedelta(days=2), None)
    result = review_pool(services, services.config.pool(pool))
    assert result["verdict"] == "refused" and "anti-oscillation" in result["reason"]


def test_days_without_enough_complete_hours_count_as_missing(sim, azurite) -> None:
    services, pool = _services(sim, azurite, execute=False)
    store = DailySummaries(services.tables)
    day = services.clock.now().date().isoformat()
    for hour in range(19):  # 19 covered hours: not enough for a day of trend
        store.add_hour(
            pool, day, hour=hour, node_count=8, cpu=30, memory=30, largest_node_share=1 / 8
        )
    (thin,) = store.days(pool)
    assert thin["cpu_avg"] is None and thin["cpu_peak"] is None
    store.add_hour(pool, day, hour=19, node_count=8, cpu=50, memory=30, largest_node_share=1 / 8)
    (full,) = store.days(pool)
    assert full["cpu_peak"] == 50 and full["cpu_avg"] == 31.0
