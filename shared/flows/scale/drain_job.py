"""Drain jobs (`drain-jobs`): claim, cordon and drain one node of a pool, round by round.

For operators and other systems that want a node emptied without removing it. A drained node is
handed back cordoned, its claim removed: it stays out of service as asked, and a scale-in by
count never picks it. A failed drain gives the node back as the claim found it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.decide.drain import DrainOptions, plan_drain
from shared.flows.claims import Claimed, Owner, claim, release
from shared.flows.drain import Drained, DrainFailed, DrainState, continue_drain, start_drain
from shared.flows.jobs import Flow, StepContext, register
from shared.jobs import Done, DrainParams, Fail, JobKind, Next, Outcome, Wait

HAND_BACK_RETRY = timedelta(seconds=15)


def _params(ctx: StepContext) -> DrainParams:
    params = ctx.job.typed_params()
    assert isinstance(params, DrainParams)
    return params


def _drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    params = _params(ctx)
    kube = ctx.kube
    options = DrainOptions(delete_emptydir_data=params.delete_emptydir_data, force=params.force)
    if "node" in state:  # a drain under way (the runner may keep a `_failures` count beside it)
        step = continue_drain(
            kube, DrainState.from_json(state), now=ctx.now, owner=Owner.of(ctx.job)
        )
    else:
        node = kube.node(params.node)
        if node is None:
            return Fail(f"node {params.node} does not exist")
        if node.view().node_group != ctx.pool.node_group:
            return Fail(
                f"node {params.node} is not in pool {ctx.pool.name} (node group "
                f"{node.view().node_group!r}, pool's {ctx.pool.node_group!r})"
            )
        if params.dry_run:
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
        ctx.before_write()
        claimed = claim(kube, params.node, Owner.of(ctx.job), ctx.now)
        if not isinstance(claimed, Claimed):
            return Fail(f"refused: {claimed.reason}", {"holder": claimed.holder})
        step = start_drain(
            kube,
            params.node,
            owner=Owner.of(ctx.job),
            now=ctx.now,
            timeout=timedelta(seconds=params.timeout_seconds),
            options=options,
        )
    if isinstance(step, Drained):
        # Recorded before the hand-back write: a worker that dies after it finds, redelivered,
        # a node it already gave back (not one whose claim someone took away).
        return Next("hand_back", {"drained": {"evicted": step.evicted, "skipped": step.skipped}})
    if isinstance(step, DrainFailed):
        ctx.before_write()
        released = release(kube, params.node, Owner.of(ctx.job))
        return Fail(
            f"drain of {params.node} failed: {step.reason}",
            {"remaining": step.remaining, "released": released},
        )
    return Wait("drain", step.delay, step.state.to_json(), reason="; ".join(step.remaining[:5]))


def _hand_back(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Give the drained node back cordoned, claim removed. Until that write is done the job is
    not: a claim left behind would let reconcile restore the node as the claim found it."""
    node = _params(ctx).node
    ctx.before_write()
    handed = release(ctx.kube, node, Owner.of(ctx.job), keep_cordoned=True)
    if handed.startswith("could not") or "kept changing" in handed:
        return Wait("hand_back", HAND_BACK_RETRY, state, reason=handed, error="NodeWriteFailed")
    return Done(state["drained"] | {"node": handed})


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    node = _params(ctx).node
    return {node: release(ctx.kube, node, Owner.of(ctx.job))}


register(
    JobKind.DRAIN,
    Flow(first_step="drain", steps={"drain": _drain, "hand_back": _hand_back}, abort=_abort),
)
