"""Alert webhook deliveries and episodes, in table `poolkeeperalerts`: which delivery is a first
delivery (claimed atomically before it is acted on, marked handled after), which alert
episodes have ended (a resolved was recorded), and when each pool and kind was last notified
(`Notices`, for the digest). Called by `POST /api/alerts`
(`shared/flows/capacity/alerts.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.adapters.ledger import (
    ALERTS_TABLE,
    TRANSACTION_SIZE,
    Tables,
    chunked,
    in_parallel,
    query_rows,
    table_key,
    upsert_all,
)
from shared.clock import Clock

DELIVERY = "delivery"
EPISODE = "episode"
CLAIMED, HANDLED = "claimed", "handled"
# Wall seconds after which a claim that was never marked handled is taken to be a request that
# died while acting: an intake request makes a few storage calls of at most 3.5 s each, so it
# has long answered (or failed) by then, and the sender's resend is acted on again.
CLAIM_SECONDS = 120


def _row(key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, key).hex


class Deliveries:
    """First deliveries and ended episodes of the alert webhooks (see the module docstring)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(ALERTS_TABLE)

    def claim(self, keys: Iterable[str], now: datetime, clock: Clock) -> set[str]:
        """The delivery keys this call is the first delivery of, claimed for it. Each claim is an
        insert-if-absent of the key's row, so of concurrent identical deliveries exactly one gets
        it (Table storage answers 409 EntityAlreadyExists to the others); a claim left by a
        request that died while acting (unhandled after CLAIM_SECONDS) is taken over, on its
        ETag. A key claimed and not yet handled by another request is not a first delivery."""
        rows = {_row(key): key for key in keys}
        found = query_rows(self._table(), DELIVERY, rows)
        won = self._insert([row for row in rows if row not in found], rows, now)
        for row, entity in found.items():
            if entity.get("state", HANDLED) == HANDLED:  # rows from before claims: handled
                continue
            claimed_at = datetime.fromisoformat(entity["claimed_at"])
            if clock.real_seconds(now - claimed_at) >= CLAIM_SECONDS and self._take_over(
                entity, rows[row], now
            ):
                won.add(row)
        return {rows[row] for row in won}

    def _entity(self, row: str, key: str, state: str, now: datetime) -> dict[str, Any]:
        return {
            "PartitionKey": DELIVERY,
            "RowKey": row,
            "key": key[:1000],
            "state": state,
            "claimed_at" if state == CLAIMED else "at": now.isoformat(),
        }

    def _insert(self, absent: list[str], rows: Mapping[str, str], now: datetime) -> set[str]:
        """Insert claims for `absent` rows, TRANSACTION_SIZE to a round trip; a transaction is
        all or nothing, so one that met a row inserted meanwhile is redone a row at a time."""
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableTransactionError

        table = self._table()

        def insert(chunk: list[str]) -> set[str]:
            entities = [self._entity(row, rows[row], CLAIMED, now) for row in chunk]
            try:
                table.submit_transaction([("create", entity) for entity in entities])
                return set(chunk)
            except TableTransactionError as error:
                if error.status_code != 409:
                    raise
            won = set()
            for entity in entities:
                try:
                    table.create_entity(entity)
                except ResourceExistsError:
                    continue  # another delivery of the same alert claimed it first
                won.add(entity["RowKey"])
            return won

        return set().union(*in_parallel(insert, chunked(absent, TRANSACTION_SIZE)))

    def _take_over(self, stale: Any, key: str, now: datetime) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError
        from azure.data.tables import UpdateMode

        try:
            self._table().update_entity(
                self._entity(stale["RowKey"], key, CLAIMED, now),
                mode=UpdateMode.REPLACE,
                etag=stale.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as error:
            if error.status_code in (404, 412):
                return False  # another resend took it over, or its holder gave it up
            raise
        return True

    def handled(self, keys: Iterable[str], now: datetime) -> None:
        """Mark claimed deliveries as handled: from now on, each is a duplicate for good."""
        upsert_all(self._table(), [self._entity(_row(key), key, HANDLED, now) for key in set(keys)])

    def release(self, keys: Iterable[str]) -> None:
        """Give up claims after acting failed, so that the sender's resend is acted on again."""
        for key in set(keys):
            self._table().delete_entity(DELIVERY, _row(key))  # a missing row is no error

    # -- episodes ----------------------------------------------------------------------------

    def note_resolved(self, episodes: Mapping[str, datetime | None], now: datetime) -> None:
        """Record that these episodes ended (resolved at the time given, None when not known)."""
        upsert_all(
            self._table(),
            [
                {
                    "PartitionKey": EPISODE,
                    "RowKey": table_key(episode),
                    "resolved_at": at.isoformat() if at else "",
                    "noted_at": now.isoformat(),
                }
                for episode, at in episodes.items()
            ],
        )

    def resolved(self, episodes: Iterable[str]) -> dict[str, datetime | None]:
        """Of these episodes, those with a recorded resolved, and when it was (None: unknown)."""
        rows = {table_key(episode): episode for episode in episodes}
        return {
            rows[row]: datetime.fromisoformat(entity["resolved_at"])
            if entity.get("resolved_at")
            else None
            for row, entity in query_rows(self._table(), EPISODE, rows).items()
        }


NOTICE = "notice"


class Notices:
    """The webhook's last notification per (pool, kind) and how many alerts were held back
    since: read, then written; two requests at once may both notify, never more."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(ALERTS_TABLE)

    def last(self, pool: str, kind: str) -> tuple[datetime, int] | None:
        """When the last notification went, and how many were held back since."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table().get_entity(NOTICE, table_key(f"{pool}|{kind}"))
        except ResourceNotFoundError:
            return None
        return datetime.fromisoformat(entity["at"]), int(entity.get("held", 0))

    def record(self, pool: str, kind: str, at: datetime, held: int) -> None:
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": NOTICE,
            "RowKey": table_key(f"{pool}|{kind}"),
            "at": at.isoformat(),
            "held": held,
        }
        self._table().upsert_entity(entity, mode=UpdateMode.REPLACE)
