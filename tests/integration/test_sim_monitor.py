"""Azure Monitor in the simulator, driven through the real SDKs over HTTPS: the metrics batch API
(`azure-monitor-querymetrics` MetricsClient) and the Log Analytics query API (`azure-monitor-query`
LogsQueryClient). Scenarios use noise 0 so the load model gives exact values.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryStatus
from azure.monitor.querymetrics import MetricsClient

from tests.simulator import RG, STOPPED, SUBSCRIPTION, Simulator, scale_set, scenario

NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"
CPU, MEMORY = "Percentage CPU", "Available Memory Percentage"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # the scenario's clock start
HOUR_BEFORE = (START - timedelta(hours=1), START)
WORKSPACE = "0b7c3a52-3f0e-4d84-9c1e-6a2f51d8e930"


def vmss_id(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/{NAMESPACE}/{name}"


def steady(name: str, capacity: int, cpu: float = 40, memory: float = 30, **load: Any) -> dict:
    return scale_set(name, capacity, load={"cpu": cpu, "memory": memory, "noise": 0} | load)


def load(sim: Simulator, *scale_sets: dict[str, Any]) -> None:
    """A scenario on a stopped clock: time only moves when a test advances it."""
    sim.load(scenario(*scale_sets, speed=STOPPED))


def metrics(sim: Simulator) -> MetricsClient:
    return MetricsClient(
        sim.info["metrics"],
        sim.credential(),
        audience="https://metrics.monitor.azure.com",  # the SDK's default, stated
        connection_verify=sim.info["ca_cert"],
    )


def logs(sim: Simulator) -> LogsQueryClient:
    # The audience defaults to the endpoint, which the simulator (like Azure) does not accept.
    return LogsQueryClient(
        sim.credential(),
        endpoint=sim.info["logs"],
        audience="https://api.loganalytics.io",
        connection_verify=sim.info["ca_cert"],
    )


def query(sim: Simulator, names: list[str], **options: Any) -> list[Any]:
    options.setdefault("metric_names", [CPU])
    options.setdefault("timespan", HOUR_BEFORE)
    return metrics(sim).query_resources(
        resource_ids=[vmss_id(n) for n in names], metric_namespace=NAMESPACE, **options
    )


def averages(series: Any) -> list[float | None]:
    return [point.average for point in series.data]


def test_split_by_vmname_gives_one_series_per_instance_with_the_load_model_values(sim) -> None:
    sizes = {"aks-system-11111111-vmss": 2, "aks-workers-22222222-vmss": 3}
    sizes["aks-batch-33333333-vmss"] = 4
    load(sim, *(steady(name, size) for name, size in sizes.items()))

    results = query(
        sim,
        list(sizes),
        metric_names=[CPU, MEMORY],
        granularity=timedelta(minutes=15),
        filter="VMName eq '*'",
        max_results=4,
    )

    assert len(results) == 3
    for (name, size), result in zip(sizes.items(), results, strict=True):
        assert result.granularity == timedelta(minutes=15)
        assert result.resource_region == "westeurope"
        cpu, memory = result.metrics[CPU], result.metrics[MEMORY]
        assert cpu.id == f"{vmss_id(name)}/providers/Microsoft.Insights/metrics/{CPU}"
        assert cpu.unit == memory.unit == "Percent"
        for metric, expected in ((cpu, 40.0), (memory, 70.0)):
            # Dimension names come back lower-cased, as in Microsoft's getBatch sample.
            assert sorted(s.metadata_values["vmname"] for s in metric.timeseries) == [
                f"{name}_{i}" for i in range(size)
            ]
            for series in metric.timeseries:
                assert [p.timestamp for p in series.data] == [
                    START - timedelta(minutes=m) for m in (60, 45, 30, 15)
                ]
                assert averages(series) == [expected] * 4


def test_without_a_filter_one_series_averages_over_instances_with_every_aggregation(sim) -> None:
    per_instance = {"0": {"cpu": -10}, "1": {"cpu": 10}}
    load(sim, steady("aks-workers-22222222-vmss", 2, instances=per_instance))

    (result,) = query(
        sim,
        ["aks-workers-22222222-vmss"],
        granularity=timedelta(hours=1),
        aggregations=["Average", "Minimum", "Maximum", "Total", "Count"],
    )

    (series,) = result.metrics[CPU].timeseries
    assert series.metadata_values == {}
    (point,) = series.data
    assert (point.average, point.minimum, point.maximum) == (40.0, 30.0, 50.0)
    assert (point.count, point.total) == (120, 4800.0)  # 2 instances x 60 minutes


def test_a_load_step_shows_in_the_bins_after_it(sim) -> None:
    step = {"at": (START - timedelta(minutes=30)).isoformat(), "cpu": 97}
    load(sim, steady("aks-workers-22222222-vmss", 3, steps=[step]))

    (result,) = query(sim, ["aks-workers-22222222-vmss"], granularity=timedelta(minutes=15))

    assert averages(result.metrics[CPU].timeseries[0]) == [40.0, 40.0, 97.0, 97.0]


def test_a_load_set_through_the_admin_api_applies_from_the_next_minute(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 3))
    sim.post("load", {"scale_set": "aks-workers-22222222-vmss", "cpu": 97})
    sim.advance(20 * 60)

    (result,) = query(
        sim,
        ["aks-workers-22222222-vmss"],
        timespan=(START - timedelta(minutes=10), START + timedelta(minutes=20)),
        granularity=timedelta(minutes=5),
    )

    # 08:00 itself ran at 40 (the step came a moment after it began): (40 + 4 * 97) / 5 = 85.6
    assert averages(result.metrics[CPU].timeseries[0]) == [40.0, 40.0, 85.6, 97.0, 97.0, 97.0]


def test_split_without_top_keeps_only_ten_instances_ranked_by_the_aggregation(sim) -> None:
    offsets = {str(i): {"cpu": i} for i in range(12)}  # instance i runs at 40 + i percent
    load(sim, steady("aks-workers-22222222-vmss", 12, instances=offsets))
    name = "aks-workers-22222222-vmss"

    (busiest,) = query(sim, [name], filter="VMName eq '*'")
    (idlest,) = query(sim, [name], filter="VMName eq '*'", order_by="average asc")
    (everyone,) = query(sim, [name], filter="VMName eq '*'", max_results=12)

    def vms(result: Any) -> list[str]:
        return [s.metadata_values["vmname"] for s in result.metrics[CPU].timeseries]

    assert vms(busiest) == [f"{name}_{i}" for i in range(11, 1, -1)]  # _0 and _1 silently gone
    assert vms(idlest) == [f"{name}_{i}" for i in range(10)]
    assert len(vms(everyone)) == 12


def test_a_filter_naming_vms_returns_only_those(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 4))

    (result,) = query(sim, [name], filter=f"VMName eq '{name}_1' or VMName eq '{name}_3'")

    series = result.metrics[CPU].timeseries
    assert sorted(s.metadata_values["vmname"] for s in series) == [f"{name}_1", f"{name}_3"]


def test_more_than_fifty_resource_ids_is_a_bad_request(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 1))

    with pytest.raises(HttpResponseError) as raised:
        query(sim, [f"aks-workers-{i:08d}-vmss" for i in range(51)])

    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "BadRequest"
    assert "at most 50" in raised.value.message


def test_an_unknown_metric_is_a_bad_request_listing_the_supported_ones(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 1))

    with pytest.raises(HttpResponseError) as raised:
        query(sim, ["aks-workers-22222222-vmss"], metric_names=["Percentage Memory"])

    assert raised.value.status_code == 400
    assert "Failed to find metric configuration for provider" in raised.value.message
    assert "Valid metrics: Percentage CPU,Available Memory Percentage" in raised.value.message


def test_an_unknown_scale_set_gets_empty_timeseries_not_an_error(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))

    known, unknown = query(sim, ["aks-workers-22222222-vmss", "aks-gone-44444444-vmss"])

    assert averages(known.metrics[CPU].timeseries[0])[0] == 40.0
    assert unknown.metrics[CPU].timeseries == []


def test_bins_not_yet_complete_have_no_average(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 2))

    (result,) = query(
        sim,
        ["aks-workers-22222222-vmss"],
        timespan=(START - timedelta(minutes=5), START + timedelta(minutes=10)),
        granularity=timedelta(minutes=5),
    )

    assert averages(result.metrics[CPU].timeseries[0]) == [40.0, None, None]


def test_stopped_instances_have_no_data_so_the_average_is_none(sim) -> None:
    name = "aks-workers-22222222-vmss"
    load(sim, steady(name, 2))
    poller = sim.compute(polling_interval=0.05).virtual_machine_scale_sets.begin_power_off(RG, name)
    sim.advance(60)
    poller.result()

    (aggregated,) = query(sim, [name], granularity=timedelta(minutes=30))
    (split,) = query(sim, [name], filter="VMName eq '*'")

    assert averages(aggregated.metrics[CPU].timeseries[0]) == [None, None]
    assert split.metrics[CPU].timeseries == []


def test_an_injected_fault_answers_once_with_its_status_and_code(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 1))
    fault = {"operation": "MetricsBatch_Batch", "status": 403, "error": "AuthorizationFailed"}
    sim.post("faults", fault | {"count": 1})

    with pytest.raises(HttpResponseError) as raised:
        query(sim, ["aks-workers-22222222-vmss"])
    (result,) = query(sim, ["aks-workers-22222222-vmss"])

    assert raised.value.status_code == 403
    assert raised.value.error is not None and raised.value.error.code == "AuthorizationFailed"
    assert averages(result.metrics[CPU].timeseries[0])[0] == 40.0


def test_metrics_need_a_bearer_token_the_simulator_issued(sim) -> None:
    url = f"{sim.info['metrics']}/subscriptions/{SUBSCRIPTION}/metrics:getBatch"
    params = {"api-version": "2024-02-01", "metricnamespace": NAMESPACE, "metricnames": CPU}
    body = {"resourceids": [vmss_id("aks-workers-11111111-vmss")]}
    for headers in ({}, {"Authorization": "Bearer not-a-token-we-issued"}):
        answer = requests.post(
            url, params=params, json=body, headers=headers, verify=sim.info["ca_cert"], timeout=10
        )
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] in (
            "AuthenticationFailed",
            "InvalidAuthenticationToken",
        )


def test_node_usage_query_returns_a_row_per_node(sim) -> None:
    load(
        sim,
        steady("aks-system-11111111-vmss", 2, cpu=20, memory=50),
        steady("aks-workers-22222222-vmss", 3, cpu=40, memory=30),
    )
    nodes = {
        i["computer_name"]: s["node_group"]
        for s in sim.state()["scale_sets"]
        for i in s["instances"]
    }

    result = logs(sim).query_workspace(
        WORKSPACE, "// poolkeeper:node-usage\nKubeNodeInventory | take 1", timespan=HOUR_BEFORE
    )

    assert result.status == LogsQueryStatus.SUCCESS
    (table,) = result.tables
    assert table.columns == ["Computer", "NodeGroup", "CpuPercent", "MemoryPercent", "Samples"]
    assert table.columns_types == ["string", "string", "real", "real", "long"]
    expected = {"system": (20.0, 50.0), "workers": (40.0, 30.0)}
    assert [list(row) for row in table.rows] == [
        [node, group, *expected[group], 60] for node, group in sorted(nodes.items())
    ]


def test_a_query_that_is_not_named_is_rejected_with_400(sim) -> None:
    with pytest.raises(HttpResponseError) as raised:
        logs(sim).query_workspace(WORKSPACE, "Perf | take 10", timespan=HOUR_BEFORE)

    assert raised.value.status_code == 400
    assert "only answers named queries" in raised.value.message
    assert "node-usage" in raised.value.message


def test_the_partial_marker_gives_a_partial_result_with_half_the_nodes(sim) -> None:
    load(sim, steady("aks-workers-22222222-vmss", 5))

    result = logs(sim).query_workspace(
        WORKSPACE,
        "// poolkeeper:node-usage\n// poolkeeper:partial\nKubeNodeInventory",
        timespan=HOUR_BEFORE,
    )

    assert isinstance(result, LogsQueryPartialResult)
    assert result.status == LogsQueryStatus.PARTIAL
    assert len(result.partial_data[0].rows) == math.ceil(5 / 2)
    assert result.partial_error.code == "PartialError"
    assert "3 of 5 nodes" in result.partial_error.message
