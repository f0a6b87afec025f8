"""The function index as the Functions host sees it, and the app's cold-start import cost."""

from __future__ import annotations

import json
import subprocess
import sys

from local.azurite import ROOT


def _index() -> list[dict]:
    # get_functions() can be called once per imported app (the library rejects a second
    # call as duplicate names), so index in a fresh interpreter.
    code = (
        "import json, function_app\n"
        "print(json.dumps([json.loads(f.get_function_json()) | {'name': f.get_function_name()}"
        " for f in function_app.app.get_functions()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def _http(route: str, methods: list[str], auth: str) -> list[dict]:
    return [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": methods,
            "authLevel": auth,
            "route": route,
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ]


def _queue(setting: str) -> list[dict]:
    return [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": f"%{setting}%",
            "connection": "AzureWebJobsStorage",
        }
    ]


def test_function_index_pins_names_triggers_routes_and_auth_levels() -> None:
    index = {entry["name"]: entry["bindings"] for entry in _index()}
    assert index == {
        "health": _http("health", ["GET"], "ANONYMOUS"),
        "scale_jobs": _queue("POOLKEEPER_SCALE_QUEUE"),
        "drain_jobs": _queue("POOLKEEPER_DRAIN_QUEUE"),
        "reconcile_jobs": _queue("POOLKEEPER_RECONCILE_QUEUE"),
        "reconcile_timer": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%RECONCILE_SCHEDULE%",
            }
        ],
        "submit_job": _http("jobs", ["POST"], "ANONYMOUS"),
        "list_jobs": _http("jobs", ["GET"], "ANONYMOUS"),
        "get_job": _http("jobs/{id}", ["GET"], "ANONYMOUS"),
        "get_pools": _http("pools/{name?}", ["GET"], "ANONYMOUS"),
        "preflight": _http("preflight", ["GET"], "ANONYMOUS"),
        "dashboard": _http("dashboard/{pool?}", ["GET"], "ANONYMOUS"),
        "alerts": _http("alerts", ["POST"], "ANONYMOUS"),
        "notification_webhook": _queue("POOLKEEPER_WEBHOOK_QUEUE"),
        "prune_timer": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%PRUNE_SCHEDULE%",
            }
        ],
        "evaluate_capacity": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%CAPACITY_SCHEDULE%",
            }
        ],
        "downscale_review": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%DOWNSCALE_SCHEDULE%",
            }
        ],
        "patch_jobs": _queue("POOLKEEPER_PATCH_QUEUE"),
        "patch_timer": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%PATCH_SCHEDULE%",
            }
        ],
        "image_jobs": _queue("POOLKEEPER_IMAGE_QUEUE"),
        "image_timer": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%IMAGE_SCHEDULE%",
            }
        ],
    }


def test_importing_the_app_loads_no_heavy_sdk() -> None:
    # Cold start matters for an HTTP-triggered webhook: SDKs load when a function needs them.
    code = (
        "import sys, function_app\n"
        "heavy = ('azure.mgmt.compute', 'kubernetes', 'azure.monitor', 'azure.identity',"
        " 'azure.storage.queue', 'azure.storage.blob', 'azure.data.tables')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
