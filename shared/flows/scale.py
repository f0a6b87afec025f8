"""Scale jobs: scale up by raising capacity with If-Match; scale in by draining and deleting
named instances — never by writing a lower capacity. Every decision is made on a fresh read
under the pool's lease, and every delete is followed by a full re-read (invariants 1-4).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import AlertLog
from shared.adapters.scaleset import (
    AzureCallError,
    EtagMismatch,
    PermanentAzureError,
    TemporaryAzureError,
    ThrottledError,
)
from shared.clock import product_delay
from shared.decide.claims import parse_claim
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
from shared.decide.drain import DrainOptions, plan_drain
from shared.decide.writes import tags_with_write, write_landed
from shared.flows.claims import Claimed, Owner, claim, holds, release_all
from shared.flows.drain import (
    Drained,
    DrainFailed,
    DrainState,
    Waiting,
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
# After a delete whose answer was lost, a victim counts as settled only once it has looked steady
# this long after the send (Azure may still be taking the request), and never later than this.
SETTLE_QUIET = timedelta(minutes=3)
SETTLE_DEADLINE = timedelta(minutes=30)


def _params(ctx: StepContext) -> ScaleParams:
    params = ctx.job.typed_params()
    assert isinstance(params, ScaleParams)
    return params


def _temporary(
    step: str, state: dict[str, Any], error: TemporaryAzureError, ctx: StepContext
) -> Wait:
    delay = product_delay(ctx.services.clock, error.retry_after) if error.retry_after else RETRY
    return Wait(
        step,
        delay,
        state,
        reason=f"{type(error).__name__} {error.code}: {error.message}",
        error=error.code or type(error).__name__,
    )


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh read, then the scale-up or scale-in plan (or why not)."""
    params = _params(ctx)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("plan", state, error, ctx)
    up = (params.delta or 0) > 0 or params.target is not None
    if up and "sent" in state:
        # Our last write got no answer: tell our landed write from another job's by the marks
        # each scale-up signs its write with. Never add delta twice, never count theirs as ours.
        sent = state["sent"]
        state = {k: v for k, v in state.items() if k != "sent"}
        landed = write_landed(
            truth.state.etag, truth.state.tags, base_etag=sent["etag"], job_id=ctx.job.id
        )
        if landed is None:  # the marks are gone (someone replaced the tags): judge by size
            landed = truth.state.capacity >= sent["capacity"]
            ctx.notes.append("no write marks on the scale set: judged by capacity")
        if landed:
            ctx.notes.append(f"our write of capacity {sent['capacity']} landed")
            AlertLog(ctx.services.tables).note_scale_up(ctx.pool.name, ctx.now)
            return Next("await_ready", state | {"since": ctx.now.isoformat()})
        ctx.notes.append("our write did not land: re-planned from the current size")
    if up:
        # Every plan starts from the current size: a write that did not land is planned anew
        # (another job's scale-up or a scale-in may have come in between).
        plan: ScaleUpPlan | ScaleInPlan | Refusal = plan_scale_up(
            truth.state,
            ctx.pool.max_nodes,
            delta=params.delta if params.target is None else None,
            target=params.target,
        )
    else:
        if truth.nodes is None:
            return Fail(
                "cannot scale in: the cluster's nodes could not be read, so nothing can "
                "be drained (fail safe)",
                {"cluster_error": truth.record["cluster_error"]},
            )
        # A node another job holds is never this job's: named, the scale-in is refused before
        # it touches anything; by count, claimed and cordoned nodes (another job's, or an
        # operator's) are never picked.
        held = {
            n.name: claim
            for n in truth.nodes
            if n.name in params.nodes and (claim := parse_claim(n.claim)) is not None
        }
        if held:
            return Fail(
                "refused (claimed): "
                + "; ".join(
                    f"node {name} is claimed by {c.kind} job {c.job} since {c.at}"
                    for name, c in held.items()
                ),
                {"refusal": "claimed", "holders": {n: c.job for n, c in held.items()}},
            )
        pods = ctx.services.kube.evictable_pods()
        candidates = (
            truth.nodes
            if params.nodes
            else [node for node in truth.nodes if not node.unschedulable and not node.claim]
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
            "tags": tags_with_write(truth.state.tags, ctx.job.id),
            "detail": plan.detail,
            "active": plan.active,
        }
        if params.dry_run:
            return Done({"dry_run": True, "plan": described})
        # The instances of this read: the write adds the others, and only those are ours.
        existing = [i.instance_id for i in truth.state.instances]
        return Next("raise", state | {"plan": described, "existing": existing})
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
            ctx.pool.vmss_id, plan["new_capacity"], plan["etag"], tags=plan["tags"]
        )
    except EtagMismatch:
        replans = state.get("replans", 0) + 1
        if replans > MAX_REPLANS:
            return Fail(f"the scale set kept changing under us ({replans} ETag mismatches)")
        ctx.notes.append("412: re-read and re-plan")
        # A redelivered step meets its own earlier write this way: the re-plan looks for its
        # mark before it plans anything new.
        return Next("plan", state | {"replans": replans, "sent": _sent_write(plan)})
    except ThrottledError as error:  # refused before anything happened
        return _temporary("plan", state, error, ctx)
    except TemporaryAzureError as error:
        # The write may or may not have landed: the re-plan finds out from a fresh read.
        return _temporary("plan", state | {"sent": _sent_write(plan)}, error, ctx)
    except PermanentAzureError as error:
        failure = _failure("Azure refused the capacity write", error.code, error.message)
        return Next("write_failed", state | failure)
    return Next("await_write", state | {"token": token})


