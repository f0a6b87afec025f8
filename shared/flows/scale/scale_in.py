"""The scale-in steps of a scale job: claim and drain the victims, delete exactly those still
ready to go, and settle the delete's outcome by full re-reads before anything is released or
counted (invariants 3, 11, 12). `shared.flows.scale.job` plans and registers them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.adapters.scaleset import (
    AzureCallError,
    PermanentAzureError,
    TemporaryAzureError,
    ThrottledError,
)
from shared.decide.claims import SETTLE_DEADLINE
from shared.decide.counting import InstanceState, classify
from shared.decide.drain import DrainOptions
from shared.decide.settle import settle
from shared.flows.claims import Claimed, Owner, claim, release_all, why_not_idle
from shared.flows.drain import (
    Drained,
    DrainFailed,
    DrainState,
    Waiting,
    continue_drain,
    start_drain,
)
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.flows.truth import Truth, read_truth
from shared.jobs import Done, Fail, Next, Outcome, ScaleParams, Wait

POLL = timedelta(seconds=15)
DRAIN_TIMEOUT = timedelta(minutes=15)


def _force(ctx: StepContext) -> bool:
    params = ctx.job.typed_params()
    return isinstance(params, ScaleParams) and params.force_delete


def drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Claim (which cordons) and drain every victim; resumable round by round."""
    kube = ctx.kube
    owner = Owner.of(ctx.job)
    nodes: list[str] = state["plan"]["nodes"]
    claimed: list[str] = list(state.get("claimed", []))
    for node in nodes:
        if node in claimed or not node:  # "": an instance without a node has nothing to drain
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
        if not node or drains.get(node, {}).get("done"):
            continue
        ctx.before_write()
        if node in drains:
            step = continue_drain(
                kube, DrainState.from_json(drains[node]["state"]), now=ctx.now, owner=owner
            )
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


def _names(state: dict[str, Any]) -> dict[str, str]:
    """Victim instance id -> node name, from the plan."""
    return dict(zip(state["plan"]["victims"], state["plan"]["nodes"], strict=True))


