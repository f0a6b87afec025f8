"""Table storage: each pool's counts over the last day, one row per 5-minute bucket.

`read_truth` notes every full read here; the status page draws its counts chart from it.
Table `poolkeeperhistory`, partition = pool, row key = the bucket's start (sortable text).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import TRANSACTION_SIZE, Tables

HISTORY_TABLE = "poolkeeperhistory"
BUCKET = timedelta(minutes=5)  # the reconcile timer's period: a read per bucket is enough
KEEP = timedelta(hours=25)  # a day for the chart, and an hour of slack for late readers


def _bucket(at: datetime) -> str:
    start = at - timedelta(minutes=at.minute % 5, seconds=at.second, microseconds=at.microsecond)
    return f"{start:%Y-%m-%dT%H:%M}"


class CountHistory:
    """The counts of each full read, the latest per bucket, pruned to KEEP on every write: a pool
    holds at most 300 rows however often it is read."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(HISTORY_TABLE)

    def note(self, pool: str, record: dict[str, Any], now: datetime) -> None:
        """Record a truth record's counts, capacity and Ready nodes at `now`, and prune."""
        from azure.data.tables import UpdateMode

        ready = sum(1 for i in (record.get("instances") or {}).values() if i.get("ready"))
        table = self._table()
        table.upsert_entity(
            {
                "PartitionKey": pool,
                "RowKey": _bucket(now),
                "at": now.isoformat(),
                "counts": json.dumps(record.get("counts") or {}),
                "capacity": record.get("capacity"),
                "ready": ready,
            },
            mode=UpdateMode.REPLACE,
        )
        # Rows older than KEEP go, and so do rows ahead of `now`: a simulated clock that was
        # set back must not leave a future that no chart shows and nothing prunes.
        stale = table.query_entities(
            "PartitionKey eq @pool and ( RowKey lt @old or RowKey gt @new )",
            parameters={"pool": pool, "old": _bucket(now - KEEP), "new": _bucket(now)},
            select=["PartitionKey", "RowKey"],
        )
        rows = [("delete", row) for row in stale]
        for start in range(0, len(rows), TRANSACTION_SIZE):
            table.submit_transaction(rows[start : start + TRANSACTION_SIZE])

    def since(self, pool: str, start: datetime) -> list[dict[str, Any]]:
        """The pool's rows from `start` on, oldest first: at, counts, capacity, ready."""
        found = self._table().query_entities(
            "PartitionKey eq @pool and RowKey ge @start",
            parameters={"pool": pool, "start": _bucket(start)},
        )
        rows = [
            {
                "at": row["at"],
                "counts": json.loads(row["counts"]),
                "capacity": row.get("capacity"),
                "ready": row.get("ready"),
            }
            for row in found
        ]
        return sorted(rows, key=lambda row: row["at"])
