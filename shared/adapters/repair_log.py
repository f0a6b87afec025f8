"""The pool's repairs, one row each in the pools table (partition `<pool>.repair`): what reconcile
enqueued, how each repair went and the rung it reached, and whether the brake is on.

Written by the repair flow; read by it (one repair in flight a pool, repairs a node had today)
and by `GET /api/pools/{name}`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import POOLS_TABLE, Tables

KEEP = timedelta(days=14)  # older rows are dropped as new ones are written
BRAKE_ROW = "~brake"  # no job id starts with "~"


class RepairLog:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(POOLS_TABLE)

    @staticmethod
    def _partition(pool: str) -> str:
        return f"{pool}.repair"  # pool names have no dots: never a pool's own row

    def put(self, pool: str, entry: dict[str, Any], now: datetime) -> None:
        """Write the entry of repair job `entry["job"]` (replacing its earlier one)."""
        table = self._table()
        table.upsert_entity(
            {
                "PartitionKey": self._partition(pool),
                "RowKey": entry["job"],
                "at": entry["at"],
                "entry": json.dumps(entry),
            }
        )
        for old in table.query_entities(
            "PartitionKey eq @p and at lt @before",
            parameters={"p": self._partition(pool), "before": (now - KEEP).isoformat()},
        ):
            table.delete_entity(old["PartitionKey"], old["RowKey"])

    def entries(self, pool: str) -> list[dict[str, Any]]:
        """Every kept entry of the pool, oldest first."""
        found = self._table().query_entities(
            "PartitionKey eq @p", parameters={"p": self._partition(pool)}
        )
        rows = [
            json.loads(row["entry"])
            for row in found
            if row.get("entry") and row["RowKey"] != BRAKE_ROW
        ]
        return sorted(rows, key=lambda entry: str(entry.get("at")))

    def brake(self, pool: str) -> dict[str, Any] | None:
        """The brake as last noted (when it came on, why), or None when it is off."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            row = self._table().get_entity(self._partition(pool), BRAKE_ROW)
        except ResourceNotFoundError:
            return None
        return json.loads(row["entry"]) if row.get("entry") else None

    def set_brake(self, pool: str, brake: dict[str, Any] | None) -> None:
        self._table().upsert_entity(
            {
                "PartitionKey": self._partition(pool),
                "RowKey": BRAKE_ROW,
                "at": "~",  # after every time: never pruned
                "entry": json.dumps(brake) if brake else "",
            }
        )
