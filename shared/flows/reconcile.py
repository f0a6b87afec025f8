"""Reconcile: re-read a pool in full, record its truth and drift. Runs as a `reconcile` job.

The timer enqueues one per pool; nothing here writes to Azure or the cluster.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.adapters.scaleset import TemporaryAzureError, ThrottledError
from shared.clock import product_delay
from shared.flows.jobs import Flow, StepContext, register
from shared.flows.truth import read_truth
from shared.jobs import Done, JobKind, Outcome, Wait

RETRY = timedelta(seconds=30)


def _reconcile(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id)
    except TemporaryAzureError as error:
        delay = product_delay(ctx.services.clock, error.retry_after) if error.retry_after else RETRY
        kind = "throttled" if isinstance(error, ThrottledError) else "temporary error"
        return Wait("reconcile", delay, state, reason=f"{kind}: {error.code}")
    return Done(
        {
            "counts": truth.record["counts"],
            "capacity": truth.record["capacity"],
            "drift": [d["detail"] for d in truth.record["drift"]],
        }
    )


register(JobKind.RECONCILE, Flow(first_step="reconcile", steps={"reconcile": _reconcile}))
