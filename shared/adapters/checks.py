"""What the status page shows of the clusters and the deployment, kept in the pools table: each
cluster's answering state and breaker (partition `cluster`, written by the breaker and the
reconcile survey), and the last preflight's report (row `preflight/last`).
"""

from __future__ import annotations

import json
from typing import Any

from shared.adapters.ledger import POOLS_TABLE, Tables, _joined, _split


class Checks:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(POOLS_TABLE)

    def put_cluster_state(self, cluster: str, record: dict[str, Any]) -> None:
        """Whether the cluster answers, and its breaker, as last changed."""
        self._table().upsert_entity(
            {"PartitionKey": "cluster", "RowKey": cluster, "record": json.dumps(record)}
        )

    def cluster_states(self) -> dict[str, dict[str, Any]]:
        """Every cluster's recorded state (see put_cluster_state)."""
        found = self._table().query_entities(
            "PartitionKey eq @part", parameters={"part": "cluster"}
        )
        return {row["RowKey"]: json.loads(row["record"]) for row in found}

    def put_preflight(self, report: dict[str, Any]) -> None:
        """The last preflight's report."""
        from azure.data.tables import UpdateMode

        text = json.dumps(report, separators=(",", ":"))
        self._table().upsert_entity(
            {"PartitionKey": "preflight", "RowKey": "last"}
            | _split("report", text, what="the preflight's report"),
            mode=UpdateMode.REPLACE,
        )

    def last_preflight(self) -> dict[str, Any] | None:
        """The report put_preflight kept, if any."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            row = self._table().get_entity("preflight", "last")
        except ResourceNotFoundError:
            return None
        return json.loads(_joined(row, "report"))
