"""The operator endpoints and the queue triggers through a real local host running function_app.py.

Each test starts `python -m local.host` on the repository's `function_app.py`, wired to Azurite
and the Azure simulator the way `local.stack` wires it, with the reconcile timer switched off so
that only the jobs a test submits touch the pool.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from local.azurite import ROOT
from local.host.easyauth import Identity, mint, principal_headers
from local.stack import APP_DEFAULTS
from shared.adapters.storage import StorageAccount
from shared.alerts import MAX_BODY_BYTES
from shared.auth import ALERT_SENDER, OPERATOR, READER
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services
from tests.conftest import AUTH_KEY
from tests.jobs_support import job, settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-apps-44444444-vmss"
OTHER_VMSS = "aks-spare-55555555-vmss"
WRITES = ("VirtualMachineScaleSets_Update", "VirtualMachineScaleSets_DeleteInstances")
FINAL = ("done", "failed")


def _vmss_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{name}"
    )


@dataclass
class World:
    """A host on function_app.py, the pool it manages, and the product's view of storage."""

    url: str
    key: str
    pool: str
    spare: str
    services: Services
    sim: Simulator

    def post(
        self,
        body: Any,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST /api/jobs as the local signed-in operator, or as `headers` say (a token)."""
        sent = {"Content-Type": "application/json"} | (headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(f"{self.url}/api/jobs", data=data, headers=sent, timeout=10)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        return requests.get(f"{self.url}/api/{path}", headers=headers or {}, timeout=10)

    def submit(self, kind: str, params: dict[str, Any] | None = None) -> str:
        response = self.post(job(kind, self.pool, params))
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def finished(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll `GET /api/jobs/{id}` until the job is done or failed."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            response = self.get(f"jobs/{job_id}")
            if response.status_code == 200:
                seen = response.json()
                if seen["status"] in FINAL:
                    return seen
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s; last seen {seen}")

    def queue(self, kind: str) -> str:
        return self.services.settings[f"POOLKEEPER_{kind.upper()}_QUEUE"]

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.sim.calls()["calls"] if c["operation"] in WRITES]


def _world(
    sim: Simulator,
    azurite: Any,
    start_host: Any,
    *,
    capacity: int = 4,
    settings: dict[str, str] | None = None,
    pool_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> World:
    sim.load(
        scenario(
            scale_set(VMSS, capacity, zones=[]),
            scale_set(OTHER_VMSS, 2, zones=[]),
            workloads={
                "deployments": [
                    {
                        "name": "web",
                        "replicas": 4,
                        "node_selector": {"elastisys.io/node-group": "apps"},
                        "termination_grace_seconds": 30,
                        "pdb": {"max_unavailable": 1},
                    }
                ],
                "daemonsets": [{"name": "kube-proxy"}],
            },
            **extra,
        )
    )
    # A pool name of its own per test: the pool table and the lease blob outlive a test.
    suffix = uuid.uuid4().hex[:6]
    pool, spare = f"apps-{suffix}", f"spare-{suffix}"
    pools = [
        {
            "name": pool,
            "vmss_id": _vmss_id(VMSS),
            "node_group": "apps",
            "min_nodes": 3,
            "max_nodes": 8,
        }
        | (pool_extra or {}),
        {
            "name": spare,
            "vmss_id": _vmss_id(OTHER_VMSS),
            "node_group": "spare",
            "min_nodes": 1,
            "max_nodes": 4,
        },
    ]
    overrides = settings or {}
    settings = APP_DEFAULTS | settings_for(sim, azurite.connection_string, pools) | overrides
    settings["AzureWebJobs.reconcile_timer.Disabled"] = "true"
    host = start_host(ROOT / "function_app.py", settings=settings)
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    requests.delete(f"{sim.admin}/calls", timeout=10)
    return World(host.url, host.function_key, pool, spare, services, sim)


def _message_count(services: Services, queue: str) -> int:
    client = services.account.queue_service().get_queue_client(queue)
    try:
        return client.get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return 0


def _queue_exists(services: Services, queue: str) -> bool:
    client = services.account.queue_service().get_queue_client(queue)
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def _json_error(response: Any) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error, str) and error
    return error


# -- POST /api/jobs and GET /api/jobs/{id} ---------------------------------------------------------


def test_submitted_job_is_accepted_with_its_id_and_runs_through_the_queue_trigger(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    message = job("scale", world.pool, {"delta": 1})

    response = world.post(message)

    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["id"] == message["id"]
    assert body["kind"] == "scale" and body["pool"] == world.pool
    assert body["queue"] == world.queue("scale")
    assert body["status_url"] == f"/api/jobs/{message['id']}"

    record = world.finished(message["id"])
    assert record["status"] == "done", record
    assert record["id"] == message["id"] and record["kind"] == "scale"
    assert record["requested_by"] == "tests" and record["error"] is None
    steps = [s["step"] for s in record["steps"]]
    assert steps[:3] == ["plan", "raise", "await_write"] and steps[-1] == "await_ready"
    assert all({"step", "at", "result"} <= s.keys() for s in record["steps"])
    assert record["outcome"]["capacity"] == 5 and record["outcome"]["ready"] == 5
    assert sim.scale_set_state(VMSS)["capacity"] == 5
    assert [c["operation"] for c in world.writes()] == ["VirtualMachineScaleSets_Update"]


def _bearer(name: str, roles: list[str], *, key: str = AUTH_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(key, name, roles, oid=f'oid-{name}')}"}


def test_jobs_are_listed_by_filter_and_page_through_the_host(
    sim: Simulator, azurite: Any, start_host: Any
) -> None:
    world = _world(sim, azurite, start_host)
    ids = {world.submit("scale", {"delta": 1, "dry_run": True}) for _ in range(3)}
    for job_id in ids:
        assert world.finished(job_id)["status"] == "done"

    listed = world.get(f"jobs?pool={world.pool}&kind=scale&status=done")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert {j["id"] for j in body["jobs"]} == ids and body["next"] is None
    first = body["jobs"][0]
    assert first["pool"] == world.pool and first["kind"] == "scale" and first["status"] == "done"
    assert first["submitted_by"] and first["outcome"]["dry_run"] is True
    assert "state" not in first and "steps" not in first  # a list, not every job's ledger entry

    # Two pages of two: `next` carries on where the first ended.
    seen: list[str] = []
    page = world.get(f"jobs?pool={world.pool}&kind=scale&limit=2").json()
    seen += [j["id"] for j in page["jobs"]]
    assert len(page["jobs"]) == 2 and page["next"]
    page = world.get(f"jobs?pool={world.pool}&kind=scale&limit=2&continuation={page['next']}")
    assert page.status_code == 200, page.text
    seen += [j["id"] for j in page.json()["jobs"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 3

    later = world.get(f"jobs?pool={world.pool}&since=2099-01-01T00:00:00%2B00:00").json()
    assert later == {"jobs": [], "next": None}
    wrong = world.get("jobs?status=cancelled")
    assert wrong.status_code == 400 and "status: 'cancelled'" in wrong.json()["error"]
    forged = _bearer("rita", [READER], key="not-the-key-but-thirty-two-bytes")
    assert world.get("jobs", headers=forged).status_code == 401
    assert world.get("jobs", headers=_bearer("rita", [READER])).status_code == 200


def test_job_routes_need_a_signed_in_caller_with_the_right_role(
    sim: Simulator, azurite, start_host
) -> None:
    # Easy Auth on, and no browser session: only a valid token signs a caller in.
    world = _world(sim, azurite, start_host, settings={"POOLKEEPER_LOCAL_SIGNED_IN": ""})
    message = job("scale", world.pool, {"delta": 1})
    forged = principal_headers(Identity("mallory", "oid-mallory", (OPERATOR,)))

    for headers in (
        {},
        {"x-functions-key": world.key},  # the host's key is no sign-in
        forged,  # Easy Auth drops principal headers a client sends
        _bearer("mallory", [OPERATOR], key="not-the-key-but-thirty-two-bytes"),
        {"Authorization": "Basic bWFsbG9yeTpzZWNyZXQ="},
    ):
        refused = world.post(message, headers=headers)
        assert refused.status_code == 401 and refused.content == b"", (headers, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert world.get("pools", headers=headers).status_code == 401
    reader = _bearer("rita", [READER])
    assert world.get("pools", headers=reader).status_code == 200
    denied = world.post(message, headers=reader)
    assert denied.status_code == 403
    assert f"rita (oid-rita) does not hold the app role {OPERATOR}" in _json_error(denied)
    assert world.get("jobs/anything", headers=_bearer("nobody", [])).status_code == 403

    time.sleep(1.5)  # a message that slipped through would have been picked up by now
    assert world.services.tables.job(message["id"]) is None
    assert _message_count(world.services, world.queue("scale")) == 0
    assert sim.calls()["total"] == 0
    assert requests.get(f"{world.url}/api/health", timeout=10).status_code in (200, 503)

    operator = _bearer("olga", [OPERATOR])
    accepted = world.post(message, headers=operator)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["submitted_by"] == "olga (oid-olga)"
    record = world.get(f"jobs/{message['id']}", headers=operator).json()
    assert record["submitted_by"] == "olga (oid-olga)" and record["requested_by"] == "tests"


def test_a_caller_cannot_write_who_submitted_a_job(sim: Simulator, azurite, start_host) -> None:
    world = _world(sim, azurite, start_host)
    message = job("scale", world.pool, {"delta": 1}) | {"submitted_by": "someone else"}
    refused = world.post(message)
    assert refused.status_code == 400
    assert "submitted_by is set by Poolkeeper only" in _json_error(refused)
    assert world.services.tables.job(message["id"]) is None


def test_without_easy_auth_the_app_trusts_no_principal_header(
    sim: Simulator, azurite, start_host
) -> None:
    # Easy Auth off (WEBSITE_AUTH_ENABLED unset): principal headers are whatever a client wrote.
    world = _world(sim, azurite, start_host, settings={"WEBSITE_AUTH_ENABLED": ""})
    forged = principal_headers(Identity("mallory", "oid-mallory", (OPERATOR,)))
    refused = world.post(job("scale", world.pool, {"delta": 1}), headers=forged)
    assert refused.status_code == 401
    assert "WEBSITE_AUTH_ENABLED is not true" in _json_error(refused)
    assert world.get("pools", headers=forged).status_code == 401
    page = requests.get(f"{world.url}/api/dashboard", headers=forged | {"Accept": "text/html"})
    assert page.status_code == 401 and "sign-in is not set up" in page.text
    assert world.pool not in page.text


MALFORMED = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b"\xff\xfe not utf-8", "UTF-8"),
    (b"[" * 5000, "nested deeper"),
]


def test_malformed_or_wrong_schema_bodies_answer_400_with_a_json_error(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    pool = world.pool
    envelopes = [
        (job("scale", pool, {"delta": 1}) | {"schema": "poolkeeper/job/v9"}, "schema must be"),
        (job("scale", pool, {"delta": 1}) | {"extra": True}, "invalid envelope"),
        ({k: v for k, v in job("scale", pool, {"delta": 1}).items() if k != "kind"}, "kind"),
        (job("teleport", pool), "invalid envelope"),
        (job("scale", pool, {"delta": 1}, id="no spaces allowed"), "invalid envelope"),
        (job("scale", pool, {"delta": 1}, created_at="2026-11-02T08:00:00"), "time zone"),
        (job("scale", pool, {"delta": 1}, continuation="abc"), "continuation"),
    ]
    ids = []
    for raw, reason in MALFORMED:
        response = world.post(None, raw=raw)
        assert response.status_code == 400, (raw, response.text)
        assert reason in _json_error(response), (raw, response.text)
    for body, reason in envelopes:
        response = world.post(body)
        assert response.status_code == 400, (body, response.text)
        assert reason in _json_error(response), (body, response.text)
        ids.append(body["id"])

    # A body a cross-site form could send (no JSON Content-Type) is refused whatever it holds.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        body = job("scale", pool, {"delta": 1})
        headers = {"x-functions-key": world.key} | (
            {"Content-Type": content_type} if content_type else {}
        )
        response = requests.post(
            f"{world.url}/api/jobs", data=json.dumps(body), headers=headers, timeout=10
        )
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in _json_error(response)
        ids.append(body["id"])

    time.sleep(1)
    assert all(world.services.tables.job(i) is None for i in ids)
    assert _message_count(world.services, world.queue("scale")) == 0
    assert sim.calls()["total"] == 0


def test_unknown_pool_or_invalid_params_answer_422_with_a_json_error(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    pool = world.pool
    cases = [
        (job("scale", "no-such-pool", {"delta": 1}), "unknown pool"),
        (job("scale", pool, {"delta": 0}), "invalid params"),
        (job("scale", pool, {"delta": 1, "target": 5}), "exactly one"),
        (job("scale", pool, {}), "exactly one"),
        (job("scale", pool, {"delta": "2"}), "invalid params"),
        (job("scale", pool, {"nodes": ["Not_A_Node"]}), "invalid params"),
        (job("reconcile", pool, {"delta": 1}), "invalid params"),
        (job("drain", pool, {"node": "x", "timeout_seconds": 1}), "invalid params"),
    ]
    for body, reason in cases:
        response = world.post(body)
        assert response.status_code == 422, (body, response.text)
        error = _json_error(response)
        assert reason in error, (body, error)
        assert response.json()["job_id"] == body["id"]

    time.sleep(1)
    assert all(world.services.tables.job(body["id"]) is None for body, _ in cases)
    assert sim.calls()["total"] == 0


def _warm_repair_check(world: World) -> None:
    """The first repair submitted loads the Compute SDK and gets a token: on a loaded machine
    that takes longer than a request is given here, and it is not what the tests measure."""
    warm = requests.post(
        f"{world.url}/api/jobs",
        json=job("repair", world.pool, {"node": "warm-up", "dry_run": True}),
        headers={"x-functions-key": world.key},
        timeout=120,
    )
    assert warm.status_code == 422, warm.text


def test_a_job_naming_an_instance_or_node_outside_its_pool_answers_422(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    _warm_repair_check(world)
    other = f"{OTHER_VMSS.removesuffix('-vmss')}-vmss000000"  # a node of the spare pool
    ours = f"{VMSS.removesuffix('-vmss')}-vmss000001"
    cases = [
        ("repair", {"instance": "999"}, "instance 999 is not in pool"),
        ("repair", {"node": "no-such-node"}, "the cluster has no node of that name"),
        ("repair", {"node": other}, f"node {other} is not in pool"),
        ("repair", {"node": ours, "instance": "998"}, "instance 998"),
        ("scale", {"nodes": [ours, other]}, f"node {other} is not in pool"),
        ("scale", {"instances": ["997"]}, "instance 997 is not in pool"),
        ("drain", {"node": other}, f"node {other} is not in pool"),
        ("patch", {"nodes": ["no-such-node"]}, "the cluster has no node of that name"),
    ]
    for kind, params, reason in cases:
        body = job(kind, world.pool, params)
        response = world.post(body)
        assert response.status_code == 422, (kind, params, response.text)
        assert reason in _json_error(response), (kind, params, response.text)
        assert world.services.tables.job(body["id"]) is None
    # Targets in the pool are taken, by node name or instance id.
    for params in ({"node": f"{VMSS.removesuffix('-vmss')}-vmss000001"}, {"instance": "2"}):
        accepted = world.post(job("repair", world.pool, params | {"dry_run": True}))
        assert accepted.status_code == 202, (params, accepted.text)
        assert world.finished(accepted.json()["id"])["status"] == "done"
    assert world.writes() == []


@pytest.mark.parametrize("silent", ["azure", "cluster"])
def test_a_repair_whose_targets_cannot_be_read_is_a_json_503_within_seconds(
    sim: Simulator, azurite, start_host, silent: str
) -> None:
    world = _world(sim, azurite, start_host)
    _warm_repair_check(world)
    if silent == "azure":
        hang = {"operation": "VirtualMachineScaleSets_Get", "kind": "timeout", "seconds": 30}
        sim.post("faults", hang)
    else:
        sim.post("kube/faults", {"kind": "timeout", "verbs": ["get"], "seconds": 30})
    body = job("repair", world.pool, {"node": "no-such-node"})
    started = time.monotonic()
    try:
        response = world.post(body)
    finally:
        for faults in ("faults", "kube/faults"):  # a new scenario keeps ARM's
            requests.delete(f"{sim.admin}/{faults}", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "could not check" in _json_error(response) and world.pool in _json_error(response)
    assert elapsed < 5, f"took {elapsed:.1f} s"  # the promise; the budget is one 3.5 s call
    assert world.services.tables.job(body["id"]) is None


def test_the_same_job_id_with_another_body_is_a_409_naming_the_job_and_the_same_body_is_a_202(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    message = job("scale", world.pool, {"delta": 1})
    assert world.post(message).status_code == 202
    # The same job resent, written otherwise (indented, keys in another order): idempotent.
    again = json.dumps(dict(reversed(list(message.items()))), indent=2).encode()
    assert world.post(None, raw=again).status_code == 202
    other = message | {"params": {"delta": 2}}
    refused = world.post(other)
    assert refused.status_code == 409, refused.text
    assert message["id"] in _json_error(refused) and "already taken" in _json_error(refused)
    assert refused.json()["job_id"] == message["id"]

    record = world.finished(message["id"])
    assert record["status"] == "done" and record["outcome"]["capacity"] == 5
    assert sim.scale_set_state(VMSS)["capacity"] == 5  # the first body, once
    assert [c["operation"] for c in world.writes()] == ["VirtualMachineScaleSets_Update"]
    after = world.post(other)  # a finished job keeps its id too
    assert after.status_code == 409 and "done" in _json_error(after)


def test_a_deferred_job_shows_as_deferred_on_its_status_url(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    not_before = (world.services.clock.now() + timedelta(days=2)).isoformat()
    message = job("scale", world.pool, {"delta": 1}, not_before=not_before)
    response = world.post(message)
    assert response.status_code == 202, response.text

    shown = world.get(response.json()["status_url"].removeprefix("/api/"))
    assert shown.status_code == 200, shown.text
    record = shown.json()
    assert record["status"] == "deferred" and record["steps"] == []
    assert datetime.fromisoformat(record["not_before"]) == datetime.fromisoformat(not_before)
    time.sleep(1.5)  # the queue trigger has seen it by now, and put it back for later
    assert world.get(f"jobs/{message['id']}").json()["status"] == "deferred"
    assert world.writes() == []


@pytest.mark.parametrize("outage", ["closed port", "no answer"])
def test_a_job_submitted_while_storage_is_down_is_a_json_503_within_seconds(
    sim: Simulator, azurite, start_host, outage: str
) -> None:
    with socket.socket() as silent:
        # "closed port": nothing listens; "no answer": connections queue up, nobody replies.
        silent.bind(("127.0.0.1", 0))
        if outage == "no answer":
            silent.listen(64)
        port = silent.getsockname()[1]
        down = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", azurite.connection_string)
        pool = {"name": "apps", "vmss_id": _vmss_id(VMSS), "node_group": "apps"}
        pools = [pool | {"min_nodes": 1, "max_nodes": 8}]
        settings = APP_DEFAULTS | settings_for(sim, down, pools)
        settings["AzureWebJobs.reconcile_timer.Disabled"] = "true"
        host = start_host(ROOT / "function_app.py", settings=settings)
        started = time.monotonic()
        response = requests.post(
            f"{host.url}/api/jobs",
            json=job("scale", "apps", {"delta": 1}),
            headers={"x-functions-key": host.function_key},
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "storage" in _json_error(response)
    # The SDK's own patience is about 55 s; the intake gives up within seconds. The bound leaves
    # room for a loaded machine (a cold first request there took just over 10 s).
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_unknown_job_id_answers_404_with_a_json_error(sim: Simulator, azurite, start_host) -> None:
    world = _world(sim, azurite, start_host)
    response = world.get(f"jobs/never-submitted-{uuid.uuid4().hex[:8]}")
    assert response.status_code == 404
    assert "never-submitted" in _json_error(response)


# -- GET /api/pools --------------------------------------------------------------------------------


def test_pools_show_the_truth_recorded_by_the_last_reconcile(
    sim: Simulator, azurite, start_host
) -> None:
    # Repair off: the repair job a reconcile enqueues for the failed instance would re-read the
    # pool too, and could be the record's last writer by the time it is read here.
    world = _world(sim, azurite, start_host, pool_extra={"repair": "off"})
    before = world.get(f"pools/{world.pool}")
    assert before.status_code == 200
    assert before.json()["read_at"] is None and "not reconciled" in before.json()["note"]
    # Before any reconcile a newcomer already sees the allow-list: what may be touched, and how far.
    allowed = {
        p["pool"]: {k: p[k] for k in ("vmss_id", "node_group", "min_nodes", "max_nodes")}
        for p in world.get("pools").json()["pools"]
    }
    assert allowed == {
        world.pool: {
            "vmss_id": _vmss_id(VMSS),
            "node_group": "apps",
            "min_nodes": 3,
            "max_nodes": 8,
        },
        world.spare: {
            "vmss_id": _vmss_id(OTHER_VMSS),
            "node_group": "spare",
            "min_nodes": 1,
            "max_nodes": 4,
        },
    }
    assert "RECONCILE_SCHEDULE" in before.json()["note"]

    # A scale-up whose instance fails to provision leaves something to report.
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_Update",
            "kind": "lro_failed",
            "error": "AllocationFailed",
            "count": 1,
        },
    )
    assert world.finished(world.submit("scale", {"delta": 1}))["status"] == "failed"
    reconcile_id = world.submit("reconcile")
    reconciled = world.finished(reconcile_id)
    assert reconciled["status"] == "done", reconciled
    assert [s["step"] for s in reconciled["steps"]] == ["reconcile"]

    truth = sim.scale_set_state(VMSS)
    one = world.get(f"pools/{world.pool}")
    assert one.status_code == 200 and one.headers["Content-Type"].startswith("application/json")
    status = one.json()
    assert status["pool"] == world.pool and status["vmss_id"] == _vmss_id(VMSS)
    assert status["capacity"] == truth["capacity"] == 5
    assert status["etag"] == truth["etag"]
    assert status["counts"]["live"] == 4 and status["counts"]["failed"] == 1
    assert status["counts"]["creating"] == status["counts"]["deleting"] == 0
    assert set(status["instances"]) == {i["instance_id"] for i in truth["instances"]}
    assert any(d["kind"] == "failed_instance" for d in status["drift"]), status["drift"]
    assert status["by_job"] == reconcile_id
    read_at = datetime.fromisoformat(status["read_at"])
    assert read_at <= datetime.fromisoformat(sim.state()["now"])
    assert "observations" not in status  # internal bookkeeping stays internal

    listing = world.get("pools")
    assert listing.status_code == 200
    by_name = {p["pool"]: p for p in listing.json()["pools"]}
    assert set(by_name) == {world.pool, world.spare}
    assert by_name[world.pool]["read_at"] == status["read_at"]
    assert by_name[world.pool]["counts"] == status["counts"]
    assert by_name[world.spare]["read_at"] is None  # never reconciled: said so, not invented
    assert by_name[world.pool]["min_nodes"] == 3 and by_name[world.pool]["node_group"] == "apps"

    missing = world.get("pools/no-such-pool")
    assert missing.status_code == 404
    assert "no-such-pool" in _json_error(missing)


# -- dry run ---------------------------------------------------------------------------------------


def test_dry_run_scale_jobs_record_their_plan_and_change_nothing(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    etag_before = sim.scale_set_state(VMSS)["etag"]

    scale_in = world.finished(world.submit("scale", {"delta": -1, "dry_run": True}))
    scale_up = world.finished(world.submit("scale", {"delta": 9, "dry_run": True}))
    refused = world.finished(world.submit("scale", {"delta": -2, "dry_run": True}))

    assert scale_in["status"] == "done", scale_in
    plan = scale_in["outcome"]["plan"]
    assert scale_in["outcome"]["dry_run"] is True and plan["action"] == "scale_in"
    assert len(plan["victims"]) == len(plan["nodes"]) == 1
    assert plan["live_before"] == 4 and plan["live_after"] == 3
    assert scale_up["status"] == "done", scale_up
    up = scale_up["outcome"]["plan"]
    assert up["action"] == "scale_up" and up["capacity"] == 4
    assert up["new_capacity"] == 8 and up["bounded"]  # max_nodes caps the plan too
    assert refused["status"] == "failed" and "below_min" in refused["error"]
    assert refused["outcome"] == {"refusal": "below_min", "dry_run": True}
    for record in (scale_in, scale_up, refused):
        assert [s["step"] for s in record["steps"]] == ["plan"]

    state = sim.scale_set_state(VMSS)
    assert state["capacity"] == 4 and state["etag"] == etag_before
    assert all(i["provisioning_state"] == "Succeeded" for i in state["instances"])
    assert world.writes() == []
    assert not any(n.unschedulable for n in sim.kube().nodes())  # nothing cordoned
    assert not requests.get(f"{sim.admin}/kube/evictions", timeout=10).json().get("evictions")


# -- messages put on the queues directly -----------------------------------------------------------


def test_invalid_queue_messages_are_recorded_as_rejected_and_never_poisoned(
    sim: Simulator, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host)
    pool, scale_queue = world.pool, world.queue("scale")
    bad = [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"schema": "other/v9", "id": "x"}), "schema must be"),
        (json.dumps(job("scale", pool, {"delta": 1}) | {"extra": 1}), "invalid envelope"),
        (json.dumps(job("scale", "no-such-pool", {"delta": 1})), "unknown pool"),
        (json.dumps(job("scale", pool, {"delta": 0})), "invalid params"),
        (json.dumps(job("teleport", pool)), "invalid envelope"),
        (json.dumps(job("reconcile", pool)), "belongs on"),
        (json.dumps(job("scale", pool, {"delta": 1}, created_at="2026-01-01T00:00:00")), "zone"),
        (json.dumps(job("scale", pool, {"delta": 1}, continuation="abc")), "does not know"),
        ("[" * 5000, "nested deeper"),
    ]
    for raw, _ in bad:
        world.services.queues.send(scale_queue, raw)
    # One more on another queue: a scale job sent to the reconcile queue.
    wrong = job("scale", pool, {"delta": 1})
    world.services.queues.send(world.queue("reconcile"), json.dumps(wrong))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rejected = world.services.tables.rejections(scale_queue)
        elsewhere = world.services.tables.rejections(world.queue("reconcile"))
        if len(rejected) >= len(bad) and elsewhere:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # a retry, had there been one, would record a second rejection by now

    rejected = world.services.tables.rejections(scale_queue)
    assert len(rejected) == len(bad), [r["reason"] for r in rejected]
    by_message = {r["message"]: r["reason"] for r in rejected}
    for raw, reason in bad:
        assert reason in by_message[raw], (raw, by_message[raw])
    elsewhere = world.services.tables.rejections(world.queue("reconcile"))
    assert len(elsewhere) == 1 and "belongs on" in elsewhere[0]["reason"]
    assert elsewhere[0]["job_id"] == wrong["id"]

    for queue in (scale_queue, world.queue("reconcile")):
        assert _message_count(world.services, queue) == 0  # removed, not left to retry
        poison = f"{queue}-poison"
        assert not _queue_exists(world.services, poison) or not _message_count(
            world.services, poison
        )
    assert sim.calls()["total"] == 0  # no side effect reached Azure
    assert world.services.tables.job(wrong["id"]) is None
    assert world.services.tables.pool_status(pool) is None


# -- POST /api/alerts ----------------------------------------------------------------------------


def test_alert_webhooks_through_the_host_scale_up_once_and_refuse_bad_requests(
    sim: Simulator, azurite: Any, start_host: Any
) -> None:
    from tests.integration.test_alert_webhook import alertmanager, azure_alert

    # A day of cooldown: the job runs to done before the second alert, however slow this machine
    # is against the simulated clock, and the cooldown must still hold then.
    world = _world(sim, azurite, start_host, pool_extra={"capacity": {"cooldown_minutes": 1440}})
    url = f"{world.url}/api/alerts"
    headers = {"Content-Type": "application/json"}
    fired = azure_alert(target=_vmss_id(VMSS))
    answer = requests.post(url, json=fired, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    (job_id,) = answer.json()["jobs"]
    assert world.finished(job_id)["status"] == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 5
    # Alertmanager, same episode: recorded, but the cooldown holds the second scale-up.
    again = requests.post(url, json=alertmanager(group="apps"), headers=headers, timeout=10)
    assert again.status_code == 202 and again.json()["jobs"] == []
    # Only a sender signed in with Poolkeeper.AlertSender: not a reader, not a forged token.
    as_reader = requests.post(url, json=fired, headers=_bearer("rita", [READER]), timeout=10)
    assert as_reader.status_code == 403 and ALERT_SENDER in _json_error(as_reader)
    forged = _bearer("am", [ALERT_SENDER], key="not-the-key-but-thirty-two-bytes")
    assert requests.post(url, json=fired, headers=forged, timeout=10).status_code == 401
    sender = requests.post(url, json=fired, headers=_bearer("am", [ALERT_SENDER]), timeout=10)
    assert sender.status_code == 202 and sender.json()["duplicates"] == 1  # this one was seen
    as_text = requests.post(url, data=json.dumps(fired), timeout=10)  # what a page can send
    assert as_text.status_code == 415 and "application/json" in _json_error(as_text)
    bad = requests.post(url, data=b"{nope", headers=headers, timeout=10)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    unknown = requests.post(url, json=alertmanager(group="nope"), headers=headers, timeout=10)
    assert unknown.status_code == 422 and "no configured node group" in unknown.json()["error"]
    too_big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    huge = requests.post(url, data=too_big, headers=headers, timeout=10)
    assert huge.status_code == 413
    assert sim.scale_set_state(VMSS)["capacity"] == 5


def test_an_alert_sender_signs_in_with_entra_client_credentials_checked_against_its_keys(
    sim: Simulator, azurite: Any, start_host: Any
) -> None:
    # Alertmanager's oauth2 (client credentials) against the simulator's Entra ID; the local Easy
    # Auth checks the RS256 token against the keys the issuer publishes, as Easy Auth does.
    from cryptography.hazmat.primitives.asymmetric import rsa

    from local.sim.scenario import EntraSpec
    from tests.integration.test_alert_webhook import azure_alert

    world = _world(sim, azurite, start_host)
    alertmanager = EntraSpec().applications[0]
    issuer = f"{sim.info['arm']}/{sim.info['tenant']}/v2.0"
    token_url = f"{sim.info['arm']}/{sim.info['tenant']}/oauth2/v2.0/token"

    def token(secret: str, scope: str = "api://poolkeeper-local/.default") -> requests.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": alertmanager.client_id,
            "client_secret": secret,
            "scope": scope,
        }
        return requests.post(token_url, data=form, verify=sim.info["ca_cert"], timeout=10)

    def post(access_token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {access_token}"}
        return requests.post(
            f"{world.url}/api/alerts",
            json=azure_alert(target=_vmss_id(VMSS)),
            headers=headers,
            timeout=10,
        )

    wrong = token("not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong.json()["error_description"]
    granted = token(alertmanager.client_secret)
    assert granted.status_code == 200, granted.text
    access = granted.json()["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["iss"] == issuer and claims["roles"] == [ALERT_SENDER]

    # Refused before the app sees them: a changed signature, the same claims signed by a key the
    # issuer does not publish, a token for another audience.
    header, payload, signature = access.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(access)["kid"]
    resigned = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": kid})
    arm = token(alertmanager.client_secret, scope="https://management.azure.com/.default")
    for refused in (f"{header}.{payload}.{flipped}", resigned, arm.json()["access_token"]):
        answer = post(refused)
        assert answer.status_code == 401, answer.text
    assert sim.scale_set_state(VMSS)["capacity"] == 4  # nothing acted

    accepted = post(access)
    assert accepted.status_code == 202, accepted.text
    (job_id,) = accepted.json()["jobs"]
    assert world.finished(job_id)["status"] == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 5


def test_a_signature_header_that_is_not_ascii_is_refused_with_a_json_403_through_the_host(
    sim: Simulator, azurite: Any, start_host: Any
) -> None:
    from tests.integration.test_alert_webhook import alertmanager

    world = _world(sim, azurite, start_host, settings={"POOLKEEPER_ALERT_SECRET": "s3cret"})
    body = json.dumps(alertmanager(group="apps")).encode()
    for header in (b"sha256=\xe9", "sha256=\u00e9".encode()):  # Latin-1 and UTF-8 bytes
        answer = requests.post(
            f"{world.url}/api/alerts",
            data=body,
            headers={"Content-Type": "application/json", "x-poolkeeper-signature": header},
            timeout=10,
        )
        assert answer.status_code == 403, (header, answer.status_code, answer.text)
        assert "x-poolkeeper-signature" in _json_error(answer)
    assert _message_count(world.services, world.queue("scale")) == 0


# -- the capacity timer, end to end on the host ---------------------------------------------------


def test_capacity_timer_on_the_host_scales_a_hot_group_once_and_resolves(
    sim: Simulator, azurite: Any, start_host: Any
) -> None:
    from shared.adapters.ledger import AlertLog

    sim.load(scenario(scale_set(VMSS, 3, zones=[], load={"cpu": 40, "memory": 40, "noise": 0})))
    pool = f"apps-{uuid.uuid4().hex[:6]}"
    pools = [
        {
            "name": pool,
            "vmss_id": _vmss_id(VMSS),
            "node_group": "apps",
            "min_nodes": 2,
            "max_nodes": 6,
            "capacity": {"cooldown_minutes": 1440},  # longer than this test, however slow
        }
    ]
    settings = (
        APP_DEFAULTS
        | settings_for(sim, azurite.connection_string, pools)
        | {
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            "AzureWebJobs.downscale_review.Disabled": "true",
        }
    )
    sim.advance(2 * 3600)  # quiet history before the host starts
    start_host(ROOT / "function_app.py", settings=settings)
    alerts = AlertLog(
        Services(
            settings,
            clock_from_settings(settings),
            load_config(settings),
            StorageAccount.from_settings(settings),
        ).tables
    )

    def group_state() -> str | None:
        found = {a["alert"]: a["state"] for a in alerts.alerts(pool)}
        return found.get("P1/group/apps")

    def wait_for(condition: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            time.sleep(0.5)
        assert condition()

    wait_for(lambda: group_state() == "ok")  # timers ran: reconcile, then an evaluation
    sim.post("load", {"scale_set": VMSS, "cpu": 97})
    wait_for(lambda: sim.scale_set_state(VMSS)["capacity"] == 4)
    assert group_state() == "firing"
    time.sleep(3)  # several more evaluations of the same episode (every 0.5 s of wall time)
    writes = [c for c in sim.calls()["calls"] if c["operation"] == "VirtualMachineScaleSets_Update"]
    assert len(writes) == 1 and sim.scale_set_state(VMSS)["capacity"] == 4
    sim.post("load", {"scale_set": VMSS, "cpu": 30})
    wait_for(lambda: group_state() == "ok")
