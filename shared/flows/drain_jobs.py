"""Drain jobs (`drain-jobs`): cordon and drain one node of a pool, round by round.

For operators and other systems that want a node emptied without removing it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.decide.drain import DrainOptions
from shared.flows.drain import (
    Drained,
    DrainFailed,
    DrainState,
    abort_drain,
    continue_drain,
    start_drain,
)
from shared.flows.jobs import Flow, StepContext, register
from shared.jobs import Done, DrainParams, Fail, JobKind, Outcome, Wait


def _drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    params = ctx.job.typed_params()
    assert isinstance(params, DrainParams)
    kube = ctx.services.kube
    node = kube.node(params.node)
    if node is None and not state:
        return Fail(f"node {params.node} does not exist")
    if not state and node is not None and node.view().node_group != ctx.pool.node_group:
        return Fail(
            f"node {params.node} is not in pool {ctx.pool.name} (node group "
            f"{node.view().node_group!r}, pool's {ctx.pool.node_group!r})"
        )
    options = DrainOptions(delete_emptydir_data=params.delete_emptydir_data, force=params.force)
    ctx.before_write()
    if params.dry_run:
        from shared.decide.drain import plan_drain

        plan = plan_drain(kube.pods_on(params.node), options)
        return Done(
            {
                "dry_run": True,
                "decisions": [
                    {"pod": d.pod.key, "action": d.action.value, "reason": d.reason}
                    for d in plan.decisions
                ],
            }
        )
    if state:
        step = continue_drain(kube, DrainState(**state), now=ctx.now)
    else:
        step = start_drain(
            kube,
            params.node,
            now=ctx.now,
            timeout=timedelta(seconds=params.timeout_seconds),
            options=options,
        )
    if isinstance(step, Drained):
        return Done({"evicted": step.evicted, "skipped": step.skipped})
    if isinstance(step, DrainFailed):
        why_not = abort_drain(kube, params.node)
        return Fail(
            f"drain of {params.node} failed: {step.reason}",
            {"remaining": step.remaining, "uncordon": why_not or "uncordoned"},
        )
    return Wait("drain", step.delay, step.state.to_json(), reason="; ".join(step.remaining[:5]))


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    params = ctx.job.typed_params()
    assert isinstance(params, DrainParams)
    return {params.node: abort_drain(ctx.services.kube, params.node) or "uncordoned"}


register(JobKind.DRAIN, Flow(first_step="drain", steps={"drain": _drain}, abort=_abort))
