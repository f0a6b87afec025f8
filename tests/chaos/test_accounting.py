"""The driver's job accounting, without a rig: a round ends only once every job of it has ended,
including the jobs Poolkeeper enqueued itself that no host has taken yet (seed 0's flake: a
reconcile ended as it enqueued a repair, the driver settled, and the repair claimed nodes
after the invariants had been read)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from shared.adapters.ledger import JobRecord
from tests.chaos.driver import Driver, RoundResult, Sent
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


class _Scripted(Driver):
    """A driver whose ledger reads come from a script: one snapshot a look."""

    def __init__(self, snapshots: list[dict[str, JobRecord]]) -> None:
        super().__init__(SimpleNamespace(services=SimpleNamespace(clock=_Clock())))  # type: ignore[arg-type]
        self.snapshots: Iterator[dict[str, JobRecord]] = iter(snapshots)
        self.last: dict[str, JobRecord] = {}

    def _round_jobs(self, result: RoundResult) -> dict[str, JobRecord]:
        self.last = next(self.snapshots, self.last)
        return self.last


def test_the_round_waits_for_the_repair_a_reconcile_enqueued_before_a_host_takes_it() -> None:
    repair = "repair-chaos0-notready-3-x"
    enqueued = {"repair": {"enqueued": repair}}
    reconcile = _record("chaos-0-p0-0", "reconcile", "done", outcome=enqueued)
    driver = _Scripted(
        [
            {reconcile.id: reconcile},  # the repair is still on the queue
            {reconcile.id: reconcile},
            {reconcile.id: reconcile, repair: _record(repair, "repair", "done")},
        ]
    )
    result = RoundResult(Round(0, (), ()))
    result.sent.append(Sent(reconcile.id, 0, "reconcile", "reconcile", {}, "queue", True))
    driver._await_jobs(result)
    assert repair in result.records
    assert result.unfinished == {}


def test_a_repairs_replacement_and_an_image_jobs_children_count_as_jobs_of_the_round() -> None:
    from tests.chaos.driver import spawned

    repair = _record("r", "repair", "failed", state={"grow": "r-grow"})
    image = _record("i", "image", "waiting", state={"children": {"canary": "i.canary"}})
    assert spawned([repair, image]) == {"r-grow", "i.canary"}
