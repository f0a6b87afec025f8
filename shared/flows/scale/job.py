"""Scale jobs: scale up by raising capacity with If-Match; scale in by draining and deleting
named instances — never by writing a lower capacity. Every decision is made on a fresh read
under the pool's lease, and every delete is followed by a full re-read (invariants 1-4).
This module plans and scales up; the scale-in steps live in `shared.flows.scale.scale_in`.
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
from shared.decide.owners import capacity_owner
from shared.decide.writes import tags_with_write, write_landed
from shared.flows.jobs import Flow, StepContext, register
from shared.flows.retries import temporary_wait
from shared.flows.scale import scale_in
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, JobKind, Next, Outcome, ScaleParams, Wait

POLL = timedelta(seconds=15)
MAX_REPLANS = 3  # 412s in a row before giving up: someone else keeps writing this scale set
READY_TIMEOUT = timedelta(minutes=20)


def _params(ctx: StepContext) -> ScaleParams:
    params = ctx.job.typed_params()
    assert isinstance(params, ScaleParams)
    return params


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: a scale-in gives back what it holds (see scale_in.abort); a scale-up has
    nothing to undo."""
    if (state.get("plan") or {}).get("action") != "scale_in":
        return {}
    return scale_in.abort(ctx, state)


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh read, then the scale-up or scale-in plan (or why not)."""
    params = _params(ctx)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("plan", state, error, ctx)
    up = (params.delta or 0) > 0 or params.target is not None
    owner = capacity_owner(truth.state.tags)
    if owner and "sent" not in state:
        return Fail(
            f"refused (other owner): the scale set's capacity belongs to {owner}",
            {"refusal": "other_owner", "dry_run": params.dry_run},
        )
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
        pods = ctx.kube.evictable_pods()
        if params.instances:
            return _plan_instances(ctx, state, truth, params)
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


def _plan_instances(
    ctx: StepContext, state: dict[str, Any], truth: Any, params: ScaleParams
) -> Outcome:
    """Scale-in of named instances that have no node (e.g. a canary that never registered):
    nothing to drain, the min guard and the fresh checks of the delete step as for any other."""
    seen = truth.record["instances"]
    missing = [i for i in params.instances if i not in seen]
    with_node = {i: seen[i]["node"] for i in params.instances if i in seen and seen[i]["node"]}
    if missing or with_node:
        why = "; ".join(
            [f"instance {i} is not in the scale set" for i in missing]
            + [f"instance {i} has node {n}: name the node" for i, n in with_node.items()]
        )
        return Fail(f"refused: {why}", {"refusal": "instances"})
    live = truth.record["counts"]["live"]
    live_named = sum(seen[i]["state"] == InstanceState.LIVE.value for i in params.instances)
    if live - live_named < ctx.pool.min_nodes:
        return Fail(
            f"refused (min_nodes): deleting {live_named} of {live} live instances would leave "
            f"fewer than min_nodes {ctx.pool.min_nodes}",
            {"refusal": "min_nodes"},
        )
    described = {
        "action": "scale_in",
        "victims": list(params.instances),
        "nodes": [""] * len(params.instances),
        "live_before": live,
        "live_after": live - live_named,
        "etag": truth.state.etag,
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
        return temporary_wait("plan", state, error, ctx)
    except TemporaryAzureError as error:
        # The write may or may not have landed: the re-plan finds out from a fresh read.
        return temporary_wait("plan", state | {"sent": _sent_write(plan)}, error, ctx)
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
        return temporary_wait("write_failed", state, error, ctx)
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
        return temporary_wait("await_write", state, error, ctx)
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
        return temporary_wait("await_ready", state, error, ctx)
    existing = set(state.get("existing", ()))
    wanted = state["plan"]["new_capacity"] - state["plan"].get("active", 0)
    counts = truth.record["counts"]
    ready_nodes = {n.name for n in truth.nodes or [] if n.ready}

    def live_ready(instance: VmInstance) -> bool:
        node = truth.record["instances"][instance.instance_id]["node"]
        return classify(instance) is InstanceState.LIVE and node in ready_nodes

    # Azure numbers new instances upwards: when another scale-up landed after ours, its
    # instances come after ours, so ours are the first `wanted` of those added since our read.
    # Once seen they are recorded: if one of ours goes (someone deletes it), a later scale-up's
    # instance never takes its place in our count or our outcome.
    if state.get("added") is not None:
        ours = set(state["added"])
        added = [i for i in truth.state.instances if i.instance_id in ours]
    else:
        added = sorted(
            (i for i in truth.state.instances if i.instance_id not in existing),
            key=lambda i: int(i.instance_id) if i.instance_id.isdigit() else 0,
        )[:wanted]
        if len(added) == wanted:
            state = state | {"added": [i.instance_id for i in added]}
    added_ready = sum(1 for i in added if live_ready(i))
    failed = {i.instance_id: i.failure for i in added if classify(i) is InstanceState.FAILED}
    outcome = {
        "capacity": truth.state.capacity,
        "counts": counts,
        "ready": sum(1 for i in truth.state.instances if live_ready(i)),
        "added_ready": added_ready,
        "added": state.get("added") or [i.instance_id for i in added],
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
            "drain": scale_in.drain,
            "delete": scale_in.delete,
            "await_delete": scale_in.await_delete,
            "settle": scale_in.settle_step,
        },
        abort=_abort,
    ),
)
