"""GET /api/health through the local host: 200 on Azurite, 503 naming the service once it stops."""

from __future__ import annotations

import time

import requests

from local.azurite import ROOT, Azurite
from local.stack import APP_DEFAULTS
from shared.flows.health import HEALTH_CACHE_SECONDS


def test_health_is_200_with_azurite_and_503_naming_storage_after_it_stops(start_host) -> None:
    with Azurite() as azurite:
        host = start_host(
            ROOT / "function_app.py",
            settings=APP_DEFAULTS
            | {
                "AzureWebJobsStorage": azurite.connection_string,
                "POOLKEEPER_POOLS_FILE": str(ROOT / "pools.example.json"),
                "AzureWebJobs.reconcile_timer.Disabled": "true",
            },
        )
        healthy = requests.get(f"{host.url}/api/health", timeout=10)
        assert healthy.status_code == 200
        body = healthy.json()
        assert body["status"] == "healthy" and body["version"]
        assert {name: check["ok"] for name, check in body["storage"].items()} == {
            "queue": True,
            "table": True,
            "blob": True,
        }
    # The answer comes from a cache of HEALTH_CACHE_SECONDS: the outage shows within it.
    deadline = time.monotonic() + HEALTH_CACHE_SECONDS + 20
    unhealthy = requests.get(f"{host.url}/api/health", timeout=10)
    while unhealthy.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        unhealthy = requests.get(f"{host.url}/api/health", timeout=10)
    assert unhealthy.status_code == 503
    assert unhealthy.headers["Content-Type"].startswith("application/json")
    error = unhealthy.json()["error"]
    assert "storage queue service does not answer" in error
    assert "storage blob service does not answer" in error
    # The on-call engineer finds the endpoint that failed in the host's log.
    assert f"storage queue service at http://127.0.0.1:{azurite.ports['queue']}" in (
        host.log.read_text()
    )
