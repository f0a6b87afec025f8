"""Scale jobs: scale up by raising capacity with If-Match; scale in by draining and deleting
named instances — never by writing a lower capacity. Every decision is made on a fresh read
under the pool's lease, and every delete is followed by a full re-read (invariants 1-4).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.adapters.ledger import AlertLog
from shared.adapters.scaleset import (
    AzureCallError,
    EtagMismatch,
    PermanentAzureError,
    TemporaryAzureError,
)
from shared.clock import product_delay
from shared.decide.counting import (
    InstanceState,
    Refusal,
    ScaleInPlan,
    ScaleUpPlan,
    VmInstance,
    classify,
    plan_scale_in,
    plan_scale_up,
)
from shared.decide.drain import DrainOptions
from shared.flows.drain import (
    Drained,
    DrainFailed,
    DrainState,
    Waiting,
    abort_drain,
    continue_drain,
    start_drain,
)
from shared.flows.jobs import Flow, StepContext, register
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, JobKind, Next, Outcome, ScaleParams, Wait

POLL = timedelta(seconds=15)
RETRY = timedelta(seconds=30)
MAX_REPLANS = 3  # 412s in a row before giving up: someone else keeps writing this scale set
READY_TIMEOUT = timedelta(minutes=20)
DRAIN_TIMEOUT = timedelta(minutes=15)


def _params(ctx: StepContext) -> ScaleParams:
    params = ctx.job.typed_params()
    assert isinstance(params, ScaleParams)
    return params


def _temporary(
    step: str, state: dict[str, Any], error: TemporaryAzureError, ctx: StepContext
) -> Wait:
    delay = product_delay(ctx.services.clock, error.retry_after) if error.retry_after else RETRY
    return Wait(step, delay, state, reason=f"{type(error).__name__} {error.code}: {error.message}")


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh read, then the scale-up or scale-in plan (or why not)."""
    params = _params(ctx)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("plan", state, error, ctx)
    up = (params.delta or 0) > 0 or params.target is not None
    if up and "goal" in state and truth.state.capacity >= state["goal"]:
        # A re-plan (412, lost answer, redelivery) after our write already landed: the goal
        # fixed at the first plan is reached, so only the wait remains. Never add delta twice.
        ctx.notes.append(f"capacity {truth.state.capacity} already at the goal {state['goal']}")
        return Next("await_ready", state | {"since": ctx.now.isoformat()})
    if up:
        # The first plan turns delta into an absolute goal; every re-plan aims at that goal.
        plan: ScaleUpPlan | ScaleInPlan | Refusal = plan_scale_up(
            truth.state,
            ctx.pool.max_nodes,
            delta=params.delta if params.target is None and "goal" not in state else None,
            target=state.get("goal", params.target),
        )
    else:
        if truth.nodes is None:
            return Fail(
                "cannot scale in: the cluster's nodes could not be read, so nothing can "
                "be drained (fail safe)",
                {"cluster_error": truth.record["cluster_error"]},
            )
        pods = ctx.services.kube.evictable_pods()
        # Cordoned nodes are being drained (by another job, or an operator): never pick them by
        # count, or two scale-ins could choose the same victim. Named nodes are taken as asked.
        candidates = (
            truth.nodes
            if params.nodes
            else [node for node in truth.nodes if not node.unschedulable]
        )
        plan = plan_scale_in(
            truth.state,
            candidates,
            ctx.pool.min_nodes,
            ctx.pool.node_group,
            count=-params.delta if params.delta else None,
            names=params.nodes,
            # Least loaded = fewest pods to move; a node missing from the counts has none.
            load={n.name: float(pods.get(n.name, 0)) for n in candidates},
        )
    if isinstance(plan, Refusal):
        return Fail(
            f"refused ({plan.reason.value}): {plan.message}",
            {"refusal": plan.reason.value, "dry_run": params.dry_run},
        )
    if isinstance(plan, ScaleUpPlan):
        described = {
            "action": "scale_up",
            "capacity": plan.current_capacity,
            "new_capacity": plan.new_capacity,
            "bounded": plan.bounded,
            "etag": plan.etag,
            "detail": plan.detail,
            "active": plan.active,
        }
        if params.dry_run:
            return Done({"dry_run": True, "plan": described})
        # The instances of the first read: the write adds the others, and only those are waited
        # for. Kept across re-plans, like the goal.
        existing = state.get("existing") or [i.instance_id for i in truth.state.instances]
        goal = state.get("goal", plan.new_capacity)
        return Next("raise", state | {"plan": described, "existing": existing, "goal": goal})
    described = {
        "action": "scale_in",
        "victims": list(plan.instance_ids),
        "nodes": list(plan.node_names),
        "live_before": plan.live_before,
        "live_after": plan.live_after,
        "etag": plan.etag,
    }
    if params.dry_run:
        return Done({"dry_run": True, "plan": described})
    return Next("drain", state | {"plan": described, "drains": {}})


