"""Health report without a storage service: what failed is named, and the answer is 'unhealthy'."""

from __future__ import annotations

import json

from local.procs import free_port
from shared.flows.health import health_report

POOLS = json.dumps(
    {
        "pools": [
            {
                "name": "workers",
                "node_group": "workers",
                "min_nodes": 1,
                "max_nodes": 5,
                "vmss_id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
                "/providers/Microsoft.Compute/virtualMachineScaleSets/vmss-workers",
            }
        ]
    }
)


def _unreachable_storage() -> str:
    port = free_port()
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def test_unreachable_storage_is_unhealthy_and_names_each_service() -> None:
    settings = {"AzureWebJobsStorage": _unreachable_storage(), "POOLKEEPER_POOLS": POOLS}
    report = health_report(settings)
    assert not report.ok
    assert report.body["status"] == "unhealthy"
    assert report.body["config"] == {"ok": True, "pools": ["workers"]}
    for service in ("queue", "table", "blob"):
        assert report.body["storage"][service]["ok"] is False
        assert f"storage {service} service at http://127.0.0.1:" in report.body["error"]


def test_missing_storage_setting_is_unhealthy_with_the_setting_named() -> None:
    report = health_report({"POOLKEEPER_POOLS": POOLS})
    assert not report.ok
    assert "AzureWebJobsStorage" in report.body["error"]


def test_unreadable_clock_file_is_unhealthy_and_named(tmp_path) -> None:
    settings = {
        "AzureWebJobsStorage": _unreachable_storage(),
        "POOLKEEPER_POOLS": POOLS,
        "POOLKEEPER_CLOCK_FILE": str(tmp_path / "missing.json"),
    }
    report = health_report(settings)
    assert report.body["clock"]["ok"] is False
    assert "missing.json" in report.body["error"]


def test_wall_clock_is_reported_when_no_clock_file_is_set() -> None:
    report = health_report({"POOLKEEPER_POOLS": POOLS})
    assert report.body["clock"]["source"] == "system" and report.body["clock"]["now"]


def test_invalid_configuration_is_unhealthy_with_the_problem_shown() -> None:
    report = health_report(
        {
            "AzureWebJobsStorage": _unreachable_storage(),
            "POOLKEEPER_POOLS": POOLS.replace('"max_nodes": 5', '"max_nodes": 0'),
        }
    )
    assert not report.ok
    assert report.body["error"].startswith("configuration is invalid")
    assert "pool 'workers' field 'max_nodes'" in report.body["config"]["error"]
