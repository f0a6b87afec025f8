"""Every HTTP route while storage hangs: Azurite stopped with SIGSTOP (the kernel still accepts
connections, nothing answers), through a real local host on function_app.py with its timers and
queue triggers running. Each route answers 503 with a JSON error naming storage within 5 s
(health once the answer in its 10 s cache has aged out)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from local.azurite import ROOT, Azurite
from local.stack import APP_DEFAULTS
from shared.adapters.storage import INTAKE_OPTIONS
from shared.flows.health import HEALTH_CACHE_SECONDS
from tests.integration.test_alert_webhook import alertmanager
from tests.integration.test_operator_api import VMSS, _vmss_id
from tests.jobs_support import job, settings_for
from tests.simulator import Simulator

POOL = "apps"
PROMISE = 5.0  # seconds: what docs/jobs.md promises a caller while storage hangs


@pytest.fixture
def own_azurite() -> Iterator[Azurite]:
    """An Azurite of this test's own: the session's is never paused under other tests."""
    with Azurite() as running:
        yield running


def _http_routes() -> set[str]:
    import function_app

    return {
        f.get_trigger().route
        for f in function_app.app.get_functions()
        if f.get_trigger().type == "httpTrigger"
    }


# Routes that touch no storage: a hung Storage account does not concern them (preflight reads
# only the configuration, ARM and the clusters).
NO_STORAGE = {"preflight"}


def _requests(url: str, key: str) -> dict[str, Callable[[], requests.Response]]:
    """One request per route of function_app.py (both forms of the optional parameters)."""

    def call(method: str, path: str, body: Any = None) -> Callable[[], requests.Response]:
        # Past the promise: a late answer is measured, not cut off.
        return lambda: requests.request(
            method, f"{url}/api/{path}", json=body, headers=keyed, timeout=4 * PROMISE
        )

    keyed = {"x-functions-key": key}
    return {
        "health": call("GET", "health"),
        "jobs": call("POST", "jobs", job("scale", POOL, {"delta": 1})),
        "jobs/{id}": call("GET", "jobs/some-job"),
        "pools/{name?}": call("GET", "pools"),
        "pools/{name}": call("GET", f"pools/{POOL}"),
        "dashboard/{pool?}": call("GET", "dashboard"),
        "dashboard/{pool}": call("GET", f"dashboard/{POOL}"),
        "alerts": call("POST", "alerts", alertmanager(group="apps")),
    }


def test_the_intake_gives_up_on_a_storage_call_well_within_the_promise() -> None:
    # One attempt, bounded connect and read: a hung call costs at most their sum, and the request
    # answers 503 at the first call that hangs. Room is left for a loaded machine.
    assert INTAKE_OPTIONS["retry_total"] == 0
    assert INTAKE_OPTIONS["connection_timeout"] + INTAKE_OPTIONS["read_timeout"] <= PROMISE - 1.5


def test_every_route_answers_a_json_503_naming_storage_within_5_s_while_storage_hangs(
    sim: Simulator, own_azurite: Azurite, start_host: Any
) -> None:
    pools = [
        {
            "name": POOL,
            "vmss_id": _vmss_id(VMSS),
            "node_group": "apps",
            "min_nodes": 1,
            "max_nodes": 8,
        }
    ]
    settings = APP_DEFAULTS | settings_for(sim, own_azurite.connection_string, pools)
    host = start_host(ROOT / "function_app.py", settings=settings)
    calls = _requests(host.url, host.function_key)
    assert {name.replace("{name}", "{name?}").replace("{pool}", "{pool?}") for name in calls} == (
        _http_routes() - NO_STORAGE
    ), "a route of function_app.py is not exercised here"
    for name, call in calls.items():  # warm: each function's modules and clients are loaded
        assert call().status_code < 500, name

    answers: dict[str, tuple[requests.Response | None, float]] = {}
    with own_azurite.paused():
        time.sleep(1)  # the timers and queue triggers get stuck on storage too
        for name, call in calls.items():
            # Health answers from a cache of HEALTH_CACHE_SECONDS (the route is anonymous): the
            # hang shows once the warm-up's answer has aged out; each answer still comes in time.
            until = time.monotonic() + (
                HEALTH_CACHE_SECONDS + 2 * PROMISE if name == "health" else 0
            )
            while True:
                started = time.monotonic()
                try:
                    answer: requests.Response | None = call()
                except requests.Timeout:
                    answer = None
                answers[name] = (answer, time.monotonic() - started)
                if answer is None or answer.status_code != 200 or time.monotonic() >= until:
                    break
                time.sleep(0.5)

    wrong: dict[str, Any] = {}
    for name, (response, elapsed) in answers.items():
        if response is None:
            wrong[name] = f"no answer in {elapsed:.1f} s"
            continue
        error = (
            response.json().get("error", "")
            if response.headers.get("Content-Type", "").startswith("application/json")
            else ""
        )
        if response.status_code != 503 or "storage" not in error or elapsed >= PROMISE:
            wrong[name] = (response.status_code, f"{elapsed:.1f} s", response.text[:200])
    assert not wrong, wrong