def _raise(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    plan = state["plan"]
    ctx.before_write()
    try:
        token = ctx.services.scale_sets.raise_capacity(
            ctx.pool.vmss_id, plan["new_capacity"], plan["etag"]
        )
    except EtagMismatch:
        replans = state.get("replans", 0) + 1
        if replans > MAX_REPLANS:
            return Fail(f"the scale set kept changing under us ({replans} ETag mismatches)")
        ctx.notes.append("412: re-read and re-plan")
        return Next("plan", state | {"replans": replans})
    except TemporaryAzureError as error:
        # The write may or may not have landed: the re-plan finds out from a fresh read.
        return _temporary("plan", state, error, ctx)
    except PermanentAzureError as error:
        failure = _failure("Azure refused the capacity write", error.code, error.message)
        return Next("write_failed", state | failure)
    return Next("await_write", state | {"token": token})


def _failure(what: str, code: str | None, message: str | None) -> dict[str, Any]:
    return {"failure": {"what": what, "code": code, "message": message}}


def _write_failed(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """After a refused or failed capacity write: re-read in full, then report the Azure error."""
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("write_failed", state, error, ctx)
    failure = state["failure"]
    return Fail(
        f"{failure['what']}: {failure['code']}: {failure['message']}",
        {"azure_error": failure["code"], "counts": truth.record["counts"]},
    )


def _await_write(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    try:
        status = ctx.services.scale_sets.operation_status(
            "update", ctx.pool.vmss_id, state["token"]
        )
    except TemporaryAzureError as error:
        return _temporary("await_write", state, error, ctx)
    if not status.done:
        return Wait("await_write", POLL, state, reason="capacity write in progress")
    if status.state == "Failed":
        failure = _failure("the capacity write failed", status.code, status.message)
        return Next("write_failed", state | failure)
    # Every raise counts for the downscale review's anti-oscillation window, whoever asked.
    AlertLog(ctx.services.tables).note_scale_up(ctx.pool.name, ctx.now)
    return Next("await_ready", state | {"since": ctx.now.isoformat()})


def _await_ready(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The instances the write added are live and their nodes Ready — or say why not.

    Instances that were there before (a failed or stopped one from an earlier job) neither count
    towards the wait nor are blamed for it.
    """
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("await_ready", state, error, ctx)
    existing = set(state.get("existing", ()))
    wanted = state["plan"]["new_capacity"] - state["plan"].get("active", 0)
    counts = truth.record["counts"]
    ready_nodes = {n.name for n in truth.nodes or [] if n.ready}

    def live_ready(instance: VmInstance) -> bool:
        node = truth.record["instances"][instance.instance_id]["node"]
        return classify(instance) is InstanceState.LIVE and node in ready_nodes

    added = [i for i in truth.state.instances if i.instance_id not in existing]
    added_ready = sum(1 for i in added if live_ready(i))
    failed = {i.instance_id: i.failure for i in added if classify(i) is InstanceState.FAILED}
    outcome = {
        "capacity": truth.state.capacity,
        "counts": counts,
        "ready": sum(1 for i in truth.state.instances if live_ready(i)),
        "added_ready": added_ready,
    }
    if added_ready >= wanted:
        return Done(outcome)
    if failed:
        codes = ", ".join(sorted({code or "unknown" for code in failed.values()}))
        return Fail(
            f"{len(failed)} new instance(s) failed to provision ({codes})",
            outcome | {"failed": failed},
        )
    from datetime import datetime

    if ctx.now - datetime.fromisoformat(state["since"]) > READY_TIMEOUT:
        return Fail(
            f"only {added_ready} of {wanted} new instances live with Ready nodes after "
            f"{READY_TIMEOUT}",
            outcome,
        )
    return Wait("await_ready", POLL, state, reason=f"{added_ready}/{wanted} new live and Ready")


def _drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Cordon and drain every victim; resumable round by round."""
    params = _params(ctx)
    kube = ctx.services.kube
    drains: dict[str, Any] = dict(state["drains"])
    waits: list[timedelta] = []
    options = DrainOptions()
    for node in state["plan"]["nodes"]:
        if drains.get(node, {}).get("done"):
            continue
        if node in drains:
            ctx.before_write()
            step = continue_drain(kube, DrainState(**drains[node]["state"]), now=ctx.now)
        else:
            ctx.before_write()
            step = start_drain(
                kube,
                node,
                now=ctx.now,
                timeout=DRAIN_TIMEOUT,
                options=options,
                refuse_scale_down_disabled=True,
            )
        drains[node] = {"state": step.state.to_json(), "done": isinstance(step, Drained)}
        if isinstance(step, DrainFailed):
            problems = [f"{node}: {step.reason}", *step.remaining]
            uncordon = {n: abort_drain(kube, n) for n in state["plan"]["nodes"]}
            return Fail(
                f"drain of {node} failed: {step.reason}",
                {
                    "remaining": problems,
                    "uncordon": {n: why or "uncordoned" for n, why in uncordon.items()},
                },
            )
        if isinstance(step, Waiting):
            waits.append(step.delay)
    state = state | {"drains": drains}
    if waits:
        return Wait("drain", min(waits), state, reason="waiting for evicted pods to go")
    del params
    return Next("delete", state)


def _delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Delete exactly the drained victims, after checking the guard on a fresh read."""
    plan = state["plan"]
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("delete", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    # A redelivered step must not delete twice: victims already going or gone are left alone.
    pending = [
        v
        for v in plan["victims"]
        if v in by_id and classify(by_id[v]) is not InstanceState.DELETING
    ]
    if not pending:
        return Next("after_delete", state | {"deleted": [], "note": "already deleting or gone"})
    live = truth.record["counts"]["live"]
    live_pending = sum(1 for v in pending if classify(by_id[v]) is InstanceState.LIVE)
    if live - live_pending < ctx.pool.min_nodes:
        uncordon = {n: abort_drain(ctx.services.kube, n) for n in plan["nodes"]}
        return Fail(
            f"refused: deleting {live_pending} of {live} live instances would leave "
            f"fewer than min_nodes {ctx.pool.min_nodes}",
            {"uncordon": {n: why or "uncordoned" for n, why in uncordon.items()}},
        )
    ctx.before_write()
    try:
        token = ctx.services.scale_sets.begin_delete(
            ctx.pool.vmss_id, pending, force=_params(ctx).force_delete
        )
    except TemporaryAzureError as error:
        if error.retry_after:  # throttled before anything happened: try again
            return _temporary("delete", state, error, ctx)
        return Next("after_delete", state | {"deleted": pending, "error": _error(error)})
    except AzureCallError as error:
        return Next("after_delete", state | {"deleted": pending, "error": _error(error)})
    return Next("await_delete", state | {"deleted": pending, "token": token})


def _error(error: AzureCallError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "status": error.status}


def _await_delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    try:
        status = ctx.services.scale_sets.operation_status(
            "delete", ctx.pool.vmss_id, state["token"]
        )
    except TemporaryAzureError as error:
        return _temporary("await_delete", state, error, ctx)
    if not status.done:
        return Wait("await_delete", POLL, state, reason="delete in progress")
    if status.state == "Failed":
        state = state | {"error": {"code": status.code, "message": status.message}}
    return Next("after_delete", state)


def _after_delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Whatever the delete returned: re-read in full, uncordon survivors, report."""
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("after_delete", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    survivors = [
        v
        for v in state["plan"]["victims"]
        if v in by_id and classify(by_id[v]) is not InstanceState.DELETING
    ]
    names = dict(zip(state["plan"]["victims"], state["plan"]["nodes"], strict=True))
    uncordon = {names[v]: abort_drain(ctx.services.kube, names[v]) for v in survivors}
    outcome = {
        "deleted": [v for v in state["plan"]["victims"] if v not in survivors],
        "survivors": survivors,
        "uncordoned": {n: why or "uncordoned" for n, why in uncordon.items()},
        "counts": truth.record["counts"],
        "capacity": truth.state.capacity,
    }
    if state.get("error"):
        error = state["error"]
        return Fail(
            f"delete failed: {error['code']}: {error['message']}",
            outcome | {"azure_error": error["code"]},
        )
    if survivors:
        return Fail(f"{len(survivors)} instance(s) were not deleted", outcome)
    return Done(outcome)


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: uncordon the victims unless a delete was sent (then they are going anyway)."""
    plan = state.get("plan") or {}
    if plan.get("action") != "scale_in" or state.get("token") or state.get("deleted"):
        return {}
    return {n: abort_drain(ctx.services.kube, n) or "uncordoned" for n in plan.get("nodes", [])}


register(
    JobKind.SCALE,
    Flow(
        first_step="plan",
        steps={
            "plan": _plan,
            "raise": _raise,
            "await_write": _await_write,
            "await_ready": _await_ready,
            "write_failed": _write_failed,
            "drain": _drain,
            "delete": _delete,
            "await_delete": _await_delete,
            "after_delete": _after_delete,
        },
        abort=_abort,
    ),
)
