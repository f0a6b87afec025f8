"""The pruning of Poolkeeper's tables: webhook deliveries and ended episodes, alerts, finished
jobs and rejected messages past their windows (`shared/decide/retention.py`). Only the columns
that decide are read; rows go one delete at a time, in parallel (a row deleted meanwhile is
no error)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from shared.adapters.deliveries import DELIVERY, EPISODE
from shared.adapters.ledger import ALERTS_TABLE, JOBS_TABLE, REJECTED_TABLE, Tables, in_parallel
from shared.decide.retention import Windows, alert_expired, expired, job_expired


def _delete(table: Any, rows: list[tuple[str, str]]) -> int:
    in_parallel(lambda key: table.delete_entity(partition_key=key[0], row_key=key[1]), rows)
    return len(rows)


def _chosen(entities: Iterable[Any], gone: Callable[[Any], bool]) -> list[tuple[str, str]]:
    return [(e["PartitionKey"], e["RowKey"]) for e in entities if gone(e)]


def prune(tables: Tables, now: datetime, windows: Windows) -> dict[str, int]:
    """Delete what has had its time; how many rows of each kind went."""
    alerts = tables._table(ALERTS_TABLE)
    deliveries = alerts.query_entities(
        "PartitionKey eq @p",
        parameters={"p": DELIVERY},
        select=["PartitionKey", "RowKey", "at", "claimed_at"],
    )
    episodes = alerts.query_entities(
        "PartitionKey eq @p",
        parameters={"p": EPISODE},
        select=["PartitionKey", "RowKey", "noted_at"],
    )
    states = alerts.query_entities(
        "PartitionKey eq @p", parameters={"p": "alert"}, select=["PartitionKey", "RowKey", "value"]
    )

    def alert_gone(entity: Any) -> bool:
        try:
            value = json.loads(entity.get("value") or "{}")
        except ValueError:
            return False
        return alert_expired(str(value.get("state")), value.get("updated_at"), now, windows)

    jobs = tables._table(JOBS_TABLE)
    finished = jobs.query_entities(
        "PartitionKey eq @p",
        parameters={"p": "job"},
        select=["PartitionKey", "RowKey", "status", "updated_at"],
    )
    rejected = tables._table(REJECTED_TABLE)
    refused = rejected.list_entities(select=["PartitionKey", "RowKey", "rejected_at"])
    return {
        "deliveries": _delete(
            alerts,
            _chosen(
                deliveries,
                lambda e: expired(e.get("at") or e.get("claimed_at"), now, windows.deliveries),
            ),
        ),
        "episodes": _delete(
            alerts, _chosen(episodes, lambda e: expired(e.get("noted_at"), now, windows.episodes))
        ),
        "alerts": _delete(alerts, _chosen(states, alert_gone)),
        "jobs": _delete(
            jobs,
            _chosen(
                finished,
                lambda e: job_expired(e.get("status", ""), e.get("updated_at"), now, windows),
            ),
        ),
        "rejected": _delete(
            rejected,
            _chosen(refused, lambda e: expired(e.get("rejected_at"), now, windows.rejected)),
        ),
    }
