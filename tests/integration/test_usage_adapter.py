"""Usage sources (shared/adapters/usage.py) against the Azure simulator, through the real SDKs:
platform metrics over the metrics batch API, Container Insights over the Log Analytics query API.
Scenarios use noise 0 so the load model gives exact values, and a wall-speed clock so that time
moves only when a test advances it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from shared.adapters.scaleset import ThrottleGate
from shared.adapters.usage import (
    NODE_USAGE_QUERY,
    TOP_HEADROOM,
    ContainerInsights,
    Coverage,
    PlatformMetrics,
    PoolRef,
    PoolUsage,
    UsageUnavailable,
    usage_source_from_settings,
)
from shared.config import ConfigError
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # the scenario's clock start
HOUR_BEFORE = (START - timedelta(hours=1), START)
WORKSPACE = "5d0c6a1e-8f3b-4b5e-9c2a-7e41d9b0f6a3"
NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"


def settings(sim: Simulator, **extra: str) -> dict[str, str]:
    return {
        "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
        "POOLKEEPER_LOGS_ENDPOINT": sim.info["logs"],
        "POOLKEEPER_CA_BUNDLE": sim.info["ca_cert"],
        "POOLKEEPER_LOG_WORKSPACE": WORKSPACE,
    } | extra


def steady(name: str, capacity: int, cpu: float = 40, memory: float = 30, **load: Any) -> dict:
    return scale_set(name, capacity, load={"cpu": cpu, "memory": memory, "noise": 0} | load)


def load(sim: Simulator, *scale_sets: dict[str, Any]) -> None:
    sim.load(scenario(*scale_sets, speed=1))


def pool(name: str, instances: int) -> PoolRef:
    """A pool named after its scale set's node group (tests.simulator.scale_set's convention)."""
    vmss_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/{NAMESPACE}/{name}"
    return PoolRef(name.split("-")[1], vmss_id, name.split("-")[1], instances)


def platform(sim: Simulator, **options: Any) -> PlatformMetrics:
    return PlatformMetrics(
        sim.credential(),
        endpoint=sim.info["metrics"],
        ca_bundle=sim.info["ca_cert"],
        gate=ThrottleGate(),
        **options,
    )


def container_insights(sim: Simulator, **options: Any) -> ContainerInsights:
    return ContainerInsights(
        sim.credential(),
        workspace_id=WORKSPACE,
        endpoint=sim.info["logs"],
        ca_bundle=sim.info["ca_cert"],
        gate=ThrottleGate(),
        **options,
    )


def values(usage: PoolUsage) -> dict[str, tuple[float | None, float | None, int, int]]:
    return {
        key: (n.cpu_percent, n.memory_percent, n.samples, n.expected_samples)
        for key, n in usage.nodes.items()
    }


def batch_calls(sim: Simulator) -> int:
    return sim.calls()["counters"].get("MetricsBatch_Batch", 0)


# -- platform metrics --------------------------------------------------------------------------


def test_three_scale_sets_in_one_batch_give_every_instance_its_load_model_values(sim) -> None:
    load(
        sim,
        steady("aks-system-11111111-vmss", 2, cpu=20, memory=50),
        steady("aks-workers-22222222-vmss", 3, cpu=40, memory=30, instances={"1": {"cpu": 15}}),
        steady("aks-batch-33333333-vmss", 4, cpu=70, memory=60),
    )
    pools = [
        pool("aks-system-11111111-vmss", 2),
        pool("aks-workers-22222222-vmss", 3),
        pool("aks-batch-33333333-vmss", 4),
    ]

    usage = usage_source_from_settings(settings(sim)).node_usage(pools, *HOUR_BEFORE)

    assert batch_calls(sim) == 1
    assert values(usage["system"]) == {"0": (20.0, 50.0, 60, 60), "1": (20.0, 50.0, 60, 60)}
    assert values(usage["workers"]) == {
        "0": (40.0, 30.0, 60, 60),
        "1": (55.0, 30.0, 60, 60),
        "2": (40.0, 30.0, 60, 60),
    }
    assert values(usage["batch"]) == {str(i): (70.0, 60.0, 60, 60) for i in range(4)}
    for name in ("system", "workers", "batch"):
        assert usage[name].keyed_by == "instance_id"
        assert usage[name].coverage == Coverage.COMPLETE, usage[name].problems
        assert (usage[name].start, usage[name].end) == HOUR_BEFORE


def test_all_twelve_instances_come_back_because_top_is_set_to_the_instance_count(sim) -> None:
    # The service's default top of 10 would keep the ten busiest and drop _0 and _1 silently.
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 12, instances={str(i): {"cpu": i} for i in range(12)}))
    urls: list[str] = []
    source = platform(sim, raw_request_hook=lambda request: urls.append(request.http_request.url))

    usage = source.node_usage([pool(name, 12)], *HOUR_BEFORE)["workers"]

    assert {key: node.cpu_percent for key, node in usage.nodes.items()} == {
        str(i): 40.0 + i for i in range(12)
    }
    assert usage.coverage == Coverage.COMPLETE
    (url,) = urls
    query = parse_qs(urlparse(url).query)
    assert query["top"] == [str(12 + TOP_HEADROOM)]
    assert query["filter"] == ["VMName eq '*'"]
    assert query["metricnames"] == ["Percentage CPU,Available Memory Percentage"]
    assert (query["starttime"], query["endtime"]) == (
        ["2026-11-02T07:00:00.000Z"],
        ["2026-11-02T08:00:00.000Z"],
    )


def test_sixty_scale_sets_take_two_batch_calls_of_at_most_fifty(sim) -> None:
    names = [f"aks-pool{i:02d}-{i:08d}-vmss" for i in range(60)]
    load(sim, *(steady(name, 1, cpu=10 + i) for i, name in enumerate(names)))

    usage = usage_source_from_settings(settings(sim)).node_usage(
        [pool(name, 1) for name in names], *HOUR_BEFORE
    )

    assert batch_calls(sim) == 2
    assert len(usage) == 60
    for i in range(len(names)):
        assert values(usage[f"pool{i:02d}"]) == {"0": (10.0 + i, 30.0, 60, 60)}


def test_a_load_step_shows_in_the_windows_after_it(sim) -> None:
    name = "aks-workers-22222222-vmss"
    step = {"at": (START - timedelta(minutes=30)).isoformat(), "cpu": 97}
    load(sim, steady(name, 2, steps=[step]))
    source = platform(sim)

    straddling = source.node_usage([pool(name, 2)], *HOUR_BEFORE)["workers"]
    after = source.node_usage([pool(name, 2)], START - timedelta(minutes=30), START)["workers"]
    sim.post("load", {"scale_set": name, "cpu": 50, "memory": 80})
    sim.advance(31 * 60)
    later = source.node_usage(
        [pool(name, 2)], START + timedelta(minutes=1), START + timedelta(minutes=31)
    )["workers"]

    assert {n.cpu_percent for n in straddling.nodes.values()} == {(30 * 40 + 30 * 97) / 60}
    assert {n.cpu_percent for n in after.nodes.values()} == {97.0}
    assert {(n.cpu_percent, n.memory_percent) for n in later.nodes.values()} == {(50.0, 80.0)}
    assert later.coverage == Coverage.COMPLETE


def test_a_window_before_the_instances_existed_is_no_data_and_a_half_window_partial(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 0))
    compute = sim.compute(polling_interval=0.05)
    poller = compute.virtual_machine_scale_sets.begin_update(RG, name, {"sku": {"capacity": 2}})
    sim.advance(120)  # the create latency is 90 s: both instances boot at about 08:01:30
    poller.result()
    sim.advance(70 * 60)  # now about 09:12
    source = platform(sim)

    before = source.node_usage([pool(name, 2)], *HOUR_BEFORE)["workers"]
    half = source.node_usage(
        [pool(name, 2)], START - timedelta(minutes=30), START + timedelta(minutes=30)
    )["workers"]
    after = source.node_usage(
        [pool(name, 2)], START + timedelta(minutes=5), START + timedelta(minutes=65)
    )["workers"]

    assert before.coverage == Coverage.NO_DATA
    assert before.nodes == {} and before.missing_nodes == 2  # no node reads as 0 % busy
    assert half.coverage == Coverage.PARTIAL
    for node in half.nodes.values():
        assert (node.cpu_percent, node.memory_percent) == (40.0, 30.0)  # a mean, not diluted
        assert 26 <= node.samples <= 29 and node.expected_samples == 60
        assert not node.complete
    assert after.coverage == Coverage.COMPLETE
    assert values(after) == {"0": (40.0, 30.0, 60, 60), "1": (40.0, 30.0, 60, 60)}


def test_instances_the_read_counted_but_metrics_lack_make_the_pool_partial(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 3))

    usage = platform(sim).node_usage([pool(name, 5)], *HOUR_BEFORE)["workers"]

    assert len(usage.nodes) == 3 and usage.missing_nodes == 2
    assert usage.coverage == Coverage.PARTIAL


def test_a_scale_set_the_service_holds_no_data_for_is_no_data_not_idle(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))

    usage = platform(sim).node_usage(
        [pool("aks-workers-22222222-vmss", 2), pool("aks-gone-44444444-vmss", 3)], *HOUR_BEFORE
    )

    assert usage["workers"].coverage == Coverage.COMPLETE
    assert usage["gone"].coverage == Coverage.NO_DATA and usage["gone"].nodes == {}


def test_a_failed_metrics_call_raises_usage_unavailable(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))
    fault = {"operation": "MetricsBatch_Batch", "status": 503, "error": "ServiceUnavailable"}
    sim.post("faults", fault | {"count": 1})

    with pytest.raises(UsageUnavailable) as raised:
        platform(sim).node_usage([pool("aks-workers-22222222-vmss", 2)], *HOUR_BEFORE)

    assert (raised.value.status, raised.value.code) == (503, "ServiceUnavailable")
    assert raised.value.temporary and raised.value.source == "platform"


def test_throttled_metrics_calls_wait_out_retry_after_without_calling_again(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 2))
    budget = {"family": "Metrics", "operations": ["MetricsBatch_Batch"], "limit": 1}
    sim.post("throttling", [budget | {"window_seconds": 600}])
    source = platform(sim)

    source.node_usage([pool(name, 2)], *HOUR_BEFORE)
    with pytest.raises(UsageUnavailable) as throttled:
        source.node_usage([pool(name, 2)], *HOUR_BEFORE)
    with pytest.raises(UsageUnavailable) as held:
        source.node_usage([pool(name, 2)], *HOUR_BEFORE)

    assert throttled.value.status == 429 and throttled.value.retry_after
    assert held.value.code == "Throttled" and held.value.retry_after
    assert batch_calls(sim) == 2  # the third call never left the process


def test_a_token_for_another_audience_is_refused_and_reported(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))
    source = platform(sim, audience="https://management.azure.com")

    with pytest.raises(UsageUnavailable) as raised:
        source.node_usage([pool("aks-workers-22222222-vmss", 2)], *HOUR_BEFORE)

    assert raised.value.status == 401 and not raised.value.temporary


def test_an_endpoint_that_does_not_answer_is_a_temporary_usage_unavailable(sim) -> None:
    source = PlatformMetrics(sim.credential(), endpoint="https://127.0.0.1:9", gate=ThrottleGate())

    with pytest.raises(UsageUnavailable) as raised:
        source.node_usage([pool("aks-workers-22222222-vmss", 2)], *HOUR_BEFORE)

    assert raised.value.temporary and raised.value.status is None


def test_a_day_is_read_in_thirty_minute_bins(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 2, cpu=35, memory=45))
    urls: list[str] = []
    source = platform(sim, raw_request_hook=lambda request: urls.append(request.http_request.url))

    usage = source.node_usage([pool(name, 2)], START - timedelta(days=1), START)["workers"]

    assert parse_qs(urlparse(urls[0]).query)["interval"] == ["PT30M"]
    assert values(usage) == {"0": (35.0, 45.0, 48, 48), "1": (35.0, 45.0, 48, 48)}


# -- Container Insights --------------------------------------------------------------------------


def test_container_insights_gives_per_node_rows_for_each_pools_node_group(sim) -> None:
    load(
        sim,
        steady("aks-system-11111111-vmss", 2, cpu=20, memory=50),
        steady("aks-workers-22222222-vmss", 3, cpu=40, memory=30),
    )
    computers = {
        s["node_group"]: sorted(i["computer_name"] for i in s["instances"])
        for s in sim.state()["scale_sets"]
    }
    source = usage_source_from_settings(settings(sim, POOLKEEPER_USAGE_SOURCE="container-insights"))

    usage = source.node_usage(
        [pool("aks-system-11111111-vmss", 2), pool("aks-workers-22222222-vmss", 3)],
        *HOUR_BEFORE,
    )

    assert isinstance(source, ContainerInsights)
    assert values(usage["system"]) == {c: (20.0, 50.0, 60, 60) for c in computers["system"]}
    assert values(usage["workers"]) == {c: (40.0, 30.0, 60, 60) for c in computers["workers"]}
    assert usage["workers"].keyed_by == "node_name"
    assert usage["workers"].coverage == Coverage.COMPLETE


def test_container_insights_partial_result_is_reported_partial(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 5))
    # The simulator answers a query carrying this marker line with a partial failure.
    source = container_insights(sim, query=NODE_USAGE_QUERY.read_text() + "// poolkeeper:partial\n")

    usage = source.node_usage([pool("aks-workers-22222222-vmss", 5)], *HOUR_BEFORE)["workers"]

    assert usage.coverage == Coverage.PARTIAL
    assert len(usage.nodes) == 3 and usage.missing_nodes == 2
    assert "PartialError" in usage.problems[0]
    assert all(node.complete for node in usage.nodes.values())  # what came back is sound


def test_container_insights_before_the_nodes_existed_is_no_data(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 0))
    compute = sim.compute(polling_interval=0.05)
    poller = compute.virtual_machine_scale_sets.begin_update(
        RG, "aks-workers-22222222-vmss", {"sku": {"capacity": 2}}
    )
    sim.advance(120)
    poller.result()

    usage = container_insights(sim).node_usage(
        [pool("aks-workers-22222222-vmss", 2)], *HOUR_BEFORE
    )["workers"]

    assert usage.coverage == Coverage.NO_DATA and usage.nodes == {}


def test_a_failed_log_query_raises_usage_unavailable(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))
    fault = {"operation": "Query_Execute", "status": 500, "error": "InternalServerError"}
    sim.post("faults", fault | {"count": 1})

    with pytest.raises(UsageUnavailable) as raised:
        container_insights(sim).node_usage([pool("aks-workers-22222222-vmss", 2)], *HOUR_BEFORE)

    assert raised.value.status == 500 and raised.value.temporary
    assert raised.value.source == "container-insights"


def test_the_shipped_query_is_what_the_simulator_recognises(sim) -> None:
    assert NODE_USAGE_QUERY.read_text().splitlines()[0] == "// poolkeeper:node-usage"


# -- settings ------------------------------------------------------------------------------------


def test_platform_is_the_default_source_and_needs_the_regional_metrics_endpoint() -> None:
    with pytest.raises(ConfigError) as raised:
        usage_source_from_settings({}, credential=object())

    assert "POOLKEEPER_METRICS_ENDPOINT" in str(raised.value)
    assert "https://westeurope.metrics.monitor.azure.com" in str(raised.value)
    source = usage_source_from_settings(
        {"POOLKEEPER_METRICS_ENDPOINT": "https://westeurope.metrics.monitor.azure.com"},
        credential=object(),
    )
    assert isinstance(source, PlatformMetrics)


def test_container_insights_needs_a_workspace() -> None:
    with pytest.raises(ConfigError) as raised:
        usage_source_from_settings(
            {"POOLKEEPER_USAGE_SOURCE": "container-insights"}, credential=object()
        )

    assert "POOLKEEPER_LOG_WORKSPACE" in str(raised.value)


def test_an_unknown_source_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        usage_source_from_settings({"POOLKEEPER_USAGE_SOURCE": "prometheus"}, credential=object())

    assert "platform, container-insights" in str(raised.value)
