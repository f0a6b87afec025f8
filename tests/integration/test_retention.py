"""The pruning timer's work on real tables (Azurite of its own: it deletes across partitions)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.azurite import Azurite
from shared.adapters.deliveries import Deliveries
from shared.adapters.ledger import ALERTS_TABLE, AlertLog, Tables
from shared.adapters.retention import prune
from shared.adapters.storage import StorageAccount
from shared.clock import SystemClock
from shared.decide.retention import WINDOWS
from shared.jobs import Job, JobKind

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def tables() -> Iterator[Tables]:
    with Azurite() as running:
        yield Tables(StorageAccount(connection_string=running.connection_string))


def _job(tables: Tables, status: str, at: datetime) -> str:
    job = Job.model_validate(
        {
            "schema": "poolkeeper/job/v1",
            "id": f"j-{uuid.uuid4().hex[:8]}",
            "kind": JobKind.SCALE,
            "pool": "apps",
            "params": {"delta": 1},
            "requested_by": "tests",
            "created_at": at,
        }
    )
    tables.create_job(job, first_step="plan", now=at, status=status)
    return job.id


def _ids(tables: Tables, partition: str) -> set[str]:
    table: Any = tables._table(ALERTS_TABLE)
    return {e["RowKey"] for e in table.query_entities(f"PartitionKey eq '{partition}'")}


def test_pruning_deletes_only_what_has_had_its_time(tables: Tables) -> None:
    old, recent = NOW - timedelta(days=120), NOW - timedelta(days=2)
    deliveries = Deliveries(tables)
    clock = SystemClock()
    assert deliveries.claim({"old-delivery"}, old, clock) == {"old-delivery"}
    deliveries.handled({"old-delivery"}, old)
    assert deliveries.claim({"new-delivery"}, recent, clock) == {"new-delivery"}
    before = _ids(tables, "delivery")
    log = AlertLog(tables)
    log.record("apps", "p1-old", "resolved", {}, old)
    log.record("apps", "p1-new", "resolved", {}, recent)
    log.record("apps", "p1-open", "fired", {}, NOW - timedelta(days=40))  # open, not silent
    done_old, done_new = _job(tables, "done", old), _job(tables, "done", recent)
    queued_old = _job(tables, "queued", old)  # never started: never pruned
    tables.reject(queue="scale-jobs", raw="x", reason="old", job_id=None, now=old)
    tables.reject(queue="scale-jobs", raw="y", reason="new", job_id=None, now=recent)

    gone = prune(tables, NOW, WINDOWS)

    assert gone == {"deliveries": 1, "episodes": 0, "alerts": 1, "jobs": 1, "rejected": 1}
    assert len(before) == 2 and len(_ids(tables, "delivery")) == 1
    assert {a["alert"] for a in log.alerts("apps")} == {"p1-new", "p1-open"}
    assert tables.job(done_old) is None
    assert tables.job(done_new) is not None and tables.job(queued_old) is not None
    assert [r["reason"] for r in tables.rejections("scale-jobs")] == ["new"]
    assert prune(tables, NOW, WINDOWS) == dict.fromkeys(gone, 0)  # nothing left to do
    json.dumps(gone)  # the timer logs it as it is
