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


def test_unreachable_storage_is_unhealthy_and_names_each_service(caplog) -> None:
    settings = {"AzureWebJobsStorage": _unreachable_storage(), "POOLKEEPER_POOLS": POOLS}
    report = health_report(settings)
    assert not report.ok
    assert report.body["status"] == "unhealthy"
    assert report.body["config"] == {"ok": True, "pools": 1, "mode": "act"}
    for service in ("queue", "table", "blob"):
        assert report.body["storage"][service] == {"ok": False}
        assert f"storage {service} service does not answer" in report.body["error"]
        # The endpoint and the error are for the log, not for an anonymous caller.
        assert f"storage {service} service at http://127.0.0.1:" in caplog.text
    assert "127.0.0.1" not in str(report.body)


def test_missing_storage_setting_is_unhealthy_with_the_setting_named_in_the_log(caplog) -> None:
    report = health_report({"POOLKEEPER_POOLS": POOLS})
    assert not report.ok
    assert "storage is not configured" in report.body["error"]
    assert "AzureWebJobsStorage__accountName" in caplog.text


def test_unreadable_clock_file_is_unhealthy_and_named(tmp_path, caplog) -> None:
    settings = {
        "AzureWebJobsStorage": _unreachable_storage(),
        "POOLKEEPER_POOLS": POOLS,
        "POOLKEEPER_CLOCK_FILE": str(tmp_path / "missing.json"),
    }
    report = health_report(settings)
    assert report.body["clock"] == {"ok": False}
    assert "the clock file is unreadable" in report.body["error"]
    assert "missing.json" in caplog.text


def test_wall_clock_is_reported_when_no_clock_file_is_set() -> None:
    report = health_report({"POOLKEEPER_POOLS": POOLS})
    assert report.body["clock"]["source"] == "system" and report.body["clock"]["now"]


def test_invalid_configuration_is_unhealthy_and_the_problem_is_logged(caplog) -> None:
    report = health_report(
        {
            "AzureWebJobsStorage": _unreachable_storage(),
            "POOLKEEPER_POOLS": POOLS.replace('"max_nodes": 5', '"max_nodes": 0'),
        }
    )
    assert not report.ok
    assert report.body["error"].startswith("configuration is invalid")
    assert report.body["config"] == {"ok": False}
    assert "pool 'workers' field 'max_nodes'" in caplog.text
    assert "subscriptions" not in str(report.body)