def _deletable(
    ctx: StepContext, truth: Truth, candidates: list[str], names: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Of `candidates` (present, steady victims), those that may be deleted now, and why each
    other one may not: its node's claim, cordon and pods, then the min-size guard."""
    by_id = {i.instance_id: i for i in truth.state.instances}
    owner = Owner.of(ctx.job)
    held_back = {
        v: why
        for v in candidates
        if (why := why_not_idle(ctx.kube, names[v], owner) if names[v] else _registered(truth, v))
    }
    pending = [v for v in candidates if v not in held_back]
    live = truth.record["counts"]["live"]
    live_pending = sum(1 for v in pending if classify(by_id[v]) is InstanceState.LIVE)
    if pending and live - live_pending < ctx.pool.min_nodes:
        held_back |= {
            v: f"deleting {live_pending} of {live} live instances would leave fewer than "
            f"min_nodes {ctx.pool.min_nodes}"
            for v in pending
        }
        pending = []
    return pending, held_back


def _registered(truth: Truth, instance_id: str) -> str | None:
    """Why an instance named without a node must not be deleted: a node registered since, or
    the cluster could not be read to know (fail safe)."""
    if truth.nodes is None:
        return f"instance {instance_id}: the cluster could not be read to see it has no node"
    node = truth.record["instances"][instance_id]["node"]
    return f"instance {instance_id} has node {node} now: name the node instead" if node else None


def _send(
    ctx: StepContext,
    state: dict[str, Any],
    pending: list[str],
    *,
    retry: tuple[str, dict[str, Any]],
) -> Outcome:
    """DeleteInstances of exactly `pending`; whatever comes back, `settle` finds out the rest.
    Throttled (nothing happened): `retry` is the step and state to come back to."""
    ctx.before_write()
    try:
        token = ctx.services.scale_sets.begin_delete(ctx.pool.vmss_id, pending, force=_force(ctx))
    except ThrottledError as error:
        return temporary_wait(retry[0], retry[1], error, ctx)
    except PermanentAzureError as error:  # refused: Azure says it did nothing
        return Next("settle", state | {"definitive": True} | _error(error))
    except AzureCallError as error:  # no answer, or a 5xx: it may be happening anyway
        lost = {"definitive": False, "lost_at": state.get("lost_at") or ctx.now.isoformat()}
        return Next("settle", state | lost | _error(error))
    return Next("await_delete", state | {"definitive": False, "token": token})


def delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Delete exactly the victims that are still ready to go, after the min guard, on a fresh
    read. A victim already going (a redelivered step whose delete was sent) is settled first."""
    plan = state["plan"]
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("delete", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    going = [
        v for v in plan["victims"] if v in by_id and classify(by_id[v]) is InstanceState.DELETING
    ]
    if going:
        # Our delete may have been sent before a crash (or someone else deletes them): its
        # outcome is unknown, so nothing is released or counted until every victim settles.
        ctx.notes.append(f"already deleting: {', '.join(going)}; settling")
        return Next("settle", state | _sent(ctx, plan["victims"]) | {"definitive": False})
    gone = [v for v in plan["victims"] if v not in by_id]
    if gone:
        ctx.notes.append(f"already gone: {', '.join(gone)}")
    names = _names(state)
    present = [v for v in plan["victims"] if v in by_id]
    pending, held_back = _deletable(ctx, truth, present, names)
    released = release_all(ctx.kube, [names[v] for v in held_back], Owner.of(ctx.job))
    state = state | {"held_back": held_back, "released": released}
    if not pending:
        if gone:  # someone else deleted them: record how that ended
            return Next("settle", state | _sent(ctx, gone) | {"definitive": True})
        return Fail(
            "refused: no victim could be deleted: " + "; ".join(held_back.values()),
            {
                "held_back": held_back,
                "released": released,
                "counts": truth.record["counts"],
                "capacity": truth.state.capacity,
            },
        )
    return _send(ctx, state | _sent(ctx, [*gone, *pending]), pending, retry=("delete", state))


def _sent(ctx: StepContext, victims: list[str]) -> dict[str, Any]:
    return {"deleted": victims, "sent_at": ctx.now.isoformat()}


def _error(error: AzureCallError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


def _since_sent(ctx: StepContext, state: dict[str, Any]) -> timedelta:
    return ctx.now - datetime.fromisoformat(state["sent_at"])


def await_delete(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Poll the delete's operation; its end (or a poll Azure refuses) leads to `settle`."""
    try:
        status = ctx.services.scale_sets.operation_status(
            "delete", ctx.pool.vmss_id, state["token"]
        )
    except TemporaryAzureError as error:
        if _since_sent(ctx, state) > SETTLE_DEADLINE:
            return Next("settle", state | _error(error))
        return temporary_wait("await_delete", state, error, ctx)
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


def settle_step(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Re-read in full until every victim we asked to delete has settled — gone, or back with no
    delete running — then record, release the survivors, and report. Until then they stay
    claimed and cordoned: a delete whose answer was lost may still land (invariant 12). A victim
    that looks back long after a lost answer, never seen going, is asked for once more (after the
    same checks as the first time), so that its outcome comes from an answer."""
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("settle", state, error, ctx)
    by_id = {i.instance_id: i for i in truth.state.instances}
    states = {v: classify(by_id[v]) for v in state["deleted"] if v in by_id}
    seen = set(state.get("seen_going", [])) | {
        v for v, now_state in states.items() if now_state is InstanceState.DELETING
    }
    state = state | {"seen_going": sorted(seen)}
    waited = _since_sent(ctx, state)
    found = settle(
        state["deleted"],
        states,
        definitive=bool(state.get("definitive")),
        seen_going=seen,
        since_sent=waited,
    )
    names = _names(state)
    outcome: dict[str, Any] = {
        "deleted": found.deleted,
        "counts": truth.record["counts"],
        "capacity": truth.state.capacity,
    }
    if state.get("held_back"):
        outcome |= {"held_back": state["held_back"], "released": state.get("released", {})}
    if found.unsettled or (found.doubtful and state.get("resent")):
        waiting = [*found.unsettled, *found.doubtful]
        if waited <= SETTLE_DEADLINE:
            return Wait(
                "settle",
                POLL,
                state,
                reason=f"waiting for the outcome of the delete of {', '.join(waiting)}",
            )
        return Fail(
            f"the delete's outcome is still unknown after {SETTLE_DEADLINE} for instance(s) "
            f"{', '.join(waiting)}: their nodes stay cordoned and claimed by this job; "
            "reconcile releases them once they have settled",
            outcome | {"unsettled": waiting},
        )
    if found.doubtful:
        before = state
        pending, held_back = _deletable(ctx, truth, found.doubtful, names)
        released = release_all(ctx.kube, [names[v] for v in held_back], Owner.of(ctx.job))
        state = state | {
            "resent": True,
            "seen_before_resend": sorted(seen),
            "deleted": [v for v in state["deleted"] if v not in held_back],
            "held_back": state.get("held_back", {}) | held_back,
            "released": state.get("released", {}) | released,
        }
        if pending:
            ctx.notes.append(f"no sign of the lost delete on {', '.join(pending)}: sent again")
            return _send(ctx, state, pending, retry=("settle", before))
        return Next("settle", state | {"definitive": True})
    held = _held_for_a_lost_delete(ctx, state, found.survivors)
    if held:
        return Wait("settle", POLL, state, reason=held)
    ctx.before_write()
    uncordon = release_all(ctx.kube, [names[v] for v in found.survivors], Owner.of(ctx.job))
    outcome |= {"survivors": found.survivors, "uncordoned": uncordon}
    error = state.get("error")
    if error:
        outcome |= {"azure_error": error["code"]}
    if found.survivors and error:
        return Fail(f"delete failed: {error['code']}: {error['message']}", outcome)
    if found.survivors or state.get("held_back"):
        kept = len(found.survivors) + len(state.get("held_back") or {})
        return Fail(f"{kept} instance(s) were not deleted", outcome)
    # Every victim is gone: an error on the way (a lost answer) did not change the outcome.
    return Done(outcome)


def _held_for_a_lost_delete(
    ctx: StepContext, state: dict[str, Any], survivors: list[str]
) -> str | None:
    """Why survivors stay claimed a while longer: a delete of theirs got no answer and was never
    seen reaching them, so it may still land — until SETTLE_DEADLINE after it was sent."""
    if not state.get("lost_at"):
        return None
    reached = set(state.get("seen_before_resend", state.get("seen_going", [])))
    unreached = [v for v in survivors if v not in reached]
    until = datetime.fromisoformat(state["lost_at"]) + SETTLE_DEADLINE
    if not unreached or ctx.now >= until:
        return None
    return (
        f"{', '.join(unreached)} back, but a delete of theirs got no answer and may still land: "
        f"kept cordoned until {until.isoformat()}"
    )


def abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up. Before a delete was sent: give every claimed node back. After: the victims
    stay claimed (the delete may still land) and the pool is re-read for the record;
    reconcile releases the claims once the instances have settled."""
    plan = state.get("plan") or {}
    if not state.get("deleted"):
        # Every victim, not only those recorded as claimed: a step that raised may have claimed
        # more before it could say so. `release` leaves alone what this job does not hold.
        return release_all(ctx.kube, list(plan.get("nodes", [])), Owner.of(ctx.job))
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except Exception as error:  # noqa: BLE001 - reported; reconcile reads it again
        return {"reread": f"failed: {error}", "claims": "kept until the instances settle"}
    return {"reread": truth.record["counts"], "claims": "kept until the instances settle"}