def _sent_write(plan: dict[str, Any]) -> dict[str, Any]:
    """What a re-plan needs to find out whether this write landed."""
    return {"etag": plan["etag"], "capacity": plan["new_capacity"]}


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
    except AzureCallError as error:
        # The operation cannot be asked (e.g. 404): a fresh read tells whether the write landed.
        ctx.notes.append(f"status poll refused ({error.status} {error.code}); re-reading")
        return Next("plan", state | {"sent": _sent_write(state["plan"])})
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

    # Azure numbers new instances upwards: when another scale-up landed after ours, its
    # instances come after ours, so ours are the first `wanted` of those added since our read.
    added = sorted(
        (i for i in truth.state.instances if i.instance_id not in existing),
        key=lambda i: int(i.instance_id) if i.instance_id.isdigit() else 0,
    )[:wanted]
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
    if ctx.now - datetime.fromisoformat(state["since"]) > READY_TIMEOUT:
        return Fail(
            f"only {added_ready} of {wanted} new instances live with Ready nodes after "
            f"{READY_TIMEOUT}",
            outcome,
        )
    return Wait("await_ready", POLL, state, reason=f"{added_ready}/{wanted} new live and Ready")


def _owner(ctx: StepContext) -> Owner:
    return Owner(ctx.job.id, ctx.job.kind.value)


