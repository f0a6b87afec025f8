"""The downscale review: from Poolkeeper's own daily summaries (3-6 months of trend), whether a
pool may lose a node. Recorded and notified; executed through a scale-in job only where the
pool says `capacity.execute_downscale: true`. Runs weekly (timer) or on demand (job).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from shared.adapters.ledger import AlertLog, DailySummaries
from shared.adapters.notify import Notifier
from shared.config import Pool
from shared.decide.capacity import DailySummary, Thresholds, Verdict, review_downscale
from shared.flows.jobs import Flow, StepContext, enqueue, register
from shared.jobs import Done, JobKind, Outcome

log = logging.getLogger("poolkeeper.downscale")


def review_pool(services: Any, pool: Pool) -> dict[str, Any]:
    """Review one pool; returns the recommendation as recorded."""
    now = services.clock.now()
    summaries = [
        DailySummary(
            day=date.fromisoformat(d["day"]),
            node_count=d["node_count"],
            cpu_avg=d["cpu_avg"],
            cpu_peak=d["cpu_peak"],
            memory_avg=d["memory_avg"],
            memory_peak=d["memory_peak"],
            largest_node_share=d["largest_node_share"],
        )
        for d in DailySummaries(services.tables).days(pool.name)
    ]
    recorded = services.tables.pool_status(pool.name) or {}
    live = (recorded.get("counts") or {}).get("live", 0)
    settings = pool.capacity
    recommendation = review_downscale(
        summaries,
        live,
        now,
        last_scale_up_at=AlertLog(services.tables).last_scale_up(pool.name),
        thresholds=Thresholds(
            p1_cpu=settings.p1_cpu,
            p1_memory=settings.p1_memory,
            p2_cpu=settings.p2_cpu,
            p2_memory=settings.p2_memory,
        ),
        min_nodes=pool.min_nodes,
    )
    result: dict[str, Any] = {
        "pool": pool.name,
        "verdict": recommendation.verdict.value,
        "node_count": recommendation.node_count,
        "remove": recommendation.remove,
        "reason": recommendation.reason,
        "advice": list(recommendation.advice),
        "days": recommendation.days,
        "reviewed_at": now.isoformat(),
        "job": None,
    }
    if recommendation.verdict is Verdict.REMOVE and settings.execute_downscale:
        job = enqueue(
            services,
            JobKind.SCALE,
            pool.name,
            {"delta": -recommendation.remove},
            job_id=f"downscale-{pool.name}-{now:%Y%m%d}",  # one a day per pool
            requested_by="capacity:downscale-review",
            now=now,
        )
        result["job"] = job.id
    AlertLog(services.tables).record(
        pool.name, "downscale-review", recommendation.verdict.value, result, now
    )
    if recommendation.verdict in (Verdict.REMOVE, Verdict.HOLD_FOR_HUMAN):
        Notifier(services.queues, services.settings).send(
            pool=pool.name,
            kind=f"downscale_{recommendation.verdict.value}",
            severity="P2",
            at=now,
            message=recommendation.reason,
            values=result,
            advice=list(recommendation.advice),
        )
    log.info("Downscale review of %s: %s", pool.name, result)
    return result


def review_all(services: Any) -> list[dict[str, Any]]:
    """The weekly timer: review every pool."""
    return [review_pool(services, pool) for pool in services.config.pools]


def _review(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    return Done(review_pool(ctx.services, ctx.pool))


register(
    JobKind.DOWNSCALE_REVIEW,
    Flow(first_step="review", steps={"review": _review}, needs_lease=False),
)
