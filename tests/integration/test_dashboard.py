"""The status page's storage (count history, recent jobs, hourly usage) on Azurite, and its routes
through the local host on function_app.py: sign-in, unknown pools, escaping, the empty state."""

from __future__ import annotations

import json
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from shared.adapters.history import HISTORY_TABLE, CountHistory
from shared.adapters.ledger import DailySummaries, Tables
from shared.adapters.storage import StorageAccount
from shared.auth import READER
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.dashboard.view import NOT_RECONCILED
from shared.flows.api import IntakeServices
from shared.flows.dashboard import page
from shared.flows.jobs import Services
from shared.flows.truth import read_truth
from shared.jobs import Job
from tests.integration.test_operator_api import _bearer, _vmss_id, _world
from tests.jobs_support import job, settings_for
from tests.simulator import scale_set, scenario

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 12, 2, 30, tzinfo=UTC)


@pytest.fixture
def tables(azurite: Any) -> Tables:
    return Tables(StorageAccount(connection_string=azurite.connection_string))


def _record(live: int, ready: int) -> dict[str, Any]:
    instances = {str(n): {"ready": n < ready} for n in range(live)}
    return {"counts": {"live": live, "failed": 0}, "capacity": live, "instances": instances}


def test_history_keeps_the_latest_read_of_each_bucket_and_prunes_old_and_future_rows(
    tables: Tables,
) -> None:
    pool = f"p{uuid.uuid4().hex[:8]}"
    history = CountHistory(tables)
    history.note(pool, _record(3, 3), NOW - timedelta(hours=30))  # older than a day
    history.note(pool, _record(9, 9), NOW + timedelta(hours=2))  # a clock that was set back
    history.note(pool, _record(3, 2), NOW - timedelta(minutes=7))
    history.note(pool, _record(4, 3), NOW - timedelta(minutes=1))  # same bucket as the next
    history.note(pool, _record(5, 4), NOW)

    rows = history.since(pool, NOW - timedelta(hours=48))
    assert [(r["counts"]["live"], r["capacity"], r["ready"]) for r in rows] == [
        (3, 3, 2),
        (5, 5, 4),
    ]
    assert rows[-1]["at"] == NOW.isoformat()
    keys = [
        e["RowKey"]
        for e in tables._table(HISTORY_TABLE).query_entities(f"PartitionKey eq '{pool}'")
    ]
    assert keys == ["2026-11-02T11:55", "2026-11-02T12:00"]


def _job(pool: str, kind: str, created: datetime) -> Job:
    return Job.model_validate(job(kind, pool, created_at=created.isoformat()))


def test_recent_jobs_are_the_pools_newest_without_quiet_reconciles_or_state(
    tables: Tables,
) -> None:
    pool = f"p{uuid.uuid4().hex[:8]}"
    made = {}
    for name, kind, pool_of, age in [
        ("scale", "scale", pool, 5),
        ("drain", "drain", pool, 1),
        ("quiet", "reconcile", pool, 2),
        ("broken", "reconcile", pool, 3),
        ("elsewhere", "scale", pool + "x", 1),
        ("old", "scale", pool, 60 * 24 * 8),
    ]:
        envelope = _job(pool_of, kind, NOW - timedelta(minutes=age))
        record = tables.create_job(envelope, first_step="plan", now=NOW)
        assert record is not None
        made[name] = tables.update_job(record, state={"big": "x" * 100}, steps=[{"step": "plan"}])
    tables.update_job(made["broken"], status="failed", error="cluster gone")

    found = tables.recent_jobs(pool, NOW - timedelta(days=7), except_kind="reconcile")

    assert [j["id"] for j in found] == [made[n].id for n in ("drain", "broken", "scale")]
    assert found[1]["status"] == "failed" and found[1]["error"] == "cluster gone"
    assert found[0]["steps"] == [{"step": "plan"}] and "state" not in found[0]
    assert len(tables.recent_jobs(pool, NOW - timedelta(days=7), limit=2)) == 2


