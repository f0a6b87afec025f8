"""Table storage: the job ledger, rejected messages, and each pool's recorded truth.

The ledger is what makes redelivery idempotent: a job's status, step, state and continuation
token live here, updated with ETags so that two workers never both advance one job.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from shared.adapters.storage import StorageAccount
from shared.jobs import Job

T = TypeVar("T")
R = TypeVar("R")

JOBS_TABLE = "poolkeeperjobs"
REJECTED_TABLE = "poolkeeperrejected"
POOLS_TABLE = "poolkeeperpools"
MAX_STEPS = 60  # older step records are dropped: a table property holds 64 KiB (32 K characters)
FINAL = frozenset({"done", "failed"})

# Characters a key may keep as they are. Table keys refuse / \ # ? and control characters, and
# are at most 1 KiB; text from outside (an alert's name) may hold any of them, at any length.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9.:|/=@+-]{1,400}")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9.:|=@+-]")


def table_key(text: str) -> str:
    """A valid PartitionKey/RowKey for any text, one-to-one: plain text stays readable (with "/"
    as "_", as keys were always written); anything else becomes a readable prefix, "~" and a
    SHA-256 of the text. "~" and "_" never occur in the first form, so the two cannot meet."""
    if _PLAIN_KEY.fullmatch(text):
        return text.replace("/", "_")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{_KEY_CHARS.sub('_', text[:60])}~{digest}"


class LedgerConflict(Exception):
    """Someone else updated the job since we read it (ETag mismatch)."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    pool: str
    status: str  # queued, deferred (submitted, not started), running, waiting, done, failed
    step: str
    state: dict[str, Any]
    steps: list[dict[str, Any]]
    outcome: dict[str, Any] | None
    error: str | None
    continuation: str | None
    requested_by: str
    created_at: str
    updated_at: str
    envelope: str
    sent_from: str | None = None  # the continuation this record's pending message came from
    etag: str = field(default="", compare=False)

    def public(self) -> dict[str, Any]:
        """What `GET /api/jobs/{id}` shows."""
        return {
            "id": self.id,
            "kind": self.kind,
            "pool": self.pool,
            "status": self.status,
            "step": self.step,
            "steps": self.steps,
            "outcome": self.outcome,
            "error": self.error,
            "requested_by": self.requested_by,
            "submitted_by": json.loads(self.envelope).get("submitted_by"),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "state": without_tokens(self.state),
            "not_before": json.loads(self.envelope).get("not_before"),
        }


HIDDEN_TOKEN = "(operation token: kept in the ledger, not shown)"


