"""The local host's HTTP front door: routes, methods, auth levels and keys, admin API."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import RunningHost

SETTINGS = {"TICK_SCHEDULE": "0 0 0 1 1 *", "WORK_QUEUE": "unused-queue"}


@pytest.fixture
def host(start_host, azurite) -> RunningHost:
    return start_host(settings=SETTINGS | {"AzureWebJobsStorage": azurite.connection_string})


def test_anonymous_route_needs_no_key(host: RunningHost) -> None:
    response = requests.get(f"{host.url}/api/open", timeout=5)
    assert (response.status_code, response.text) == (200, "open")


@pytest.mark.parametrize(
    "headers,params", [({}, {}), ({"x-functions-key": "wrong"}, {}), ({}, {"code": "wrong"})]
)
def test_function_route_without_a_valid_key_is_401(host: RunningHost, headers, params) -> None:
    response = requests.get(f"{host.url}/api/keyed", headers=headers, params=params, timeout=5)
    assert response.status_code == 401


@pytest.mark.parametrize("how", ["header", "code"])
def test_function_key_accepted_as_header_or_code_parameter(host: RunningHost, how: str) -> None:
    kwargs = (
        {"headers": {"x-functions-key": host.function_key}}
        if how == "header"
        else {"params": {"code": host.function_key}}
    )
    response = requests.post(f"{host.url}/api/keyed", data=b"hello", timeout=5, **kwargs)
    assert response.status_code == 200
    assert response.json() == {"method": "POST", "body": "hello"}
    assert response.headers["Content-Type"].startswith("application/json")


def test_master_key_also_opens_function_routes(host: RunningHost) -> None:
    response = requests.get(f"{host.url}/api/keyed", params={"code": host.master_key}, timeout=5)
    assert response.status_code == 200


def test_admin_route_rejects_function_key_and_accepts_master_key(host: RunningHost) -> None:
    url = f"{host.url}/api/secret"
    assert requests.get(url, params={"code": host.function_key}, timeout=5).status_code == 401
    response = requests.get(url, headers={"x-functions-key": host.master_key}, timeout=5)
    assert (response.status_code, response.text) == (200, "admin only")


def test_method_outside_methods_is_404_as_in_azure(host: RunningHost) -> None:
    assert requests.delete(f"{host.url}/api/open", timeout=5).status_code == 404


def test_route_parameters_constraints_and_query_reach_the_function(host: RunningHost) -> None:
    response = requests.get(f"{host.url}/api/items/42/more", params={"q": "x"}, timeout=5)
    assert (response.status_code, response.json()) == (201, {"id": "42", "rest": "more", "q": "x"})
    assert requests.get(f"{host.url}/api/items/42", timeout=5).json() == {"id": "42"}
    assert requests.get(f"{host.url}/api/items/abc", timeout=5).status_code == 404


def test_routes_live_under_the_route_prefix_only(host: RunningHost) -> None:
    assert requests.get(f"{host.url}/open", timeout=5).status_code == 404
    assert requests.get(f"{host.url}/api/nothing-here", timeout=5).status_code == 404


def test_function_that_raises_answers_500(host: RunningHost) -> None:
    assert requests.get(f"{host.url}/api/broken", timeout=5).status_code == 500


def test_disabled_function_answers_404(start_host, azurite) -> None:
    host = start_host(
        settings=SETTINGS
        | {
            "AzureWebJobsStorage": azurite.connection_string,
            "AzureWebJobs.open_route.Disabled": "true",
        }
    )
    assert requests.get(f"{host.url}/api/open", timeout=5).status_code == 404


def test_admin_status_lists_functions_for_the_master_key_only(host: RunningHost) -> None:
    url = f"{host.url}/admin/host/status"
    assert requests.get(url, params={"code": host.function_key}, timeout=5).status_code == 401
    status = requests.get(url, params={"code": host.master_key}, timeout=5).json()
    assert {f["name"]: f["trigger"] for f in status["functions"]} == {
        "open_route": "http",
        "keyed": "http",
        "item": "http",
        "secret": "http",
        "broken": "http",
        "tick": "timer",
        "work": "queue",
    }


def test_admin_api_runs_a_queue_function_with_the_given_input(host: RunningHost) -> None:
    url = f"{host.url}/admin/functions/work"
    assert requests.post(url, json={"input": "x"}, timeout=5).status_code == 401
    bad = requests.post(url, data="nope", params={"code": host.master_key}, timeout=5)
    assert bad.status_code == 400 and "input" in bad.json()["error"]
    ok = requests.post(url, json={"input": "by hand"}, params={"code": host.master_key}, timeout=5)
    assert ok.status_code == 202
    records = host.wait_for_records(lambda r: any(x["function"] == "work" for x in r))
    assert records[0]["body"] == "by hand"
