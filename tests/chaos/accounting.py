"""Which jobs make up a chaos round and when they have all ended: those the driver sent, those
Poolkeeper made itself (reconcile's repairs, repairs' replacements, image jobs' children), each
ended, or stuck (waiting on one step for the same reason longer than any deadline of the
product), or past the round's bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.adapters.ledger import FINAL, JOBS_TABLE, JobRecord, _record

if TYPE_CHECKING:
    from shared.clock import Clock
    from tests.chaos.driver import RoundResult
    from tests.chaos.rig import Rig

# Every job ends within this much product time after the round's last event, or it is reported
# as never ending (the product bounds every retry in time; see ARCHITECTURE.md, invariant 13).
JOB_BOUND = timedelta(hours=24)
# A job that waits on one step for the same reason this long is stuck: the product's own
# deadlines here (retries 2 h, installs 90 min, drains, reboots, settles) are all shorter.
STUCK = timedelta(hours=3)
# JOB_BOUND is 144 wall seconds at the rounds' 600x: a busy machine can starve a host that long
# (a killed worker's message waits out its lease, Azurite restarts). A job past the bound is
# reported only if it is still open this many wall seconds later: a job that is merely late runs
# its next step meanwhile and meets its own deadlines (in product time); one that never ends
# stays open.
WALL_GRACE = 120.0


def round_jobs(rig: Rig, result: RoundResult) -> dict[str, JobRecord]:
    """Every job of the round's pools in the ledger: those sent, and those Poolkeeper made
    itself (created since the round began)."""
    pools = {s.pool.name for s in result.round.schedules}
    table = rig.services.tables._table(JOBS_TABLE)
    since = result.started_at
    assert since is not None
    found: dict[str, JobRecord] = {}
    for entity in table.query_entities("PartitionKey eq 'job'"):
        if entity["pool"] in pools and datetime.fromisoformat(entity["created_at"]) >= since:
            record = _record(entity)
            found[record.id] = record
    for sent in result.sent:
        if sent.id not in found and sent.accepted:
            record = rig.services.tables.job(sent.id)
            if record is not None:
                found[sent.id] = record
    return found


def await_jobs(
    clock: Clock,
    result: RoundResult,
    read: Callable[[], dict[str, JobRecord]],
    extra: set[str] | None = None,
) -> None:
    """Wait until every job of the round (and `extra`) has ended, `read` from the ledger. A job
    still open once it has waited on one step for the same reason for STUCK of product time, or
    once JOB_BOUND has passed (and WALL_GRACE of wall time after that), is recorded as
    unfinished (every deadline of the product is shorter)."""
    limit = clock.now() + JOB_BOUND
    past_limit: float | None = None
    sent = {s.id for s in result.sent if s.accepted} | (extra or set())
    while True:
        try:
            records = read()
        except Exception:  # noqa: BLE001 - Azurite may be restarting: look again
            time.sleep(0.5)
            continue
        open_ = {i: r for i, r in records.items() if r.status not in FINAL}
        missing = (sent | spawned(records.values())) - set(records)
        result.records = records
        stuck = {i: why for i, r in open_.items() if (why := _stuck(r)) is not None}
        if clock.now() > limit and past_limit is None:
            past_limit = time.monotonic()
        late = past_limit is not None and time.monotonic() - past_limit >= WALL_GRACE
        if (not missing and set(open_) == set(stuck)) or late:
            result.unfinished = stuck | {
                i: f"{r.status} at {r.step}" for i, r in open_.items() if i not in stuck
            }
            result.unfinished |= {i: "not in the ledger" for i in missing}
            return
        time.sleep(0.5)


def spawned(records: Iterable[JobRecord]) -> set[str]:
    """The jobs these jobs put on a queue themselves. Such a job is in the ledger only once a
    host has taken its message, so until then only its parent names it: a reconcile's repair
    (the reconcile ends as it enqueues it), a repair's replacement, an image job's children (a
    parent that gave up waiting leaves them on the queue)."""
    found: set[str] = set()
    for record in records:
        repair = (record.outcome or {}).get("repair")
        if record.kind == "reconcile" and isinstance(repair, dict) and repair.get("enqueued"):
            found.add(str(repair["enqueued"]))
        if record.kind == "repair" and record.state.get("grow"):
            found.add(str(record.state["grow"]))
        if record.kind == "image":
            found |= {str(child) for child in (record.state.get("children") or {}).values()}
    return found


def _stuck(record: JobRecord) -> str | None:
    """Why `record` is stuck: its last entry is a wait repeated for STUCK or longer."""
    last = record.steps[-1] if record.steps else {}
    if last.get("result") != "wait" or not last.get("last_at"):
        return None
    waited = datetime.fromisoformat(last["last_at"]) - datetime.fromisoformat(last["at"])
    if waited < STUCK:
        return None
    return (
        f"waiting at {record.step} since {last['at']} ({last.get('repeats')} times, "
        f"{waited}): {last.get('reason')}"
    )