def without_tokens(value: Any) -> Any:
    """`value` with every operation token (a key ending in "token") replaced by a note: they
    are kilobytes of status URL and scale-set model, and only Poolkeeper may use them."""
    if isinstance(value, dict):
        return {
            k: HIDDEN_TOKEN if str(k).endswith("token") and v else without_tokens(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_tokens(v) for v in value]
    return value


MAX_STEPS_CHARS = 24_000  # a string property holds 32 K UTF-16 characters; keep room


def _bounded_steps(steps: list[dict[str, Any]]) -> str:
    """The newest steps that fit: at most MAX_STEPS entries and MAX_STEPS_CHARS of JSON."""
    kept = steps[-MAX_STEPS:]
    text = json.dumps(kept)
    while len(kept) > 1 and len(text) > MAX_STEPS_CHARS:
        kept = kept[max(1, len(kept) // 8) :]
        text = json.dumps(kept)
    return text


STATE_CHUNK = 30_000  # characters per property (Table storage: 32 K UTF-16 characters)
STATE_CHUNKS = 14  # an entity holds 1 MiB in all: the state may take about 840 KB of it


class StateTooLarge(ValueError):
    """A job's state does not fit in its ledger row."""


def _split(name: str, text: str, *, what: str) -> dict[str, str]:
    """`text` over the properties `name`, `name_1`, ... so that no property passes its limit
    (a pool of many nodes makes a long job state and a long pool status)."""
    chunks = [text[i : i + STATE_CHUNK] for i in range(0, len(text), STATE_CHUNK)] or [""]
    if len(chunks) > STATE_CHUNKS:
        raise StateTooLarge(
            f"{what} is {len(text)} characters; a table row holds {STATE_CHUNK * STATE_CHUNKS}"
        )
    return {(name if i == 0 else f"{name}_{i}"): chunk for i, chunk in enumerate(chunks)}


def _joined(entity: Any, name: str) -> str:
    parts = [entity[name]]
    while f"{name}_{len(parts)}" in entity:
        parts.append(entity[f"{name}_{len(parts)}"])
    return "".join(parts)


def _state_properties(record: JobRecord) -> dict[str, str]:
    """The job's state, split over `state`, `state_1`, ..."""
    return _split("state", json.dumps(record.state), what=f"job {record.id}: its state")


def _joined_state(entity: Any) -> str:
    return _joined(entity, "state")


def _entity(record: JobRecord) -> dict[str, Any]:
    return {
        "PartitionKey": "job",
        "RowKey": record.id,
        "kind": record.kind,
        "pool": record.pool,
        "status": record.status,
        "step": record.step,
        **_state_properties(record),
        "steps": _bounded_steps(record.steps),
        "outcome": json.dumps(record.outcome) if record.outcome is not None else "",
        "error": record.error or "",
        "continuation": record.continuation or "",
        "requested_by": record.requested_by,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "envelope": record.envelope,
        "sent_from": record.sent_from or "",
    }


def _record(entity: Any) -> JobRecord:
    return JobRecord(
        id=entity["RowKey"],
        kind=entity["kind"],
        pool=entity["pool"],
        status=entity["status"],
        step=entity["step"],
        state=json.loads(_joined_state(entity)),
        steps=json.loads(entity["steps"]),
        outcome=json.loads(entity["outcome"]) if entity.get("outcome") else None,
        error=entity.get("error") or None,
        continuation=entity.get("continuation") or None,
        requested_by=entity["requested_by"],
        created_at=entity["created_at"],
        updated_at=entity["updated_at"],
        envelope=entity["envelope"],
        sent_from=entity.get("sent_from") or None,
        etag=entity.metadata["etag"],
    )


_LISTED = ("kind", "status", "step", "error", "requested_by", "created_at", "updated_at")


class Tables:
    """The three tables, created on first use."""

    def __init__(self, account: StorageAccount, **options: Any) -> None:
        """`options` go to the SDK client (timeouts, retries: see storage.INTAKE_OPTIONS)."""
        self._service = account.table_service(**options)
        self._ready: set[str] = set()

    def _table(self, name: str) -> Any:
        if name not in self._ready:
            self._service.create_table_if_not_exists(name)
            self._ready.add(name)
        return self._service.get_table_client(name)

    # -- jobs ------------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _record(self._table(JOBS_TABLE).get_entity("job", job_id))
        except ResourceNotFoundError:
            return None

    def create_job(
        self, job: Job, *, first_step: str, now: datetime, status: str = "running"
    ) -> JobRecord | None:
        """Record a new job (running, or queued/deferred when submitted); None when a record
        with this id already exists."""
        from azure.core.exceptions import ResourceExistsError

        record = JobRecord(
            id=job.id,
            kind=job.kind.value,
            pool=job.pool,
            status=status,
            step=first_step,
            state={},
            steps=[],
            outcome=None,
            error=None,
            continuation=None,
            requested_by=job.requested_by,
            created_at=job.created_at.isoformat(),
            updated_at=now.isoformat(),
            envelope=job.to_message(),
        )
        try:
            metadata = self._table(JOBS_TABLE).create_entity(_entity(record))
        except ResourceExistsError:
            return None
        return replace(record, etag=metadata["etag"])

    def update_job(self, record: JobRecord, **changes: Any) -> JobRecord:
        """Replace the record if nobody changed it since `record` was read."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError
        from azure.data.tables import UpdateMode

        updated = replace(record, **changes)
        try:
            metadata = self._table(JOBS_TABLE).update_entity(
                _entity(updated),
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as error:
            if error.status_code == 412:
                raise LedgerConflict(f"job {record.id} changed under us") from error
            raise
        return replace(updated, etag=metadata["etag"])

    def unfinished_jobs(self, pool: str, kind: str) -> list[str]:
        """Ids of the pool's jobs of `kind` that have not ended (queued, waiting or running)."""
        found = self._table(JOBS_TABLE).query_entities(
            "PartitionKey eq 'job' and pool eq @pool and kind eq @kind"
            " and status ne 'done' and status ne 'failed'",
            parameters={"pool": pool, "kind": kind},
            select=["RowKey"],
        )
        return [e["RowKey"] for e in found]

    def pending_jobs(self, pool: str) -> int:
        """How many of the pool's jobs are recorded and not started (queued or deferred)."""
        found = self._table(JOBS_TABLE).query_entities(
            "PartitionKey eq 'job' and pool eq @pool and ( status eq 'queued' or status eq "
            "'deferred' )",
            parameters={"pool": pool},
            select=["RowKey"],
        )
        return sum(1 for _ in found)

    def recent_jobs(
        self, pool: str, since: datetime, *, except_kind: str = "", limit: int = 20
    ) -> list[dict[str, Any]]:
        """The pool's newest jobs created since `since` (of another kind than `except_kind`,
        unless failed), without their state: what the status page lists."""
        found = self._table(JOBS_TABLE).query_entities(
            "PartitionKey eq 'job' and pool eq @pool and created_at ge @since"
            " and ( kind ne @kind or status eq 'failed' )",
            parameters={"pool": pool, "since": since.isoformat(), "kind": except_kind},
            select=[*_LISTED, "RowKey", "steps", "outcome"],
        )
        jobs = [
            {key: e.get(key) for key in _LISTED}
            | {
                "id": e["RowKey"],
                "steps": json.loads(e["steps"]),
                "outcome": json.loads(e["outcome"]) if e.get("outcome") else None,
            }
            for e in found
        ]
        return sorted(jobs, key=lambda job: job["created_at"], reverse=True)[:limit]

    def list_jobs(
        self,
        *,
        pool: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        continuation: dict[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
        """One page of jobs matching the filters, without their state and steps (in id order),
        and the Tables service's token for the next page (None after the last). A continuation
        the service refuses is a ValueError."""
        clauses, parameters = ["PartitionKey eq 'job'"], {}
        for name, value in (("pool", pool), ("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{name} eq @{name}")
                parameters[name] = value
        if since is not None:
            clauses.append("created_at ge @since")
            parameters["since"] = since.isoformat()
        pages = (
            self._table(JOBS_TABLE)
            .query_entities(
                " and ".join(clauses),
                parameters=parameters,
                select=[*_LISTED, "RowKey", "pool", "envelope", "outcome"],
                results_per_page=limit,
            )
            .by_page(continuation_token=continuation)
        )
        from azure.core.exceptions import HttpResponseError

        try:
            page = list(next(pages, []))
        except HttpResponseError as error:
            if continuation is not None and error.status_code == 400:
                raise ValueError(f"continuation refused by the ledger ({error.reason})") from error
            raise
        jobs = [
            {"id": e["RowKey"], "pool": e.get("pool")}
            | {key: e.get(key) for key in _LISTED}
            | {
                "submitted_by": json.loads(e.get("envelope") or "{}").get("submitted_by"),
                "outcome": json.loads(e["outcome"]) if e.get("outcome") else None,
            }
            for e in page
        ]
        return jobs, pages.continuation_token or None

    # -- rejections --------------------------------------------------------------------------------

    def reject(
        self, *, queue: str, raw: str, reason: str, job_id: str | None, now: datetime
    ) -> str:
        """Record a message that will not run, with why; returns the record's key."""
        key = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        self._table(REJECTED_TABLE).create_entity(
            {
                "PartitionKey": queue,
                "RowKey": key,
                "reason": reason,
                "job_id": job_id or "",
                "message": raw[:30000],
                "rejected_at": now.isoformat(),
            }
        )
        return key

    def rejections(self, queue: str | None = None) -> list[dict[str, Any]]:
        table = self._table(REJECTED_TABLE)
        found = (
            table.query_entities(f"PartitionKey eq '{queue}'") if queue else table.list_entities()
        )
        return [
            {
                "queue": e["PartitionKey"],
                "key": e["RowKey"],
                "reason": e["reason"],
                "job_id": e["job_id"] or None,
                "message": e["message"],
                "rejected_at": e["rejected_at"],
            }
            for e in found
        ]

    # -- pool status -----------------------------------------------------------------------------

    def put_patch_checks(self, pool: str, nodes: dict[str, Any]) -> None:
        """The latest patch check of each node of a pool (kernel, reboot pending, updates):
        one row per node, so a pool of any size fits."""
        from azure.data.tables import UpdateMode

        table = self._table(POOLS_TABLE)
        for node, check in nodes.items():
            # Pool names have no dots, so these rows never meet a pool's own.
            table.upsert_entity(
                {"PartitionKey": f"{pool}.patch", "RowKey": node, "check": json.dumps(check)},
                mode=UpdateMode.REPLACE,
            )

    def patch_status(self, pool: str) -> dict[str, Any]:
        """Every node's latest patch check (see put_patch_checks)."""
        found = self._table(POOLS_TABLE).query_entities(
            "PartitionKey eq @pool", parameters={"pool": f"{pool}.patch"}
        )
        return {row["RowKey"]: json.loads(row["check"]) for row in found}

    def put_image_version(self, pool: str, version: str, record: dict[str, Any]) -> None:
        """What an image job made of one version (donor, kernel, canary, rollback): the pool's
        image lineage, one row per version."""
        from azure.data.tables import UpdateMode

        self._table(POOLS_TABLE).upsert_entity(
            {"PartitionKey": f"{pool}.image", "RowKey": version, "record": json.dumps(record)},
            mode=UpdateMode.REPLACE,
        )

    def image_lineage(self, pool: str) -> dict[str, Any]:
        """Every version an image job recorded for the pool (see put_image_version)."""
        found = self._table(POOLS_TABLE).query_entities(
            "PartitionKey eq @pool", parameters={"pool": f"{pool}.image"}
        )
        return {row["RowKey"]: json.loads(row["record"]) for row in found}

    def put_pool_status(self, pool: str, status: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        # Compact, and split over properties: a pool of a few hundred instances passes one
        # property's 64 KiB (REPLACE drops the parts a shorter status no longer has).
        text = json.dumps(status, separators=(",", ":"))
        self._table(POOLS_TABLE).upsert_entity(
            {"PartitionKey": "pool", "RowKey": pool}
            | _split("status", text, what=f"pool {pool}'s status"),
            mode=UpdateMode.REPLACE,
        )

    def pool_status(self, pool: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return json.loads(_joined(self._table(POOLS_TABLE).get_entity("pool", pool), "status"))
        except ResourceNotFoundError:
            return None


ALERTS_TABLE = "poolkeeperalerts"
QUERY_KEYS = 14  # row keys per query filter
PARALLEL = 8  # round trips of one lookup or write in flight at once
TRANSACTION_SIZE = 100  # Table storage's limit of operations per transaction
MAX_NAME = 1024  # characters of an alert's name kept in its record


def in_parallel(work: Callable[[T], R], items: list[T]) -> list[R]:
    """`work` over `items`, up to PARALLEL round trips in flight at once (one: inline). A
    1000-alert webhook makes 72 lookups and 10 transactions of each kind; in a row they took
    seconds."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(PARALLEL, len(items))) as pool:
        return list(pool.map(work, items))


def chunked(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def query_rows(table: Any, partition: str, rows: Iterable[str]) -> dict[str, Any]:
    """The entities of `partition` with these row keys, in few round trips: a query names at most
    14 keys (Table storage allows 15 comparisons in a filter, the partition is one)."""

    def query(chunk: list[str]) -> list[Any]:
        names = {f"r{i}": row for i, row in enumerate(chunk)}
        keys = " or ".join(f"RowKey eq @{name}" for name in names)
        return list(
            table.query_entities(
                # The SDK finds @names between spaces: keep the parentheses apart from them.
                f"PartitionKey eq @p and ( {keys} )",
                parameters={"p": partition, **names},
            )
        )

    found = in_parallel(query, chunked(sorted(set(rows)), QUERY_KEYS))
    return {entity["RowKey"]: entity for batch in found for entity in batch}


def upsert_all(table: Any, entities: list[dict[str, Any]]) -> None:
    """Upsert entities of one partition, TRANSACTION_SIZE to a round trip."""
    from azure.data.tables import UpdateMode

    in_parallel(
        lambda chunk: table.submit_transaction(
            [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk]
        ),
        chunked(entities, TRANSACTION_SIZE),
    )


class AlertLog:
    """Alerts per pool (fired/resolved, with values) and the last scale-up each pool had from
    capacity management (for the cooldown). Table `poolkeeperalerts` (webhook deliveries and
    ended episodes live there too: `shared.adapters.deliveries`)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(ALERTS_TABLE)

    def _rows(self, partition: str, rows: Iterable[str]) -> dict[str, Any]:
        return query_rows(self._table(), partition, rows)

    def _upsert_all(self, entities: list[dict[str, Any]]) -> None:
        upsert_all(self._table(), entities)

    def record(
        self, pool: str, alert: str, state: str, values: dict[str, Any], now: datetime
    ) -> dict[str, Any] | None:
        """Set an alert's state; returns the previous one (None if new)."""
        return self.record_all([(pool, alert, state, values)], now)[(pool, alert)]

    def record_all(
        self, states: list[tuple[str, str, str, dict[str, Any]]], now: datetime
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """Set the states of (pool, alert, state, values) entries, in few round trips; returns
        each (pool, alert)'s previous state (None if new). The last entry for an alert wins."""
        latest = {(pool, alert): (state, values) for pool, alert, state, values in states}
        rows = {key: table_key(f"{key[0]}|{key[1]}") for key in latest}
        stored = self._rows("alert", rows.values())
        previous: dict[tuple[str, str], dict[str, Any] | None] = {}
        entities = []
        for (pool, alert), (state, values) in latest.items():
            entity = stored.get(rows[pool, alert])
            before = json.loads(entity["value"]) if entity else None
            previous[pool, alert] = before
            since = before["since"] if before and before["state"] == state else now.isoformat()
            current = {
                "pool": pool,
                "alert": alert[:MAX_NAME],  # the key holds it all; a property has 64 KiB
                "state": state,
                "since": since,
                "updated_at": now.isoformat(),
                "values": values,
            }
            entities.append(
                {"PartitionKey": "alert", "RowKey": rows[pool, alert], "value": json.dumps(current)}
            )
        self._upsert_all(entities)
        return previous

    def alerts(self, pool: str | None = None) -> list[dict[str, Any]]:
        found = [
            json.loads(e["value"]) for e in self._table().query_entities("PartitionKey eq 'alert'")
        ]
        return [a for a in found if pool is None or a["pool"] == pool]

    def last_scale_up(self, pool: str) -> datetime | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table().get_entity("scale_up", pool)
        except ResourceNotFoundError:
            return None
        return datetime.fromisoformat(entity["at"])

    def note_scale_up(self, pool: str, now: datetime) -> None:
        """Record a scale-up that happened (any requester), unless a later one is recorded."""
        from azure.data.tables import UpdateMode

        last = self.last_scale_up(pool)
        if last is None or last < now:
            self._table().upsert_entity(
                {"PartitionKey": "scale_up", "RowKey": pool, "at": now.isoformat()},
                mode=UpdateMode.REPLACE,
            )

    def claim_scale_up(self, pool: str, now: datetime, cooldown_from: datetime | None) -> bool:
        """Record a scale-up at `now` unless one was recorded after `cooldown_from`: the check and
        the record are one conditional write, so a timer and a webhook cannot both scale up."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = self._table()
        entity = {"PartitionKey": "scale_up", "RowKey": pool, "at": now.isoformat()}
        try:
            current = table.get_entity("scale_up", pool)
        except ResourceNotFoundError:
            try:
                table.create_entity(entity)
            except HttpResponseError:
                return False
            return True
        if cooldown_from is not None and datetime.fromisoformat(current["at"]) > cooldown_from:
            return False
        try:
            table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError:
            return False
        return True


DAILY_TABLE = "poolkeeperdaily"
MIN_HOURS = 20  # of 24: a day with fewer hours of complete data is a day without data


class DailySummaries:
    """Per pool and day: the group's average and peak hourly CPU and memory, and its size.
    Platform metrics keep 93 days; the downscale review needs 3-6 months, so Poolkeeper keeps
    its own. Table `poolkeeperdaily`, one row per pool and day."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _table(self) -> Any:
        return self._tables._table(DAILY_TABLE)

    def add_hour(
        self,
        pool: str,
        day: str,
        *,
        hour: int,
        node_count: int,
        cpu: float | None,
        memory: float | None,
        largest_node_share: float,
    ) -> None:
        """Fold one evaluation's complete hourly group averages into the day's row, and mark
        the hour as covered (a day counts only when MIN_HOURS of its hours are)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            row = dict(self._table().get_entity(pool, day))
        except ResourceNotFoundError:
            row = {
                "PartitionKey": pool,
                "RowKey": day,
                "evaluations": 0,
                "node_count": 0,
                "cpu_sum": 0.0,
                "cpu_n": 0,
                "cpu_peak": -1.0,
                "memory_sum": 0.0,
                "memory_n": 0,
                "memory_peak": -1.0,
                "largest_node_share": largest_node_share,
                "hours": "0" * 24,
            }
        row["evaluations"] += 1
        row["node_count"] = max(row["node_count"], node_count)
        row["largest_node_share"] = max(row["largest_node_share"], largest_node_share)
        hours = row.get("hours") or "0" * 24
        row["hours"] = hours[:hour] + "1" + hours[hour + 1 :]
        for name, value in (("cpu", cpu), ("memory", memory)):
            if value is not None:
                row[f"{name}_sum"] += value
                row[f"{name}_n"] += 1
                row[f"{name}_peak"] = max(row[f"{name}_peak"], value)
                # The hour's latest 1 h average, for the status page's 24 h chart.
                by_hour = json.loads(row.get(f"{name}_by_hour") or "null") or [None] * 24
                by_hour[hour] = round(value, 2)
                row[f"{name}_by_hour"] = json.dumps(by_hour)
        self._table().upsert_entity(row, mode=UpdateMode.REPLACE)

    def put(self, pool: str, day: str, summary: dict[str, Any]) -> None:
        """Write a whole day (imports and tests)."""
        from azure.data.tables import UpdateMode

        self._table().upsert_entity(
            {"PartitionKey": pool, "RowKey": day, **summary}, mode=UpdateMode.REPLACE
        )

    def days(self, pool: str) -> list[dict[str, Any]]:
        """Every stored day of the pool: day, node_count, cpu/memory avg and peak (None when
        there was no data), largest_node_share."""
        found = []
        for row in self._table().query_entities(f"PartitionKey eq '{pool}'"):
            covered = str(row.get("hours", "1" * 24)).count("1") >= MIN_HOURS

            def avg(name: str, row: Any = row, covered: bool = covered) -> float | None:
                usable = covered and row[f"{name}_n"]
                return row[f"{name}_sum"] / row[f"{name}_n"] if usable else None

            def peak(name: str, row: Any = row, covered: bool = covered) -> float | None:
                return row[f"{name}_peak"] if covered and row[f"{name}_n"] else None

            found.append(
                {
                    "day": row["RowKey"],
                    "node_count": row["node_count"],
                    "cpu_avg": avg("cpu"),
                    "cpu_peak": peak("cpu"),
                    "memory_avg": avg("memory"),
                    "memory_peak": peak("memory"),
                    "largest_node_share": row["largest_node_share"],
                    "cpu_by_hour": json.loads(row.get("cpu_by_hour") or "null"),
                    "memory_by_hour": json.loads(row.get("memory_by_hour") or "null"),
                }
            )
        return sorted(found, key=lambda d: d["day"])