def _drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Claim (which cordons) and drain every victim; resumable round by round."""
    kube = ctx.services.kube
    owner = _owner(ctx)
    nodes: list[str] = state["plan"]["nodes"]
    claimed: list[str] = list(state.get("claimed", []))
    for node in nodes:
        if node in claimed:
            continue
        ctx.before_write()
        result = claim(kube, node, owner, ctx.now)
        if not isinstance(result, Claimed):
            # Another job (or a person's tool) holds it: touch nothing of theirs, give ours back.
            return Fail(
                f"refused: {result.reason}",
                {"holder": result.holder, "released": release_all(kube, nodes, owner)},
            )
        claimed.append(node)
    state = state | {"claimed": claimed}
    drains: dict[str, Any] = dict(state["drains"])
    waits: list[timedelta] = []
    for node in nodes:
        if drains.get(node, {}).get("done"):
            continue
        ctx.before_write()
        if node in drains:
            step = continue_drain(kube, DrainState(**drains[node]["state"]), now=ctx.now)
        else:
            step = start_drain(
                kube,
                node,
                owner=owner,
                now=ctx.now,
                timeout=DRAIN_TIMEOUT,
                options=DrainOptions(),
                refuse_scale_down_disabled=True,
            )
        drains[node] = {"state": step.state.to_json(), "done": isinstance(step, Drained)}
        if isinstance(step, DrainFailed):
            return Fail(
                f"drain of {node} failed: {step.reason}",
                {
                    "remaining": [f"{node}: {step.reason}", *step.remaining],
                    "released": release_all(kube, nodes, owner),
                },
            )
        if isinstance(step, Waiting):
            waits.append(step.delay)
    state = state | {"drains": drains}
    if waits:
        return Wait("drain", min(waits), state, reason="waiting for evicted pods to go")
    return Next("delete", state)


def _not_ready_to_delete(kube: Any, node: str, owner: Owner) -> str | None:
    """Why this victim's node must not be deleted now (a fresh read), or None: it must still be
    claimed by this job, cordoned, and hold no pod a drain would have to move."""
    found = kube.node(node)
    if found is None:
        return f"node {node} is gone: nothing shows it was drained"
    if not holds(found, owner):
        return f"node {node} is no longer claimed by this job"
    if not found.unschedulable:
        return f"node {node} is schedulable again (someone uncordoned it)"
    left = plan_drain(kube.pods_on(node), DrainOptions()).left()
    if left:
        return f"node {node} still has pods: " + "; ".join(left[:5])
    return None


def _delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Delete exactly the victims that are still ready to go, after the min guard, on a fresh
    read. A victim already going (a redelivered step whose delete was sent) is settled first."""
    plan = state["plan"]
    kube = ctx.services.kube
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("delete", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    going = [
        v for v in plan["victims"] if v not in by_id or classify(by_id[v]) is InstanceState.DELETING
    ]
    if going:
        # Our delete may have been sent before a crash (or someone else deletes them): its
        # outcome is unknown, so nothing is released or counted until every victim settles.
        ctx.notes.append(f"already deleting or gone: {', '.join(going)}; settling")
        return Next("settle", state | _sent(ctx, plan["victims"], definitive=False))
    names = dict(zip(plan["victims"], plan["nodes"], strict=True))
    owner = _owner(ctx)
    held_back = {
        v: why for v in plan["victims"] if (why := _not_ready_to_delete(kube, names[v], owner))
    }
    pending = [v for v in plan["victims"] if v not in held_back]
    live = truth.record["counts"]["live"]
    live_pending = sum(1 for v in pending if classify(by_id[v]) is InstanceState.LIVE)
    if pending and live - live_pending < ctx.pool.min_nodes:
        held_back |= {
            v: f"deleting {live_pending} of {live} live instances would leave fewer than "
            f"min_nodes {ctx.pool.min_nodes}"
            for v in pending
        }
        pending = []
    released = release_all(kube, [names[v] for v in held_back], owner)
    state = state | {"held_back": held_back, "released": released}
    if not pending:
        return Fail(
            "refused: no victim could be deleted: " + "; ".join(held_back.values()),
            {
                "held_back": held_back,
                "released": released,
                "counts": truth.record["counts"],
                "capacity": truth.state.capacity,
            },
        )
    ctx.before_write()
    try:
        token = ctx.services.scale_sets.begin_delete(
            ctx.pool.vmss_id, pending, force=_params(ctx).force_delete
        )
    except ThrottledError as error:  # refused before anything happened: try again
        return _temporary("delete", state, error, ctx)
    except PermanentAzureError as error:  # refused: Azure says it did nothing
        return Next("settle", state | _sent(ctx, pending, definitive=True) | _error(error))
    except AzureCallError as error:  # no answer, or a 5xx: it may be happening anyway
        return Next("settle", state | _sent(ctx, pending, definitive=False) | _error(error))
    return Next("await_delete", state | _sent(ctx, pending, definitive=False) | {"token": token})


def _sent(ctx: StepContext, victims: list[str], *, definitive: bool) -> dict[str, Any]:
    return {"deleted": victims, "sent_at": ctx.now.isoformat(), "definitive": definitive}


def _error(error: AzureCallError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


def _since_sent(ctx: StepContext, state: dict[str, Any]) -> timedelta:
    return ctx.now - datetime.fromisoformat(state["sent_at"])


def _await_delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Poll the delete's operation; its end (or a poll Azure refuses) leads to `settle`."""
    try:
        status = ctx.services.scale_sets.operation_status(
            "delete", ctx.pool.vmss_id, state["token"]
        )
    except TemporaryAzureError as error:
        if _since_sent(ctx, state) > SETTLE_DEADLINE:
            return Next("settle", state | _error(error))
        return _temporary("await_delete", state, error, ctx)
    except AzureCallError as error:
        # The operation cannot be asked (e.g. 404): the instances themselves will tell.
        ctx.notes.append(f"status poll refused ({error.status} {error.code}); settling by reads")
        return Next("settle", state | _error(error))
    if not status.done:
        if _since_sent(ctx, state) > SETTLE_DEADLINE:
            return Next("settle", state)
        return Wait("await_delete", POLL, state, reason="delete in progress")
    state = state | {"definitive": True}
    if status.state == "Failed":
        state = state | {"error": {"code": status.code, "message": status.message}}
    return Next("settle", state)


def _settle(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Re-read in full until every victim we asked to delete has settled — gone, or steady with
    no delete running — then record, release the survivors, and report. Until then they stay
    claimed and cordoned: a delete whose answer was lost may still land (invariant 12)."""
    plan = state["plan"]
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return _temporary("settle", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    waited = _since_sent(ctx, state)
    quiet = state.get("definitive") or waited >= SETTLE_QUIET
    unsettled = [
        v
        for v in state["deleted"]
        if v in by_id and (classify(by_id[v]) is InstanceState.DELETING or not quiet)
    ]
    names = dict(zip(plan["victims"], plan["nodes"], strict=True))
    outcome: dict[str, Any] = {
        "deleted": [v for v in state["deleted"] if v not in by_id],
        "counts": truth.record["counts"],
        "capacity": truth.state.capacity,
    }
    if state.get("held_back"):
        outcome |= {"held_back": state["held_back"], "released": state.get("released", {})}
    if unsettled:
        if waited <= SETTLE_DEADLINE:
            return Wait(
                "settle",
                POLL,
                state,
                reason=f"waiting for the outcome of the delete of {', '.join(unsettled)}",
            )
        return Fail(
            f"the delete's outcome is still unknown after {SETTLE_DEADLINE} for instance(s) "
            f"{', '.join(unsettled)}: their nodes stay cordoned and claimed by this job; "
            "reconcile releases them once they settle",
            outcome | {"unsettled": unsettled},
        )
    survivors = [v for v in state["deleted"] if v in by_id]
    ctx.before_write()
    uncordon = release_all(ctx.services.kube, [names[v] for v in survivors], _owner(ctx))
    outcome |= {"survivors": survivors, "uncordoned": uncordon}
    error = state.get("error")
    if error:
        outcome |= {"azure_error": error["code"]}
    if survivors and error:
        return Fail(f"delete failed: {error['code']}: {error['message']}", outcome)
    if survivors or state.get("held_back"):
        kept = len(survivors) + len(state.get("held_back") or {})
        return Fail(f"{kept} instance(s) were not deleted", outcome)
    # Every victim is gone: an error on the way (a lost answer) did not change the outcome.
    return Done(outcome)


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up. Before a delete was sent: give every claimed node back. After: the victims
    stay claimed (the delete may still land) and the pool is re-read for the record;
    reconcile releases the claims once the instances have settled."""
    plan = state.get("plan") or {}
    if plan.get("action") != "scale_in":
        return {}
    if not state.get("deleted"):
        # Every victim, not only those recorded as claimed: a step that raised may have claimed
        # more before it could say so. `release` leaves alone what this job does not hold.
        return release_all(ctx.services.kube, list(plan.get("nodes", [])), _owner(ctx))
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except Exception as error:  # noqa: BLE001 - reported; reconcile reads it again
        return {"reread": f"failed: {error}", "claims": "kept until the instances settle"}
    return {"reread": truth.record["counts"], "claims": "kept until the instances settle"}


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
            "settle": _settle,
        },
        abort=_abort,
    ),
)
