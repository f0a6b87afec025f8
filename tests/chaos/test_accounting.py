"""The driver's job accounting, without a rig: a round ends only once every job of it has ended,
including the jobs Poolkeeper enqueued itself that no host has taken yet (seed 0's flake: a
reconcile ended as it enqueued a repair, the driver settled, and the repair claimed nodes
after the invariants had been read)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import JobRecord
from tests.chaos.accounting import await_jobs, spawned
from tests.chaos.driver import RoundResult, Sent
from tests.chaos.schedules import Round

START = datetime.fromisoformat("2027-01-04T08:00:00+00:00")


def _record(job_id: str, kind: str, status: str, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": job_id,
        "kind": kind,
        "pool": "chaos0",
        "status": status,
        "step": "plan",
        "state": {},
        "steps": [],
        "outcome": None,
        "error": None,
        "continuation": None,
        "requested_by": "test",
        "created_at": START.isoformat(),
        "updated_at": START.isoformat(),
        "envelope": json.dumps({}),
    }
    return JobRecord(**(values | fields))


class _Clock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


def _scripted(snapshots: list[dict[str, JobRecord]]) -> Callable[[], dict[str, JobRecord]]:
    """Ledger reads from a script: one snapshot a look, the last one again once it runs out."""
    looks: Iterator[dict[str, JobRecord]] = iter(snapshots)
    last: dict[str, JobRecord] = {}

    def read() -> dict[str, JobRecord]:
        nonlocal last
        last = next(looks, last)
        return last

    return read


def test_the_round_waits_for_the_repair_a_reconcile_enqueued_before_a_host_takes_it() -> None:
    repair = "repair-chaos0-notready-3-x"
    enqueued = {"repair": {"enqueued": repair}}
    reconcile = _record("chaos-0-p0-0", "reconcile", "done", outcome=enqueued)
    read = _scripted(
        [
            {reconcile.id: reconcile},  # the repair is still on the queue
            {reconcile.id: reconcile},
            {reconcile.id: reconcile, repair: _record(repair, "repair", "done")},
        ]
    )
    result = RoundResult(Round(0, (), ()))
    result.sent.append(Sent(reconcile.id, 0, "reconcile", "reconcile", {}, "queue", True))
    await_jobs(_Clock(), result, read)
    assert repair in result.records
    assert result.unfinished == {}


def test_a_repairs_replacement_and_an_image_jobs_children_count_as_jobs_of_the_round() -> None:
    repair = _record("r", "repair", "failed", state={"grow": "r-grow"})
    image = _record("i", "image", "waiting", state={"children": {"canary": "i.canary"}})
    assert spawned([repair, image]) == {"r-grow", "i.canary"}
