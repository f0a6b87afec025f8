"""How a repair ends: the entry in the pool's repair log, and a person told when a repair that
acted did not fix it. Used by every repair step (`shared.flows.repair.job`, `.ladder`)."""

from __future__ import annotations

from typing import Any

from shared.adapters.repair_log import RepairLog
from shared.flows.claims import Owner
from shared.flows.jobs import StepContext
from shared.flows.repair.follow_up import notify
from shared.jobs import Done, Fail, Outcome, RepairParams


def params(ctx: StepContext) -> RepairParams:
    """The job's parameters."""
    found = ctx.job.typed_params()
    assert isinstance(found, RepairParams)
    return found


def owner(ctx: StepContext) -> Owner:
    """The repair job, as it signs its claims."""
    return Owner.of(ctx.job)


def end(ctx: StepContext, state: dict[str, Any], outcome: Done | Fail, status: str = "") -> Outcome:
    """Write how the repair ended to the pool's repair log; escalate what a person must see."""
    repair = state.get("repair") or {}
    ended = status or ("done" if isinstance(outcome, Done) else "failed")
    result = outcome.reason if isinstance(outcome, Fail) else outcome.outcome.get("note", "")
    entry = {
        "job": ctx.job.id,
        "at": state.get("started_at") or ctx.now.isoformat(),
        "ended_at": ctx.now.isoformat(),
        "status": ended,
        "problem": repair.get("problem"),
        "node": repair.get("name"),
        "instance": repair.get("instance"),
        "detail": repair.get("detail"),
        "rung": state.get("rung"),
        "rungs": state.get("rungs", []),
        "acted": bool(state.get("acted")),
        "result": str(result)[:300],
    }
    RepairLog(ctx.services.tables).put(ctx.pool.name, entry, ctx.now)
    if isinstance(outcome, Fail) and state.get("acted"):
        notify(
            ctx.services,
            ctx.pool.name,
            "repair_failed",
            "P2",
            ctx.now,
            f"repair of {repair.get('name')} in pool {ctx.pool.name} did not fix it "
            f"({repair.get('detail')}): {outcome.reason}; it needs a person",
            job=ctx.job.id,
            node=repair.get("name"),
            instance=repair.get("instance"),
        )
    summary = {"repair": {k: entry[k] for k in ("problem", "node", "instance", "rung", "rungs")}}
    if isinstance(outcome, Done):
        return Done(outcome.outcome | summary)
    return Fail(outcome.reason, outcome.outcome | summary)
