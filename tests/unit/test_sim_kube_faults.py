"""The kube simulator's request attributes and fault selection (`local/sim/kube/requestinfo.py`,
`local/sim/kube/faults.py`) as table tests: no loop, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from local.sim.kube.faults import Faults, KubeFault
from local.sim.kube.requestinfo import RequestInfo, request_info

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NODE = "aks-workers-11111111-vmss000000"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/nodes", {}, ("list", "nodes", None, None)),
        ("GET", "/api/v1/nodes", {"watch": "true"}, ("watch", "nodes", None, None)),
        ("GET", f"/api/v1/nodes/{NODE}", {}, ("get", "nodes", None, NODE)),
        ("PATCH", f"/api/v1/nodes/{NODE}", {}, ("patch", "nodes", None, NODE)),
        ("PUT", f"/api/v1/nodes/{NODE}/status", {}, ("update", "nodes/status", None, NODE)),
        ("DELETE", "/api/v1/namespaces/web/pods", {}, ("deletecollection", "pods", "web", None)),
        (
            "POST",
            "/api/v1/namespaces/web/pods/p1/eviction",
            {},
            ("create", "pods/eviction", "web", "p1"),
        ),
        ("GET", "/api/v1/namespaces/web", {}, ("get", "namespaces", None, "web")),
        ("GET", "/apis/apps/v1/daemonsets", {}, ("list", "daemonsets", None, None)),
        ("GET", "/version", {}, ("get", None, None, None)),
        ("GET", "/api/v1", {}, ("get", None, None, None)),
    ],
)
def test_request_info_reads_the_verb_and_target(
    method: str, path: str, query: dict[str, str], expected: tuple[Any, ...]
) -> None:
    info = request_info(method, path, query)
    assert (info.verb, info.target, info.namespace, info.name) == expected


def patch_nodes(name: str = NODE) -> RequestInfo:
    return request_info("PATCH", f"/api/v1/nodes/{name}", {})


def fault(**fields: Any) -> KubeFault:
    return KubeFault.model_validate(fields)


@pytest.mark.parametrize(
    ("spec", "info", "body", "applies"),
    [
        ({}, patch_nodes(), "", True),  # no selector: every request
        ({}, request_info("GET", "/healthz", {}), "", True),
        ({"resources": ["nodes"]}, request_info("GET", "/healthz", {}), "", False),
        ({"verbs": ["patch"], "resources": ["nodes"]}, patch_nodes(), "", True),
        ({"verbs": ["get"]}, patch_nodes(), "", False),
        (
            {"resources": ["pods"]},
            request_info("POST", "/api/v1/namespaces/d/pods/p/eviction", {}),
            "",
            False,
        ),
        ({"names": ["other"]}, patch_nodes(), "", False),
        ({"namespace": "web"}, request_info("GET", "/api/v1/namespaces/web/pods", {}), "", True),
        ({"namespace": "web"}, patch_nodes(), "", False),
        (
            {"match": "resourceVersion"},
            patch_nodes(),
            '{"metadata": {"resourceVersion": "7"}}',
            True,
        ),
        ({"match": "resourceVersion"}, patch_nodes(), '{"spec": {}}', False),
        ({"kind": "conflict"}, patch_nodes(), "", True),  # a conflict's default verbs: writes
        ({"kind": "conflict"}, request_info("GET", "/api/v1/nodes", {}), "", False),
    ],
)
def test_a_fault_applies_by_verb_resource_namespace_name_and_body(
    spec: dict[str, Any], info: RequestInfo, body: str, applies: bool
) -> None:
    assert fault(**spec).applies(info, body, T0) is applies


def test_a_window_covers_from_and_not_until() -> None:
    window = fault(**{"from": "2026-11-02T08:01:00Z", "until": "2026-11-02T08:03:00"})
    moments = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    assert [window.applies(patch_nodes(), "", t) for t in moments] == [False, True, True, False]


def test_count_and_after_are_counted_by_every_fault_that_applies() -> None:
    faults = Faults()
    faults.add(fault(after=2, count=1, status=500))  # the third write
    faults.add(fault(after=4, count=1, status=502))  # the fifth, though the first answered one
    answered = [faults.take(patch_nodes(), b"", T0) for _ in range(6)]
    assert [f.status if f else None for f in answered] == [None, None, 500, None, 502, None]
    assert [(f["fired"], f["remaining"]) for f in faults.view()] == [(1, 0), (1, 0)]


def test_the_first_fault_that_applies_answers_and_only_it_is_counted() -> None:
    faults = Faults()
    faults.add(fault(resources=["pods"], status=500))
    faults.add(fault(status=503, count=2))
    assert faults.take(patch_nodes(), b"", T0).status == 503  # type: ignore[union-attr]
    assert faults.take(request_info("GET", "/api/v1/pods", {}), b"", T0).status == 500  # type: ignore[union-attr]
    assert [f["fired"] for f in faults.view()] == [1, 1]


def test_the_listing_names_fields_as_they_are_posted() -> None:
    faults = Faults()
    faults.add(fault(**{"from": "2026-11-02T08:01:00Z"}, verbs=["patch"]))
    (listed,) = faults.view()
    assert listed == {
        "kind": "error",
        "verbs": ["patch"],
        "status": 503,
        "after": 0,
        "from": "2026-11-02T08:01:00Z",
        "seconds": 30.0,
        "applied": False,
        "index": 0,
        "remaining": None,
        "fired": 0,
    }


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"resources": ["nodez"]}, "unknown resource"),
        ({"resources": ["nodes/logs"]}, "unknown resource"),
        ({"verbs": ["fly"]}, "verbs"),
        ({"kind": "conflict", "verbs": ["get", "patch"]}, "writes only"),
        ({"applied": True}, "needs kind timeout"),
        ({"kind": "timeout", "seconds": 301}, "seconds"),
        ({"status": 302}, "status"),
        ({"from": "2026-11-02T09:00:00Z", "until": "2026-11-02T08:00:00Z"}, "until must be after"),
        ({"match": "("}, "regular expression"),
        ({"count": 0}, "count"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_malformed_faults_are_refused_naming_the_field(spec: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        fault(**spec)


@pytest.mark.parametrize(
    ("spec", "answer"),
    [
        ({}, (503, "ServiceUnavailable", "the server is currently unable to handle the request")),
        ({"status": 500}, (500, "InternalError", "Internal error occurred: injected fault")),
        ({"status": 429, "message": "slow down"}, (429, "TooManyRequests", "slow down")),
        ({"status": 502}, (502, "", "injected fault (502)")),
        (
            {"kind": "timeout"},
            (
                504,
                "Timeout",
                "Timeout: request did not complete within requested timeout - context deadline "
                "exceeded",
            ),
        ),
    ],
)
def test_a_fault_answers_with_the_api_servers_code_reason_and_message(
    spec: dict[str, Any], answer: tuple[int, str, str]
) -> None:
    assert fault(**spec).answer() == answer