def test_daily_summaries_keep_each_hours_latest_average(tables: Tables) -> None:
    pool = f"p{uuid.uuid4().hex[:8]}"
    store = DailySummaries(tables)
    for hour, cpu in [(3, 40.0), (3, 42.5), (4, 50.0)]:
        store.add_hour(
            pool,
            "2026-11-02",
            hour=hour,
            node_count=3,
            cpu=cpu,
            memory=None,
            largest_node_share=0.4,
        )
    (day,) = store.days(pool)
    assert day["cpu_by_hour"][3:5] == [42.5, 50.0] and day["cpu_by_hour"][5] is None
    assert day["memory_by_hour"] is None


def test_routes_need_a_reader_answer_unknown_pools_with_404_and_show_the_empty_state(
    sim, azurite, start_host
) -> None:
    world = _world(sim, azurite, start_host, settings={"POOLKEEPER_LOCAL_SIGNED_IN": ""})
    base = f"{world.url}/api/dashboard"
    assert requests.get(base, timeout=10).status_code == 401
    assert requests.get(base, params={"code": world.key}, timeout=10).status_code == 401
    nobody = _bearer("nora", [])
    refused = requests.get(base, headers=nobody | {"Accept": "text/html"}, timeout=10)
    assert refused.status_code == 403 and "does not hold the app role Poolkeeper.Reader" in (
        refused.text
    )
    assert world.pool not in refused.text  # nothing about the pools for a caller without a role
    reader = _bearer("rita", [READER])

    page = requests.get(base, headers=reader, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "signed in as rita (oid-rita)" in page.text
    assert "code=" not in page.text and world.key not in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none'
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.text.count(NOT_RECONCILED) == 2  # the pool and the spare, never reconciled

    world.services.tables.put_image_version(world.pool, "2026.1102.1", {"status": "<in use>"})
    pool_page = requests.get(f"{base}/{world.pool}", headers=reader, timeout=10)
    assert pool_page.status_code == 200 and NOT_RECONCILED in pool_page.text
    assert "<td>2026.1102.1</td>" in pool_page.text and "&lt;in use&gt;" in pool_page.text

    hostile = "%3Cscript%3Ex"  # "<script>x": no "/", which would make it another route
    as_json = requests.get(f"{base}/{hostile}", headers=reader, timeout=10)
    assert as_json.status_code == 404
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert "'<script>x'" in as_json.json()["error"] and world.pool in as_json.json()["error"]
    as_html = requests.get(
        f"{base}/{hostile}", headers=reader | {"Accept": "text/html"}, timeout=10
    )
    assert as_html.status_code == 404 and as_html.headers["Content-Type"].startswith("text/html")
    assert as_html.headers["X-Frame-Options"] == "DENY"  # error pages too
    assert "<script>" not in as_html.text and "&lt;script&gt;x" in as_html.text


def test_a_full_read_records_its_counts_and_ready_nodes(sim, azurite) -> None:
    sim.load(scenario(scale_set("aks-img-66666666-vmss", 2, zones=[])))
    pool = f"img-{uuid.uuid4().hex[:6]}"
    pools = [
        {
            "name": pool,
            "vmss_id": _vmss_id("aks-img-66666666-vmss"),
            "node_group": "img",
            "min_nodes": 1,
            "max_nodes": 4,
        }
    ]
    settings = settings_for(sim, azurite.connection_string, pools)
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    now = services.clock.now()

    truth = read_truth(services, services.config.pool(pool), now)

    assert [i["ready"] for i in truth.record["instances"].values()] == [True, True]
    (row,) = CountHistory(services.tables).since(pool, now - timedelta(hours=1))
    assert (row["counts"]["live"], row["capacity"], row["ready"]) == (2, 2, 2)


def test_storage_that_does_not_answer_is_a_503_page_or_json_error(sim, azurite) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = closed.getsockname()[1]
        down = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", azurite.connection_string)
        pools = [{"name": "apps", "vmss_id": _vmss_id("aks-x-1-vmss"), "node_group": "apps"}]
        settings = settings_for(sim, down, [pools[0] | {"min_nodes": 1, "max_nodes": 3}])
        services = IntakeServices.from_settings(settings)
        as_html = page(services, "apps", viewer=None, accept="text/html,*/*")
        as_json = page(services, None, viewer=None, accept="*/*")
    assert (as_html.status, as_html.content_type) == (503, "text/html")
    assert "storage is unavailable, try again shortly" in as_html.body
    assert (as_json.status, as_json.content_type) == (503, "application/json")
    assert json.loads(as_json.body)["error"].startswith("storage is unavailable")
